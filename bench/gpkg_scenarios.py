"""Write the GeoPackage files `LayerMirror.sync` makes, one per scenario, for GDAL's checks.

Run with the project's Python: ``python bench/gpkg_scenarios.py OUT_DIR``; then
``bench/validate_gpkg.sh OUT_DIR`` runs GDAL's validator and ogrinfo on each file.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import trio
import trio.testing

from archibald import ArchieClient, FeatureLayer, LayerMirror, NoAuth
from archibald.testing import FakeArcGIS

GEOMETRIES = {"point": "point", "polyline": "polyline", "polygon": "polygon", "table": None}


def fake_with(geometry: str | None, name: str = "Layer", wkid: int | None = None) -> FakeArcGIS:
    fake = FakeArcGIS()
    layer = fake.add_feature_layer(
        name,
        count=120,
        geometry=geometry,  # type: ignore[arg-type]
        max_record_count=50,
        change_tracking=True,
        editor_tracking=True,
    )
    if wkid is not None:
        layer.spatial_reference = {"wkid": wkid, "latestWkid": 3857 if wkid == 102100 else wkid}
    return fake


def edits(fake: FakeArcGIS, name: str = "Layer") -> None:
    layer = fake.layer(name)
    rows = layer.features
    fake.edit(
        layer,
        adds=[{"attributes": {"NAME": "new"}, "geometry": rows[0].get("geometry")}],
        updates=[{"attributes": {"OBJECTID": rows[5]["attributes"]["OBJECTID"], "NAME": "x"}}],
        deletes=[rows[9]["attributes"]["OBJECTID"]],
    )


async def sync(fake: FakeArcGIS, path: Path, name: str = "Layer", **kw: Any) -> None:
    async with ArchieClient(fake.services_url, NoAuth(), transport=fake.transport()) as client:
        await LayerMirror(path).sync(FeatureLayer(client, name, 0), **kw)


async def scenarios(out: Path) -> None:
    for label, geometry in GEOMETRIES.items():
        fake = fake_with(geometry)
        await sync(fake, out / f"first_{label}.gpkg")
        for strategy in ("extractChanges", "editDate", "full"):
            path = out / f"{strategy}_{label}.gpkg"
            await sync(fake, path)
            await trio.sleep(3600)
            edits(fake)
            await sync(fake, path, strategy=strategy)
    fake = fake_with("polygon")
    path = out / "schema_change.gpkg"
    await sync(fake, path)
    fake.add_field(fake.layer("Layer"), {"name": "EXTRA", "type": "esriFieldTypeDouble"})
    await sync(fake, path)
    for wkid in (102100, 3857, 2154):
        fake = fake_with("polygon", wkid=wkid)
        await sync(fake, out / f"crs_{wkid}.gpkg")
    for name in ("gpkg_contents", "rtree_x", "sqlite_master", "archibald_sync", "2024 Roads"):
        fake = fake_with("point", name=name)
        await sync(fake, out / f"named_{name.replace(' ', '_')}.gpkg", name=name)


KILLED = """
import sys, os, signal
from archibald._geopackage import GeoPackage
with GeoPackage.open(sys.argv[1]) as gpkg, gpkg.transaction():
    gpkg.upsert("layer", [{"attributes": {"OBJECTID": 10**6 + i, "NAME": "k"},
                           "geometry": {"x": 1, "y": 2}} for i in range(20000)])
    os.kill(os.getpid(), signal.SIGKILL)
"""


def killed(out: Path) -> None:
    path = out / "killed.gpkg"
    trio.run(sync, fake_with("point"), path, clock=trio.testing.MockClock(autojump_threshold=0))
    subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED), str(path)], check=False)
    assert path.with_name(path.name + "-wal").exists(), "the kill left no -wal file"


FIELDS = [
    {"name": "OBJECTID", "type": "esriFieldTypeOID"},
    {"name": "name", "type": "esriFieldTypeString", "length": 8},
    {"name": "seen", "type": "esriFieldTypeDate"},
    {"name": "day", "type": "esriFieldTypeDateOnly"},
    {"name": "stamp", "type": "esriFieldTypeTimestampOffset"},
    {"name": "geom", "type": "esriFieldTypeString"},
    {"name": 'odd "name"', "type": "esriFieldTypeDouble"},
    {"name": "small", "type": "esriFieldTypeSmallInteger"},
    {"name": "single", "type": "esriFieldTypeSingle"},
]
SHAPES = {
    "esriGeometryPoint": {"x": 1, "y": 2, "z": 3},
    "esriGeometryMultipoint": {"points": [[1, 2, 3], [4, 5, 6]]},
    "esriGeometryPolyline": {"paths": [[[0, 0, 1], [3, 4, 2]]]},
    "esriGeometryPolygon": {"rings": [[[0, 0, 1], [0, 9, 1], [9, 9, 1], [9, 0, 1], [0, 0, 1]]]},
}


def direct(out: Path) -> None:
    """Tables written by GeoPackage itself: every geometry type, z, odd names and values."""
    from archibald._geopackage import GeoPackage

    for wkid in (4326, 102003):
        with GeoPackage.open(out / f"direct_{wkid}.gpkg") as gpkg:
            for geometry_type, shape in SHAPES.items():
                for has_z in (False, True):
                    table = f"{geometry_type[12:].lower()}{'_z' if has_z else ''}"
                    gpkg.create_feature_table(
                        table,
                        fields=FIELDS,
                        object_id_field="OBJECTID",
                        geometry_type=geometry_type,
                        wkid=wkid,
                        has_z=has_z,
                    )
                    rows = [
                        {
                            "attributes": {
                                "OBJECTID": 1,
                                "name": "abc",
                                "seen": 1700000000123,
                                "day": "2024-02-29",
                                "stamp": "2024-02-29T10:00:00+01:00",
                                "geom": "text",
                                'odd "name"': 1.5,
                                "small": 3,
                                "single": 0.5,
                            },
                            "geometry": shape,
                        },
                        {"attributes": {"OBJECTID": 2}, "geometry": None},
                        {"attributes": {"OBJECTID": 3}, "geometry": {"rings": []}},
                        {"attributes": {"OBJECTID": 4, "seen": -2208988800000}, "geometry": shape},
                    ]
                    gpkg.upsert(table, rows)
                    gpkg.upsert(table, [{**rows[0], "attributes": {"OBJECTID": 2}}])
                    gpkg.upsert(table, [{**rows[1], "attributes": {"OBJECTID": 4}}])
                    gpkg.add_column(table, {"name": "added", "type": "esriFieldTypeInteger"})
                    gpkg.drop_column(table, "small")
                    gpkg.update_extent(table)
            gpkg.rename_table("point", "point_renamed")
            gpkg.drop_table("multipoint")
            gpkg.update_extent("point_renamed")


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.gpkg*"):
        old.unlink()
    trio.run(scenarios, out, clock=trio.testing.MockClock(autojump_threshold=0))
    killed(out)
    direct(out)


if __name__ == "__main__":
    main()
