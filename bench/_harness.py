"""The machinery every benchmark shares: the peers' venvs, the bench server, running a
workload in its client's own interpreter, crawl rounds, and the report.

`run.py` holds the benchmarks themselves; this module knows nothing of what they measure.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKLOADS = HERE / "workloads"
VENVS = HERE / ".venvs"
USER, PASSWORD = "bench", "bench-password"
SMALL_QUERY = "Small/FeatureServer/0/query"
PAGE = 2000
CONCURRENCY = 8  # requests in flight, for every async crawler


# -- the clients -----------------------------------------------------------------------


@dataclass
class Client:
    """One client measured: a workload script and the interpreter that runs it."""

    key: str
    name: str
    script: str
    backend: str | None  # "trio", "asyncio", or None for a synchronous client
    python: str | None = None  # None: not available
    skipped: str = ""  # why, when python is None
    params: dict[str, Any] = field(default_factory=dict)  # added to every workload's

    @property
    def label(self) -> str:
        return f"{self.name} ({self.backend})" if self.backend else self.name


@dataclass
class Peers:
    python312: str | None
    clients: dict[str, Client] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


def find_python312() -> tuple[str | None, str]:
    """A Python 3.12 or newer for archibald 1.2.5, or None and where it looked."""
    candidates: list[str] = []
    if sys.version_info >= (3, 12):
        candidates.append(sys.executable)
    for name in ("python3.12", "python3.13", "python3.14"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for pattern in ("3.12*", "3.13*"):
        candidates += sorted(
            glob.glob(os.path.join(pyenv_root, "versions", pattern, "bin", "python3"))
        )
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv; print(sys.version_info >= (3, 12))"],
            capture_output=True,
            text=True,
        )
        if probe.stdout.strip() == "True":
            return candidate, ""
    return None, "no Python 3.12+ interpreter (looked on PATH and in $PYENV_ROOT/versions)"


def ensure_venv(name: str, python: str, requirements: Sequence[str]) -> tuple[str | None, str]:
    """The interpreter of ``bench/.venvs/<name>`` with *requirements*, made if needed."""
    venv = VENVS / name
    interpreter = venv / "bin" / "python"
    stamp = venv / "bench-requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    if interpreter.exists() and stamp.exists() and stamp.read_text() == wanted:
        return str(interpreter), ""
    print(f"  making {venv.relative_to(HERE.parent)}: {' '.join(requirements)}", file=sys.stderr)
    steps = [
        [python, "-m", "venv", "--clear", str(venv)],
        [
            str(interpreter),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *requirements,
        ],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            errors = [line for line in lines if "ERROR" in line] or lines[-1:] or ["(no output)"]
            return None, f"could not install {' '.join(requirements)}: {errors[-1].strip()}"
    stamp.write_text(wanted)
    return str(interpreter), ""


def versions_of(python: str, *packages: str) -> str:
    """``package version`` of each of *packages* in the environment of *python*."""
    code = (
        "import importlib.metadata as m, sys\n"
        "print(', '.join(f'{p} {m.version(p)}' for p in sys.argv[1:]))"
    )
    done = subprocess.run([python, "-c", code, *packages], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def prepare_peers() -> Peers:
    python312, why_not = find_python312()
    peers = Peers(python312)
    me = sys.executable
    old: str | None = None
    if python312 is not None:
        old, why_not = ensure_venv("archibald-1.2.5", python312, ["archibald==1.2.5", "trio"])
    esridump, esri_why_not = ensure_venv("esridump", me, ["esridump==1.13.0"])
    for client in (
        Client("ceiling-trio", "hand-written httpx", "httpx_ceiling.py", "trio", me),
        Client("ceiling-asyncio", "hand-written httpx", "httpx_ceiling.py", "asyncio", me),
        Client("now-trio", "archibald", "archibald_now.py", "trio", me),
        Client("now-asyncio", "archibald", "archibald_now.py", "asyncio", me),
        Client(
            "now-windows",
            "archibald, no `async with`",
            "archibald_now.py",
            "trio",
            me,
            params={"windows": True},
        ),
        Client("old-asyncio", "archibald 1.2.5", "archibald_125.py", "asyncio", old, why_not),
        Client("old-trio", "archibald 1.2.5", "archibald_125.py", "trio", old, why_not),
        Client(
            "old-asyncio-pool",
            "archibald 1.2.5, N connections",
            "archibald_125.py",
            "asyncio",
            old,
            why_not,
            params={"connections": "concurrency"},
        ),
        Client("esridump", "esridump", "esridump_crawl.py", None, esridump, esri_why_not),
    ):
        peers.clients[client.key] = client
    peers.versions["this archibald"] = versions_of(me, "archibald", "httpx", "anyio", "trio")
    if old:
        peers.versions["1.2.5's venv"] = versions_of(old, "archibald", "httpx", "anyio", "trio")
    if esridump:
        peers.versions["esridump's venv"] = versions_of(esridump, "esridump", "requests")
    return peers


# -- the server and the workloads ------------------------------------------------------


@contextlib.contextmanager
def server(settings: dict[str, Any]) -> Iterator[str]:
    """FakeArcGIS on loopback in its own process; yields its origin."""
    with (
        tempfile.TemporaryFile(mode="w+") as log,
        subprocess.Popen(
            [sys.executable, str(HERE / "_serve.py"), json.dumps(settings)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        ) as process,
    ):
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 180)  # 1M features, warm: ~30 s
            origin = process.stdout.readline().strip() if ready else ""
            if not origin.startswith("http://"):
                log.seek(0)
                raise RuntimeError(f"the bench server did not start:\n{log.read()[-2000:]}")
            yield origin
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


class WorkloadFailed(Exception):
    pass


# What makes the run fail: this archibald (or the baseline, run by the same interpreter)
# failing or losing features. A peer that fails only gets a "failed" row.
PROBLEMS: list[str] = []


def ours(client: Client) -> bool:
    return client.python == sys.executable


WORKLOAD_TIMEOUT = 900.0  # seconds; shorter in a quick run


def run_workload(
    python: str, script: str, params: dict[str, Any], timeout: float | None = None
) -> dict[str, Any]:
    """Run the workload *script* (in bench/workloads) with *python* and *params*; the
    result it printed, or `WorkloadFailed` saying why there is none."""
    timeout = WORKLOAD_TIMEOUT if timeout is None else timeout
    try:
        done = subprocess.run(
            [python, str(WORKLOADS / script), json.dumps(params)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=WORKLOADS,
        )
    except subprocess.TimeoutExpired:
        raise WorkloadFailed(f"timed out after {timeout:.0f} s") from None
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
            return result
    raise WorkloadFailed((done.stderr.strip().splitlines() or ["(no output)"])[-1][:200])


def run(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    """Run *client*'s workload with *params*; its result, or `WorkloadFailed`."""
    assert client.python is not None
    params = {**params, **client.params}
    if client.backend:
        params["backend"] = client.backend
    try:
        result = run_workload(client.python, client.script, params)
    except WorkloadFailed as exc:
        if ours(client):
            PROBLEMS.append(f"{client.label} failed: {exc}")
        raise
    if ours(client) and result.get("complete") is False:
        PROBLEMS.append(f"{client.label} lost or repeated features: {result}")
    return result


