"""Services and layers: metadata, counts, and crawls that deliver every feature once."""

from __future__ import annotations

import gc
import json
import math
import random
import tracemalloc
from contextlib import aclosing, nullcontext
from typing import Any
from urllib.parse import parse_qsl

import anyio
import attrs
import httpx
import pytest

from archibald import (
    ArchieClient,
    FeatureLayer,
    FeatureService,
    IncompleteResultError,
    InvalidParameterError,
    InvalidServiceURL,
    LayerCapabilityError,
    LifecycleError,
    MapLayer,
    MapService,
    PageStream,
    RetryPolicy,
    ServiceError,
    UserTokenAuth,
)
from archibald.testing import FakeArcGIS

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "wonderland"
ALL = list(range(1, 10_002))


@pytest.fixture
def fake() -> FakeArcGIS:
    fake = FakeArcGIS()
    fake.add_user(USER, PASSWORD)
    fake.add_feature_layer("Parcels", count=10_001, max_record_count=1000, secured=True)
    return fake


def client_for(fake: FakeArcGIS, **kwargs: Any) -> ArchieClient:
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    return ArchieClient(fake.services_url, auth, transport=fake.transport(), **kwargs)


@pytest.fixture(params=["windows", "ahead"])
def ahead(request: pytest.FixtureRequest) -> bool:
    """Crawl without `async with` (a window per step) and inside it (fetching ahead)."""
    return bool(request.param == "ahead")


async def crawl_ids(layer: FeatureLayer, ahead: bool = False, **kwargs: Any) -> list[int]:
    ids: list[int] = []
    pages = layer.pages(**kwargs)
    async with pages if ahead else nullcontext(pages):
        async for page in pages:
            ids.extend(page.object_ids)
            assert [f["attributes"]["OBJECTID"] for f in page.features] == page.object_ids
    return ids


async def test_every_feature_once_in_order(fake: FakeArcGIS, ahead: bool) -> None:
    """10,001 features, maxRecordCount 1,000: every OID exactly once, in order."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        assert ALL == await crawl_ids(layer, ahead)
    assert 1 + 1 + 11 == fake.statistics().requests["query"]  # ids, their count, 11 pages


@pytest.mark.parametrize(
    "misbehave",
    [
        pytest.param(lambda fake: setattr(fake.faults, "page_cap", 400), id="page-cap-400"),
        pytest.param(lambda fake: fake.faults.failure_rate.update(query=0.05), id="503-on-5%"),
        pytest.param(lambda fake: setattr(fake.faults, "unordered", True), id="unordered"),
    ],
)
async def test_every_feature_once_when_the_server_misbehaves(
    fake: FakeArcGIS, misbehave: Any, ahead: bool
) -> None:
    """Capped pages, 503s, scrambled order: still exact. (A server without pagination, or
    one that ignores resultOffset, cannot touch a crawl that never pages by offset: see
    test_offset_paging_breaks_where_the_crawl_does_not.)"""
    misbehave(fake)
    async with client_for(fake) as client:
        assert ALL == await crawl_ids(FeatureLayer(client, "Parcels", 0), ahead)


async def test_a_capped_server_shrinks_the_page_size(fake: FakeArcGIS, ahead: bool) -> None:
    """After a server caps a page at 400, later requests ask for 400, not 1,000."""
    fake.faults.page_cap = 400
    async with client_for(fake) as client:
        ids = await crawl_ids(FeatureLayer(client, "Parcels", 0), ahead, max_concurrency=1)
    assert ALL == ids
    # 1 id list + 1 capped page + 2 refills + 23 pages of 400 + the rest
    assert fake.statistics().requests["query"] <= 30


async def test_every_token_revoked_mid_crawl(fake: FakeArcGIS, ahead: bool) -> None:
    """The server revokes every token halfway: the crawl goes on, one token request later."""
    async with client_for(fake) as client:
        ids: list[int] = []
        pages = FeatureLayer(client, "Parcels", 0).pages(max_concurrency=4)
        async with pages if ahead else nullcontext(pages):
            async for page in pages:
                ids.extend(page.object_ids)
                if len(ids) == 5000:
                    fake.revoke_all_tokens()
    assert ALL == ids
    assert 2 == fake.statistics().requests["generateToken"]


async def test_a_page_that_keeps_failing_is_reported(fake: FakeArcGIS, ahead: bool) -> None:
    """A page failing after all retries: IncompleteResultError naming its ids, not a short
    result; every page before it is delivered."""
    async with client_for(fake, retry=RetryPolicy(attempts=3)) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        ids: list[int] = []

        async def crawl() -> None:
            pages = layer.pages(max_concurrency=1)
            async with pages if ahead else nullcontext(pages):
                async for page in pages:
                    ids.extend(page.object_ids)
                    if len(ids) == 3000:
                        fake.faults.fail_next("query", status=503, times=3)

        with pytest.raises(IncompleteResultError) as info:
            await crawl()
    assert list(range(1, 3001)) == ids
    assert list(range(3001, 4001)) == info.value.missing
    assert "3001-4000" in str(info.value)
    assert "503" in str(info.value.__cause__)


async def test_features_deleted_during_the_crawl_are_reported(fake: FakeArcGIS) -> None:
    """Ids listed at the start but gone when fetched: IncompleteResultError, never silence."""
    layer_data = fake.layer("Parcels")
    async with client_for(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(max_concurrency=1)
        async with aclosing(pages):
            first = await anext(pages)
            layer_data.apply_edits(
                [], [], [5000, 5001], rollback_on_failure=True, rng=random.Random()
            )
            with pytest.raises(IncompleteResultError) as info:
                async for _ in pages:
                    pass
    assert 1000 == len(first)
    assert [5000] == info.value.missing  # the crawl stops at the first incomplete page


async def test_breaking_out_leaves_nothing_behind(fake: FakeArcGIS) -> None:
    """Break after the first page: no request is left running; the client is still fine."""
    fake.faults.latency["query"] = 1.0
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        async for _page in layer.pages(max_concurrency=4):
            break
        gc.collect()
        await anyio.sleep(0.5)  # as in the test below: fetches cancelled, maybe counted
        sent = fake.statistics().requests["query"]
        await anyio.sleep(10)
        assert sent == fake.statistics().requests["query"]  # nothing went on fetching
        assert 10_001 == await layer.count()


async def test_features_where_and_fields(fake: FakeArcGIS) -> None:
    """features() yields exactly the matching features, with the fields asked for."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        found = [
            f
            async for f in layer.features(
                "POPULATION < 5000", out_fields=["NAME"], return_geometry=False
            )
        ]
        expected = await layer.object_ids("POPULATION < 5000")
        assert await layer.count("POPULATION < 5000") == len(found)
    assert expected == [f["attributes"]["OBJECTID"] for f in found]
    assert {"NAME", "OBJECTID"} == set(found[0]["attributes"])
    assert "geometry" not in found[0]


