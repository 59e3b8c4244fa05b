"""Object-id partitions: planned from statistics, crawled exactly, and the fallback that
crawls a layer by ranges when it will not list every id at once."""

from __future__ import annotations

import itertools
import json
import logging
import math
import pickle
import random
from typing import Any

import pytest

from archibald import (
    ArchieClient,
    FeatureLayer,
    IncompleteResultError,
    InvalidParameterError,
    NoAuth,
    Partition,
    ServiceError,
    UserTokenAuth,
)
from archibald.layers._partitions import id_statistics, plan_ranges
from archibald.testing import FakeArcGIS

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "wonderland"


def sparse_features(oids: list[int]) -> list[dict[str, Any]]:
    return [
        {"attributes": {"OBJECTID": oid, "NAME": f"n{oid}"}, "geometry": {"x": 1.0, "y": 2.0}}
        for oid in oids
    ]


FIELDS = [
    {"name": "OBJECTID", "type": "esriFieldTypeOID", "alias": "OBJECTID"},
    {"name": "NAME", "type": "esriFieldTypeString", "alias": "NAME", "length": 20},
]


def open_client(fake: FakeArcGIS) -> ArchieClient:
    return ArchieClient(fake.services_url, NoAuth(), transport=fake.transport())


def secured_client(fake: FakeArcGIS) -> ArchieClient:
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    return ArchieClient(fake.services_url, auth, transport=fake.transport())


async def crawl(layer: FeatureLayer, **kwargs: Any) -> list[int]:
    ids: list[int] = []
    async with layer.pages(**kwargs) as pages:
        async for page in pages:
            ids.extend(page.object_ids)
    return ids


def check_plan(parts: list[Partition], ids: list[int], limit: int) -> None:
    """Contiguous ranges, each within the limit, that hold every id exactly once."""
    assert parts, "no partition"
    assert parts[0].first_id == min(ids)
    assert parts[-1].last_id == max(ids)
    for before, after in itertools.pairwise(parts):
        assert after.first_id == before.last_id + 1
    for part in parts:
        inside = [i for i in ids if part.first_id <= i <= part.last_id]
        assert part.count == len(inside) <= limit
    assert sum(p.count for p in parts) == len(ids)


async def test_partitions_of_a_layer_with_gaps_and_deletions_cover_every_id_once() -> None:
    rng = random.Random(7)
    oids = sorted(rng.sample(range(1, 200_000), 3_000))  # ids with gaps of every size
    fake = FakeArcGIS()
    layer = fake.add_feature_layer(
        "Gappy", features=sparse_features(oids), fields=FIELDS, max_record_count=250
    )
    deleted = oids[100:400] + oids[2000:2010]  # a whole stretch deleted, and a few more
    layer.apply_edits([], [], deleted, rollback_on_failure=True, rng=rng)
    remaining = [oid for oid in oids if oid not in set(deleted)]
    async with open_client(fake) as client:
        gappy = FeatureLayer(client, "Gappy", 0)
        fake.reset_statistics()
        parts = await gappy.partitions(size=400)
        planning = fake.statistics().requests["query"]
        check_plan(parts, remaining, 400)
        crawled = [oid for part in parts for oid in await crawl(gappy, partition=part)]
    assert crawled == remaining  # every feature once, in order
    assert planning < 4 * len(parts)  # statistics only: no id was listed to plan
    assert 2_690 // 400 <= len(parts)


async def test_a_single_huge_range_of_few_features() -> None:
    """Ids spread over 2**53: the midpoint cuts do not go on forever."""
    oids = [1, 2, 3, 2**40, 2**40 + 1, 2**53 - 1, 2**53]
    fake = FakeArcGIS()
    fake.add_feature_layer("Sparse", features=sparse_features(oids), fields=FIELDS)
    async with open_client(fake) as client:
        sparse = FeatureLayer(client, "Sparse", 0)
        whole = await sparse.partitions()
        assert [(p.first_id, p.last_id, p.count) for p in whole] == [(1, 2**53, 7)]
        singles = await sparse.partitions(size=1)
        check_plan(singles, oids, 1)
        assert [oid for p in singles for oid in await crawl(sparse, partition=p)] == oids


