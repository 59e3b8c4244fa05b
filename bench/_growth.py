"""The growth curve: the whole-layer crawl at three sizes, its time and its peak memory.

It runs the crawl benchmark's rounds (`_harness.crawl_runs`) once per size and prints one
row per crawler; what it measured is also returned, for the picture (`_plots`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from _harness import CONCURRENCY, PAGE, Peers, Report, crawl_runs, skipped_row

# The hand-written crawler first: it is the baseline of the ratio.
GROWERS = ("ceiling-trio", "now-trio", "now-windows", "old-asyncio", "esridump")


def rounds_phrase(sizes: Sequence[int], rounds: Sequence[int]) -> str:
    if len(set(rounds)) == 1:
        only = rounds[0]
        return "one round at each size" if only == 1 else f"the median of {only} rounds"
    parts = [
        f"{'one round' if r == 1 else f'the median of {r} rounds'} at {n:,}"
        for n, r in zip(sizes, rounds, strict=True)
    ]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def bench_growth(
    report: Report, peers: Peers, sizes: Sequence[int], rounds: Sequence[int], latency: float
) -> dict[str, Any]:
    """The growth table; returns each client's medians at each size, for the picture."""
    largest = sizes[-1]
    report.line(f"### 4. Growth: time and memory from {sizes[0]:,} to {largest:,} features")
    report.line()
    report.line(
        f"The crawl of section 3 (pages of {PAGE:,}, {latency * 1000:.0f} ms per query, "
        f"{CONCURRENCY} requests in flight for the async clients) on layers of "
        f"{', '.join(f'{n:,}' for n in sizes[:-1])} and {largest:,} features: "
        f"{rounds_phrase(sizes, rounds)}, the clients in a shuffled order after the first "
        "round; the server has encoded every feature before the first crawl. *s* is the "
        "crawl's time in seconds; *MB* the peak resident memory (VmHWM) of the client's "
        "process, imports included; *before* the process after its imports, before the "
        "crawl, so that the peak minus it is what the crawl took. The ratio is to the "
        "hand-written crawler at the largest size."
    )
    report.line()
    measured = [
        crawl_runs(peers, GROWERS, n, r, False, latency) for n, r in zip(sizes, rounds, strict=True)
    ]
    # The baseline's median time at each size.
    ceiling = [
        statistics.median(run["seconds"] for run in results[GROWERS[0]])
        if results[GROWERS[0]]
        else float("nan")
        for results, _ in measured
    ]
    header = [
        "client",
        *(f"{n:,}: {unit}" for n in sizes for unit in ("s", "MB")),
        f"features/s at {largest:,} (vs ceiling)",
        "before (MB)",
        "every feature once",
    ]
    rows: list[list[object]] = []
    failures: list[str] = []
    curves: dict[str, dict[str, list[float | None]]] = {}
    for key in GROWERS:
        client = peers.clients[key]
        if client.python is None:
            rows.append(skipped_row(client, len(header)))
            continue
        seconds: list[float | None] = []
        rss: list[float | None] = []
        cells: list[object] = []
        runs_seen: list[dict[str, Any]] = []
        for n, (results, failed) in zip(sizes, measured, strict=True):
            runs = results[key]
            if key in failed or not runs:
                failures.append(f"{client.label} at {n:,}: {failed.get(key, 'no result')}")
                seconds.append(None)
                rss.append(None)
                cells += ["failed", ""]
                continue
            runs_seen += runs
            seconds.append(statistics.median(run["seconds"] for run in runs))
            rss.append(statistics.median(run["rss_peak_mb"] for run in runs))
            cells += [f"{seconds[-1]:.2f}", f"{rss[-1]:,.0f}"]
        last = seconds[-1]
        rows.append(
            [
                client.label,
                *cells,
                f"{largest / last:,.0f} ({ceiling[-1] / last:.2f})" if last else "-",
                f"{statistics.median(r['rss_before_mb'] for r in runs_seen):,.0f}"
                if runs_seen
                else "-",
                "yes" if runs_seen and all(r["complete"] for r in runs_seen) else "**no**",
            ]
        )
        curves[client.label] = {"seconds": seconds, "rss_mb": rss}
    report.table(header, rows)
    for failure in failures:
        report.line(f"- {failure}")
    if failures:
        report.line()
    return {"features": list(sizes), "clients": curves}