async def test_geojson_features(fake: FakeArcGIS) -> None:
    """format='geojson' yields GeoJSON Features with the object id as id."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        features = [f async for f in layer.features("OBJECTID <= 3", format="geojson")]
    assert [1, 2, 3] == [f["id"] for f in features]
    assert "Point" == features[0]["geometry"]["type"]
    assert "POPULATION" in features[0]["properties"]


async def test_query_collects_a_result(fake: FakeArcGIS) -> None:
    """query() gathers every feature with fields, geometry type and spatial reference."""
    fake.add_feature_layer("Zones", count=30, geometry="polygon")
    async with client_for(fake) as client:
        result = await FeatureLayer(client, "Zones", 0).query()
    assert 30 == len(result)
    assert "esriGeometryPolygon" == result.geometry_type
    assert 4326 == result.spatial_reference["wkid"]
    assert "OBJECTID" in [f["name"] for f in result.fields]
    collection = result.to_geojson()
    assert 30 == len(collection["features"])
    assert "MultiPolygon" == collection["features"][14]["geometry"]["type"]


async def test_metadata_is_read_once(fake: FakeArcGIS) -> None:
    """info() is cached; it exposes what crawlers need."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        info = await layer.info()
        await layer.info()
        await layer.count()
    assert 1 == fake.statistics().requests["layer"]
    assert ("OBJECTID", 1000, "esriGeometryPoint") == (
        info.object_id_field,
        info.max_record_count,
        info.geometry_type,
    )
    assert "Query" in info.capabilities
    assert info.supports_pagination


async def test_a_layer_without_query_refuses(fake: FakeArcGIS) -> None:
    """A layer that does not advertise Query raises LayerCapabilityError."""
    fake.add_map_layer("Basemap", count=5)
    fake.layer("Basemap", 0, "MapServer").capabilities = "Map"
    async with client_for(fake) as client:
        layer = MapLayer(client, "Basemap", 0)
        with pytest.raises(LayerCapabilityError, match="does not offer Query"):
            await layer.count()


async def test_services_list_their_layers(fake: FakeArcGIS) -> None:
    """FeatureService and MapService list their layers; layers come from URLs too."""
    fake.add_feature_layer("Parcels", layer_id=1, count=3, geometry=None)
    fake.add_map_layer("Basemap", count=7)
    async with client_for(fake) as client:
        feature_layers = await FeatureService(client, "Parcels").layers()
        map_layers = await MapService(client, "Basemap/MapServer").layers()
        from_url = FeatureLayer.from_url(client, f"{fake.services_url}/Parcels/FeatureServer/1")
        assert 3 == await from_url.count()
        assert 7 == await map_layers[0].count()
    assert [0, 1] == [layer.layer_id for layer in feature_layers]
    with pytest.raises(InvalidServiceURL):
        FeatureLayer.from_url(
            client, "https://elsewhere.example.com/arcgis/rest/services/X/FeatureServer/0"
        )


async def test_a_two_hour_crawl_on_five_minute_tokens() -> None:
    """2 simulated hours of crawling with 5-minute tokens: no request fails, and the token
    requests match crawl time / renewal interval."""
    fake = FakeArcGIS(max_token_minutes=5)
    fake.add_user(USER, PASSWORD)
    fake.add_feature_layer("Slow", count=2_000, max_record_count=20, secured=True)
    fake.faults.latency["query"] = 72.0  # 101 requests one after another: about 2 hours
    async with client_for(fake, timeout=100) as client:  # answers take 72 s
        start = anyio.current_time()
        ids: list[int] = []
        async for page in FeatureLayer(client, "Slow", 0).pages(max_concurrency=1):
            ids.extend(page.object_ids)
        elapsed = anyio.current_time() - start
        stats = client.statistics()
    assert list(range(1, 2001)) == ids
    assert (0, 0) == (stats.token_rejections, stats.retries)
    assert 7200 <= elapsed < 7400
    renewal_interval = 150  # half of a 5-minute token
    expected = 1 + elapsed // renewal_interval
    assert abs(fake.statistics().requests["generateToken"] - expected) <= 1


async def test_streaming_keeps_memory_flat() -> None:
    """Streaming 200,000 features holds about a window of pages, not the layer.

    tracemalloc traces what is allocated during the crawl; what the emulator itself
    allocates (its answers, its caches) is left out. Sampled at every 20th page, the
    crawl's own memory must stay under 40 MB: a window of 4 decoded pages of 2,000
    features is about 10 MB, while the decoded layer would take about 250 MB.
    """
    fake = FakeArcGIS()
    fake.add_feature_layer("Big", count=200_000, max_record_count=2000, geometry="point")
    emulator_frames = [
        tracemalloc.Filter(False, "*/archibald/testing/*"),
        tracemalloc.Filter(False, "*/json/encoder.py"),
        tracemalloc.Filter(False, tracemalloc.__file__),
    ]
    samples: list[int] = []
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        layer = FeatureLayer(client, "Big", 0)
        async for _ in layer.pages(max_concurrency=4):
            pass  # the emulator encodes its answers once, before anything is traced
        tracemalloc.start(1)
        try:
            total = pages = 0
            async for page in layer.pages(max_concurrency=4):
                total += len(page)
                pages += 1
                if pages % 20 == 0:
                    snapshot = tracemalloc.take_snapshot().filter_traces(emulator_frames)
                    samples.append(sum(t.size for t in snapshot.traces))
        finally:
            tracemalloc.stop()
    assert 200_000 == total
    assert max(samples) < 40_000_000
    assert max(samples) < 3 * min(samples) + 10_000_000  # flat: no growth with the crawl


# -- regressions found in review -------------------------------------------------------