async def test_count_asks_for_at_least_that_many_even_shares() -> None:
    fake = FakeArcGIS()
    fake.add_feature_layer("Even", count=10_000, max_record_count=1000)
    async with open_client(fake) as client:
        even = FeatureLayer(client, "Even", 0)
        parts = await even.partitions(count=6)
        check_plan(parts, list(range(1, 10_001)), math.ceil(10_000 / 6))
        assert len(parts) >= 6
        both = await even.partitions(count=2, size=3_000)  # each rule holds
        check_plan(both, list(range(1, 10_001)), 3_000)
        assert len(await even.partitions(count=50_000)) == 10_000  # one feature each, at most
        assert await even.partitions("NAME = 'nobody'") == []


async def test_partitions_with_a_filter_crawl_only_what_it_matches() -> None:
    fake = FakeArcGIS()
    fake.add_feature_layer("Places", count=5_000, max_record_count=200)
    async with open_client(fake) as client:
        places = FeatureLayer(client, "Places", 0)
        where = "CATEGORY = 'park'"
        expected = await crawl(places, where=where)
        parts = await places.partitions(where, size=150)
        check_plan(parts, expected, 150)
        assert all(p.where == where for p in parts)
        crawled = []
        for part in parts:
            async with places.features(partition=part) as features:
                crawled += [f["attributes"]["OBJECTID"] async for f in features]
            stream = places.pages(where, partition=part)  # the same where is accepted
            async for _ in stream:
                pass
            assert (stream.strategy, stream.total, stream.delivered) == (
                "ranges",
                part.count,
                part.count,
            )
        assert crawled == expected
        collected = await places.query(partition=parts[0])
        assert len(collected.features) == parts[0].count


async def test_a_partition_travels_as_a_pickle_and_as_json_without_secrets() -> None:
    fake = FakeArcGIS()
    fake.add_user(USER, PASSWORD)
    fake.add_feature_layer("Secret", count=500, secured=True)
    async with secured_client(fake) as client:
        secret = FeatureLayer(client, "Secret", 0)
        parts = await secret.partitions(size=100)
        tokens = fake.issued_tokens()
        assert tokens
        for part in parts:
            for text in (repr(part), json.dumps(part.as_dict()), str(pickle.dumps(part))):
                assert PASSWORD not in text
                assert not any(t in text for t in tokens)
            assert pickle.loads(pickle.dumps(part)) == part
            assert Partition.from_dict(json.loads(json.dumps(part.as_dict()))) == part
        # A partition read back from JSON crawls as the original does.
        copy = Partition.from_dict(json.loads(json.dumps(parts[2].as_dict())))
        assert await crawl(secret, partition=copy) == list(range(copy.first_id, copy.last_id + 1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"first_id": 10, "last_id": 9}, "above its last_id"),
        ({"count": -1}, "count must be a whole number >= 0"),
        ({"first_id": 1.5}, "first_id must be a whole number"),
        ({"first_id": True}, "first_id must be a whole number"),
        ({"url": ""}, "url must be a non-empty string"),
        ({"where": None}, "where must be a non-empty string"),
    ],
)
def test_a_partition_refuses_what_cannot_be_one(change: dict[str, Any], message: str) -> None:
    good = {"url": "https://h/x", "where": "1=1", "id_field": "OID", "first_id": 1}
    with pytest.raises(InvalidParameterError, match=message):
        Partition.from_dict({**good, "last_id": 5, "count": 5, **change})


def test_a_partition_from_json_names_what_is_missing() -> None:
    with pytest.raises(InvalidParameterError, match="needs id_field, count"):
        Partition.from_dict({"url": "u", "where": "1=1", "first_id": 1, "last_id": 2})
    with pytest.raises(InvalidParameterError, match="must be a mapping"):
        Partition.from_dict([1, 2])  # type: ignore[arg-type]


