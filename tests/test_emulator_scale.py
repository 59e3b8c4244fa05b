"""FakeArcGIS at scale: id lists refused above a size, object-id statistics from the ids,
and lazily generated layers of millions of features."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tracemalloc
from typing import Any

import httpx
import pytest

from archibald.testing import GENERATED_FIELDS, FakeArcGIS, FakeLayer, generate_features

pytestmark = pytest.mark.anyio

MILLIONS = 5_000_000


async def query(fake: FakeArcGIS, service: str, **params: Any) -> httpx.Response:
    """One query of layer 0 of *service*, through a real httpx client on the emulator."""
    params.setdefault("f", "json")
    url = f"{fake.services_url}/{service}/FeatureServer/0/query"
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        return await http.get(url, params=params)


async def body(fake: FakeArcGIS, service: str, **params: Any) -> Any:
    response = await query(fake, service, **params)
    assert 200 == response.status_code
    return response.json()


def stats_spec(field: str, *kinds: str) -> str:
    return json.dumps(
        [{"statisticType": k, "onStatisticField": field, "outStatisticFieldName": k} for k in kinds]
    )


# -- id lists refused above a size -------------------------------------------------------


@pytest.fixture
def limited() -> FakeArcGIS:
    """A 1,000-feature layer whose id lists stop at 100 ids."""
    fake = FakeArcGIS()
    layer = fake.add_feature_layer("Limited", count=1000)
    layer.id_list_limit = 100
    return fake


async def test_an_id_list_over_the_limit_is_a_query_error(limited: FakeArcGIS) -> None:
    """ "error": HTTP 200 and the envelope ArcGIS Server sends when its database fails."""
    response = await query(limited, "Limited", where="1=1", returnIdsOnly="true")
    expected = {
        "error": {"code": 500, "message": "Error performing query operation", "details": []}
    }
    assert (200, expected) == (response.status_code, response.json())
    assert 1 == limited.statistics().faults_injected


async def test_an_id_list_over_the_limit_times_out_at_the_gateway(limited: FakeArcGIS) -> None:
    """ "timeout": HTTP 504 with a small HTML page, as a web adaptor gives up."""
    limited.layer("Limited").id_list_failure = "timeout"
    response = await query(limited, "Limited", where="1=1", returnIdsOnly="true")
    assert 504 == response.status_code
    assert response.headers["content-type"].startswith("text/html")
    assert "504 Gateway Time-out" in response.text
    assert 1 == limited.statistics().faults_injected


async def test_an_id_list_over_the_limit_is_cut(limited: FakeArcGIS) -> None:
    """ "truncate": the lowest ids up to the limit, with exceededTransferLimit."""
    limited.layer("Limited").id_list_failure = "truncate"
    answer = await body(limited, "Limited", where="OBJECTID > 500", returnIdsOnly="true")
    expected = {
        "objectIdFieldName": "OBJECTID",
        "objectIds": list(range(501, 601)),
        "exceededTransferLimit": True,
    }
    assert expected == answer
    assert 1 == limited.statistics().faults_injected


async def test_a_cut_id_list_keeps_the_lowest_ids_whatever_the_order(limited: FakeArcGIS) -> None:
    """Cut from an ordered or scrambled list, the ids kept are still the lowest, ascending."""
    limited.layer("Limited").id_list_failure = "truncate"
    ordered = await body(
        limited, "Limited", where="1=1", orderByFields="POPULATION DESC", returnIdsOnly="true"
    )
    limited.faults.unordered = True
    scrambled = await body(limited, "Limited", where="1=1", returnIdsOnly="true")
    assert list(range(1, 101)) == ordered["objectIds"] == scrambled["objectIds"]


async def test_only_id_lists_over_the_limit_are_refused(limited: FakeArcGIS) -> None:
    """At the limit, and for counts, statistics and features, nothing changes."""
    at_limit = await body(limited, "Limited", where="OBJECTID <= 100", returnIdsOnly="true")
    count = await body(limited, "Limited", where="1=1", returnCountOnly="true")
    stats = await body(
        limited, "Limited", where="1=1", outStatistics=stats_spec("OBJECTID", "count")
    )
    page = await body(limited, "Limited", where="1=1", outFields="OBJECTID")
    assert {"objectIdFieldName": "OBJECTID", "objectIds": list(range(1, 101))} == at_limit
    assert {"count": 1000} == count
    assert 1000 == stats["features"][0]["attributes"]["count"]
    assert 1000 == len(page["features"])
    assert 0 == limited.statistics().faults_injected


def test_the_id_list_switches_check_their_values() -> None:
    """A negative limit or an unknown failure is refused when set."""
    layer = FakeArcGIS().add_feature_layer("Checked", count=1)
    with pytest.raises(ValueError, match="id_list_failure"):
        layer.id_list_failure = "explode"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="id_list_limit"):
        layer.id_list_limit = -1


# -- statistics of the object id ---------------------------------------------------------


@pytest.fixture
def twinned() -> FakeArcGIS:
    """Features whose COPY field holds their object id: its statistics read every row."""
    features = generate_features(1000, geometry=None, seed=3, first_oid=11)
    for feature in features:
        feature["attributes"]["COPY"] = feature["attributes"]["OBJECTID"]
    fields = [*GENERATED_FIELDS, {"name": "COPY", "type": "esriFieldTypeInteger", "alias": "C"}]
    fake = FakeArcGIS()
    fake.add_feature_layer("Twins", features=features, fields=fields, geometry=None)
    return fake


@pytest.mark.parametrize(
    ("where", "extra"),
    [
        ("1=1", {}),
        ("CATEGORY = 'park'", {}),
        ("OBJECTID >= 100 AND OBJECTID <= 500", {}),
        ("(CATEGORY = 'park') AND OBJECTID >= 100 AND OBJECTID <= 500", {}),
        ("(POPULATION < 50000) AND OBJECTID >= 100 AND OBJECTID <= 500", {}),
        ("OBJECTID >= 5000 AND OBJECTID <= 6000", {}),
        ("1=1", {"objectIds": "900,12,14,13,5000"}),
        ("CATEGORY IS NULL", {"orderByFields": "POPULATION DESC"}),
        ("OBJECTID >= 100 AND OBJECTID <= 500", {"orderByFields": "OBJECTID DESC"}),
    ],
)
async def test_object_id_statistics_equal_those_read_from_rows(
    twinned: FakeArcGIS, where: str, extra: dict[str, str]
) -> None:
    """min, max and count of OBJECTID, answered from the ids, equal those of COPY."""
    kinds = ("min", "max", "count")
    fast = await body(twinned, "Twins", where=where, outStatistics=stats_spec("OBJECTID", *kinds))
    slow = await body(twinned, "Twins", where=where, outStatistics=stats_spec("COPY", *kinds))
    assert slow["features"] == fast["features"]
    assert ["esriFieldTypeOID", "esriFieldTypeOID", "esriFieldTypeInteger"] == [
        f["type"] for f in fast["fields"]
    ]


async def test_object_id_statistics_of_a_scrambled_order(twinned: FakeArcGIS) -> None:
    """With the unordered fault, min and max are still the least and greatest ids."""
    twinned.faults.unordered = True
    spec = stats_spec("OBJECTID", "min", "max", "count")
    answer = await body(twinned, "Twins", where="CATEGORY = 'school'", outStatistics=spec)
    twinned.faults.unordered = False
    ids = await body(twinned, "Twins", where="CATEGORY = 'school'", returnIdsOnly="true")
    expected = {"min": min(ids["objectIds"]), "max": max(ids["objectIds"])}
    expected["count"] = len(ids["objectIds"])
    assert [{"attributes": expected}] == answer["features"]


# -- lazily generated layers -------------------------------------------------------------


async def test_a_lazy_layer_of_millions_is_small_and_quick() -> None:
    """5,000,000 lazy features: a few hundred kB to create, and range queries answered
    without a list of every id (the whole test stays under 30 MB)."""
    tracemalloc.start()
    try:
        fake = FakeArcGIS()
        layer = fake.add_feature_layer("Big", count=MILLIONS, lazy=True, max_record_count=2000)
        created = tracemalloc.get_traced_memory()[1]
        middle = "OBJECTID >= 2500001 AND OBJECTID <= 2502000"
        count = await body(fake, "Big", where="1=1", returnCountOnly="true")
        page = await body(fake, "Big", where=middle, outFields="*")
        spec = stats_spec("OBJECTID", "min", "max", "count")
        whole = await body(fake, "Big", where="1=1", outStatistics=spec)
        ranged = await body(
            fake, "Big", where="OBJECTID >= 10 AND OBJECTID <= 500", outStatistics=spec
        )
        ids = await body(
            fake, "Big", where="OBJECTID >= 4999990 AND OBJECTID <= 6000000", returnIdsOnly="true"
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (MILLIONS, True) == (len(layer), layer.lazy)
    assert {"count": MILLIONS} == count
    ids_on_page = [f["attributes"]["OBJECTID"] for f in page["features"]]
    assert (list(range(2500001, 2502001)), False) == (ids_on_page, page["exceededTransferLimit"])
    assert {"min": 1, "max": MILLIONS, "count": MILLIONS} == whole["features"][0]["attributes"]
    assert {"min": 10, "max": 500, "count": 491} == ranged["features"][0]["attributes"]
    assert list(range(4999990, MILLIONS + 1)) == ids["objectIds"]
    assert created < 500_000
    assert peak < 30_000_000


async def test_serving_a_lazy_layer_keeps_memory_bounded() -> None:
    """Page after page of a lazy layer, the emulator keeps a few pages' worth, no more:
    after eight pages it holds no more than after four."""
    fake = FakeArcGIS()
    fake.add_feature_layer("Big", count=MILLIONS, lazy=True, geometry="polygon")
    fake.layer("Big").max_record_count = 500

    async def serve(first_page: int) -> int:
        """Serve four pages; the memory still held afterwards."""
        for n in range(first_page, first_page + 4):
            response = await query(fake, "Big", where="1=1", outFields="*", resultOffset=n * 500)
            assert 200 == response.status_code
            del response
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        after_four = await serve(0)
        after_eight = await serve(4000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert after_eight < after_four + 300_000  # four more pages would hold over 1 MB
    assert peak < 20_000_000


async def test_a_lazy_id_list_over_the_limit_is_refused_from_its_length() -> None:
    """The limit applies to lazy layers, before millions of ids become a list."""
    fake = FakeArcGIS()
    layer = fake.add_feature_layer("Big", count=MILLIONS, lazy=True)
    layer.id_list_limit = 1000
    refused = await body(fake, "Big", where="1=1", returnIdsOnly="true")
    layer.id_list_failure = "truncate"
    cut = await body(
        fake, "Big", where="OBJECTID >= 101 AND OBJECTID <= 9000000", returnIdsOnly="true"
    )
    assert 500 == refused["error"]["code"]
    assert (list(range(101, 1101)), True) == (cut["objectIds"], cut["exceededTransferLimit"])
    assert 2 == fake.statistics().faults_injected


async def test_lazy_layers_are_the_same_for_the_same_seed() -> None:
    """Two emulators, one seed: the same features, whichever were read first."""
    one, two, other = FakeArcGIS(seed=7), FakeArcGIS(seed=7), FakeArcGIS(seed=8)
    for fake in (one, two, other):
        fake.add_feature_layer("Big", count=MILLIONS, lazy=True, geometry="polygon")
    where = "OBJECTID >= 3000001 AND OBJECTID <= 3000100"
    await body(two, "Big", where="OBJECTID >= 3000050 AND OBJECTID <= 3000060", outFields="*")
    first = await body(one, "Big", where=where, outFields="*")
    second = await body(two, "Big", where=where, outFields="*")
    third = await body(other, "Big", where=where, outFields="*")
    assert first == second
    assert first["features"] != third["features"]


def test_lazy_features_are_the_same_in_another_process() -> None:
    """A feature depends on the seed and its id only, not on the process's hash seed."""
    script = (
        "import json; from archibald.testing import FakeArcGIS; "
        "layer = FakeArcGIS(seed=5).add_feature_layer('L', count=50, lazy=True); "
        "print(json.dumps(layer.features))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    ).stdout
    here = FakeArcGIS(seed=5).add_feature_layer("L", count=50, lazy=True)
    assert here.features == json.loads(output)


async def test_lazy_features_have_the_generated_fields_and_shapes() -> None:
    """Every generated field; a hole in every tenth polygon, two parts every fifteenth."""
    fake = FakeArcGIS()
    fake.add_feature_layer("Areas", count=100, lazy=True, geometry="polygon", first_oid=1)
    fake.add_feature_layer("Lines", count=100, lazy=True, geometry="polyline")
    areas = await body(fake, "Areas", where="1=1", outFields="*")
    lines = await body(fake, "Lines", where="1=1", outFields="*")
    rings = {f["attributes"]["OBJECTID"]: len(f["geometry"]["rings"]) for f in areas["features"]}
    paths = {f["attributes"]["OBJECTID"]: len(f["geometry"]["paths"]) for f in lines["features"]}
    assert [f["name"] for f in GENERATED_FIELDS] == list(areas["features"][0]["attributes"])
    assert (1, 2, 2, 3) == (rings[7], rings[10], rings[15], rings[30])
    assert (1, 2, 1) == (paths[10], paths[15], paths[16])


async def test_a_lazy_extent_holds_every_geometry() -> None:
    """The extent comes from the box features are generated in, and holds them all."""
    fake = FakeArcGIS()
    fake.add_feature_layer("Areas", count=MILLIONS, lazy=True, geometry="polygon")
    async with fake.client() as http:
        metadata = (await http.get(f"{fake.services_url}/Areas/FeatureServer/0?f=json")).json()
    extent = metadata["extent"]
    page = await body(fake, "Areas", where="OBJECTID >= 1 AND OBJECTID <= 1000")
    points = [p for f in page["features"] for ring in f["geometry"]["rings"] for p in ring]
    assert all(extent["xmin"] <= x <= extent["xmax"] for x, _ in points)
    assert all(extent["ymin"] <= y <= extent["ymax"] for _, y in points)


async def test_where_clauses_on_a_lazy_layer() -> None:
    """A where over an OID range tests only the range's features, with the same result
    as testing them one by one."""
    fake = FakeArcGIS()
    fake.add_feature_layer("Big", count=MILLIONS, lazy=True)
    in_range = "OBJECTID >= 1000001 AND OBJECTID <= 1001000"
    everything = await body(fake, "Big", where=in_range, outFields="*")
    parks = await body(
        fake, "Big", where=f"(CATEGORY = 'park') AND {in_range}", returnIdsOnly="true"
    )
    count = await body(
        fake, "Big", where=f"(CATEGORY = 'park') AND {in_range}", returnCountOnly="true"
    )
    expected = [
        f["attributes"]["OBJECTID"]
        for f in everything["features"]
        if f["attributes"]["CATEGORY"] == "park"
    ]
    assert 0 < len(expected) < 1000
    assert expected == parks["objectIds"]
    assert {"count": len(expected)} == count


async def test_object_ids_and_order_on_a_lazy_layer() -> None:
    """objectIds picks features (unknown ids ignored); OBJECTID DESC reverses a range."""
    fake = FakeArcGIS()
    fake.add_feature_layer("Big", count=MILLIONS, lazy=True, first_oid=0)
    picked = await body(fake, "Big", objectIds="4999999,0,5000000,17")
    backwards = await body(
        fake,
        "Big",
        where="OBJECTID >= 10 AND OBJECTID <= 14",
        orderByFields="OBJECTID DESC",
        returnIdsOnly="true",
    )
    assert [0, 17, 4999999] == [f["attributes"]["OBJECTID"] for f in picked["features"]]
    assert [14, 13, 12, 11, 10] == backwards["objectIds"]


async def test_a_small_lazy_layer_in_full() -> None:
    """features, object_ids and len() of a lazy layer agree with its queries."""
    fake = FakeArcGIS()
    layer = fake.add_feature_layer("Small", count=20, lazy=True, first_oid=1001)
    served = await body(fake, "Small", where="1=1", outFields="*")
    ids = await body(fake, "Small", where="1=1", returnIdsOnly="true")
    assert list(range(1001, 1021)) == layer.object_ids == ids["objectIds"]
    assert 20 == len(layer)
    assert served["features"] == layer.features


async def test_a_lazy_layer_refuses_edits() -> None:
    """applyEdits on a lazy layer is an error that says how to get an editable layer."""
    fake = FakeArcGIS()
    fake.add_feature_layer("Big", count=MILLIONS, lazy=True)
    async with fake.client() as http:
        response = await http.post(
            f"{fake.services_url}/Big/FeatureServer/0/applyEdits",
            data={"f": "json", "deletes": "1"},
        )
    error = response.json()["error"]
    assert 400 == error["code"]
    assert "without lazy=True" in error["details"][0]


def test_lazy_layers_need_a_count() -> None:
    """lazy=True generates: features or fields of your own are refused, as is loading."""
    fake = FakeArcGIS()
    with pytest.raises(ValueError, match="lazy=True"):
        fake.add_feature_layer("Mine", features=[], lazy=True)
    with pytest.raises(ValueError, match="lazy=True"):
        fake.add_map_layer("Mine", count=5, fields=GENERATED_FIELDS, lazy=True)
    layer: FakeLayer = fake.add_map_layer("Mine", count=5, lazy=True)
    with pytest.raises(ValueError, match="lazily"):
        layer.load(generate_features(1))
    assert "Map,Query,Data" == layer.capabilities