async def test_a_cancelled_step_loses_nothing(fake: FakeArcGIS, ahead: bool) -> None:
    """A consumer that gives up waiting for one page and goes on still gets every feature."""
    fake.faults.latency["query"] = 1.0
    async with client_for(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(max_concurrency=4)
        ids: list[int] = []
        async with pages if ahead else nullcontext(pages):
            ids.extend((await anext(pages)).object_ids)
            with anyio.move_on_after(0.5):  # cancelled in the middle of fetching
                for _ in range(4):
                    ids.extend((await anext(pages)).object_ids)
            async for page in pages:
                ids.extend(page.object_ids)
    assert ALL == ids


async def test_a_stream_closed_by_its_consumer_ends(fake: FakeArcGIS) -> None:
    """After aclose(), iterating ends (StopAsyncIteration), as a closed async generator does;
    nothing more is fetched."""
    async with client_for(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages()
        features = FeatureLayer(client, "Parcels", 0).features()
        await anext(pages)
        await anext(features)
        await pages.aclose()
        await features.aclose()
        before = fake.statistics().requests["query"]
        with pytest.raises(StopAsyncIteration):
            await anext(pages)
        with pytest.raises(StopAsyncIteration):
            await anext(features)
        assert [] == [page async for page in pages]
        assert before == fake.statistics().requests["query"]


async def test_a_failure_among_concurrent_batches_names_its_batch(fake: FakeArcGIS) -> None:
    """One of four concurrent batches fails for good: one error naming only that batch,
    after every page before it."""
    async with client_for(fake, retry=RetryPolicy(attempts=1)) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(max_concurrency=4)
        first = await anext(pages)
        fake.faults.fail_next("query", status=503, times=1)
        delivered = list(first.object_ids)

        async def drain() -> None:
            async for page in pages:
                delivered.extend(page.object_ids)

        with pytest.raises(IncompleteResultError) as info:
            await drain()
    missing = info.value.missing
    assert missing is not None
    assert list(range(missing[0], missing[0] + 1000)) == sorted(missing)  # one whole batch
    assert list(range(1, missing[0])) == delivered  # everything before it, in order


async def test_as_they_arrive(fake: FakeArcGIS, ahead: bool) -> None:
    """ordered=False still delivers every feature once."""
    fake.faults.failure_rate["query"] = 0.05
    async with client_for(fake) as client:
        ids = await crawl_ids(FeatureLayer(client, "Parcels", 0), ahead, ordered=False)
    assert ALL == sorted(ids)


# -- fetching ahead, inside `async with` --------------------------------------------------


async def test_inside_async_with_the_next_pages_are_fetched_while_the_consumer_works(
    fake: FakeArcGIS,
) -> None:
    """While the consumer works on one page, the next ones are already on their way, so
    a slow consumer and a slow server overlap instead of taking turns."""
    fake.faults.latency["query"] = 1.0
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        ids: list[int] = []
        started = anyio.current_time()
        async with layer.pages(max_concurrency=4) as pages:
            async for page in pages:
                ids.extend(page.object_ids)
                await anyio.sleep(1.0)  # the consumer's own work
        elapsed = anyio.current_time() - started
    assert ALL == ids
    # ids and count (2 s), the first page (1 s), then 11 pages of work (11 s) during
    # which every other page is fetched. In windows it would take 2 + 3 + 11 = 16 s.
    assert elapsed < 14.5


async def test_fetching_ahead_is_bounded_by_max_concurrency(fake: FakeArcGIS) -> None:
    """A consumer that stops taking pages stops the fetching: at most max_concurrency
    pages are fetched and not yet taken, whatever the layer's size."""
    async with (
        client_for(fake) as client,
        FeatureLayer(client, "Parcels", 0).pages(max_concurrency=3) as pages,
    ):
        await anext(pages)
        await anyio.sleep(60)
        # the ids, their count, the page taken, and pages 2, 3 and 4
        assert 2 + 1 + 3 == fake.statistics().requests["query"]
        await anext(pages)
        await anyio.sleep(60)
        assert 2 + 2 + 3 == fake.statistics().requests["query"]  # and then page 5


# -- the plain loop: fetching ahead in the client's task group ------------------------------


async def test_the_plain_loop_overlaps_fetching_with_the_consumer(fake: FakeArcGIS) -> None:
    """`async for page in layer.pages()` fetches ahead too: a slow consumer of 11 pages
    waits for the first page only, and at most max_concurrency pages are ahead of it."""
    fake.faults.latency["query"] = 1.0
    async with client_for(fake) as client:
        started = anyio.current_time()
        ids: list[int] = []
        async for page in FeatureLayer(client, "Parcels", 0).pages(max_concurrency=3):
            ids.extend(page.object_ids)
            if len(ids) == 1000:
                await anyio.sleep(60)  # a consumer that stops taking pages
                # the ids, their count, the page taken, and pages 2, 3 and 4, no more
                assert 2 + 1 + 3 == fake.statistics().requests["query"]
            await anyio.sleep(1.0)  # the consumer's own work
        elapsed = anyio.current_time() - started - 60
    assert ALL == ids
    assert elapsed < 14.5  # as inside `async with`; a window at a time took 16 s


@pytest.mark.parametrize("how", ["break", "aclose", "drop"])
async def test_the_plain_loop_stops_fetching_when_its_consumer_stops(
    fake: FakeArcGIS, how: str
) -> None:
    """Break out of the loop, close the stream, or drop it half-read: the fetches ahead
    stop at once (no task left running in the client), and the client goes on working."""
    fake.faults.latency["query"] = 1.0
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        stream = layer.features(max_concurrency=4)
        if how == "break":
            async for _feature in stream:
                break
            del stream
        else:
            await anext(stream)
            if how == "aclose":
                await stream.aclose()
            del stream
            gc.collect()
        # Fetches started as the first page came are cancelled, though the emulator may
        # count them on arrival; any fetch after them would come a query's latency later.
        await anyio.sleep(0.5)
        sent = fake.statistics().requests["query"]
        await anyio.sleep(10)
        assert sent == fake.statistics().requests["query"]
        assert 10_001 == await layer.count()


async def test_leaving_the_client_stops_a_plain_loop(fake: FakeArcGIS) -> None:
    """The client closes while a plain loop is half-way (in another task): its fetches are
    cancelled, its consumer is told the crawl was closed, and no exception group reaches
    anyone."""
    fake.faults.latency["query"] = 1.0
    outcome: list[BaseException] = []
    got: list[int] = []

    async def consume(pages: PageStream) -> None:
        try:
            async for page in pages:
                got.extend(page.object_ids)
        except Exception as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        async with client_for(fake) as client:
            tg.start_soon(consume, FeatureLayer(client, "Parcels", 0).pages(max_concurrency=2))
            await anyio.sleep(4.5)  # ids and count, then a page or two
        sent = fake.statistics().requests["query"]
        await anyio.sleep(10)
    assert sent == fake.statistics().requests["query"]
    assert 0 < len(got) < 10_001
    (error,) = outcome
    assert isinstance(error, (IncompleteResultError, LifecycleError)), error


async def test_leaving_async_with_early_stops_every_fetch(fake: FakeArcGIS) -> None:
    """Break out after the first page: the fetches ahead are cancelled when the block ends,
    and nothing goes on running."""
    fake.faults.latency["query"] = 1.0
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        async with layer.features(max_concurrency=4) as features:
            async for _feature in features:
                break
        sent = fake.statistics().requests["query"]
        await anyio.sleep(10)
        assert sent == fake.statistics().requests["query"]
        assert 10_001 == await layer.count()


async def test_aclose_inside_async_with_ends_the_crawl_not_the_block(fake: FakeArcGIS) -> None:
    """aclose() stops the fetches ahead but does not cancel the code around it."""
    fake.faults.latency["query"] = 1.0
    async with client_for(fake) as client:
        async with FeatureLayer(client, "Parcels", 0).pages(max_concurrency=4) as pages:
            await anext(pages)
            await pages.aclose()
            await anyio.sleep(5)  # not cancelled
            with pytest.raises(StopAsyncIteration):
                await anext(pages)
            after = fake.statistics().requests["query"]
        await anyio.sleep(5)
        assert after == fake.statistics().requests["query"]


class FailBatch(httpx.AsyncBaseTransport):
    """FakeArcGIS, except that the batch starting at object id *first* always fails."""

    def __init__(self, fake: FakeArcGIS, first: int) -> None:
        self.fake = fake
        self.marker = f"%3E%3D+{first}+".encode()  # where=OBJECTID >= <first> AND ...

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.marker in request.content:
            return httpx.Response(503, text="Service Unavailable")
        return await self.fake.transport().handle_async_request(request)


def failing_client(fake: FakeArcGIS, first: int) -> tuple[UserTokenAuth, ArchieClient]:
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    client = ArchieClient(
        fake.services_url, auth, transport=FailBatch(fake, first), retry=RetryPolicy(attempts=1)
    )
    return auth, client


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_failure_ahead_comes_after_the_pages_before_it(
    fake: FakeArcGIS, ordered: bool
) -> None:
    """A batch fetched ahead fails for good while others are still coming: the consumer
    gets the error naming that batch (in order: after every page before it), and nothing
    more is fetched once it has."""
    fake.faults.latency["query"] = 1.0
    auth, client = failing_client(fake, 5001)
    ids: list[int] = []
    sent: list[int] = []

    async def crawl() -> None:
        pages = FeatureLayer(client, "Parcels", 0).pages(max_concurrency=4, ordered=ordered)
        async with pages:
            try:
                async for page in pages:
                    ids.extend(page.object_ids)
            finally:
                sent.append(fake.statistics().requests["query"])
                await anyio.sleep(10)  # still inside the block: nothing goes on
                sent.append(fake.statistics().requests["query"])

    async with auth, client:
        with pytest.raises(IncompleteResultError) as info:
            await crawl()
    assert list(range(5001, 6001)) == info.value.missing
    assert sent[0] == sent[1]
    if ordered:
        assert list(range(1, 5001)) == ids
    else:
        assert len(ids) == len(set(ids))
        assert not set(ids) & set(range(5001, 6001))


@pytest.mark.parametrize("ordered", [True, False])
async def test_aclose_from_another_task_wakes_the_consumer(fake: FakeArcGIS, ordered: bool) -> None:
    """A watchdog closes the stream while the consumer waits for a page: the consumer is
    told the crawl was closed, and does not hang or end as if the crawl were complete."""
    fake.faults.latency["query"] = 1.0
    ids: list[int] = []
    outcome: list[Exception] = []
    async with client_for(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(max_concurrency=4, ordered=ordered)
        async with pages:

            async def consume() -> None:
                try:
                    async for page in pages:
                        ids.extend(page.object_ids)
                except IncompleteResultError as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(3.5)  # ids and count (2 s), then the first pages
                await pages.aclose()
    assert 0 < len(ids) < 10_001
    assert 1 == len(outcome)
    assert "closed" in str(outcome[0])


async def test_aclose_while_the_ids_are_listed_fetches_nothing(fake: FakeArcGIS) -> None:
    """Closed from another task while its first step lists the ids: the step is told the
    crawl was closed, and no page is fetched (the close is not lost in the listing)."""
    fake.faults.latency["query"] = 1.0
    outcome: list[Exception] = []
    async with client_for(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(max_concurrency=4)
        async with pages:

            async def consume() -> None:
                try:
                    await pages.__anext__()
                except IncompleteResultError as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(0.5)  # the ids and the count are on their way
                await pages.aclose()
        before = fake.statistics().requests["query"]
        await anyio.sleep(10)
    assert "was closed after 0 features" in str(outcome[0])
    # the ids, their count and the first page (asked at once), and nothing after the close
    assert 3 == before == fake.statistics().requests["query"]


async def test_a_stream_iterated_first_cannot_be_entered(fake: FakeArcGIS) -> None:
    async with client_for(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages()
        await anext(pages)
        with pytest.raises(LifecycleError, match="before iterating"):
            await pages.__aenter__()


async def test_errors_of_the_block_come_out_as_raised(fake: FakeArcGIS) -> None:
    """An error raised by the code inside `async with` is not wrapped in another group."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        group = ExceptionGroup("mine", [ValueError("one"), KeyError("two")])

        async def raise_in_block(error: Exception) -> None:
            async with layer.features() as features:
                await anext(features)
                raise error

        with pytest.raises(ExceptionGroup) as info:
            await raise_in_block(group)
        assert info.value is group
        plain = ValueError("plain")
        with pytest.raises(ValueError, match="plain") as caught:
            await raise_in_block(plain)
        assert caught.value is plain


async def test_a_stream_opens_once(fake: FakeArcGIS) -> None:
    async with client_for(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages()
        async with pages:
            with pytest.raises(LifecycleError, match="already open"):
                await pages.__aenter__()


class CutIds(httpx.AsyncBaseTransport):
    """A proxy that cuts returnIdsOnly answers short, or sends ids as strings."""

    def __init__(self, fake: FakeArcGIS, how: str) -> None:
        self.inner = fake.transport()
        self.how = how

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = json.loads(await response.aread())
        if "objectIds" in body:
            if self.how == "cut":
                body["objectIds"] = body["objectIds"][:2000]
            else:
                body["objectIds"] = [str(i) for i in body["objectIds"]]
        elif self.how == "strings" and "features" in body:
            for feature in body["features"]:
                feature["attributes"]["OBJECTID"] = float(feature["attributes"]["OBJECTID"])
        return httpx.Response(response.status_code, json=body)


async def test_a_short_id_list_is_caught(fake: FakeArcGIS) -> None:
    """A returnIdsOnly answer cut short disagrees with the count: never 2,000 rows, but
    the crawl by id ranges (each list checked by count), or without statistics an error."""
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    async with ArchieClient(fake.services_url, auth, transport=CutIds(fake, "cut")) as client:
        assert ALL == await crawl_ids(FeatureLayer(client, "Parcels", 0))
        fake.layer("Parcels").supports_statistics = False
        with pytest.raises(IncompleteResultError, match="counts 10,001"):
            await crawl_ids(FeatureLayer(client, "Parcels", 0))


async def test_ids_as_strings_and_floats_are_read(fake: FakeArcGIS) -> None:
    """Ids listed as strings and returned as floats still crawl exactly."""
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    async with ArchieClient(fake.services_url, auth, transport=CutIds(fake, "strings")) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        ids = [oid async for page in layer.pages() for oid in page.object_ids]
    assert ALL == ids


# -- hardening: each test below failed before its fix ----------------------------------


@pytest.mark.parametrize("fields", ["NAME,NOPE", ["NAME", "NOPE"]])
async def test_an_unknown_field_is_named_before_any_feature_is_fetched(
    fake: FakeArcGIS, fields: Any
) -> None:
    """out_fields with a field the layer lacks: InvalidParameterError naming it, no crawl."""
    async with client_for(fake) as client:
        with pytest.raises(InvalidParameterError, match="has no field 'NOPE'") as info:
            async for _ in FeatureLayer(client, "Parcels", 0).pages(out_fields=fields):
                pass
    assert "NAME" in str(info.value)  # the fields it does have are listed
    assert "query" not in fake.statistics().requests


@pytest.mark.parametrize("ahead", [False, True])
async def test_a_query_the_server_rejects_is_a_parameter_error(
    fake: FakeArcGIS, ahead: bool
) -> None:
    """A spatial reference the server refuses: InvalidParameterError at the first page,
    chained to the server's error, not IncompleteResultError about missing features."""
    async with client_for(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(out_sr=2193, max_concurrency=4)
        async with pages if ahead else nullcontext(pages):
            with pytest.raises(InvalidParameterError, match="rejected the query") as info:
                await anext(pages)
    assert "outSR=2193" in str(info.value)
    assert "cannot project to wkid 2193" in str(info.value)
    assert isinstance(info.value.__cause__, ServiceError)


@pytest.mark.parametrize("where", [None, 1, ["1=1"]])
async def test_a_where_that_is_not_a_string_is_refused_locally(
    fake: FakeArcGIS, where: Any
) -> None:
    """count(None) and the like: InvalidParameterError, and nothing reaches the server."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        before = fake.statistics().total_requests
        with pytest.raises(InvalidParameterError, match="where must be an SQL string"):
            await layer.count(where)
        with pytest.raises(InvalidParameterError, match="where must be an SQL string"):
            await layer.object_ids(where)
        with pytest.raises(InvalidParameterError, match="where must be an SQL string"):
            layer.features(where)
        assert before == fake.statistics().total_requests


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"out_sr": "4326"}, "out_sr must be"),
        ({"page_size": 1.5}, "page_size must be"),
        ({"max_concurrency": "8"}, "max_concurrency must be"),
        ({"out_fields": 5}, "out_fields must be"),
        ({"return_geometry": "no"}, "return_geometry must be"),
    ],
)
async def test_crawl_arguments_of_the_wrong_type_are_refused(
    fake: FakeArcGIS, kwargs: dict[str, Any], message: str
) -> None:
    """Wrong types get InvalidParameterError, not a TypeError or a request."""
    async with client_for(fake) as client:
        with pytest.raises(InvalidParameterError, match=message):
            async for _ in FeatureLayer(client, "Parcels", 0).pages(**kwargs):
                pass


@pytest.mark.parametrize(
    "path", ["", "/", "..", "../Secret", "Parcels/../../x", "a//b", "a/b\nc", "a\rb", "a\x7fb"]
)
async def test_a_service_path_must_name_a_service(fake: FakeArcGIS, path: str) -> None:
    """An empty or '..' service path, or one with a control character, is refused when
    the layer or service is made."""
    async with client_for(fake) as client:
        with pytest.raises(InvalidParameterError, match="service"):
            FeatureLayer(client, path, 0)
        with pytest.raises(InvalidParameterError, match="service"):
            FeatureService(client, path)


class DatabaseDown(httpx.AsyncBaseTransport):
    """FakeArcGIS, except that every query for features (an id range, or the first page
    asked for by id order) fails as a busy database does."""

    def __init__(self, fake: FakeArcGIS) -> None:
        self.inner = fake.transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if b"%3E%3D" in request.content or b"orderByFields" in request.content:
            return httpx.Response(
                200,
                json={
                    "error": {
                        "code": 400,
                        "message": "Unable to complete operation.",
                        "details": ["Error performing query operation"],
                    }
                },
            )
        return await self.inner.handle_async_request(request)


async def test_a_server_failure_at_the_first_page_still_names_the_missing_features(
    fake: FakeArcGIS,
) -> None:
    """A 400 that blames no parameter (a database that failed) stays IncompleteResultError,
    with the missing ids: only a refused parameter becomes InvalidParameterError."""
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    async with ArchieClient(fake.services_url, auth, transport=DatabaseDown(fake)) as client:
        with pytest.raises(IncompleteResultError) as info:
            await anext(FeatureLayer(client, "Parcels", 0).pages(max_concurrency=1))
    assert info.value.missing is not None
    assert list(range(1, 1001)) == info.value.missing


async def test_out_fields_may_be_any_iterable(fake: FakeArcGIS) -> None:
    """A generator of field names is read once, not used up by the check."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        page = await anext(layer.pages("OBJECTID <= 5", out_fields=(f for f in ["NAME"])))
    assert {"NAME", "OBJECTID"} == set(page.features[0]["attributes"])


# -- guarding promises: each test below fails with a bug planted in the code it covers ----


class UnevenBatches(httpx.AsyncBaseTransport):
    """FakeArcGIS, where the batches starting at the ids in *fast* answer in 0.1 s and every
    other batch in 2 s."""

    def __init__(self, fake: FakeArcGIS, fast: set[int]) -> None:
        self.inner = fake.transport()
        self.fast = {f"%3E%3D+{first}+".encode() for first in fast}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if b"%3E%3D+" in request.content:  # a batch of the crawl (OBJECTID >= ...)
            fast = any(marker in request.content for marker in self.fast)
            await anyio.sleep(0.1 if fast else 2.0)
        return await self.inner.handle_async_request(request)


async def test_a_step_cancelled_after_part_of_its_window_arrived_loses_and_repeats_nothing(
    fake: FakeArcGIS, ahead: bool
) -> None:
    """Cancelled while some pages of the window have arrived and others have not: resuming
    delivers every feature exactly once."""
    fake.layer("Parcels").supports_order_by = False  # no first page asked for early
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    transport = UnevenBatches(fake, fast={1001, 3001})
    async with ArchieClient(fake.services_url, auth, transport=transport) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(max_concurrency=4)
        ids: list[int] = []
        async with pages if ahead else nullcontext(pages):
            with anyio.move_on_after(1.0) as waited:  # batches 1001 and 3001 are in by now
                ids.extend((await anext(pages)).object_ids)
            assert waited.cancelled_caught
            async for page in pages:
                ids.extend(page.object_ids)
    assert ALL == ids


class IdListTampering(httpx.AsyncBaseTransport):
    """FakeArcGIS, with its id list or count changed on the way, *times* times."""

    def __init__(self, fake: FakeArcGIS, change: str, times: int = 1) -> None:
        self.inner = fake.transport()
        self.change = change
        self.times = times
        self.listings = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        asked = request.content.decode() + str(request.url)
        body = json.loads(await response.aread())
        if "returnIdsOnly=true" in asked:
            self.listings += 1
            if self.change == "cut" and self.times > 0:
                self.times -= 1
                body = {
                    **body,
                    "objectIds": body["objectIds"][:5000],
                    "exceededTransferLimit": True,
                }
        elif "returnCountOnly=true" in asked and self.change == "count" and self.times > 0:
            self.times -= 1
            body = {"count": body["count"] + 1}  # a feature added between list and count
        return httpx.Response(200, json=body)


async def test_an_id_list_the_server_cut_short_is_never_crawled(fake: FakeArcGIS) -> None:
    """returnIdsOnly answered with exceededTransferLimit: object_ids() raises, and a crawl
    goes by id ranges, instead of delivering the first 5,000 features as if they were all
    (without statistics, it raises)."""
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    transport = IdListTampering(fake, "cut", times=10)
    async with ArchieClient(fake.services_url, auth, transport=transport) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        with pytest.raises(IncompleteResultError, match="exceededTransferLimit"):
            await layer.object_ids()
        pages = layer.pages()
        assert ALL == [oid async for page in pages for oid in page.object_ids]
        assert pages.strategy == "ranges"
        fake.layer("Parcels").supports_statistics = False
        transport.times = 1
        with pytest.raises(IncompleteResultError, match="exceededTransferLimit"):
            await anext(FeatureLayer(client, "Parcels", 0).pages())


async def test_a_list_and_count_that_disagree_once_are_asked_again(fake: FakeArcGIS) -> None:
    """The layer changed between the id list and the count: the crawl lists again (once)
    and delivers every feature, instead of failing or trusting either answer."""
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    transport = IdListTampering(fake, "count", times=1)
    async with ArchieClient(fake.services_url, auth, transport=transport) as client:
        ids = [
            oid
            async for page in FeatureLayer(client, "Parcels", 0).pages()
            for oid in page.object_ids
        ]
    assert ALL == ids
    assert 2 == transport.listings


async def test_geojson_features_come_in_wgs84_from_a_projected_layer() -> None:
    """format='geojson' on a Web Mercator layer asks for outSR=4326 and gets degrees."""
    fake = FakeArcGIS()
    features = [
        {"attributes": {"OBJECTID": 1}, "geometry": {"x": 1113194.9079327357, "y": 0.0}},
        {"attributes": {"OBJECTID": 2}, "geometry": {"x": 0.0, "y": 1118889.9748579594}},
    ]
    fields = [{"name": "OBJECTID", "type": "esriFieldTypeOID"}]
    layer = fake.add_feature_layer("Mercator", features=features, fields=fields)
    layer.spatial_reference = {"wkid": 102100, "latestWkid": 3857}
    wire = Recording(fake.transport())
    async with ArchieClient(fake.services_url, transport=wire) as client:
        got = [f async for f in FeatureLayer(client, "Mercator", 0).features(format="geojson")]
    assert [[10.0, 0.0], [0.0, 10.0]] == [
        [round(c, 6) for c in f["geometry"]["coordinates"]] for f in got
    ]
    batches = [r for r in wire.requests if b"outSR" in r.content]
    assert batches
    assert all(b"outSR=4326" in r.content for r in batches)


class Recording(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("fault", ["no-pagination", "offset-ignored"])
async def test_offset_paging_breaks_where_the_crawl_does_not(fake: FakeArcGIS, fault: str) -> None:
    """The emulator's paging faults do what real servers do to offset paging (refused, or
    the first page again), while archibald's crawl, which never sends resultOffset, stays
    exact."""
    if fault == "no-pagination":
        fake.layer("Parcels").supports_pagination = False
    else:
        fake.faults.ignore_result_offset = True
    wire = Recording(fake.transport())
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    async with ArchieClient(fake.services_url, auth, transport=wire) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        assert ALL == [oid async for page in layer.pages() for oid in page.object_ids]
        assert not any(
            b"resultOffset" in r.content or "resultOffset" in str(r.url) for r in wire.requests
        )
        offset_page = {"where": "1=1", "resultOffset": 1000, "resultRecordCount": 1000}
        if fault == "no-pagination":
            with pytest.raises(ServiceError, match="Pagination is not supported"):
                await client.get_json(url=f"{layer.url}/query", params=offset_page)
        else:  # the second page by offset is the first page again
            body = await client.get_json(url=f"{layer.url}/query", params=offset_page)
            assert 1 == body["features"][0]["attributes"]["OBJECTID"]


async def test_query_passes_every_argument_to_the_crawl(fake: FakeArcGIS) -> None:
    """query(): the where, fields, geometry switch, spatial reference, page size and
    concurrency all reach the requests, and the result describes what came back."""
    wire = Recording(fake.transport())
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    async with ArchieClient(fake.services_url, auth, transport=wire) as client:
        result = await FeatureLayer(client, "Parcels", 0).query(
            "OBJECTID <= 5",
            out_fields=["NAME"],
            return_geometry=False,
            out_sr=3857,
            page_size=2,
            max_concurrency=1,
        )
    assert [1, 2, 3, 4, 5] == [f["attributes"]["OBJECTID"] for f in result.features]
    assert [{"NAME", "OBJECTID"}] == list({frozenset(f["attributes"]) for f in result.features})
    assert all("geometry" not in f for f in result.features)
    assert ["NAME", "OBJECTID"] == [f["name"] for f in result.fields]
    assert "OBJECTID" == result.object_id_field
    batches = [r for r in wire.requests if b"outFields" in r.content]
    assert 3 == len(batches)  # pages of two
    for request in batches:
        assert b"outSR=3857" in request.content
        assert b"returnGeometry=false" in request.content
        assert b"outFields=NAME%2COBJECTID" in request.content


async def test_query_keeps_what_the_answers_say_of_z_and_m() -> None:
    """hasZ/hasM of the answers reach the QueryResult and its GeoJSON."""
    fake = FakeArcGIS()
    fields = [{"name": "OBJECTID", "type": "esriFieldTypeOID"}]
    features = [{"attributes": {"OBJECTID": 1}, "geometry": {"paths": [[[0, 0, 9], [1, 1, 9]]]}}]
    fake.add_feature_layer("Lines", features=features, fields=fields, geometry="polyline")
    inner = fake.transport()

    async def with_m(request: httpx.Request) -> httpx.Response:
        response = await inner.handle_async_request(request)
        body = json.loads(await response.aread())
        if "features" in body:
            body["hasM"] = True  # the third value is M, not z
        return httpx.Response(200, json=body)

    transport = httpx.MockTransport(with_m)
    async with ArchieClient(fake.services_url, transport=transport) as client:
        result = await FeatureLayer(client, "Lines", 0).query()
    assert (None, True) == (result.has_z, result.has_m)
    line = result.to_geojson()["features"][0]["geometry"]
    assert [[0, 0], [1, 1]] == line["coordinates"]


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ("Parcels/FeatureServer/0", "Parcels/FeatureServer/0"),
        ("Folder/Parcels/FeatureServer/12/", "Folder/Parcels/FeatureServer/12"),
        ("Parcels/FeatureServer/3?f=pjson", "Parcels/FeatureServer/3"),
    ],
)
async def test_a_layer_from_its_url(fake: FakeArcGIS, tail: str, expected: str) -> None:
    """from_url reads the service path and the layer id, with or without a trailing slash
    or query string."""
    async with client_for(fake) as client:
        layer = FeatureLayer.from_url(client, f"  {fake.services_url}/{tail}  ")
    assert f"{fake.services_url}/{expected}" == layer.url
    assert int(expected.rsplit("/", 1)[1]) == layer.layer_id


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://other.example.com/arcgis/rest/services/Parcels/FeatureServer/0",
         "is not below the client's services root"),
        ("{root}/Parcels/MapServer/0", "is not a FeatureServer layer URL"),
        ("{root}/Parcels/FeatureServer", "is not a FeatureServer layer URL"),
        ("{root}/Parcels/FeatureServer/x", "is not a FeatureServer layer URL"),
        ("{root}/FeatureServer/0", "is not a FeatureServer layer URL"),
    ],
)  # fmt: skip
async def test_a_url_that_is_not_a_layer_of_this_client(
    fake: FakeArcGIS, url: str, message: str
) -> None:
    """from_url refuses other roots and URLs that do not end in <kind>/<id>."""
    async with client_for(fake) as client:
        with pytest.raises(InvalidServiceURL, match=message):
            FeatureLayer.from_url(client, url.replace("{root}", fake.services_url))


def test_a_page_as_geojson() -> None:
    """Page.to_geojson(): a FeatureCollection of Features with ids, z kept or M dropped as
    the page says."""
    from archibald import Page

    page = Page(
        features=[{"attributes": {"OID": 4}, "geometry": {"paths": [[[0, 0, 1], [1, 1, 2]]]}}],
        object_ids=[4],
        fields=[],
        geometry_type="esriGeometryPolyline",
        spatial_reference=None,
        object_id_field="OID",
        has_z=False,
        has_m=True,
    )
    assert {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": 4,
                "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
                "properties": {"OID": 4},
            }
        ],
    } == page.to_geojson()
    with_z = attrs.evolve(page, has_z=True, has_m=None)
    assert [[0, 0, 1], [1, 1, 2]] == with_z.to_geojson()["features"][0]["geometry"]["coordinates"]