async def test_a_partition_of_another_layer_or_filter_is_refused_before_any_query() -> None:
    fake = FakeArcGIS()
    fake.add_feature_layer("One", count=100)
    fake.add_feature_layer("Two", count=100)
    async with open_client(fake) as client:
        one, two = FeatureLayer(client, "One", 0), FeatureLayer(client, "Two", 0)
        part = (await one.partitions())[0]
        fake.reset_statistics()
        with pytest.raises(InvalidParameterError, match=r"belongs to .*One.*not to .*Two"):
            await crawl(two, partition=part)
        with pytest.raises(InvalidParameterError, match="planned for where='1=1'"):
            one.pages("NAME = 'x'", partition=part)
        with pytest.raises(InvalidParameterError, match="partition must be a Partition"):
            one.pages(partition=part.as_dict())  # type: ignore[arg-type]
        renamed = Partition.from_dict({**part.as_dict(), "id_field": "FID"})
        with pytest.raises(InvalidParameterError, match=r"object-id field .* is OBJECTID"):
            await crawl(one, partition=renamed)
        for bad in ({"count": 0}, {"size": -5}, {"size": 2.0}, {"count": "3"}):
            with pytest.raises(InvalidParameterError, match="whole number >= 1"):
                await one.partitions(**bad)
        assert fake.statistics().requests.get("query", 0) == 0


async def test_a_layer_without_statistics_is_partitioned_from_its_id_list() -> None:
    oids = [3, 4, 9, 10, 11, 50, 51, 52, 90, 1000]
    fake = FakeArcGIS()
    layer = fake.add_feature_layer("Old", features=sparse_features(oids), fields=FIELDS)
    layer.supports_statistics = False
    async with open_client(fake) as client:
        old = FeatureLayer(client, "Old", 0)
        parts = await old.partitions(size=3)
        assert [(p.first_id, p.last_id, p.count) for p in parts] == [
            (3, 9, 3),
            (10, 50, 3),
            (51, 90, 3),
            (91, 1000, 1),
        ]
        assert [oid for p in parts for oid in await crawl(old, partition=p)] == oids
        assert await old.partitions("NAME = 'nobody'") == []


async def test_a_partition_crawl_delivers_what_matches_when_it_runs() -> None:
    """Planned, then edited: the crawl is exact for the layer as it is, checked by count."""
    rng = random.Random(3)
    fake = FakeArcGIS()
    layer = fake.add_feature_layer("Live", count=1_000, max_record_count=100)
    async with open_client(fake) as client:
        live = FeatureLayer(client, "Live", 0)
        parts = await live.partitions(size=500)
        layer.apply_edits([], [], [5, 6, 700], rollback_on_failure=True, rng=rng)
        crawled = [oid for p in parts for oid in await crawl(live, partition=p)]
    assert crawled == [oid for oid in range(1, 1001) if oid not in (5, 6, 700)]


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"archibald_count": 3, "archibald_min": 4, "archibald_max": 9}, (4, 9, 3)),
        # Upper-case names (some databases), and the ids typed as doubles.
        ({"ARCHIBALD_COUNT": 3.0, "ARCHIBALD_MIN": 4.0, "ARCHIBALD_MAX": 9.0}, (4, 9, 3)),
        ({"archibald_count": 0, "archibald_min": None, "archibald_max": None}, None),
        ({"archibald_count": None, "archibald_min": None, "archibald_max": None}, None),
    ],
)
async def test_object_id_statistics_are_read_as_servers_write_them(
    attributes: dict[str, Any], expected: tuple[int, int, int] | None
) -> None:
    async def query(params: Any) -> dict[str, Any]:
        return {"features": [{"attributes": attributes}]}

    assert await id_statistics(query, "https://h/x", "OBJECTID", "1=1") == expected


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"features": [None]},
        {"features": [{"attributes": {"archibald_count": 3, "archibald_min": 9}}]},
        {
            "features": [
                {"attributes": {"archibald_count": 2, "archibald_min": 9, "archibald_max": 4}}
            ]
        },
    ],
)
async def test_object_id_statistics_that_make_no_sense_are_refused(body: dict[str, Any]) -> None:
    async def query(params: Any) -> dict[str, Any]:
        return body

    with pytest.raises(IncompleteResultError, match="statistics"):
        await id_statistics(query, "https://h/x", "OBJECTID", "1=1")


