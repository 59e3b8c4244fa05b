"""The token benchmarks, written once for every async library measured.

Each library's workload supplies `open_session`: an async context manager that signs in
(with the bench server's user), opens a client allowing *concurrency* requests in flight
and yields a `Session`. Needs anyio and httpx, which this archibald and archibald 1.2.5
both depend on.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import _common
import anyio
import httpx


class Session(Protocol):
    auth: Any  # has ``async get_token() -> str``
    referer: str | None  # the Referer the token is bound to, if any

    async def count(self) -> None:
        """One request for the small secured layer's count, through the library."""


OpenSession = Callable[[int], AbstractAsyncContextManager[Session]]


def time_tokens(auth: Any, waits: list[float]) -> None:
    """Record how long each of *auth*'s ``get_token()`` calls takes: the time a request
    waits for its token (the ``httpx.Auth`` flow of both libraries calls it)."""
    original = auth.get_token

    async def get_token() -> str:
        start = time.perf_counter()
        token: str = await original()
        waits.append(time.perf_counter() - start)
        return token

    auth.get_token = get_token


async def stalls(p: dict[str, Any], open_session: OpenSession) -> dict[str, Any]:
    """*workers* tasks request without pause for *duration* seconds of short tokens.

    Besides the waits and latencies, it returns when each request started and when each
    token was issued (the server's wall clock, the same machine's), in seconds since the
    measurement began, for the picture of latency over time.
    """
    waits: list[float] = []
    latencies: list[float] = []
    starts: list[float] = []
    async with open_session(p["workers"]) as session:
        await session.count()  # the first token is fetched before the measurement
        _common.control(p["origin"], "reset")
        time_tokens(session.auth, waits)
        began, began_wall = time.perf_counter(), time.time()
        deadline = began + p["duration"]
        failures = 0

        async def worker() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    await session.count()
                except Exception:
                    failures += 1
                latencies.append(time.perf_counter() - start)
                starts.append(start - began)

        async with anyio.create_task_group() as tg:
            for _ in range(p["workers"]):
                tg.start_soon(worker)
        stats = _common.control(p["origin"], "stats")
    return {
        "waits": waits,
        "latencies": latencies,
        "starts": starts,
        "token_times": [issued - began_wall for issued in stats["token_times"]],
        "failures": failures,
        "token_requests": stats["tokens_issued"],
    }


async def stampede(p: dict[str, Any], open_session: OpenSession) -> dict[str, Any]:
    """For each N: N requests at once, all holding a token that was just revoked."""
    rows = []
    for n in p["ns"]:
        async with open_session(n) as session:
            await session.count()
            _common.control(p["origin"], "revoke")
            _common.control(p["origin"], "reset")
            failures = 0

            async def one() -> None:
                nonlocal failures
                try:
                    await session.count()
                except Exception:
                    failures += 1

            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(one)
            stats = _common.control(p["origin"], "stats")
        rows.append(
            {
                "n": n,
                "token_requests": stats["tokens_issued"],
                "rejected": stats["rejected_498"],
                "failures": failures,
            }
        )
    return {"rows": rows}


async def hotpath(p: dict[str, Any], open_session: OpenSession) -> dict[str, Any]:
    """``get_token()`` per call, and one request through the library against bare httpx."""
    calls = p["token_calls"]
    async with open_session(1) as session, httpx.AsyncClient() as bare:
        await session.count()
        start = time.perf_counter()
        for _ in range(calls):
            await session.auth.get_token()
        token_ns = (time.perf_counter() - start) / calls * 1e9
        headers = {"Authorization": f"Bearer {await session.auth.get_token()}"}
        if session.referer:
            headers["Referer"] = session.referer
        params = {"where": "1=1", "returnCountOnly": "true", "f": "json"}

        async def via_httpx() -> None:
            response = await bare.get(p["query_url"], params=params, headers=headers)
            response.raise_for_status()
            if "error" in response.json():
                raise RuntimeError(response.text)

        times = await _common.interleaved(via_httpx, session.count, p["blocks"], p["per_block"])
    return {"token_ns": token_ns, **times}


SCENARIOS: dict[str, Callable[[dict[str, Any], OpenSession], Awaitable[dict[str, Any]]]] = {
    "stalls": stalls,
    "stampede": stampede,
    "hotpath": hotpath,
}


def main(
    opener: Callable[[dict[str, Any]], OpenSession],
    crawl: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
) -> None:
    """Run the scenario named in the parameters and emit its result.

    *opener* makes the library's `OpenSession` from the parameters; *crawl* pulls a
    whole layer with it.
    """
    _common.raise_fd_limit()
    p = _common.params()
    backend = p.get("backend", "asyncio")
    if p["scenario"] == "crawl":
        result = anyio.run(crawl, p, backend=backend)
    else:
        result = anyio.run(SCENARIOS[p["scenario"]], p, opener(p), backend=backend)
    _common.emit(result)
