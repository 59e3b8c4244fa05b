"""Benchmarks: archibald against the tools people use today, side by side, in one run.

    .venv/bin/python bench/run.py            # everything (several minutes)
    .venv/bin/python bench/run.py --quick    # a smoke run of everything (about a minute)

Run it with the project's interpreter (``pip install -e ".[server]"``). It makes the
peers' venvs itself under ``bench/.venvs`` (archibald 1.2.5 with a Python 3.12 or newer
interpreter, esridump with this one), starts FakeArcGIS on loopback in its own process
for each benchmark, and runs each client as its own process, which reports one JSON line.
The machine is shared and noisy: every table shows medians and ratios to a baseline
measured in the same run. Nothing here asserts a speed.

The full run writes what it printed to ``bench/results/latest.md`` and draws its pictures
into ``docs/images`` (with matplotlib, in a venv of its own: ``_plots.py``);
docs/benchmarks.md explains each table and picture.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _harness  # bench/ is this script's folder
from _decoders import bench_decoders
from _formats import bench_formats
from _growth import bench_growth
from _harness import (
    CONCURRENCY,
    HERE,
    PAGE,
    PROBLEMS,
    Peers,
    Report,
    WorkloadFailed,
    common_params,
    crawl_runs,
    ms,
    ours,
    pct,
    prepare_peers,
    run,
    run_or_fail_row,
    server,
    skipped_row,
)
from _large import bench_large
from _plots import decimate, draw
from _sync import bench_sync


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does: the full run, or the smoke run (``--quick``)."""

    stall_seconds: float  # how long the workers run
    token_seconds: float  # the lifetime the server grants (1.2.5 renews 60 s before expiry)
    stampede: tuple[int, ...]
    crawl_features: int
    growth: tuple[int, ...]  # the sizes of the growth curve's layers
    growth_rounds: tuple[int, ...]  # measured rounds at each of them
    repeats: int  # measured rounds of the crawl (medians), after one warm-up round
    stampede_repeats: int
    warmup: bool  # one unmeasured crawl round first (the server is warmed before it anyway)
    token_calls: int
    blocks: int
    per_block: int
    decoder_ids: int  # the size of the id list decoded
    decoder_rounds: tuple[int, int]  # decodings of the page, of the id list
    large: tuple[int, int, int]  # the ranges crawl's layer, its id-list limit, the listed one
    formats: int  # features dumped to each output format
    sync: int  # features of the layer kept current by archibald sync


FULL = Sizes(
    stall_seconds=75.0,
    token_seconds=70.0,
    stampede=(10, 100, 1000),
    crawl_features=200_000,
    growth=(10_000, 100_000, 1_000_000),
    growth_rounds=(3, 3, 1),
    repeats=5,
    stampede_repeats=3,
    warmup=True,
    token_calls=200_000,
    blocks=30,
    per_block=100,
    decoder_ids=1_000_000,
    decoder_rounds=(200, 30),
    large=(5_000_000, 1_000_000, 1_000_000),
    formats=1_000_000,
    sync=200_000,
)
QUICK = Sizes(
    stall_seconds=2.0,
    token_seconds=61.5,
    stampede=(10, 100),
    crawl_features=20_000,
    growth=(1_000, 3_000, 10_000),
    growth_rounds=(1, 1, 1),
    repeats=1,
    stampede_repeats=1,
    warmup=False,
    token_calls=20_000,
    blocks=4,
    per_block=25,
    decoder_ids=100_000,
    decoder_rounds=(20, 5),
    large=(20_000, 5_000, 5_000),
    formats=5_000,
    sync=5_000,
)
WORKERS = 20  # concurrent workers in the stall benchmark
TOKEN_LATENCY = 0.3  # seconds the token endpoint takes
QUERY_LATENCY = 0.02  # seconds per request in the token benchmarks
PICTURED_STALLS = ("now-trio", "old-asyncio")  # in the latency picture


# -- the benchmarks --------------------------------------------------------------------


