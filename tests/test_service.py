"""The anyio service of examples/service.py (Starlette, one ArchieClient in its lifespan)
under load, while its tokens expire and are revoked: no failed request, and no request
that waited on a token longer than the revocation's one refresh."""

from __future__ import annotations

import anyio
import httpx
import pytest

from archibald import UserTokenAuth
from archibald.testing import FakeArcGIS
from examples.service import create_app

pytestmark = pytest.mark.anyio

USER, PASSWORD = "svc", "svc-password"
QUERY, TOKEN = 0.05, 0.3  # seconds the emulator takes per query and per token
WAVES, PER_WAVE = 10, 200


async def test_the_service_under_load_never_fails_and_refreshes_once() -> None:
    fake = FakeArcGIS(max_token_minutes=2)  # tokens of two minutes: renewed every wave
    fake.add_user(USER, PASSWORD)
    fake.add_feature_layer("City/Parcels", count=500, max_record_count=100, secured=True)
    fake.faults.latency.update({"query": QUERY, "generateToken": TOKEN})

    def auth() -> UserTokenAuth:
        return UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())

    app = create_app(fake.services_url, auth, transport=fake.transport())
    statuses: list[int] = []
    slowest: dict[int, float] = {}

    async def one(http: httpx.AsyncClient, wave: int, index: int) -> None:
        started = anyio.current_time()
        path = "/layers/City/Parcels/0/" + ("features" if index % 10 == 0 else "count")
        response = await http.get(path, params={"where": f"POPULATION > {index}", "limit": 5})
        statuses.append(response.status_code)
        slowest[wave] = max(slowest.get(wave, 0.0), anyio.current_time() - started)

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            for wave in range(WAVES):
                if wave == WAVES // 2:
                    fake.revoke_all_tokens()  # a server restart, between two waves
                    issued = fake.statistics().tokens_issued
                async with anyio.create_task_group() as tg:
                    for index in range(PER_WAVE):
                        tg.start_soon(one, http, wave, index)
                if wave == WAVES // 2:
                    assert fake.statistics().tokens_issued - issued == 1  # one refresh
                await anyio.sleep(50)  # the token runs out between waves, renewed meanwhile

    assert statuses == [200] * (WAVES * PER_WAVE)
    # 200 requests through 50 connections: five rounds of queries at most (a features
    # request makes a few), and no wait for a token: renewals happen in the background.
    usual = max(t for wave, t in slowest.items() if wave != WAVES // 2)
    assert usual <= 5 * QUERY + 1e-6
    # After the revocation, the one refresh, once, and the rejected query sent again.
    assert slowest[WAVES // 2] <= usual + TOKEN + QUERY + 1e-6