# -- the fallback: a layer that will not list every id --------------------------------------


@pytest.mark.parametrize("failure", ["error", "timeout", "truncate"])
async def test_a_layer_that_will_not_list_its_ids_is_crawled_by_ranges(
    failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeArcGIS()
    fake.add_user(USER, PASSWORD)
    layer = fake.add_feature_layer("Huge", count=12_000, max_record_count=1000, secured=True)
    layer.id_list_limit = 2_500
    layer.id_list_failure = failure
    async with secured_client(fake) as client:
        huge = FeatureLayer(client, "Huge", 0)
        with caplog.at_level(logging.INFO, logger="archibald"):
            async with huge.features() as features:
                ids = [f["attributes"]["OBJECTID"] async for f in features]
                assert features.pages.strategy == "ranges"
                assert features.total == 12_000
    assert ids == list(range(1, 12_001))
    assert "crawling by object-id ranges instead" in caplog.text
    assert fake.statistics().faults_injected >= 2  # the whole list, and ranges too big


async def test_the_fallback_keeps_the_filter() -> None:
    fake = FakeArcGIS()
    layer = fake.add_feature_layer("Huge", count=8_000, max_record_count=500)
    async with open_client(fake) as client:
        huge = FeatureLayer(client, "Huge", 0)
        expected = await crawl(huge, where="CATEGORY = 'museum'")
        layer.id_list_limit = 300
        assert await crawl(huge, where="CATEGORY = 'museum'") == expected


async def test_a_partition_bigger_than_the_server_lists_is_cut_further() -> None:
    fake = FakeArcGIS()
    layer = fake.add_feature_layer("Capped", count=3_000, max_record_count=200)
    async with open_client(fake) as client:
        capped = FeatureLayer(client, "Capped", 0)
        [part] = await capped.partitions(size=5_000)
        layer.id_list_limit = 700
        layer.id_list_failure = "truncate"
        async with capped.pages(partition=part) as pages:
            ids = [oid async for page in pages for oid in page.object_ids]
        assert ids == list(range(1, 3_001))


async def test_without_statistics_a_refused_list_is_the_error_it_was() -> None:
    fake = FakeArcGIS()
    layer = fake.add_feature_layer("Old", count=3_000)
    layer.supports_statistics = False
    layer.id_list_limit = 1_000
    async with open_client(fake) as client:
        with pytest.raises(ServiceError, match="Error performing query"):
            await crawl(FeatureLayer(client, "Old", 0))


async def test_a_bad_filter_is_not_taken_for_a_list_too_big(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeArcGIS()
    fake.add_feature_layer("Any", count=100)
    async with open_client(fake) as client:
        with pytest.raises(ServiceError, match="'where' parameter is invalid"):
            await crawl(FeatureLayer(client, "Any", 0), where="NO_SUCH_FIELD = 1")
    assert "ranges" not in caplog.text


async def test_count_is_met_when_the_total_does_not_divide() -> None:
    """Ten features in at least six partitions: shares rounded down, never too few."""
    fake = FakeArcGIS()
    layer = fake.add_feature_layer("Ten", count=10)
    async with open_client(fake) as client:
        ten = FeatureLayer(client, "Ten", 0)
        assert len(await ten.partitions(count=6)) >= 6
        layer.supports_statistics = False  # from the id list, too
        assert len(await FeatureLayer(client, "Ten", 0).partitions(count=6)) >= 6


async def test_statistics_that_ignore_the_range_are_refused_not_followed_forever() -> None:
    async def ignoring(where: str) -> tuple[int, int, int]:
        return (1, 1_000, 1_000)  # whatever range was asked for

    with pytest.raises(IncompleteResultError, match="does not apply the range"):
        await plan_ranges(ignoring, "1=1", "OBJECTID", lambda total: 10)


async def test_no_row_of_statistics_means_no_feature() -> None:
    async def query(params: Any) -> dict[str, Any]:
        return {"fields": [], "features": []}

    assert await id_statistics(query, "https://h/x", "OBJECTID", "1=1") is None
