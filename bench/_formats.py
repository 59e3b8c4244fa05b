"""Output formats: ``archibald dump`` of one layer to ndjson, GeoParquet, GeoPackage and
CSV, each in its own process, with its time, peak memory and file size."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _harness import CONCURRENCY, PAGE, PROBLEMS, Report, WorkloadFailed, run_workload, server

FORMATS = (("ndjson", ".ndjson"), ("geoparquet", ".parquet"), ("gpkg", ".gpkg"), ("csv", ".csv"))


def _dump(url: str, output: Path, fmt: str) -> dict[str, float]:
    params = {"url": url, "output": str(output), "format": fmt}
    return run_workload(sys.executable, "dump_formats.py", params, timeout=900)


def bench_formats(report: Report, features: int, latency: float) -> None:
    report.line(f"### 8. Output formats: {features:,} features to a file")
    report.line()
    report.line(
        f"`archibald dump` of a {features:,}-feature point layer (pages of {PAGE:,}, "
        f"{latency * 1000:.0f} ms per query, {CONCURRENCY} requests in flight) to each "
        "format, each in its own process, one round; peak RSS is that process's (VmHWM), "
        "imports included, and *before* the process after its imports. Every file is "
        "written as pages arrive: memory stays bounded by the pages in flight."
    )
    report.line()
    rows: list[list[object]] = []
    settings = {"open_layers": {"Bench": features}, "query_latency": latency, "warm": True}
    with server(settings) as origin, tempfile.TemporaryDirectory() as folder:
        url = f"{origin}/arcgis/rest/services/Bench/FeatureServer/0"
        for fmt, suffix in FORMATS:
            try:
                result = _dump(url, Path(folder) / f"out{suffix}", fmt)
            except WorkloadFailed as exc:
                PROBLEMS.append(f"dump to {fmt} failed: {exc}")
                rows.append([fmt, "failed", "", "", "", ""])
                continue
            seconds = result["seconds"]
            rows.append(
                [
                    fmt,
                    f"{seconds:.1f}",
                    f"{features / seconds:,.0f}",
                    f"{result['rss_peak_mb']:,.0f}",
                    f"{result['rss_before_mb']:,.0f}",
                    f"{result['bytes'] / 1e6:,.0f}",
                ]
            )
    report.table(
        ["format", "seconds", "features/s", "peak RSS (MB)", "before (MB)", "file (MB)"], rows
    )
