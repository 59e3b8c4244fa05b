"""Arrow output: the schema from the layer's fields (every Esri type), values and nulls,
WKB geometries equal to the GeoJSON crawl, GeoParquet metadata, Parquet round trips,
partitions, and the one-line message when the extra is missing."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
import shapely.geometry

from archibald import ArchieClient, FeatureLayer, LayerInfo, ServiceError
from archibald.arrow import GEOMETRY_COLUMN, arrow_schema, geo_metadata
from archibald.testing import FakeArcGIS

UTC = dt.UTC
pytestmark = pytest.mark.anyio


def field(name: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": f"esriFieldType{kind}", "alias": name, **extra}


# Every field type a query returns, as a real layer lists them.
TYPED_FIELDS = [
    field("OBJECTID", "OID"),
    field("SMALL", "SmallInteger"),
    field("WHOLE", "Integer"),
    field("BIG", "BigInteger"),
    field("DOUBLE", "Double"),
    field("SINGLE", "Single"),
    field("NAME", "String", length=50),
    field("WHEN", "Date", length=8),
    field("DAY", "DateOnly"),
    field("CLOCK", "TimeOnly"),
    field("STAMP", "TimestampOffset"),
    field("KEY", "GUID", length=38),
    field("GlobalID", "GlobalID", length=38),
]
EXPECTED_TYPES = {
    "OBJECTID": pa.int32(),
    "SMALL": pa.int16(),
    "WHOLE": pa.int32(),
    "BIG": pa.int64(),
    "DOUBLE": pa.float64(),
    "SINGLE": pa.float32(),
    "NAME": pa.string(),
    "WHEN": pa.timestamp("ms", tz="UTC"),
    "DAY": pa.date32(),
    "CLOCK": pa.time64("us"),
    "STAMP": pa.struct([("utc", pa.timestamp("us", tz="UTC")), ("offset_minutes", pa.int16())]),
    "KEY": pa.string(),
    "GlobalID": pa.string(),
}
FULL_ROW = {
    "OBJECTID": 1,
    "SMALL": -32768,
    "WHOLE": 2_147_483_647,
    "BIG": 10_111_222_333_444_555,  # beyond 53 bits: exact as an integer
    "DOUBLE": 0.1,
    "SINGLE": 1.5,
    "NAME": "Zoë's",
    "WHEN": 1_683_139_448_123,  # 2023-05-03T18:44:08.123Z
    "DAY": "1899-12-30",
    "CLOCK": "15:54:36",
    "STAMP": "2023-05-03T11:44:08-07:00",
    "KEY": "{74100804-E229-49B8-8CDC-9B5D3736D8B4}",
    "GlobalID": "{1A2B3C4D-0000-4A5B-9C8D-0123456789AB}",
}
NULL_ROW = dict.fromkeys(FULL_ROW) | {"OBJECTID": 2}
EXPECTED_FULL = {
    "OBJECTID": 1,
    "SMALL": -32768,
    "WHOLE": 2_147_483_647,
    "BIG": 10_111_222_333_444_555,
    "DOUBLE": 0.1,
    "SINGLE": 1.5,
    "NAME": "Zoë's",
    "WHEN": dt.datetime(2023, 5, 3, 18, 44, 8, 123_000, tzinfo=UTC),
    "DAY": dt.date(1899, 12, 30),
    "CLOCK": dt.time(15, 54, 36),
    "STAMP": {"utc": dt.datetime(2023, 5, 3, 18, 44, 8, tzinfo=UTC), "offset_minutes": -420},
    "KEY": "{74100804-E229-49B8-8CDC-9B5D3736D8B4}",
    "GlobalID": "{1A2B3C4D-0000-4A5B-9C8D-0123456789AB}",
}

CW_SQUARE = [[0, 0], [0, 10], [10, 10], [10, 0], [0, 0]]  # Esri exterior: clockwise
CCW_HOLE = [[2, 2], [4, 2], [4, 4], [2, 4], [2, 2]]  # Esri hole: counter-clockwise
CW_FAR = [[20, 20], [20, 25], [25, 25], [25, 20], [20, 20]]
GEOMETRIES = {
    "point": [{"x": 1.5, "y": -2.25}, {"x": -122.4, "y": 37.8}, None],
    "multipoint": [{"points": [[0, 0], [1, 1], [2, 0.5]]}, {"points": [[5, 5]]}, None],
    "polyline": [
        {"paths": [[[0, 0], [1, 1], [2, 0]]]},
        {"paths": [[[0, 0], [1, 1]], [[5, 5], [6, 7], [8, 8]]]},
        None,
    ],
    "polygon": [
        {"rings": [CW_SQUARE]},
        {"rings": [CW_SQUARE, CCW_HOLE]},  # one exterior, one hole
        {"rings": [CW_FAR, CCW_HOLE, CW_SQUARE]},  # two exteriors; the hole is the square's
        None,
    ],
}


def typed_fake() -> FakeArcGIS:
    """An emulator with a layer of every field type (and nulls), a table, and a layer of
    each geometry type."""
    fake = FakeArcGIS()
    rows = [FULL_ROW, NULL_ROW] + [FULL_ROW | {"OBJECTID": oid} for oid in range(3, 8)]
    fake.add_feature_layer(
        "Typed",
        features=[{"attributes": r, "geometry": {"x": r["OBJECTID"], "y": 1}} for r in rows],
        fields=TYPED_FIELDS,
        max_record_count=3,
    )
    fake.add_feature_layer(
        "Table",
        geometry=None,
        features=[{"attributes": {"OBJECTID": i, "NAME": f"row {i}"}} for i in range(1, 6)],
        fields=[field("OBJECTID", "OID"), field("NAME", "String")],
        max_record_count=2,
    )
    for kind, shapes in GEOMETRIES.items():
        fake.add_feature_layer(
            kind.title(),
            geometry=kind,  # type: ignore[arg-type]  (multipoint: no generator, but served)
            features=[
                {"attributes": {"OBJECTID": i}, "geometry": g}
                for i, g in enumerate(shapes, start=1)
            ],
            fields=[field("OBJECTID", "OID")],
            max_record_count=2,
        )
    return fake


def layer_of(client: ArchieClient, service: str) -> FeatureLayer:
    return FeatureLayer(client, service, 0)


@pytest.fixture
def fake() -> FakeArcGIS:
    return typed_fake()


async def test_the_schema_comes_from_the_fields(fake: FakeArcGIS) -> None:
    """Each Esri field type has its Arrow type; the geometry is binary WKB, at the end."""
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        table = await layer_of(client, "Typed").to_arrow()
    expected = [*EXPECTED_TYPES.items(), (GEOMETRY_COLUMN, pa.binary())]
    assert expected == [(f.name, f.type) for f in table.schema]
    assert not table.schema.field("OBJECTID").nullable


async def test_values_and_nulls_round_trip(fake: FakeArcGIS) -> None:
    """Every type's value arrives exactly (dates to the millisecond), and nulls stay null."""
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        rows = (await layer_of(client, "Typed").to_arrow()).drop_columns("geometry").to_pylist()
    assert EXPECTED_FULL == rows[0]
    assert NULL_ROW == rows[1]
    assert 7 == len(rows)