async def test_a_services_layers_are_read_whatever_else_it_lists() -> None:
    """layers(): the ids of layers and tables, sorted, skipping entries that are not layers."""
    metadata = {"layers": [{"id": 2}, {"id": "x"}, "junk", {"id": 0}], "tables": [{"id": 1}]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=metadata))
    root = "https://gis.example.com/arcgis/rest/services"
    async with ArchieClient(root, transport=transport) as client:
        layers = await FeatureService(client, "Parcels").layers()
    assert [0, 1, 2] == [layer.layer_id for layer in layers]
    assert f"{root}/Parcels/FeatureServer/1" == layers[1].url


class Rewrite(httpx.AsyncBaseTransport):
    """FakeArcGIS, with the answers to the crawl's batches changed by *change*."""

    def __init__(self, fake: FakeArcGIS, change: Any) -> None:
        self.inner = fake.transport()
        self.change = change

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if b"outFields" not in request.content:  # not a batch: the id list, the count
            return response
        body = self.change(json.loads(await response.aread()))
        return httpx.Response(200, json=body)


def lower_case_ids(body: dict[str, Any]) -> dict[str, Any]:
    for feature in body.get("features", []):
        feature["attributes"]["objectid"] = feature["attributes"].pop("OBJECTID")
    return body


def junk_first(body: dict[str, Any]) -> dict[str, Any]:
    body["features"] = [None, "junk", {"attributes": None}, *body.get("features", [])]
    return body


