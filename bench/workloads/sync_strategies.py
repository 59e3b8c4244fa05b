"""archibald sync of one layer, in this process: the first copy, then a sync by each
strategy after a day's edits, against a full re-download (``archibald dump``) of the
same layer measured in the same run.

Run by the project's interpreter: ``{"url": ..., "origin": ..., "layer": ..., "folder": ...,
"fraction": ...}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import _common

from archibald._cli import main


def _run(args: list[str]) -> float:
    started = time.perf_counter()
    try:
        main(args)
    except SystemExit as exit_:
        if exit_.code:
            raise
    return time.perf_counter() - started


def _queries(origin: str) -> int:
    requests = _common.control(origin, "stats")["requests"]
    return int(requests.get("query", 0) + requests.get("extractChanges", 0))


def run(p: dict[str, Any]) -> None:
    url, origin, folder = str(p["url"]), str(p["origin"]), Path(str(p["folder"]))
    edit = f"edit?layer={p['layer']}&fraction={p['fraction']}"
    dest = str(folder / "copy.gpkg")
    rows: dict[str, dict[str, float]] = {}
    _common.control(origin, "reset")
    seconds = _run(["dump", url, "-o", str(folder / "full.gpkg")])
    rows["dump"] = {"seconds": seconds, "queries": _queries(origin)}
    _common.control(origin, "reset")
    seconds = _run(["sync", url, dest])
    rows["first"] = {"seconds": seconds, "queries": _queries(origin)}
    for strategy in ("extractChanges", "editDate", "full"):
        _common.control(origin, edit)
        _common.control(origin, "reset")
        seconds = _run(["sync", url, dest, "--strategy", strategy])
        rows[strategy] = {"seconds": seconds, "queries": _queries(origin)}
    _common.control(origin, "reset")
    seconds = _run(["sync", url, dest, "--strategy", "extractChanges"])
    rows["unchanged"] = {"seconds": seconds, "queries": _queries(origin)}
    _common.emit({"rows": rows})


if __name__ == "__main__":
    run(_common.params())