async def test_batches_share_one_schema_even_when_a_page_is_all_null(fake: FakeArcGIS) -> None:
    """One batch per page; the schema does not depend on the values of a page."""
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        stream = layer_of(client, "Typed").record_batches(page_size=1)
        async with stream as batches:
            schemas = [batch.schema async for batch in batches]
    assert 7 == len(schemas)
    assert all(schemas[0] == s for s in schemas)
    assert stream.schema == schemas[0]


async def test_out_fields_narrow_the_schema(fake: FakeArcGIS) -> None:
    """Fields left out of out_fields are left out of the schema (the object id stays)."""
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        batches = layer_of(client, "Typed").record_batches(
            out_fields=["day", "BIG"], return_geometry=False
        )
        collected = [b async for b in batches]  # a plain async for, without async with
    assert ["BIG", "DAY", "OBJECTID"] == sorted(collected[0].schema.names)
    assert b"geo" not in (collected[0].schema.metadata or {})


async def test_a_table_has_no_geometry(fake: FakeArcGIS) -> None:
    """A layer without geometry gives no geometry column and no GeoParquet metadata."""
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        table = await layer_of(client, "Table").to_arrow()
    assert ["OBJECTID", "NAME"] == table.schema.names
    assert table.schema.metadata is None
    assert [f"row {i}" for i in range(1, 6)] == table.column("NAME").to_pylist()


