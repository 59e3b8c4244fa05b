"""Keeping a copy current: ``archibald sync`` by each strategy after a day's edits, against
re-downloading the whole layer (``archibald dump`` to a GeoPackage) in the same run."""

from __future__ import annotations

import sys
import tempfile

from _harness import PAGE, PROBLEMS, Report, WorkloadFailed, run_workload, server

FRACTION = 0.01  # the share of the layer a day's editing touches


def bench_sync(report: Report, features: int, latency: float) -> None:
    report.line(f"### 9. Keeping a copy current: {features:,} features")
    report.line()
    report.line(
        f"A {features:,}-feature point layer with change tracking and editor tracking "
        f"(pages of {PAGE:,}, {latency * 1000:.0f} ms per query). The baseline is the nightly "
        "re-download: `archibald dump` of the whole layer to a GeoPackage. Then `archibald "
        f"sync` makes its first copy, and after each day's edits ({FRACTION:.0%} of the "
        "layer: a third updated, a third deleted, as many added) brings it up to date by "
        "one strategy; the last row is a sync with nothing changed. One process, one round; "
        "*queries* counts queries and extractChanges requests the server answered."
    )
    report.line()
    settings = {"tracked_layers": {"Bench": features}, "query_latency": latency}
    with server(settings) as origin, tempfile.TemporaryDirectory() as folder:
        params = {
            "url": f"{origin}/arcgis/rest/services/Bench/FeatureServer/0",
            "origin": origin,
            "layer": "Bench",
            "folder": folder,
            "fraction": FRACTION,
        }
        try:
            result = run_workload(sys.executable, "sync_strategies.py", params, timeout=1800)
        except WorkloadFailed as exc:
            PROBLEMS.append(f"the sync benchmark failed: {exc}")
            report.line(f"(failed: {exc})")
            report.line()
            return
    rows = result["rows"]
    baseline = rows["dump"]["seconds"]
    names = {
        "dump": "re-download (`dump`, baseline)",
        "first": "first sync (a full copy)",
        "extractChanges": "sync by extractChanges",
        "editDate": "sync by edit date",
        "full": "sync by full copy",
        "unchanged": "sync, nothing changed",
    }
    report.table(
        ["run", "seconds", "x baseline", "queries"],
        [
            [
                names[key],
                f"{row['seconds']:.2f}",
                f"{row['seconds'] / baseline:.2f}",
                f"{row['queries']:,.0f}",
            ]
            for key, row in rows.items()
        ],
    )
