"""A day in the life of a background-renewed ArcGIS token, simulated offline in a moment.

Runs UserTokenAuth against an in-process generateToken endpoint (no network) on Trio's
MockClock, which jumps ahead whenever every task is waiting: 24 hours of 60-minute
tokens, a crawler asking for the token every minute, a burst of concurrent
force_refresh() calls, and an outage of the token endpoint.

    python examples/token_lifecycle.py
"""

from __future__ import annotations

import logging
import time

import httpx
import trio
from trio.testing import MockClock

from archibald import TokenRefreshError, UserTokenAuth

TOKEN_URL = "https://portal.example.com/sharing/rest/generateToken"


class TokenEndpoint:
    """generateToken, in process: issues numbered tokens, can be switched off."""

    def __init__(self) -> None:
        self.requests = 0
        self.down = False

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await trio.sleep(1.5)  # a slow token server: callers must not notice renewals
        if self.down:
            return httpx.Response(503, text="Service Unavailable")
        expires_ms = int((time.time() + 3600) * 1000)
        return httpx.Response(200, json={"token": f"t{self.requests}", "expires": expires_ms})


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


async def main() -> None:
    endpoint = TokenEndpoint()
    http = httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handle))
    auth = UserTokenAuth("demo", "not-a-real-password", token_url=TOKEN_URL, http_client=http)
    real_start = time.perf_counter()

    async with http, auth:
        start = trio.current_time()
        print(f"{clock(0)}  entered: first token fetched before the block ran")

        calls, longest_wait, seen = 0, 0.0, {await auth.get_token()}
        while trio.current_time() - start < 24 * 3600:
            before = trio.current_time()
            token = await auth.get_token()
            longest_wait = max(longest_wait, trio.current_time() - before)
            calls += 1
            if token not in seen:
                seen.add(token)
                if len(seen) <= 4:
                    print(f"{clock(trio.current_time() - start)}  crawler sees a renewed token")
            await trio.sleep(60)
        print(
            f"24:00:00  a simulated day: {endpoint.requests} token requests, {calls:,} "
            f"get_token() calls, longest wait {longest_wait:.3f} s"
        )

        before = endpoint.requests
        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(auth.force_refresh)
        sent = endpoint.requests - before
        print(f"          100 concurrent force_refresh() calls: {sent} token request")

        endpoint.down = True
        await trio.sleep(3600)
        try:
            await auth.get_token()
        except TokenRefreshError as exc:
            print(f"          endpoint down for an hour, token lapsed: {type(exc).__name__}")
        endpoint.down = False
        await trio.sleep(61)
        await auth.get_token()
        print("          endpoint back: tokens flow again without re-entering")

    print(f"done in {time.perf_counter() - real_start:.2f} s of real time")


if __name__ == "__main__":
    logging.basicConfig(format="          log: %(message)s", level=logging.WARNING)
    trio.run(main, clock=MockClock(autojump_threshold=0))