@pytest.mark.parametrize("kind", list(GEOMETRIES))
async def test_geometries_equal_the_geojson_crawl(fake: FakeArcGIS, kind: str) -> None:
    """Each WKB geometry is the geometry of the GeoJSON crawl of the same layer."""
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        layer = layer_of(client, kind.title())
        table = await layer.to_arrow()
        geojson = [f async for f in layer.features(format="geojson")]
    assert [f["id"] for f in geojson] == table.column("OBJECTID").to_pylist()
    wkb = table.column(GEOMETRY_COLUMN).to_pylist()
    for feature, blob in zip(geojson, wkb, strict=True):
        if feature["geometry"] is None:
            assert blob is None
            continue
        expected = shapely.geometry.shape(feature["geometry"])
        assert shapely.from_wkb(blob).equals_exact(expected, tolerance=1e-9)
    assert len(GEOMETRIES[kind]) == len(wkb)


async def test_polygons_keep_holes_and_exteriors(fake: FakeArcGIS) -> None:
    """Holes stay holes of their exterior; several exteriors make a MultiPolygon, all
    wound as the metadata says (exteriors counter-clockwise)."""
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        table = await layer_of(client, "Polygon").to_arrow()
    shapes = [shapely.from_wkb(b) for b in table.column(GEOMETRY_COLUMN).to_pylist()[:3]]
    assert ["Polygon", "Polygon", "MultiPolygon"] == [s.geom_type for s in shapes]
    assert 100.0 == shapes[0].area
    assert 96.0 == shapes[1].area
    assert 121.0 == shapes[2].area  # 25 + (100 - 4)
    assert all(p.exterior.is_ccw for p in shapes[2].geoms)
    assert not shapes[1].interiors[0].is_ccw
    geo = orjson.loads(table.schema.metadata[b"geo"])
    assert "counterclockwise" == geo["columns"]["geometry"]["orientation"]
    assert ["MultiPolygon", "Polygon"] == geo["columns"]["geometry"]["geometry_types"]


async def test_geoparquet_metadata_for_wgs84(fake: FakeArcGIS) -> None:
    """GeoParquet 1.1: WKB, the layer's geometry types, and no crs for WGS84 (= CRS84)."""
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        table = await layer_of(client, "Point").to_arrow()
    expected = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"]}},
    }
    assert expected == orjson.loads(table.schema.metadata[b"geo"])


async def test_web_mercator_is_written_as_projjson(fake: FakeArcGIS) -> None:
    """Another spatial reference (here the out_sr asked for) is PROJJSON, from pyproj."""
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        table = await layer_of(client, "Point").to_arrow(out_sr=3857)
    crs = orjson.loads(table.schema.metadata[b"geo"])["columns"]["geometry"]["crs"]
    assert {"authority": "EPSG", "code": 3857} == crs["id"]
    x, _ = shapely.from_wkb(table.column(GEOMETRY_COLUMN)[0].as_py()).coords[0]
    assert 166_979.0 == pytest.approx(x, abs=1.0)  # 1.5 degrees east, in metres


