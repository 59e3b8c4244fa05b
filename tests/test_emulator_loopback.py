"""FakeArcGIS over real HTTP on 127.0.0.1 (hypercorn), on both backends.

These tests talk over sockets, so they run on the real clock: a virtual clock would jump
past the HTTP timeouts while a socket is waiting.
"""

from __future__ import annotations

import httpx
import pytest

from archibald.auth import UserTokenAuth
from archibald.testing import FakeArcGIS

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

LAYER = "/arcgis/rest/services/Parcels/FeatureServer/0"


@pytest.fixture
def fake() -> FakeArcGIS:
    fake = FakeArcGIS()
    fake.add_user("alice", "wonderland")
    fake.add_feature_layer("Parcels", count=10_001, max_record_count=2000, secured=True)
    return fake


async def test_paging_over_http(fake: FakeArcGIS) -> None:
    """A token from the loopback portal pages the whole secured layer over real HTTP."""
    async with fake.serve() as origin:
        assert origin.startswith("http://127.0.0.1:")
        auth = UserTokenAuth("alice", "wonderland", origin)
        async with auth, httpx.AsyncClient(auth=auth) as http:
            seen: list[int] = []
            offset = 0
            while True:
                response = await http.get(
                    f"{origin}{LAYER}/query",
                    params={"where": "1=1", "resultOffset": offset, "f": "json"},
                )
                body = response.json()
                seen.extend(f["attributes"]["OBJECTID"] for f in body["features"])
                offset += len(body["features"])
                if not body["exceededTransferLimit"]:
                    break
    assert list(range(1, 10_002)) == seen
    assert 6 == fake.statistics().requests["query"]
    assert 1 == fake.statistics().tokens_issued


async def test_a_dropped_connection_over_http(fake: FakeArcGIS) -> None:
    """drop_next cuts the connection mid-answer; the next request is served normally."""
    fake.faults.drop_next("query")
    async with fake.serve() as origin, httpx.AsyncClient() as http:
        url = f"{origin}{LAYER}/query"
        params = {"where": "1=1", "f": "json", "returnCountOnly": "true"}
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(url, params=params)
        response = await http.get(url, params=params)
    assert 499 == response.json()["error"]["code"]  # the layer is secured


async def test_rest_info_names_the_loopback_origin(fake: FakeArcGIS) -> None:
    """URLs in answers use the origin the request came to, not the in-process default."""
    async with fake.serve() as origin, httpx.AsyncClient() as http:
        info = (await http.get(f"{origin}/arcgis/rest/info", params={"f": "json"})).json()
    assert f"{origin}/sharing/rest/generateToken" == info["authInfo"]["tokenServicesUrl"]
    assert origin == info["owningSystemUrl"]


async def test_errors_in_the_block_come_out_unwrapped(fake: FakeArcGIS) -> None:
    """An exception raised inside `async with fake.serve()` is not an ExceptionGroup."""
    with pytest.raises(KeyError):
        async with fake.serve():
            raise KeyError("mine")
