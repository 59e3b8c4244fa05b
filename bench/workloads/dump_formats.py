"""archibald dump to one file format, in this process: its time and peak memory.

Run by the project's interpreter: ``{"url": ..., "output": ..., "format": ...}``.
"""

from __future__ import annotations

import os
import time

import _common

from archibald._cli import main


def run(p: dict[str, object]) -> None:
    before = _common.rss_mb()
    started = time.perf_counter()
    try:
        main(["dump", str(p["url"]), "-o", str(p["output"]), "--format", str(p["format"])])
    except SystemExit as exit_:
        if exit_.code:
            raise
    seconds = time.perf_counter() - started
    size = os.path.getsize(str(p["output"]))
    _common.emit({"seconds": seconds, "rss_before_mb": before, "bytes": size})


if __name__ == "__main__":
    run(_common.params())