def bench_stalls(report: Report, peers: Peers, sizes: Sizes) -> dict[str, Any]:
    """The stall table; returns the pictured clients' requests over time, for the picture."""
    report.line("### 1. Stalls at token renewal")
    report.line()
    report.line(
        f"{WORKERS} workers request without pause for {sizes.stall_seconds:g} s; the server "
        f"grants {sizes.token_seconds:g}-second tokens, its token endpoint takes "
        f"{TOKEN_LATENCY * 1000:.0f} ms and a query {QUERY_LATENCY * 1000:.0f} ms. A request "
        "*waited* if it spent 1 ms or more in `get_token()` (after the first token); the "
        "waits are those of the requests that waited; latency is every request's, end to end."
    )
    if sizes.stall_seconds < sizes.token_seconds / 2:
        report.line(
            "(Quick run: too short for archibald's first renewal, at half the lifetime; "
            "the full run covers two.)"
        )
    report.line()
    settings = {
        "layers": {"Small": 100},
        "token_seconds": sizes.token_seconds,
        "token_latency": TOKEN_LATENCY,
        "query_latency": QUERY_LATENCY,
    }
    header = [
        "client", "requests", "token requests", "requests that waited",
        "waited per renewal", "wait p50 / p99 / max (ms)", "latency p50 / p99 / max (ms)",
        "failed",
    ]  # fmt: skip
    rows: list[list[object]] = []
    timelines: dict[str, dict[str, Any]] = {}
    for key in ("now-trio", "now-asyncio", "old-asyncio"):
        client = peers.clients[key]
        if client.python is None:
            rows.append(skipped_row(client, len(header)))
            continue
        with server(settings) as origin:
            params = {
                **common_params(origin),
                "scenario": "stalls",
                "workers": WORKERS,
                "duration": sizes.stall_seconds,
            }
            result = run_or_fail_row(client, params, rows, len(header))
            if result is None:
                continue
        waits = [wait for wait in result["waits"] if wait >= 0.001]
        latencies = result["latencies"]
        renewals = result["token_requests"]
        if ours(client):
            # A stall on a renewal lasts about as long as the token request (300 ms); a
            # wait of a few ms on a valid token is the process losing its core for a
            # moment (the server and the client share two), shown but not a failure.
            stalls = [wait for wait in waits if wait >= TOKEN_LATENCY / 2]
            if result["failures"] or stalls:
                PROBLEMS.append(f"{client.label}: requests waited or failed at renewal")
            if renewals == 0 and sizes is FULL:
                PROBLEMS.append(f"{client.label} never renewed its token in the stall run")
        rows.append(
            [
                client.label,
                len(latencies),
                renewals,
                f"{len(waits)} ({len(waits) / max(1, len(latencies)):.1%})",
                f"{len(waits) / renewals:.0f}" if renewals else "-",
                " / ".join(ms(v) for v in (pct(waits, 50), pct(waits, 99), max(waits, default=0))),
                " / ".join(ms(v) for v in (pct(latencies, 50), pct(latencies, 99), max(latencies))),
                result["failures"],
            ]
        )
        if key in PICTURED_STALLS:
            timelines[client.label] = {
                "requests": len(latencies),
                "points": decimate(result["starts"], latencies),
                "token_times": result["token_times"],
            }
    report.table(header, rows)
    return {
        "clients": timelines,
        "workers": WORKERS,
        "token_seconds": sizes.token_seconds,
        "token_latency": TOKEN_LATENCY,
    }


def bench_stampede(report: Report, peers: Peers, sizes: Sizes) -> None:
    report.line("### 2. Rejection stampede")
    report.line()
    report.line(
        "N requests at once (each client allows N in flight), all holding a token the "
        "server has just revoked; the token endpoint takes "
        f"{TOKEN_LATENCY * 1000:.0f} ms. archibald opens up to N connections; 1.2.5 keeps "
        "httpx's default pool of 100 connections (what its users get), and in the last "
        "column is given a pool of N. Token requests made to recover"
        + (
            f" (median of {sizes.stampede_repeats} runs, range in brackets)."
            if sizes.stampede_repeats > 1
            else "."
        )
    )
    report.line()
    settings = {
        "layers": {"Small": 100},
        "token_latency": TOKEN_LATENCY,
        "query_latency": QUERY_LATENCY,
    }
    columns: dict[str, dict[int, str]] = {}
    for key in ("now-trio", "old-asyncio", "old-asyncio-pool"):
        client = peers.clients[key]
        if client.python is None:
            columns[client.label] = dict.fromkeys(sizes.stampede, f"skipped: {client.skipped}")
            continue
        counts: dict[int, list[int]] = {n: [] for n in sizes.stampede}
        failures: dict[int, int] = dict.fromkeys(sizes.stampede, 0)
        error = ""
        with server(settings) as origin:
            for _ in range(sizes.stampede_repeats):
                params = {**common_params(origin), "scenario": "stampede", "ns": sizes.stampede}
                try:
                    result = run(client, params)
                except WorkloadFailed as exc:
                    error = f"failed: {exc}"
                    break
                for row in result["rows"]:
                    counts[row["n"]].append(row["token_requests"])
                    failures[row["n"]] += row["failures"]
                    if ours(client) and (row["failures"] or row["token_requests"] != 1):
                        PROBLEMS.append(f"{client.label} in the stampede: {row}")
        cells = {}
        for n in sizes.stampede:
            if error:
                cells[n] = error
                continue
            values = counts[n]
            cell = f"{statistics.median(values):g}"
            if len(values) > 1:
                cell += f" [{min(values)}-{max(values)}]"
            if failures[n]:
                cell += f", {failures[n]} requests failed"
            cells[n] = cell
        columns[client.label] = cells
    report.table(
        ["N", *(f"token requests, {label}" for label in columns)],
        [[n, *(columns[label][n] for label in columns)] for n in sizes.stampede],
    )