def metadata(**extra: Any) -> LayerInfo:
    return LayerInfo.from_metadata(
        {"fields": TYPED_FIELDS[:1], "geometryType": "esriGeometryPolyline", **extra}, "url"
    )


def test_without_pyproj_another_crs_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pyproj a crs other than WGS84 is null (unknown), never a made-up PROJJSON."""
    monkeypatch.setitem(sys.modules, "pyproj", None)
    info = metadata(spatialReference={"wkid": 102100, "latestWkid": 3857})
    assert geo_metadata(info, None)["columns"]["geometry"]["crs"] is None
    assert "crs" not in geo_metadata(info, 4326)["columns"]["geometry"]


def test_z_layers_and_an_esri_wkid() -> None:
    """A layer with z lists the Z types; an Esri-only wkid is found under ESRI."""
    info = metadata(hasZ=True, spatialReference={"wkid": 102003})
    column = geo_metadata(info, None)["columns"]["geometry"]
    assert ["LineString", "LineString Z", "MultiLineString", "MultiLineString Z"] == column[
        "geometry_types"
    ]
    assert {"authority": "ESRI", "code": 102003} == column["crs"]["id"]
    assert "orientation" not in column


def test_the_schema_without_a_crawl() -> None:
    """arrow_schema gives the schema from the metadata alone."""
    schema = arrow_schema(metadata(), return_geometry=False)
    assert [("OBJECTID", pa.int32())] == [(f.name, f.type) for f in schema]


async def test_to_arrow_delivers_every_id_once() -> None:
    """A crawl of many pages: as many rows as the layer counts, each object id once."""
    fake = FakeArcGIS()
    layer = fake.add_feature_layer("Many", count=2_345, max_record_count=500)
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        handle = layer_of(client, "Many")
        table = await handle.to_arrow(max_concurrency=3)
        count = await handle.count()
    assert count == table.num_rows
    assert layer.object_ids == table.column("OBJECTID").to_pylist()


async def test_partitions_make_the_whole_layer() -> None:
    """Each partition's table holds its range; together, every feature once."""
    fake = FakeArcGIS()
    layer = fake.add_feature_layer("Many", count=1_000, max_record_count=100)
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        handle = layer_of(client, "Many")
        parts = await handle.partitions(count=4)
        tables = [await handle.to_arrow(partition=p) for p in parts]
    assert [p.count for p in parts] == [t.num_rows for t in tables]
    assert layer.object_ids == pa.concat_tables(tables).column("OBJECTID").to_pylist()


async def test_a_parquet_round_trip(fake: FakeArcGIS, tmp_path: Path) -> None:
    """Written with pyarrow.parquet and read back: same ids, values, types and geo key."""
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        table = await layer_of(client, "Typed").to_arrow()
    pq.write_table(table, tmp_path / "typed.parquet")
    back = pq.read_table(tmp_path / "typed.parquet")
    assert table.schema == back.schema
    assert table.to_pylist() == back.to_pylist()
    geo = orjson.loads(pq.read_metadata(tmp_path / "typed.parquet").metadata[b"geo"])
    assert "1.1.0" == geo["version"]


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("WHOLE", 1.5, "not a whole number"),
        ("WHOLE", 2**31, "outside the range of a 32-bit integer"),
        ("SMALL", True, "not a whole number"),
        ("DOUBLE", "1.0", "not a number"),
        ("SINGLE", 1e300, "outside the range of a 32-bit float"),
        ("NAME", 7, "not a string"),
        ("WHEN", "2023-05-03", "not a whole number"),
        ("DAY", "30/12/1899", "not an ISO 8601 date"),
        ("STAMP", "2023-05-03T11:44:08", "a timestamp without a UTC offset"),
    ],
)
async def test_a_value_that_does_not_fit_is_an_error(name: str, value: Any, why: str) -> None:
    """A value that does not fit its field's type names the field and the object id."""
    fake = FakeArcGIS()
    rows = [FULL_ROW, FULL_ROW | {"OBJECTID": 5, name: value}]
    fake.add_feature_layer(
        "Bad", geometry=None, features=[{"attributes": r} for r in rows], fields=TYPED_FIELDS
    )
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        with pytest.raises(ServiceError) as caught:
            await layer_of(client, "Bad").to_arrow()
    message = str(caught.value)
    assert f"field {name!r}" in message
    assert "object id 5" in message
    assert why in message


