"""Decoder choice: why archibald decodes answers with orjson.

The workload (`workloads/decoders.py`) runs in ``bench/.venvs/decoders``, made with this
interpreter, orjson at the version archibald runs with, and msgspec, which is never a
dependency of archibald. If that venv cannot be made, the workload runs with the
project's interpreter and msgspec's row says why it is missing.
"""

from __future__ import annotations

import importlib.metadata
import statistics
import sys

from _harness import PAGE, Client, Report, WorkloadFailed, common_params, ensure_venv, run, server

MSGSPEC = "msgspec==0.23.0"
DECODERS = ("json", "orjson", "msgspec")


def decoders_client() -> tuple[Client, str]:
    """The client that runs the workload, and why msgspec may be missing from it."""
    orjson = f"orjson=={importlib.metadata.version('orjson')}"
    python, why_not = ensure_venv("decoders", sys.executable, [orjson, MSGSPEC])
    client = Client("decoders", "decoders", "decoders.py", None, python or sys.executable)
    return client, why_not


def bench_decoders(report: Report, ids: int, page_rounds: int, ids_rounds: int) -> None:
    report.line("### 6. Decoder choice")
    report.line()
    report.line(
        f"Decoding the bytes of two answers as FakeArcGIS serves them: a page of {PAGE:,} "
        f"Esri JSON point features (`outFields=*`) and the `returnIdsOnly` answer of a "
        f"{ids:,}-feature layer, with the standard library's `json.loads`, `orjson.loads` "
        "(what archibald uses, falling back to `json` for what orjson refuses) and "
        "msgspec's untyped decoder (`msgspec.json.Decoder().decode`, into the same Python "
        f"objects). Median of {page_rounds} decodings of the page and {ids_rounds} of the "
        "id list, the decoders taking turns, in one process; the ratio is the decoder's "
        "time over json's (below 1: faster). Every result is compared with json's."
    )
    report.line()
    client, why_not = decoders_client()
    header = [
        "decoder", "version", f"page of {PAGE:,} features (µs)", "vs json",
        f"{ids:,} ids (ms)", "vs json", "same result as json",
    ]  # fmt: skip
    with server({"open_layers": {"Bench": ids}}) as origin:
        params = {
            **common_params(origin),
            "query_url": f"{origin}/arcgis/rest/services/Bench/FeatureServer/0/query",
            "page_rounds": page_rounds,
            "ids_rounds": ids_rounds,
        }
        try:
            result = run(client, params)
        except WorkloadFailed as exc:
            report.table(header, [["all", f"failed: {exc}", *[""] * (len(header) - 2)]])
            return
    measured = result["decoders"]
    medians = {
        name: (statistics.median(entry["page"]), statistics.median(entry["ids"]))
        for name, entry in measured.items()
    }
    json_page, json_ids = medians["json"]
    rows: list[list[object]] = []
    for name in DECODERS:
        if name not in measured:
            why = result["skipped"].get(name, "not measured")
            if why_not:
                why += f"; the bench's venv could not be made: {why_not}"
            rows.append([name, f"skipped: {why}", *[""] * (len(header) - 2)])
            continue
        page_s, ids_s = medians[name]
        rows.append(
            [
                name,
                measured[name]["version"],
                f"{page_s * 1e6:,.0f}",
                f"{page_s / json_page:.2f}",
                f"{ids_s * 1e3:,.1f}",
                f"{ids_s / json_ids:.2f}",
                "yes" if measured[name]["same"] else "**no**",
            ]
        )
    report.table(header, rows)
    sizes = result["bytes"]
    report.line(
        f"The page is {sizes['page'] / 1e6:.2f} MB ({result['features']:,} features), the id "
        f"list {sizes['ids'] / 1e6:.2f} MB ({result['ids']:,} ids)."
    )
    report.line()
