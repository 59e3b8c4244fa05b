"""A day of crawling a secured ArcGIS layer with a background-renewed token, offline.

ArchieClient and UserTokenAuth run in process against archibald's ArcGIS emulator
(FakeArcGIS), on Trio's
MockClock, which jumps ahead whenever every task is waiting, so a simulated day takes a
moment. Along the way: hourly tokens renewed in the background, a server that revokes
every token, a burst of requests rejected at once, and an hour-long token outage.

    python examples/token_lifecycle.py
"""

from __future__ import annotations

import logging
import time

import trio
from trio.testing import MockClock

from archibald import ArchieClient, TokenRefreshError, UserTokenAuth
from archibald.testing import FakeArcGIS

HOUR = 3600


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}"


async def count_features(client: ArchieClient) -> int:
    body = await client.get_json(
        "Parcels/FeatureServer/0/query", params={"where": "1=1", "returnCountOnly": True}
    )
    return int(body["count"])


async def main() -> None:
    fake = FakeArcGIS()
    fake.add_user("crawler", "correct horse battery staple")
    fake.add_feature_layer("Parcels", count=5_000, secured=True)
    fake.faults.latency["generateToken"] = 1.5  # a slow token server: nobody should notice
    auth = UserTokenAuth(
        "crawler", "correct horse battery staple", fake.portal_url, http_client=fake.client()
    )
    real_start = time.perf_counter()

    async with ArchieClient(fake.services_url, auth, transport=fake.transport()) as client:
        start = trio.current_time()
        print(f"{clock(0)}  signed in; the first token was fetched before the block ran")
        queries = 0
        while trio.current_time() - start < 24 * HOUR:
            assert await count_features(client) == 5_000
            queries += 1
            if queries == 54:  # nine hours of queries
                fake.revoke_all_tokens()
                print(f"{clock(trio.current_time() - start)}  the server revokes every token")
            await trio.sleep(600)
        stats = fake.statistics()
        print(
            f"24:00  {queries} queries over a simulated day, {stats.tokens_issued} tokens issued "
            f"(1 + one renewal every 55 minutes + 1 after the revocation), "
            f"{stats.rejected_498} request rejected"
        )

        fake.revoke_all_tokens()
        before = fake.statistics().tokens_issued
        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(count_features, client)
        issued = fake.statistics().tokens_issued - before
        print(f"       100 concurrent queries meet a revoked token: {issued} new token for all")

        fake.faults.token_outage = True
        await trio.sleep(HOUR)
        try:
            await auth.get_token()
        except TokenRefreshError as exc:
            print(f"       the token endpoint is down for an hour: {type(exc).__name__}, at once")
        fake.faults.token_outage = False
        await trio.sleep(61)
        assert await count_features(client) == 5_000
        print("       the endpoint is back: queries flow again, without signing in again")

    print(f"done in {time.perf_counter() - real_start:.2f} s of real time")


if __name__ == "__main__":
    logging.basicConfig(format="       log: %(message)s", level=logging.ERROR)
    trio.run(main, clock=MockClock(autojump_threshold=0))