CRAWLERS = (
    "ceiling-trio",
    "ceiling-asyncio",
    "now-trio",
    "now-asyncio",
    "now-windows",
    "old-asyncio",
    "esridump",
)


def bench_crawl(report: Report, peers: Peers, sizes: Sizes, latency: float) -> None:
    n = sizes.crawl_features
    report.line("### 3. Crawl throughput")
    report.line()
    report.line(
        f"Every feature of a {n:,}-feature point layer, in pages of {PAGE:,}; the server "
        f"takes {latency * 1000:.0f} ms per query. The async clients keep {CONCURRENCY} "
        "requests in flight; esridump is sequential (so 50 ms a page make at least "
        f"{n // PAGE * latency:g} s). Median of {sizes.repeats} round(s)"
        f"{' after a warm-up round' if sizes.warmup else ''}, in an order shuffled each "
        "round, with the range over the rounds. The ceiling is the faster backend of the "
        'hand-written httpx crawler. "First feature" is the time to the first feature.'
    )
    report.line()
    results, failed = crawl_runs(peers, CRAWLERS, n, sizes.repeats, sizes.warmup, latency)
    medians = {
        key: statistics.median(r["seconds"] for r in runs) for key, runs in results.items() if runs
    }
    ceilings = [medians[k] for k in CRAWLERS[:2] if k in medians]
    ceiling = min(ceilings) if ceilings else float("nan")
    header = [
        "client",
        "features (distinct)",
        "every feature once",
        "seconds [range]",
        "first feature (s)",
        "features/s",
        "vs ceiling",
    ]
    rows: list[list[object]] = []
    for key in CRAWLERS:
        client = peers.clients[key]
        if client.python is None or key in failed:
            rows.append(skipped_row(client, len(header), failed.get(key)))
            continue
        runs = results[key]
        last = runs[-1]
        complete = all(r["complete"] for r in runs)
        seconds = medians[key]
        rows.append(
            [
                client.label,
                f"{last['delivered']:,} ({last['distinct']:,})",
                "yes" if complete else "**no**",
                f"{seconds:.2f} [{min(r['seconds'] for r in runs):.2f}-"
                f"{max(r['seconds'] for r in runs):.2f}]",
                f"{statistics.median(r['first_feature_s'] for r in runs):.2f}",
                f"{n / seconds:,.0f}",
                f"{ceiling / seconds:.2f}",
            ]
        )
    report.table(header, rows)


def bench_hotpath(report: Report, peers: Peers, sizes: Sizes) -> None:
    report.line("### 5. Hot path")
    report.line()
    report.line(
        f"`get_token()` with a valid token ({sizes.token_calls:,} calls), and one small "
        "secured request (a count) through each client against the same request made with "
        "a bare `httpx.AsyncClient` in the same process, one at a time, in "
        f"{sizes.blocks} pairs of blocks of {sizes.per_block} (which goes first alternates). "
        "The client's cost is the median over the pairs of the difference, with its "
        "interquartile range; the server answers at once, so it is the client's own work."
    )
    report.line()
    header = [
        "client", "get_token() (ns)", "request via client (µs)", "bare httpx (µs)",
        "client's cost (µs) [IQR]", "ratio",
    ]  # fmt: skip
    rows: list[list[object]] = []
    settings = {"layers": {"Small": 100}}
    with server(settings) as origin:
        for key in (
            "now-trio",
            "now-asyncio",
            "old-trio",
            "old-asyncio",
        ):
            client = peers.clients[key]
            if client.python is None:
                rows.append(skipped_row(client, len(header)))
                continue
            params = {
                **common_params(origin),
                "scenario": "hotpath",
                "token_calls": sizes.token_calls,
                "blocks": sizes.blocks,
                "per_block": sizes.per_block,
            }
            result = run_or_fail_row(client, params, rows, len(header))
            if result is None:
                continue
            pairs = list(zip(result["measured_us"], result["baseline_us"], strict=True))
            costs = [m - b for m, b in pairs]
            rows.append(
                [
                    client.label,
                    f"{result['token_ns']:,.0f}",
                    f"{statistics.median(m for m, _ in pairs):,.0f}",
                    f"{statistics.median(b for _, b in pairs):,.0f}",
                    f"{statistics.median(costs):,.0f} [{pct(costs, 25):,.0f} to "
                    f"{pct(costs, 75):,.0f}]",
                    f"{statistics.median(m / b for m, b in pairs):.2f}",
                ]
            )
    report.table(header, rows)