@pytest.mark.parametrize("change", [lower_case_ids, junk_first])
async def test_odd_answers_still_make_an_exact_crawl(fake: FakeArcGIS, change: Any) -> None:
    """An object-id field in another letter case, junk among the features: every feature
    is still found by its id, once."""
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    async with ArchieClient(fake.services_url, auth, transport=Rewrite(fake, change)) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(max_concurrency=2)
        ids = [oid async for page in pages for oid in page.object_ids]
    assert ALL == ids


async def test_an_answer_without_features_names_the_ids_it_should_have_had(
    fake: FakeArcGIS,
) -> None:
    """A batch answered without a feature list: IncompleteResultError listing the batch's
    ids, as ranges."""
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    transport = Rewrite(fake, lambda body: {"objectIdFieldName": "OBJECTID"})
    async with ArchieClient(fake.services_url, auth, transport=transport) as client:
        with pytest.raises(IncompleteResultError) as info:
            await anext(FeatureLayer(client, "Parcels", 0).pages(max_concurrency=1))
    assert list(range(1, 1001)) == info.value.missing
    assert "answered a query without features" in str(info.value)
    assert "(object ids 1-1000 were asked for)" in str(info.value)


def test_id_ranges_in_messages() -> None:
    """Missing ids are shown as runs, five at most, then '...'."""
    from archibald.layers._plan import ranges as _ranges

    assert "1-3, 7, 9-12" == _ranges([9, 1, 2, 3, 7, 10, 11, 12])
    assert "1, 3, 5, 7, 9" == _ranges([1, 3, 5, 7, 9])
    assert "1, 3, 5, 7, 9, ..." == _ranges([1, 3, 5, 7, 9, 11])


