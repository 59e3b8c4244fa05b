"""archibald dump to GeoParquet and CSV, run for real in a subprocess against the emulator
on loopback, and read back by independent readers (pyarrow, shapely, the csv module)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import geopandas
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
import shapely.geometry
import shapely.wkt

from archibald.testing import FakeArcGIS

from .test_cli import clean_env

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    fake = FakeArcGIS()
    fake.add_feature_layer("Zones", count=700, geometry="polygon", max_record_count=200)
    fake.add_feature_layer("Points", count=450, max_record_count=100)
    fake.add_feature_layer("Lines", count=300, geometry="polyline", max_record_count=100)
    fake.add_feature_layer("Table", count=30, geometry=None)
    async with fake.serve() as origin:
        yield origin


async def dump(origin: str, layer: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    url = f"{origin}/arcgis/rest/services/{layer}/FeatureServer/0"
    with anyio.fail_after(60):
        return await anyio.run_process(
            [sys.executable, "-m", "archibald", "dump", url, *args], check=False, env=clean_env()
        )


async def geojson_of(origin: str, layer: str, tmp_path: Path) -> dict[int, dict[str, object]]:
    out = tmp_path / f"{layer}.geojson"
    done = await dump(origin, layer, "-o", str(out))
    assert done.returncode == 0, done.stderr
    return {f["id"]: f for f in json.loads(out.read_text())["features"]}


@pytest.mark.parametrize("layer", ["Zones", "Points", "Lines", "Table"])
async def test_geoparquet_reads_back_as_the_geojson_dump(
    origin: str, layer: str, tmp_path: Path
) -> None:
    """Inferred from .parquet: every feature once, the same attributes, the same shapes
    (polygons with holes included), and GeoParquet metadata a reader understands."""
    expected = await geojson_of(origin, layer, tmp_path)
    out = tmp_path / f"{layer}.parquet"
    done = await dump(origin, layer, "-o", str(out))
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    rows = table.to_pylist()
    assert sorted(row["OBJECTID"] for row in rows) == sorted(expected)
    assert len(rows) == len(expected)
    metadata = table.schema.metadata or {}
    if layer == "Table":
        assert b"geo" not in metadata
        assert "geometry" not in table.schema.names
    else:
        geo = json.loads(metadata[b"geo"])
        assert geo["primary_column"] == "geometry"
        assert geo["columns"]["geometry"]["encoding"] == "WKB"
    for row in rows:
        feature = expected[row["OBJECTID"]]
        properties = feature["properties"]
        assert isinstance(properties, dict)
        assert row["NAME"] == properties["NAME"]
        assert row["POPULATION"] == properties["POPULATION"]
        assert row["CATEGORY"] == properties["CATEGORY"]  # nulls stay null
        assert row["CREATED"].timestamp() * 1000 == properties["CREATED"]  # dates exact
        if layer != "Table":
            shape = shapely.from_wkb(row["geometry"])
            assert shape.equals_exact(shapely.geometry.shape(feature["geometry"]), 1e-9) or (
                shape.normalize().equals_exact(
                    shapely.geometry.shape(feature["geometry"]).normalize(), 1e-9
                )
            )


async def test_csv_has_the_fields_asked_for_and_wkt(origin: str, tmp_path: Path) -> None:
    expected = await geojson_of(origin, "Zones", tmp_path)
    out = tmp_path / "zones.csv"
    done = await dump(origin, "Zones", "-o", str(out), "--fields", "NAME,POPULATION")
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["OBJECTID", "NAME", "POPULATION", "geometry"]
    assert sorted(int(row["OBJECTID"]) for row in rows) == sorted(expected)
    for row in rows:
        feature = expected[int(row["OBJECTID"])]
        assert shapely.wkt.loads(row["geometry"]).equals(
            shapely.geometry.shape(feature["geometry"])
        )
        properties = feature["properties"]
        assert isinstance(properties, dict)
        assert row["NAME"] == properties["NAME"]


async def test_a_table_to_csv_has_no_geometry_column(origin: str, tmp_path: Path) -> None:
    out = tmp_path / "table.csv"
    done = await dump(origin, "Table", "--format", "csv", "-o", str(out))
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert "geometry" not in header
    assert header[0] == "OBJECTID"


async def test_binary_and_resumable_formats_are_refused_where_they_cannot_go(
    origin: str, tmp_path: Path
) -> None:
    to_stdout = await dump(origin, "Points", "--format", "geoparquet")
    assert to_stdout.returncode == 2
    assert "binary: write it to a file" in to_stdout.stderr.decode()
    resumed = await dump(origin, "Points", "-o", str(tmp_path / "p.csv"), "--resume")
    assert resumed.returncode == 2
    assert "--resume works with geojson, ndjson and esrijson" in resumed.stderr.decode()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("layer", ["Zones", "Points", "Lines", "Table"])
async def test_geopackage_reads_back_in_gdal_as_the_geojson_dump(
    origin: str, layer: str, tmp_path: Path
) -> None:
    """Inferred from .gpkg: GDAL (pyogrio) opens it as an ordinary layer with the same
    ids, attributes and shapes, in WGS84; GeoPandas reads the GeoParquet dump too."""
    expected = await geojson_of(origin, layer, tmp_path)
    out = tmp_path / f"{layer}.gpkg"
    done = await dump(origin, layer, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert b"Warning" not in done.stderr
    assert [name for name, _ in pyogrio.list_layers(out)] == [layer]
    # the object id is the table's primary key: GDAL's feature id
    frame = pyogrio.read_dataframe(out, fid_as_index=True)
    assert sorted(frame.index) == sorted(expected)
    for oid, row in zip(frame.index, frame.to_dict("records"), strict=True):
        feature = expected[oid]
        properties = feature["properties"]
        assert isinstance(properties, dict)
        assert row["NAME"] == properties["NAME"]
        assert row["CREATED"].timestamp() * 1000 == properties["CREATED"]
        if layer != "Table":  # the same shape (a polygon stored as a one-part multipolygon)
            assert row["geometry"].equals(shapely.geometry.shape(feature["geometry"]))
    if layer != "Table":
        assert frame.crs is not None
        assert frame.crs.to_epsg() == 4326
        parquet = tmp_path / f"{layer}.parquet"
        assert (await dump(origin, layer, "-o", str(parquet))).returncode == 0
        read = geopandas.read_parquet(parquet)
        assert read.crs is not None
        assert read.crs.equals("OGC:CRS84")
        assert sorted(read["OBJECTID"]) == sorted(expected)


async def test_a_shapefile_born_layer_with_a_fid_field_and_a_reserved_name(
    tmp_path: Path,
) -> None:
    """FID as the object-id field (GDAL's own row id name) and a name GeoPackage
    reserves: the file is written, and GDAL reads every feature back."""
    fields = [
        {"name": "FID", "type": "esriFieldTypeOID", "alias": "FID"},
        {"name": "Name", "type": "esriFieldTypeString", "alias": "Name", "length": 20},
    ]
    features = [
        {"attributes": {"FID": i, "Name": f"n{i}"}, "geometry": {"x": i, "y": 1.0}}
        for i in range(1, 41)
    ]
    fake = FakeArcGIS()
    fake.add_feature_layer(
        "Shapes", name="gpkg_export", features=features, fields=fields, object_id_field="FID"
    )
    async with fake.serve() as origin:
        out = tmp_path / "shapes.gpkg"
        done = await dump(origin, "Shapes", "-o", str(out))
        assert done.returncode == 0, done.stderr
        csv_out = tmp_path / "shapes.csv"
        assert (await dump(origin, "Shapes", "-o", str(csv_out))).returncode == 0
    assert [name for name, _ in pyogrio.list_layers(out)] == ["layer_gpkg_export"]
    frame = pyogrio.read_dataframe(out, fid_as_index=True)
    assert sorted(frame.index) == list(range(1, 41))
    assert list(frame["Name"]) == [f"n{i}" for i in range(1, 41)]
    with csv_out.open(newline="") as handle:
        assert [row["Name"] for row in csv.DictReader(handle)] == [f"n{i}" for i in range(1, 41)]


async def test_a_geopackage_needs_no_extra(origin: str, tmp_path: Path) -> None:
    """With pyarrow, pyogrio and shapely missing, --format gpkg still writes every feature."""
    out = tmp_path / "Zones.gpkg"
    url = f"{origin}/arcgis/rest/services/Zones/FeatureServer/0"
    blocked = "".join(f"sys.modules[{m!r}] = None; " for m in ("pyarrow", "pyogrio", "shapely"))
    call = f"main(['dump', {url!r}, '-o', {str(out)!r}])"
    script = f"import sys; {blocked}from archibald._cli import main; {call}"
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-c", script], check=False, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert pyogrio.read_info(out)["features"] == 700


async def test_a_geopackage_that_fails_mid_dump_is_kept_closed(origin: str, tmp_path: Path) -> None:
    """A dump whose GeoPackage fails to write (a full disk) keeps the pages written before
    in Zones.partial.gpkg, closed (no -wal), and leaves no temporary file behind."""
    out = tmp_path / "Zones.gpkg"
    url = f"{origin}/arcgis/rest/services/Zones/FeatureServer/0"
    script = f"""
from archibald import _geopackage
from archibald._cli import main
from archibald.exceptions import ArchieClientError
upsert, calls = _geopackage.GeoPackage.upsert, []
def full(self, *args, **kwargs):
    raise ArchieClientError("could not write: database or disk is full")
def failing_upsert(self, table, features):
    calls.append(table)
    return upsert(self, table, features) if len(calls) == 1 else full(self)
_geopackage.GeoPackage.upsert = failing_upsert
_geopackage.GeoPackage.update_extent = full
main(['dump', {url!r}, '-o', {str(out)!r}, '--concurrency', '1'])
"""
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-c", script], check=False, env=clean_env())
    assert done.returncode != 0
    assert b"disk is full" in done.stderr
    assert ["Zones.partial.gpkg"] == sorted(os.listdir(tmp_path))
    assert pyogrio.read_info(tmp_path / "Zones.partial.gpkg")["features"] == 200
