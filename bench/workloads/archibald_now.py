"""This archibald, measured (run by the project's own interpreter)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import _common
import _scenarios

from archibald import ArchieClient, FeatureLayer, NoAuth, UserTokenAuth

COUNT = {"where": "1=1", "returnCountOnly": "true"}


class Session:
    def __init__(self, client: ArchieClient, query: str) -> None:
        self.auth = client.auth
        self.referer = client.auth.referer
        self._client = client
        self._query = query

    async def count(self) -> None:
        await self._client.get_json(self._query, params=COUNT)


def session_opener(p: dict[str, Any]) -> _scenarios.OpenSession:
    @asynccontextmanager
    async def open_session(concurrency: int) -> AsyncIterator[Session]:
        auth = UserTokenAuth(p["user"], p["password"], p["origin"], expiration=60)
        async with (
            auth,
            ArchieClient(p["services"], auth, max_concurrent_requests=concurrency) as client,
        ):
            yield Session(client, p["query"])

    return open_session


async def crawl(p: dict[str, Any]) -> dict[str, Any]:
    with _common.Tally(p["expected"]) as tally:
        async with ArchieClient(
            p["services"], NoAuth(), max_concurrent_requests=p["concurrency"]
        ) as client:
            stream = FeatureLayer(client, p["service"], 0).features()
            if p.get("windows"):  # the stream without `async with`: a window per step
                async for feature in stream:
                    tally.add(feature["attributes"]["OBJECTID"])
            else:
                async with stream:  # fetching ahead
                    async for feature in stream:
                        tally.add(feature["attributes"]["OBJECTID"])
    return tally.result()


if __name__ == "__main__":
    _scenarios.main(session_opener, crawl)