async def test_features_passes_its_arguments_to_the_pages(fake: FakeArcGIS) -> None:
    """features(): page size, concurrency and order reach the crawl underneath."""
    async with client_for(fake) as client:
        stream = FeatureLayer(client, "Parcels", 0).features(
            "OBJECTID <= 10", page_size=3, max_concurrency=1, ordered=False
        )
        ids = [f["attributes"]["OBJECTID"] async for f in stream]
        pages_asked = fake.statistics().requests["query"]
    assert list(range(1, 11)) == ids
    assert 2 + 4 == pages_asked  # the id list and the count, then four pages of three


@pytest.mark.parametrize(
    ("answer", "ids"),
    [
        ([3, 1, 2, 2], [1, 2, 3]),
        ([1.0, 2.0], [1, 2]),
        (["5", " 6"], [5, 6]),
        ([2**63 - 1, -(2**63 - 1)], [-(2**63 - 1), 2**63 - 1]),
        (None, []),
        ([], []),
    ],
)
def test_an_id_list_is_read_whatever_its_numbers_look_like(answer: object, ids: list[int]) -> None:
    """returnIdsOnly answers: ids as ints, whole floats or digits, in any order, repeated."""
    from archibald.layers._plan import _id_array

    assert ids == list(_id_array(answer, "https://h/x/FeatureServer/0"))


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ([1, True], "an id that is not a 64-bit integer"),
        ([1, 2**63], "an id that is not a 64-bit integer"),
        ([-(2**63), 1], "an id that is not a 64-bit integer"),
        ([1.5], "an id that is not a 64-bit integer"),
        (["x"], "an id that is not a 64-bit integer"),
        ([None], "an id that is not a 64-bit integer"),
        ("1,2", "without a list of ids"),
    ],
)
def test_an_id_list_with_something_else_in_it_is_refused(answer: object, message: str) -> None:
    from archibald.layers._plan import _id_array

    with pytest.raises(IncompleteResultError, match=message):
        _id_array(answer, "https://h/x/FeatureServer/0")


