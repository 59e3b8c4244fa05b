"""How fast FakeArcGIS serves a 100,000-feature layer in pages of 2,000.

The emulator must not be the bottleneck of a client benchmark, so this compares it with
the fastest thing the same transport can do: answering every page with a pre-encoded
body of the same size (the baseline, measured in the same run). It reports pages per
second and features per second for both, in process (httpx transport) and over loopback
HTTP (hypercorn), and the ratio emulator/baseline.

    .venv/bin/python bench/emulator_throughput.py [--features 100000] [--page 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import trio

from archibald.testing import FakeArcGIS
from archibald.testing._adaptors import serve as serve_app
from archibald.testing._wire import Request, Response

LAYER = "/arcgis/rest/services/Bench/FeatureServer/0/query"


class StaticFake(FakeArcGIS):
    """The baseline: every query is answered with one pre-encoded page."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    async def respond(self, request: Request) -> Response:
        return Response(200, self.body, {"content-type": "application/json"})


async def page_through(http: httpx.AsyncClient, origin: str, features: int, page: int) -> int:
    served = 0
    for offset in range(0, features, page):
        response = await http.get(
            f"{origin}{LAYER}",
            params={
                "where": "1=1",
                "outFields": "*",
                "resultOffset": offset,
                "resultRecordCount": page,
                "f": "json",
            },
        )
        served += response.content.count(b'"attributes"')
    return served


@asynccontextmanager
async def in_process(fake: FakeArcGIS) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with fake.client() as http:
        yield http, fake.origin


@asynccontextmanager
async def loopback(fake: FakeArcGIS) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with serve_app(fake) as origin, httpx.AsyncClient(timeout=60) as http:
        yield http, origin


async def measure(
    fake: FakeArcGIS,
    way: Callable[[FakeArcGIS], AbstractAsyncContextManager[tuple[httpx.AsyncClient, str]]],
    features: int,
    page: int,
) -> tuple[float, float]:
    """Seconds to page through the layer twice: cold (first pass), then warm."""
    times = []
    async with way(fake) as (http, origin):
        for _ in range(2):
            start = time.perf_counter()
            served = await page_through(http, origin, features, page)
            times.append(time.perf_counter() - start)
            assert served >= features - page, served
    return times[0], times[1]


async def main(features: int, page: int) -> None:
    fake = FakeArcGIS()
    fake.add_feature_layer("Bench", count=features, max_record_count=page, geometry="point")
    async with fake.client() as http:
        sample = await http.get(
            f"{fake.origin}{LAYER}",
            params={"where": "1=1", "outFields": "*", "resultRecordCount": page, "f": "json"},
        )
    static = StaticFake(sample.content)
    pages = -(-features // page)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    size = len(sample.content) / 1e6
    print(f"{features:,} features in {pages} pages of {page:,} ({size:.1f} MB a page)")
    for name, way in (("in process", in_process), ("loopback HTTP", loopback)):
        cold, warm = await measure(fake, way, features, page)
        _, baseline = await measure(static, way, features, page)
        print(
            f"{name:>14}: emulator {pages / warm:7.1f} pages/s warm "
            f"({features / warm:9,.0f} features/s), {pages / cold:6.1f} pages/s on the first "
            f"pass | static baseline {pages / baseline:7.1f} pages/s | emulator (warm) takes "
            f"{warm / baseline:.2f}x the baseline's time"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=2000)
    args = parser.parse_args()
    trio.run(main, args.features, args.page)
