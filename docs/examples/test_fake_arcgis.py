import httpx
import pytest

from archibald import UserTokenAuth
from archibald.testing import FakeArcGIS

pytestmark = pytest.mark.anyio  # anyio's pytest plugin: runs on asyncio and trio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture
def fake() -> FakeArcGIS:
    fake = FakeArcGIS()
    fake.add_user("alice", "wonderland")
    fake.add_feature_layer("Parcels", count=2_500, max_record_count=1000, secured=True)
    return fake


async def fetch_all_ids(http: httpx.AsyncClient, layer_url: str) -> list[int]:
    """The code under test: page through a layer by resultOffset."""
    ids, offset = [], 0
    while True:
        response = await http.get(
            f"{layer_url}/query",
            params={
                "where": "1=1",
                "resultOffset": offset,
                "orderByFields": "OBJECTID",
                "f": "json",
            },
        )
        body = response.json()
        ids += [f["attributes"]["OBJECTID"] for f in body["features"]]
        offset += len(body["features"])
        if not body.get("exceededTransferLimit"):
            return ids


async def test_every_feature_once(fake: FakeArcGIS) -> None:
    auth = UserTokenAuth("alice", "wonderland", fake.portal_url, http_client=fake.client())
    async with auth, fake.client(auth=auth) as http:
        ids = await fetch_all_ids(http, f"{fake.services_url}/Parcels/FeatureServer/0")
    assert list(range(1, 2_501)) == ids
    assert 1 == fake.statistics().tokens_issued
    assert 3 == fake.statistics().requests["query"]
