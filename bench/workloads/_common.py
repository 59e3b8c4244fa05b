"""Helpers shared by every workload: standard library only, as they run in peer venvs too.

A workload is a script run by the interpreter of the library it measures. It reads its
parameters as one JSON object (``argv[1]``) and prints its findings as one JSON line that
starts with ``RESULT`` on standard output, which `bench/run.py` collects.
"""

from __future__ import annotations

import contextlib
import json
import platform
import resource
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any


def params() -> dict[str, Any]:
    """The workload's parameters, as `bench/run.py` passed them."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} '<json parameters>'")
    loaded = json.loads(sys.argv[1])
    assert isinstance(loaded, dict)
    return loaded


def emit(result: dict[str, Any]) -> None:
    """Hand *result* to the driver (one line on standard output)."""
    result.setdefault("python", platform.python_version())
    result.setdefault("rss_peak_mb", peak_rss_mb())
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    kb = _status_kb("VmRSS")
    return round((kb or 0.0) / 1024, 1)


def peak_rss_mb() -> float:
    """The most resident memory this process has used, in MB."""
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: ru_maxrss is in kB on Linux, bytes on macOS
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kb = maxrss / 1024 if sys.platform == "darwin" else maxrss
    return round(kb / 1024, 1)


def control(origin: str, action: str) -> dict[str, Any]:
    """Ask the bench server to ``revoke`` every token, ``reset`` or read its ``stats``."""
    request = urllib.request.Request(f"{origin}/_bench/{action}", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=30) as answer:
        loaded = json.loads(answer.read())
    assert isinstance(loaded, dict)
    return loaded


class Tally:
    """Times a crawl and counts the object ids it delivers: how many, how many distinct.

        with Tally(expected) as tally:
            for feature in crawl():
                tally.add(oid_of(feature))
        emit(tally.result())

    A bytearray indexed by object id costs one byte per id, so the check does not
    disturb the memory being measured (a set of a million ints would add ~60 MB).
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seen = bytearray(expected + 2)
        self.delivered = 0
        self.duplicates = 0
        self.out_of_range = 0
        self.rss_before = 0.0
        self.started = self.seconds = self.first = 0.0

    def __enter__(self) -> Tally:
        self.rss_before = rss_mb()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self.started

    def add(self, oid: int) -> None:
        if not self.delivered:
            self.first = time.perf_counter() - self.started
        self.delivered += 1
        if not 0 <= oid < len(self.seen):
            self.out_of_range += 1
        elif self.seen[oid]:
            self.duplicates += 1
        else:
            self.seen[oid] = 1

    def result(self) -> dict[str, Any]:
        distinct = self.delivered - self.duplicates - self.out_of_range
        return {
            "seconds": self.seconds,
            "first_feature_s": self.first,
            "rss_before_mb": self.rss_before,
            "delivered": self.delivered,
            "distinct": distinct,
            "complete": distinct == self.expected and self.delivered == self.expected,
        }


def raise_fd_limit() -> None:
    """Allow as many open sockets as the hard limit does (the stampede opens 1,000)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):  # macOS refuses some values
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def interleaved(
    baseline: Callable[[], Awaitable[None]],
    measured: Callable[[], Awaitable[None]],
    blocks: int,
    per_block: int,
) -> dict[str, Any]:
    """Per-request times of two callables, in alternating blocks (the machine is noisy)."""
    times: dict[str, list[float]] = {"baseline_us": [], "measured_us": []}
    for call in (baseline, measured):  # warm both connections
        await call()
    for index in range(blocks):
        order = [("baseline_us", baseline), ("measured_us", measured)]
        for name, call in order if index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            for _ in range(per_block):
                await call()
            times[name].append((time.perf_counter() - start) / per_block * 1e6)
    return times