def common_params(origin: str) -> dict[str, Any]:
    services = f"{origin}/arcgis/rest/services"
    return {
        "origin": origin,
        "services": services,
        "query": SMALL_QUERY,
        "query_url": f"{services}/{SMALL_QUERY}",
        "user": USER,
        "password": PASSWORD,
        "page": PAGE,
        "concurrency": CONCURRENCY,
    }


# -- output ----------------------------------------------------------------------------


class Report:
    """Prints as it goes, and keeps what it printed."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.line("| " + " | ".join(header) + " |")
        self.line("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.line("| " + " | ".join(str(cell) for cell in row) + " |")
        self.line()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)  # the nearest-rank method
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def skipped_row(client: Client, width: int, why: str | None = None) -> list[object]:
    return [client.label, f"skipped: {why or client.skipped}", *[""] * (width - 2)]


def run_or_fail_row(
    client: Client, params: dict[str, Any], rows: list[list[object]], width: int
) -> dict[str, Any] | None:
    """`run`; or, if the workload failed, a "failed" row in *rows* and None."""
    try:
        return run(client, params)
    except WorkloadFailed as exc:
        rows.append(skipped_row(client, width, f"failed: {exc}"))
        return None


def crawl_runs(
    peers: Peers, keys: Sequence[str], features: int, rounds: int, warmup: bool, latency: float
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Each client's crawl results over *rounds*, and why any failed.

    Every client crawls once per round, in an order shuffled each round (seeded), so
    that no client always follows the same one. The server has encoded every feature
    before the first round (`_serve.warm`).
    """
    shuffler = random.Random(8)
    settings = {"open_layers": {"Bench": features}, "query_latency": latency, "warm": True}
    results: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    failed: dict[str, str] = {}
    with server(settings) as origin:
        params = {
            **common_params(origin),
            "scenario": "crawl",
            "service": "Bench/FeatureServer",
            "expected": features,
        }
        for index in range(rounds + (1 if warmup else 0)):
            order = list(keys)
            if index:
                shuffler.shuffle(order)
            for key in order:
                client = peers.clients[key]
                if client.python is None or key in failed:
                    continue
                try:
                    result = run(client, params)
                except WorkloadFailed as exc:
                    failed[key] = f"failed: {exc}"
                    continue
                if index or not warmup:
                    results[key].append(result)
    return results, failed
