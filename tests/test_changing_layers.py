"""Features added, deleted and updated while a crawl runs: each promise of "Features
changing during a crawl" (docs/layers.md), one test each, by id list and by ranges."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

from archibald import ArchieClient, FeatureLayer, IncompleteResultError, PageStream
from archibald.testing import FakeArcGIS, FakeLayer

pytestmark = pytest.mark.anyio

FIELDS = [
    {"name": "OBJECTID", "type": "esriFieldTypeOID", "alias": "OBJECTID"},
    {"name": "VALUE", "type": "esriFieldTypeInteger", "alias": "VALUE"},
]
EVEN = list(range(2, 41, 2))  # 20 features with gaps between their ids


def layer_of(fake: FakeArcGIS, ids: list[int]) -> FakeLayer:
    return fake.add_feature_layer(
        "Parcels",
        features=[{"attributes": {"OBJECTID": i, "VALUE": 0}} for i in ids],
        fields=FIELDS,
        geometry=None,
    )


def client_of(fake: FakeArcGIS) -> ArchieClient:
    return ArchieClient(fake.services_url, transport=fake.transport())


def delete(layer: FakeLayer, *ids: int) -> None:
    layer.apply_edits([], [], list(ids), rollback_on_failure=True, rng=random.Random(0))


def update(layer: FakeLayer, oid: int, value: int) -> None:
    rows = [{"attributes": {"OBJECTID": oid, "VALUE": value}}]
    layer.apply_edits([], rows, [], rollback_on_failure=True, rng=random.Random(0))


def append(layer: FakeLayer) -> None:
    """A feature added as applyEdits adds one: the next object id, above every other."""
    row = {"attributes": {"VALUE": 0}}
    layer.apply_edits([row], [], [], rollback_on_failure=True, rng=random.Random(0))


async def values_after_first_page(
    pages: PageStream, edit: Any, *, wait: bool = False
) -> dict[int, int]:
    """Crawl *pages*, making *edit* once the first page is in: {object id: VALUE}."""
    got: dict[int, int] = {}
    async for page in pages:
        if not got:
            if wait:  # let the fetches ahead finish first (virtual time)
                await anyio.sleep(1)
            edit()
        got.update((f["attributes"]["OBJECTID"], f["attributes"]["VALUE"]) for f in page.features)
    return got


async def collect(pages: PageStream, delivered: list[int], edit: Any) -> None:
    """Crawl *pages* into *delivered*, making *edit* once the first page is in."""
    async for page in pages:
        if not delivered:
            edit()
        delivered.extend(page.object_ids)


async def test_features_added_after_the_snapshot_are_not_delivered() -> None:
    """By id list: a feature added into a gap of a later batch, or after the last, is not
    delivered; the crawl delivers its snapshot and ends without an error."""
    fake = FakeArcGIS()
    data = layer_of(fake, EVEN)

    def edit() -> None:
        data.load([{"attributes": {"OBJECTID": 23, "VALUE": 9}}])  # inside the 3rd batch
        append(data)  # 41

    async with client_of(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(page_size=5, max_concurrency=1)
        got = await values_after_first_page(pages, edit)
    assert EVEN == sorted(got)
    assert "ids" == pages.strategy
    assert {23, 41} <= set(data.object_ids)


async def test_features_deleted_before_their_batch_is_fetched_are_named_missing() -> None:
    """By id list: deleted ids are IncompleteResultError.missing; the pages before are
    delivered whole, and the crawl stops at the batch that lost them."""
    fake = FakeArcGIS()
    data = layer_of(fake, EVEN)
    async with client_of(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(page_size=5, max_concurrency=1)
        delivered: list[int] = []
        with pytest.raises(IncompleteResultError) as info:  # two of the 2nd batch (12-20)
            await collect(pages, delivered, lambda: delete(data, 14, 16))
    assert [2, 4, 6, 8, 10] == delivered
    assert [14, 16] == info.value.missing
    assert "14, 16" in str(info.value)


async def test_features_deleted_after_their_batch_was_fetched_are_delivered() -> None:
    """A batch fetched ahead before the deletion is delivered as fetched; no error."""
    fake = FakeArcGIS()
    data = layer_of(fake, EVEN)
    async with client_of(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(page_size=5, max_concurrency=3)
        async with pages:
            got = await values_after_first_page(pages, lambda: delete(data, 14), wait=True)
    assert EVEN == sorted(got)
    assert 14 not in data.object_ids


async def test_a_feature_updated_during_the_crawl_comes_once_as_its_batch_found_it() -> None:
    """Updated before its batch is fetched: delivered once, in its new version, even when
    the update takes it out of the filter (the snapshot decided it belongs)."""
    fake = FakeArcGIS()
    data = layer_of(fake, EVEN)

    def edit() -> None:
        update(data, 14, 1)  # no longer VALUE = 0
        update(data, 30, 0)  # unchanged value: delivered as before

    async with client_of(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(
            "VALUE = 0", page_size=5, max_concurrency=1
        )
        got = await values_after_first_page(pages, edit)
    assert EVEN == sorted(got)
    assert 1 == got[14]
    assert 0 == got[30]


async def test_a_feature_updated_into_the_filter_after_the_snapshot_is_not_delivered() -> None:
    """Not in the snapshot, not delivered: an update that makes a feature match is a
    feature added, for the crawl."""
    fake = FakeArcGIS()
    data = layer_of(fake, EVEN)
    update(data, 16, 1)
    async with client_of(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(
            "VALUE = 0", page_size=5, max_concurrency=1
        )
        got = await values_after_first_page(pages, lambda: update(data, 16, 0))
    assert [oid for oid in EVEN if oid != 16] == sorted(got)


def ranged(fake: FakeArcGIS) -> FakeLayer:
    """EVEN, listed 5 ids at a time: by the ranges 2-11, 12-21, 22-31, 32-40, each
    listed when the crawl reaches it (whole listing and halves of 10 are refused)."""
    data = layer_of(fake, EVEN)
    data.id_list_limit = 8
    return data


async def test_by_ranges_a_range_listed_later_sees_the_edits_made_before() -> None:
    """By ranges: a feature added into a range not listed yet is delivered, one deleted
    from it is neither delivered nor named missing; the crawl completes."""
    fake = FakeArcGIS()
    data = ranged(fake)

    def edit() -> None:
        data.load([{"attributes": {"OBJECTID": 33, "VALUE": 0}}])
        delete(data, 36)

    async with client_of(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(page_size=5, max_concurrency=1)
        got = await values_after_first_page(pages, edit)
    assert "ranges" == pages.strategy
    assert sorted([*(oid for oid in EVEN if oid != 36), 33]) == sorted(got)


async def test_by_ranges_a_listed_range_is_a_snapshot_as_an_id_list_is() -> None:
    """By ranges: once a range is listed, a deletion in it is named missing and an id
    added into it is not delivered, as with one id list."""
    fake = FakeArcGIS()
    data = ranged(fake)
    async with client_of(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(page_size=3, max_concurrency=1)
        delivered: list[int] = []

        def edit() -> None:  # once 2, 4, 6 of the range 2-11, listed whole, are in
            data.load([{"attributes": {"OBJECTID": 9, "VALUE": 0}}])
            delete(data, 10)

        with pytest.raises(IncompleteResultError) as info:
            await collect(pages, delivered, edit)
    assert "ranges" == pages.strategy
    assert [2, 4, 6] == delivered
    assert [10] == info.value.missing


async def test_by_ranges_features_added_above_the_planned_ids_are_not_delivered() -> None:
    """The ranges end at the highest id when they were planned: a feature appended
    during the crawl (applyEdits gives it the next id) is in none of them."""
    fake = FakeArcGIS()
    data = ranged(fake)
    async with client_of(fake) as client:
        pages = FeatureLayer(client, "Parcels", 0).pages(page_size=5, max_concurrency=1)
        got = await values_after_first_page(pages, lambda: append(data))
    assert EVEN == sorted(got)
    assert 41 in data.object_ids


async def test_a_partition_holds_what_its_range_holds_when_it_is_crawled() -> None:
    """A partition planned before edits delivers its range as it is when crawled:
    features added into it included, deleted ones left out, none reported missing."""
    fake = FakeArcGIS()
    data = layer_of(fake, EVEN)
    async with client_of(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        _, second = await layer.partitions(count=2)
        data.load([{"attributes": {"OBJECTID": 25, "VALUE": 0}}])
        delete(data, 24)
        append(data)  # 41: above the last partition
        got = [oid async for page in layer.pages(partition=second) for oid in page.object_ids]
    assert (21, 40) == (second.first_id, second.last_id)  # contiguous with the first
    assert [22, 25, 26, 28, 30, 32, 34, 36, 38, 40] == got
    assert 10 == second.count  # counted when planned
