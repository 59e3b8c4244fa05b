"""Large layers: a layer whose id list is refused, crawled through object-id ranges, next
to the id-list crawl of a smaller one.

The emulator generates the layers lazily (each feature made when asked for, no million
dicts held), refuses id lists longer than a limit as a database failing would (an
``Error performing query operation`` envelope), and serves pages of 2,000 with the
crawl's latency. archibald's crawl finds the list refused, plans ranges from
``outStatistics`` and crawls them; the ids it delivers are counted by a bytearray, so
every feature once is checked without a set of millions.
"""

from __future__ import annotations

from typing import Any

from _harness import CONCURRENCY, PAGE, Peers, Report, WorkloadFailed, common_params, run, server

KEY = "now-trio"


def _crawl(peers: Peers, features: int, limit: int | None, latency: float) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "open_lazy_layers": {"Huge": features},
        "query_latency": latency,
        "id_list_limit": limit,
        "id_list_failure": "error",
    }
    with server(settings) as origin:
        params = {
            **common_params(origin),
            "scenario": "crawl",
            "service": "Huge/FeatureServer",
            "expected": features,
        }
        return run(peers.clients[KEY], params)


def bench_large(
    report: Report, peers: Peers, big: int, limit: int, listed: int, latency: float
) -> None:
    report.line("### 7. Large layers: object-id ranges when the id list is refused")
    report.line()
    report.line(
        f"archibald (trio) crawls a lazily generated layer of {big:,} features whose server "
        f"refuses id lists longer than {limit:,} (an `Error performing query operation` "
        "envelope, which is not retried: the database would fail again), so the crawl plans "
        "object-id ranges from `outStatistics` and crawls them range by range; beside it, the "
        f"usual id-list crawl of a {listed:,}-feature layer. Pages of {PAGE:,}, "
        f"{latency * 1000:.0f} ms per query, {CONCURRENCY} requests in flight, one round "
        "each. Peak RSS is the client's process (VmHWM), imports included; the emulator, in "
        "its own process, makes each feature when asked for it, which bounds the speed "
        "here (about 55 ms of server work per page)."
    )
    report.line()
    rows: list[list[object]] = []
    for label, features, cap in (
        (f"{big:,} features, id lists refused: ranges", big, limit),
        (f"{listed:,} features: one id list", listed, None),
    ):
        try:
            result = _crawl(peers, features, cap, latency)
        except WorkloadFailed as exc:
            rows.append([label, "failed", str(exc)[:80], "", ""])
            continue
        seconds = result["seconds"]
        rows.append(
            [
                label,
                f"{seconds:.1f}",
                f"{features / seconds:,.0f}",
                f"{result['rss_peak_mb']:,.0f}",
                "yes" if result["complete"] else "**no**",
            ]
        )
    report.table(["crawl", "seconds", "features/s", "peak RSS (MB)", "every feature once"], rows)
