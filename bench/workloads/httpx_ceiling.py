"""The practical ceiling: a minimal crawler written by hand on httpx.

It asks for the count, then fetches every page by ``resultOffset`` with *concurrency*
tasks, decodes each page and counts its features. No retries, no checks beyond the
object-id tally, no token: nothing a real crawler could do without.
"""

from __future__ import annotations

from typing import Any

import _common
import anyio
import httpx


async def crawl(p: dict[str, Any]) -> dict[str, Any]:
    with _common.Tally(p["expected"]) as tally:
        url = f"{p['services']}/{p['service']}/0/query"
        limits = httpx.Limits(max_connections=p["concurrency"])
        async with httpx.AsyncClient(limits=limits, timeout=60.0) as http:
            answer = await http.get(
                url, params={"where": "1=1", "returnCountOnly": "true", "f": "json"}
            )
            total = answer.json()["count"]
            offsets = iter(range(0, total, p["page"]))

            async def worker() -> None:
                for offset in offsets:  # the tasks share one iterator: each offset once
                    page = await http.get(
                        url,
                        params={
                            "where": "1=1",
                            "outFields": "*",
                            "orderByFields": "OBJECTID",
                            "resultOffset": offset,
                            "resultRecordCount": p["page"],
                            "f": "json",
                        },
                    )
                    for feature in page.json()["features"]:
                        tally.add(feature["attributes"]["OBJECTID"])

            async with anyio.create_task_group() as tg:
                for _ in range(p["concurrency"]):
                    tg.start_soon(worker)
    return tally.result()


if __name__ == "__main__":
    params = _common.params()
    _common.emit(anyio.run(crawl, params, backend=params.get("backend", "trio")))
