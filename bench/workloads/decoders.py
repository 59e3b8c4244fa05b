"""Decoding two real answers with the standard library's json, orjson and msgspec.

Run by ``bench/.venvs/decoders`` (orjson at archibald's version, and msgspec), or by the
project's interpreter when that venv could not be made: a decoder that cannot be
imported is reported as skipped, with why. It fetches, from the bench server, a page of
features and the layer's whole id list (``returnIdsOnly``), then times each decoder on
the same bytes, the decoders taking turns, and checks each result against json's.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import _common


def fetch(url: str, params: dict[str, Any]) -> bytes:
    with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(params)}", timeout=120) as answer:
        body: bytes = answer.read()
    return body


def decoders() -> tuple[dict[str, Callable[[bytes], Any]], dict[str, str]]:
    """The decoders that can be imported here, and why the others cannot."""
    found: dict[str, Callable[[bytes], Any]] = {"json": json.loads}
    missing: dict[str, str] = {}
    try:
        import orjson
    except ImportError as exc:
        missing["orjson"] = f"not importable ({exc})"
    else:
        found["orjson"] = orjson.loads
    try:
        import msgspec
    except ImportError as exc:
        missing["msgspec"] = f"not importable ({exc})"
    else:
        found["msgspec"] = msgspec.json.Decoder().decode  # untyped: dicts, lists, ints
    return found, missing


def timings(
    found: dict[str, Callable[[bytes], Any]], body: bytes, rounds: int
) -> dict[str, list[float]]:
    """Seconds per decoding of *body*, *rounds* times for each decoder, in turn."""
    times: dict[str, list[float]] = {name: [] for name in found}
    names = list(found)
    for index in range(rounds + 1):  # the first round warms up, unmeasured
        for name in names[index % len(names) :] + names[: index % len(names)]:
            start = time.perf_counter()
            found[name](body)
            elapsed = time.perf_counter() - start
            if index:
                times[name].append(elapsed)
    return times


def version(name: str) -> str:
    if name == "json":
        return f"standard library, Python {platform.python_version()}"
    return importlib.metadata.version(name)


if __name__ == "__main__":
    p = _common.params()
    page = fetch(
        p["query_url"],
        {"where": "1=1", "outFields": "*", "resultRecordCount": p["page"], "f": "json"},
    )
    ids = fetch(p["query_url"], {"where": "1=1", "returnIdsOnly": "true", "f": "json"})
    found, missing = decoders()
    answers = {"page": page, "ids": ids}
    rounds = {"page": p["page_rounds"], "ids": p["ids_rounds"]}
    expected = {what: json.loads(body) for what, body in answers.items()}
    result: dict[str, Any] = {
        "bytes": {what: len(body) for what, body in answers.items()},
        "features": len(expected["page"]["features"]),
        "ids": len(expected["ids"]["objectIds"]),
        "skipped": missing,
        "decoders": {name: {"version": version(name)} for name in found},
    }
    for what, body in answers.items():
        for name, seconds in timings(found, body, rounds[what]).items():
            entry = result["decoders"][name]
            entry[what] = seconds
            entry["same"] = entry.get("same", True) and found[name](body) == expected[what]
    _common.emit(result)
