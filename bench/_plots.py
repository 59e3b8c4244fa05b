"""The benchmarks' pictures: request latency across token renewals, and the growth curves.

The driver calls `draw` with what the stall and growth benchmarks measured. matplotlib is
never a dependency of archibald: `draw` makes ``bench/.venvs/plots`` with it, as the
peers' venvs are made, and runs this file with that venv's interpreter on the data, as a
JSON file. If the venv cannot be made (offline, say), the run prints one line and draws
nothing; nothing else depends on the pictures.

    bench/.venvs/plots/bin/python bench/_plots.py data.json docs/images
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _harness import ensure_venv  # bench/ is this script's folder

MATPLOTLIB = "matplotlib==3.10.8"
MAX_POINTS = 20_000  # per client, in the latency picture
LATENCY_PNG = "bench-latency.png"
GROWTH_PNG = "bench-growth.png"


def decimate(
    starts: Sequence[float], latencies: Sequence[float], limit: int = MAX_POINTS
) -> list[tuple[float, float]]:
    """At most *limit* (start, latency) points, in milliseconds, that keep every spike.

    The requests, in the order they started, are cut into *limit* / 2 runs, and of each
    run the fastest and the slowest are kept: a stride would drop most of the few
    hundred stalled requests the picture is about.
    """
    points = sorted(zip(starts, latencies, strict=True))
    if len(points) <= limit:
        kept = points
    else:
        runs = limit // 2
        kept = []
        for index in range(runs):
            run = points[index * len(points) // runs : (index + 1) * len(points) // runs]
            fastest = min(run, key=lambda point: point[1])
            slowest = max(run, key=lambda point: point[1])
            kept += sorted({fastest, slowest})
    return [(round(start, 4), round(latency * 1000, 2)) for start, latency in kept]


def drawable(data: dict[str, Any]) -> list[str]:
    """Which of the pictures *data* has something for: ``latency``, ``growth``."""
    return [name for name in ("latency", "growth") if (data.get(name) or {}).get("clients")]


def draw(data: dict[str, Any], folder: Path | None) -> None:
    """Draw the pictures *data* has data for into *folder* (None: a new temporary
    folder); one line on standard error says what was drawn, or why nothing was."""
    if not drawable(data):
        return
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="archibald-bench-pictures-"))
    python, why_not = ensure_venv("plots", sys.executable, [MATPLOTLIB])
    if python is None:
        print(f"pictures skipped: {why_not}", file=sys.stderr)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as file:
        json.dump(data, file)
        file.flush()
        done = subprocess.run(
            [python, __file__, file.name, str(folder)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"pictures skipped: drawing failed: {last}", file=sys.stderr)
        return
    print(f"pictures: {done.stdout.strip()}", file=sys.stderr)


# -- drawing (run by the plots venv's interpreter) -------------------------------------


def latency_figure(latency: dict[str, Any], caption: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    clients = latency["clients"]
    figure, axes = plt.subplots(
        len(clients), 1, figsize=(10, 2.6 * len(clients) + 1.2), sharex=True, sharey=True,
        squeeze=False,
    )  # fmt: skip
    for ax, (label, timeline) in zip(axes[:, 0], clients.items(), strict=True):
        points = timeline["points"]
        ax.scatter(
            [start for start, _ in points],
            [ms for _, ms in points],
            s=2,
            linewidths=0,
            alpha=0.5,
            rasterized=True,
        )
        for index, issued in enumerate(timeline["token_times"]):
            ax.axvline(
                issued,
                color="tab:red",
                linestyle="--",
                linewidth=0.8,
                label="token issued" if index == 0 else None,
            )
        worst = max((ms for _, ms in points), default=0.0)
        renewals = len(timeline["token_times"])
        ax.set_title(
            f"{label}: {timeline['requests']:,} requests, {renewals} token "
            f"request{'s' if renewals != 1 else ''}, slowest {worst:,.0f} ms",
            fontsize=10,
            loc="left",
        )
        ax.set_ylabel("latency (ms)")
        ax.grid(True, alpha=0.3)
        if renewals:
            ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("seconds since the measurement began")
    figure.suptitle(
        f"Request latency across token renewals ({latency['workers']} workers, "
        f"{latency['token_seconds']:g}-second tokens, token endpoint "
        f"{latency['token_latency'] * 1000:.0f} ms)\n{caption}",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def growth_figure(growth: dict[str, Any], caption: str, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    features = growth["features"]
    figure, (time_ax, rss_ax) = plt.subplots(1, 2, figsize=(11, 5.2))
    for label, curve in growth["clients"].items():
        for ax, values in ((time_ax, curve["seconds"]), (rss_ax, curve["rss_mb"])):
            measured = [(n, v) for n, v in zip(features, values, strict=True) if v is not None]
            ax.plot([n for n, _ in measured], [v for _, v in measured], marker="o", label=label)
    for ax, what in ((time_ax, "crawl time (s)"), (rss_ax, "peak RSS of the client (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        # Plain numbers at 1, 2 and 5 of each decade: the curves may span less than one.
        ax.set_xticks(features)
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.10g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("features in the layer")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = time_ax.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    figure.suptitle(f"The whole-layer crawl as the layer grows\n{caption}", fontsize=11)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(data_file: str, folder: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    data = json.loads(Path(data_file).read_text(encoding="utf-8"))
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    figures = {"latency": (latency_figure, LATENCY_PNG), "growth": (growth_figure, GROWTH_PNG)}
    drawn = []
    for name in drawable(data):
        figure, file_name = figures[name]
        figure(data[name], data["caption"], out / file_name)
        drawn.append(out / file_name)
    print(", ".join(str(path) for path in drawn))


if __name__ == "__main__":
    main(*sys.argv[1:])
