"""Layers as pandas and GeoPandas frames: the layer's column types, the CRS, and coded
values decoded through the field's domain or its subtype's."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pandas
import pytest
import shapely.geometry

from archibald import ArchieClient, FeatureLayer, LayerCapabilityError, NoAuth
from archibald.testing import FakeArcGIS

pytestmark = pytest.mark.anyio

STATUS = {
    "type": "codedValue",
    "name": "Status",
    "codedValues": [{"code": 1, "name": "open"}, {"code": 2, "name": "closed"}],
}
PAVED = {
    "type": "codedValue",
    "name": "Paved",
    "codedValues": [{"code": "A", "name": "asphalt"}, {"code": "C", "name": "concrete"}],
}
TRAIL = {
    "type": "codedValue",
    "name": "Trail",
    "codedValues": [{"code": "A", "name": "ash"}, {"code": "G", "name": "gravel"}],
}
FIELDS = [
    {"name": "OBJECTID", "type": "esriFieldTypeOID", "alias": "OBJECTID"},
    {"name": "KIND", "type": "esriFieldTypeInteger", "alias": "KIND"},
    {"name": "STATUS", "type": "esriFieldTypeSmallInteger", "alias": "STATUS", "domain": STATUS},
    {"name": "SURFACE", "type": "esriFieldTypeString", "alias": "SURFACE", "length": 1},
]
SUBTYPES = [
    {"code": 1, "name": "Road", "domains": {"SURFACE": PAVED, "STATUS": {"type": "inherited"}}},
    {"code": 2, "name": "Path", "domains": {"SURFACE": TRAIL}},
]
ROWS: list[dict[str, Any]] = [
    {"OBJECTID": 1, "KIND": 1, "STATUS": 1, "SURFACE": "A"},
    {"OBJECTID": 2, "KIND": 2, "STATUS": 2, "SURFACE": "A"},
    {"OBJECTID": 3, "KIND": 2, "STATUS": None, "SURFACE": "G"},
    {"OBJECTID": 4, "KIND": 3, "STATUS": 9, "SURFACE": "Z"},  # no such subtype, no such code
]


def client_for(fake: FakeArcGIS) -> ArchieClient:
    return ArchieClient(fake.services_url, NoAuth(), transport=fake.transport())


def roads() -> FakeArcGIS:
    fake = FakeArcGIS()
    features = [
        {"attributes": row, "geometry": {"paths": [[[0, 0], [row["OBJECTID"], 1]]]}} for row in ROWS
    ]
    layer = fake.add_feature_layer("Roads", features=features, fields=FIELDS, geometry="polyline")
    layer.subtype_field, layer.subtypes = "KIND", SUBTYPES
    return fake


async def test_a_dataframe_has_the_layers_types_and_no_geometry() -> None:
    fake = FakeArcGIS()
    fake.add_feature_layer("Places", count=300, max_record_count=100)
    async with client_for(fake) as client:
        frame = await FeatureLayer(client, "Places", 0).to_dataframe()
    assert isinstance(frame, pandas.DataFrame)
    assert len(frame) == 300
    assert sorted(frame["OBJECTID"]) == list(range(1, 301))
    assert "geometry" not in frame.columns
    assert str(frame["POPULATION"].dtype) == "int32"
    assert str(frame["CREATED"].dtype) == "datetime64[ms, UTC]"
    assert frame["CATEGORY"].isna().any()  # nulls stay null


async def test_domains_decode_through_the_field_and_its_subtype() -> None:
    async with client_for(roads()) as client:
        layer = FeatureLayer(client, "Roads", 0)
        coded = await layer.to_dataframe()
        named = await layer.to_dataframe(decode_domains=True)
    assert coded["STATUS"].tolist()[:2] == [1, 2]
    rows = named.sort_values("OBJECTID").to_dict("records")
    assert [r["KIND"] for r in rows] == ["Road", "Path", "Path", 3]
    assert [r["SURFACE"] for r in rows] == ["asphalt", "ash", "gravel", "Z"]
    assert rows[0]["STATUS"] == "open"  # inherited: the field's own domain
    assert rows[1]["STATUS"] == "closed"
    assert pandas.isna(rows[2]["STATUS"])
    assert rows[3]["STATUS"] == 9  # a code no domain names is kept


async def test_a_geodataframe_has_the_shapes_and_the_crs() -> None:
    fake = roads()
    fake.add_feature_layer("Zones", count=60, geometry="polygon", max_record_count=25)
    async with client_for(fake) as client:
        zones = FeatureLayer(client, "Zones", 0)
        frame = await zones.to_geodataframe()
        expected = {f["id"]: f["geometry"] async for f in zones.features(format="geojson")}
        mercator = await zones.to_geodataframe(out_sr=3857)
        named = await FeatureLayer(client, "Roads", 0).to_geodataframe(decode_domains=True)
    assert frame.crs is not None
    assert frame.crs.equals("OGC:CRS84")
    assert len(frame) == 60
    for oid, shape in zip(frame["OBJECTID"], frame.geometry, strict=True):
        assert shape.normalize().equals_exact(
            shapely.geometry.shape(expected[oid]).normalize(), 1e-9
        )
    assert mercator.crs is not None
    assert mercator.crs.to_epsg() == 3857
    assert sorted(named["SURFACE"]) == ["Z", "ash", "asphalt", "gravel"]


async def test_a_table_has_no_geodataframe() -> None:
    fake = FakeArcGIS()
    fake.add_feature_layer("Table", count=5, geometry=None)
    async with client_for(fake) as client:
        table = FeatureLayer(client, "Table", 0)
        with pytest.raises(LayerCapabilityError, match="is a table: use to_dataframe"):
            await table.to_geodataframe()
        assert len(await table.to_dataframe()) == 5


@pytest.mark.parametrize(
    ("blocked", "code", "says"),
    [
        ("geopandas", "import archibald.frames", "pip install 'archibald[geo]'"),
        (
            "pyarrow",
            "from archibald._cli import main; main(['dump', "
            "'http://127.0.0.1:9/arcgis/rest/services/X/FeatureServer/0', '-o', 'x.parquet'])",
            "--format geoparquet needs pyarrow: pip install 'archibald[arrow]'",
        ),
    ],
)
def test_a_missing_extra_is_one_line_naming_what_to_install(
    blocked: str, code: str, says: str, tmp_path: Any
) -> None:
    script = f"import sys; sys.modules[{blocked!r}] = None; {code}"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode != 0
    assert says in done.stderr
    if "_cli" in code:
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert os.listdir(tmp_path) == []  # nothing written, nothing left