# -- the first page, asked for while the ids are listed -------------------------------------


async def test_the_first_page_comes_with_the_id_list_not_after_it(fake: FakeArcGIS) -> None:
    """Queries take 1 s: the first page (asked for by id order alongside the id list and
    its count) arrives 1 s after the crawl begins, not 2 s; the whole crawl is exact."""
    fake.faults.latency["query"] = 1.0
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        await layer.info()
        started = anyio.current_time()
        async with layer.pages(max_concurrency=4) as pages:
            ids = list((await anext(pages)).object_ids)
            first = anyio.current_time() - started
            ids += [oid async for page in pages for oid in page.object_ids]
    assert 1.0 <= first < 1.5
    assert ALL == ids
    assert 1 + 1 + 11 == fake.statistics().requests["query"]  # the early page is the first


class Unordered(httpx.AsyncBaseTransport):
    """FakeArcGIS behind a proxy that drops orderByFields (some servers ignore it)."""

    def __init__(self, fake: FakeArcGIS) -> None:
        self.inner = fake.transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if b"orderByFields" in request.content:
            form = [(k, v) for k, v in parse_qsl(request.content.decode()) if k != "orderByFields"]
            kept = {k: v for k, v in request.headers.items() if not k.startswith("content-")}
            request = httpx.Request(request.method, request.url, data=dict(form), headers=kept)
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("page_size", [None, 300])
async def test_a_first_page_out_of_order_is_not_trusted(fake: FakeArcGIS, page_size: int) -> None:
    """A server that ignores orderByFields answers the early page with any ids: the crawl
    fetches its first batch as any other, and stays exact."""
    fake.faults.unordered = True
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    async with ArchieClient(fake.services_url, auth, transport=Unordered(fake)) as client:
        assert ALL == await crawl_ids(FeatureLayer(client, "Parcels", 0), page_size=page_size)
    # the ids, their count, the early page (not used), then every batch as usual
    assert 3 + math.ceil(10_001 / (page_size or 1000)) == fake.statistics().requests["query"]


@pytest.mark.parametrize(("order_by", "paging"), [(False, True), (True, False)])
async def test_no_early_page_where_the_layer_cannot_order_or_size_it(
    fake: FakeArcGIS, order_by: bool, paging: bool
) -> None:
    layer = fake.layer("Parcels")
    layer.supports_order_by, layer.supports_pagination = order_by, paging
    async with client_for(fake) as client:
        assert ALL == await crawl_ids(FeatureLayer(client, "Parcels", 0), page_size=400)
    # the ids, their count, and 26 batches of 400 (none asked for early)
    assert 1 + 1 + 26 == fake.statistics().requests["query"]


async def test_a_smaller_page_size_sizes_the_early_page(fake: FakeArcGIS) -> None:
    async with client_for(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(page_size=400)
        sizes = [len(page) async for page in pages]
    assert sizes == [400] * 25 + [1]
    assert 1 + 1 + 26 == fake.statistics().requests["query"]