async def test_a_64_bit_object_id_field() -> None:
    """An OID field of length 8 is int64, and ids beyond 32 bits arrive exactly."""
    fake = FakeArcGIS()
    first = 3_000_000_000
    fake.add_feature_layer(
        "Long",
        geometry=None,
        features=[{"attributes": {"OBJECTID": first + i}} for i in range(3)],
        fields=[field("OBJECTID", "OID", length=8)],
    )
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        table = await layer_of(client, "Long").to_arrow()
    assert pa.int64() == table.schema.field("OBJECTID").type
    assert [first, first + 1, first + 2] == table.column("OBJECTID").to_pylist()


async def test_an_unconvertible_geometry_is_null_and_counted() -> None:
    """A geometry that cannot be converted is null, as in the GeoJSON crawl, and counted."""
    fake = FakeArcGIS()
    fake.add_feature_layer(
        "Odd",
        features=[
            {"attributes": {"OBJECTID": 1}, "geometry": {"x": 1, "y": 2}},
            {"attributes": {"OBJECTID": 2}, "geometry": {"curveRings": []}},
        ],
        fields=[field("OBJECTID", "OID")],
    )
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        batches = layer_of(client, "Odd").record_batches()
        table = await batches.read_all()
    assert [False, True] == table.column(GEOMETRY_COLUMN).is_null().to_pylist()
    assert 1 == batches.unconvertible_geometries


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_archibald_does_not_import_pyarrow() -> None:
    """pyarrow and shapely are imported only when Arrow output is asked for."""
    done = run_python(
        """
        import sys
        import archibald
        assert "pyarrow" not in sys.modules and "shapely" not in sys.modules
        """
    )
    assert 0 == done.returncode, done.stderr


def test_a_missing_extra_is_one_line_naming_it() -> None:
    """Without pyarrow, asking for batches says what to install, in one line."""
    done = run_python(
        """
        import sys
        sys.modules["pyarrow"] = None
        from archibald import ArchieClient, FeatureLayer
        layer = FeatureLayer(ArchieClient("https://example.com/arcgis/rest/services"), "S", 0)
        try:
            layer.record_batches()
        except ImportError as exc:
            print(exc)
        """
    )
    assert 0 == done.returncode, done.stderr
    expected = "archibald's Arrow output needs pyarrow and shapely: pip install 'archibald[arrow]'"
    assert expected == done.stdout.strip()


def test_the_emulator_checks_iso_dates_and_times_as_servers_do() -> None:
    """FakeArcGIS takes DateOnly, TimeOnly and TimestampOffset as ISO text in edits, and
    refuses other values (a timestamp with offset must carry its offset)."""
    layer = typed_fake().layer("Table")
    layer.fields.extend(
        [field("DAY", "DateOnly"), field("CLOCK", "TimeOnly"), field("STAMP", "TimestampOffset")]
    )
    good = {"DAY": "2024-02-29", "CLOCK": "23:59:59", "STAMP": "2024-02-29T23:59:59+05:30"}
    bad = [{"DAY": 20240229}, {"CLOCK": "noon"}, {"STAMP": "2024-02-29T23:59:59"}]
    adds = [{"attributes": good}, *({"attributes": a} for a in bad)]
    results = layer.apply_edits(adds, [], [], rollback_on_failure=False, rng=random.Random(0))
    assert [True, False, False, False] == [r["success"] for r in results["addResults"]]