# -- main ------------------------------------------------------------------------------


def revision() -> str:
    """The commit measured, and whether the working tree differed from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", "../archibald")
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, "
        f"load average at start {load}"
    )


DOCS_IMAGES = HERE.parent / "docs" / "images"
BENCHMARKS = (
    "stalls",
    "stampede",
    "crawl",
    "growth",
    "hotpath",
    "decoders",
    "large",
    "formats",
    "sync",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, one round")
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)"
    )
    parser.add_argument(
        "--query-latency", type=float, default=0.05,
        help="seconds the server takes per query in the crawl and growth benchmarks",
    )  # fmt: skip
    parser.add_argument("--save", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    chosen = args.only or list(BENCHMARKS)
    full = not args.quick and not args.only
    save = args.save or (HERE / "results" / "latest.md" if full else None)
    _harness.WORKLOAD_TIMEOUT = 180.0 if args.quick else 900.0

    started = time.perf_counter()
    report = Report()
    print("preparing the peers' venvs (bench/.venvs) ...", file=sys.stderr, flush=True)
    peers = prepare_peers()
    run_kind = "quick (smoke) run" if args.quick else ("full run" if full else "partial run")
    report.line(f"archibald benchmarks, {run_kind}:")
    report.line()
    report.line(f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    report.line(f"- Machine: {machine()}")
    report.line(f"- Code: {revision()}")
    report.line(f"- Python: {platform.python_version()} (archibald 1.2.5: {_python_of(peers)})")
    report.line(
        "- Versions: " + "; ".join(f"{name}: {version}" for name, version in peers.versions.items())
    )
    report.line(
        f"- Command: `python bench/run.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`"
    )
    report.line()
    steps: dict[str, Callable[[], object]] = {
        "stalls": lambda: bench_stalls(report, peers, sizes),
        "stampede": lambda: bench_stampede(report, peers, sizes),
        "crawl": lambda: bench_crawl(report, peers, sizes, args.query_latency),
        "growth": lambda: bench_growth(
            report, peers, sizes.growth, sizes.growth_rounds, args.query_latency
        ),
        "hotpath": lambda: bench_hotpath(report, peers, sizes),
        "decoders": lambda: bench_decoders(report, sizes.decoder_ids, *sizes.decoder_rounds),
        "large": lambda: bench_large(report, peers, *sizes.large, args.query_latency),
        "formats": lambda: bench_formats(report, sizes.formats, args.query_latency),
        "sync": lambda: bench_sync(report, sizes.sync, args.query_latency),
    }
    measured = {name: steps[name]() for name in BENCHMARKS if name in chosen}
    report.line(f"Run time: {time.perf_counter() - started:.0f} s.")
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text("\n".join(report.lines) + "\n", encoding="utf-8")
        print(f"written to {save}", file=sys.stderr)
    # Only the full run redraws the committed pictures; any other run draws into a
    # temporary folder, which it names.
    kind = "full run" if full else ("quick run" if args.quick else "partial run")
    draw(
        {
            "caption": f"{kind}, {time.strftime('%Y-%m-%d')}, {revision()}",
            "latency": measured.get("stalls"),
            "growth": measured.get("growth"),
        },
        DOCS_IMAGES if full else None,
    )
    for problem in PROBLEMS:
        print(f"bench: {problem}", file=sys.stderr)
    return 1 if PROBLEMS else 0


def _python_of(peers: Peers) -> str:
    if peers.python312 is None:
        return "no Python 3.12+ found"
    done = subprocess.run([peers.python312, "--version"], capture_output=True, text=True)
    return done.stdout.strip() or peers.python312


if __name__ == "__main__":
    sys.exit(main())
