"""archibald 1.2.5 from PyPI, measured (run by its own venv's Python 3.12).

Two things a user of 1.2.5 has to do, done here as they would:

- Its ``UserTokenAuth`` asks for a referer-bound token (``client=referer``) but never
  sends a ``Referer`` header, so ArcGIS (and FakeArcGIS) rejects every request with 498.
  The workload gives its internal httpx client that header.
- ``FeatureLayer.query`` returns the whole layer as one list: the crawl counts it then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import _common
import _scenarios
import httpx

from archibald import ArchieClient, FeatureLayer, NoAuth, UserTokenAuth


class Session:
    def __init__(self, client: ArchieClient, auth: UserTokenAuth, query: str, referer: str) -> None:
        self.auth = auth
        self.referer = referer
        self._client = client
        self._query = query

    async def count(self) -> None:
        await self._client.get(self._query, params={"where": "1=1", "returnCountOnly": "true"})


def with_referer(client: ArchieClient, auth: Any, referer: str, connections: int | None) -> None:
    """Give 1.2.5's lazily made httpx client the Referer its tokens are bound to (and, if
    asked, a pool of *connections* instead of httpx's default 100)."""
    limits = httpx.Limits() if connections is None else httpx.Limits(max_connections=connections)
    client._client = httpx.AsyncClient(
        auth=auth, timeout=60.0, headers={"Referer": referer}, limits=limits
    )


def session_opener(p: dict[str, Any]) -> _scenarios.OpenSession:
    @asynccontextmanager
    async def open_session(concurrency: int) -> AsyncIterator[Session]:
        auth = UserTokenAuth(p["user"], p["password"], base_url=p["origin"], expiration=60)
        async with (
            auth,
            ArchieClient(p["services"], auth, max_concurrent_requests=concurrency) as client,
        ):
            connections = concurrency if p.get("connections") == "concurrency" else None
            with_referer(client, auth, p["origin"], connections)
            yield Session(client, auth, p["query"], p["origin"])

    return open_session


async def crawl(p: dict[str, Any]) -> dict[str, Any]:
    with _common.Tally(p["expected"]) as tally:
        async with ArchieClient(
            p["services"], NoAuth(), max_concurrent_requests=p["concurrency"]
        ) as client:
            result = await FeatureLayer(client, p["service"], 0).query()
            for feature in result.features:
                tally.add(feature["properties"]["OBJECTID"])
    return tally.result()


if __name__ == "__main__":
    _scenarios.main(session_opener, crawl)
