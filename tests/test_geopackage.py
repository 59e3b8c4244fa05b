"""The hand-kept GeoPackage store: what GDAL (pyogrio) reads back after every kind of write."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyogrio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archibald import _geopackage
from archibald._geopackage import GeoPackage
from archibald.exceptions import ArchieClientError, ConfigurationError, LifecycleError

FIELDS = [
    {"name": "OBJECTID", "type": "esriFieldTypeOID", "alias": "OBJECTID"},
    {"name": "name", "type": "esriFieldTypeString", "length": 40, "nullable": True},
    {"name": "count", "type": "esriFieldTypeInteger"},
    {"name": "small", "type": "esriFieldTypeSmallInteger"},
    {"name": "big", "type": "esriFieldTypeBigInteger"},
    {"name": "ratio", "type": "esriFieldTypeDouble"},
    {"name": "single", "type": "esriFieldTypeSingle"},
    {"name": "seen", "type": "esriFieldTypeDate"},
    {"name": "day", "type": "esriFieldTypeDateOnly"},
    {"name": "at", "type": "esriFieldTypeTimeOnly"},
    {"name": "stamp", "type": "esriFieldTypeTimestampOffset"},
    {"name": "gid", "type": "esriFieldTypeGlobalID"},
    {"name": "Shape", "type": "esriFieldTypeGeometry"},
]
GEOMETRIES = {
    "esriGeometryPoint": ({"x": 1.5, "y": 2.5}, "Point"),
    "esriGeometryMultipoint": ({"points": [[1, 2], [3, 4]]}, "MultiPoint"),
    "esriGeometryPolyline": ({"paths": [[[0, 0], [3, 4]], [[5, 5], [6, 7]]]}, "MultiLineString"),
    "esriGeometryPolygon": (
        {"rings": [[[0, 0], [0, 9], [9, 9], [9, 0], [0, 0]], [[2, 2], [4, 2], [4, 4], [2, 2]]]},
        "MultiPolygon",
    ),
}


def attributes(oid: int, **changes: Any) -> dict[str, Any]:
    values = {
        "OBJECTID": oid,
        "name": f"Zürich ✓ {oid}",
        "count": 2**31 - 1,
        "small": -7,
        "big": 10111222333 + oid,
        "ratio": 0.1,
        "single": 1.5,
        "seen": 1700000000123,
        "day": "1899-12-30",
        "at": "15:54:36",
        "stamp": "2023-05-03T11:44:08-07:00",
        "gid": "{74100804-E229-49B8-8F3C-0E4E5E2A1B6D}",
    }
    return values | changes


def shifted(geometry: dict[str, Any], dx: float) -> dict[str, Any]:
    def move(value: Any) -> Any:
        if isinstance(value, list) and value and isinstance(value[0], int | float):
            return [value[0] + dx, *value[1:]]
        return [move(v) for v in value] if isinstance(value, list) else value

    if "x" in geometry:
        return {"x": geometry["x"] + dx, "y": geometry["y"]}
    return {key: move(value) for key, value in geometry.items()}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "mirror.gpkg"


@pytest.fixture
def gpkg(path: Path) -> Iterator[GeoPackage]:
    with GeoPackage.open(path) as opened:
        yield opened


def make(gpkg: GeoPackage, geometry_type: str | None, *, table: str = "parcels") -> None:
    gpkg.create_feature_table(
        table,
        fields=FIELDS,
        object_id_field="OBJECTID",
        geometry_type=geometry_type,
        wkid=None if geometry_type is None else 102100,
    )


def test_a_new_file_carries_the_geopackage_header_and_required_rows(path: Path) -> None:
    """A new file has GPKG's application id, version 1.4 and the three required SRS rows."""
    GeoPackage.open(path).close()
    with sqlite3.connect(path) as db:
        assert 0x47504B47 == db.execute("PRAGMA application_id").fetchone()[0]
        assert 10400 == db.execute("PRAGMA user_version").fetchone()[0]
        ids = db.execute("SELECT srs_id FROM gpkg_spatial_ref_sys ORDER BY srs_id").fetchall()
        assert [(-1,), (0,), (4326,)] == ids
    db.close()
    assert [path] == list(path.parent.iterdir())  # no -wal or -shm left behind


@pytest.mark.parametrize("geometry_type", [*GEOMETRIES, None])
def test_gdal_reads_each_kind_of_table_after_upsert_update_and_delete(
    gpkg: GeoPackage, path: Path, geometry_type: str | None
) -> None:
    """Create, upsert, update, delete: GDAL sees the count, types, CRS and values."""
    make(gpkg, geometry_type)
    geometry, gdal_type = GEOMETRIES.get(geometry_type or "", (None, None))
    features = [
        {"attributes": attributes(oid), "geometry": geometry and shifted(geometry, oid)}
        for oid in (1, 2, 3)
    ]
    assert 3 == gpkg.upsert("parcels", features)
    update = {"attributes": attributes(2, name=None, seen=None), "geometry": None}
    with gpkg.transaction():
        gpkg.upsert("parcels", [update])
        assert 1 == gpkg.delete("parcels", [3, 99])
    gpkg.update_extent("parcels")
    info = pyogrio.read_info(path, layer="parcels")
    frame = pyogrio.read_dataframe(path, layer="parcels", fid_as_index=True)
    assert 2 == info["features"]
    assert gdal_type == info["geometry_type"]
    assert (None if geometry_type is None else "EPSG:3857") == info["crs"]
    expected_types = ["object", "int32", "int16", "int64", "float64", "float32"]
    expected_types += ["datetime64[ms]", "datetime64[D]", "object", "object", "object"]
    assert dict(zip([f["name"] for f in FIELDS[1:-1]], expected_types, strict=True)) == dict(
        zip(info["fields"], info["dtypes"], strict=True)
    )
    assert [1, 2] == list(frame.index)
    assert "Zürich ✓ 1" == frame.loc[1, "name"]
    assert 10111222334 == frame.loc[1, "big"]
    assert "2023-11-14 22:13:20.123000+00:00" == str(frame.loc[1, "seen"])
    assert "1899-12-30" == str(frame.loc[1, "day"].date())
    assert "2023-05-03T11:44:08-07:00" == frame.loc[1, "stamp"]
    assert frame.loc[2, ["name", "seen"]].isna().all()
    expected = [gpkg.normalized("parcels", features[0]), gpkg.normalized("parcels", update)]
    assert expected == list(gpkg.features("parcels"))
    if geometry_type is not None:
        assert frame.loc[2, "geometry"] is None


def test_features_come_back_with_arcgis_values(gpkg: GeoPackage) -> None:
    """A feature read back has the attributes it was written with (dates as epoch ms)."""
    make(gpkg, "esriGeometryPoint")
    written = {"attributes": attributes(5, seen=-86_400_001), "geometry": {"x": 1.0, "y": 2.0}}
    gpkg.upsert("parcels", [written])
    assert [written] == list(gpkg.features("parcels", [5, 6]))


def test_geometries_come_back_as_esri_json_normalized(gpkg: GeoPackage) -> None:
    """Rings are closed and wound as Esri winds them, each outer ring before its holes."""
    gpkg.create_feature_table(
        "z", fields=[], object_id_field="oid", geometry_type="esriGeometryPolygon", wkid=4326,
        has_z=True,
    )  # fmt: skip
    outer_unclosed = [[0, 0, 1], [0, 9, 1], [9, 9, 1], [9, 0, 1]]
    hole = [[2, 2, 5], [4, 2, 5], [4, 4, 5], [2, 4, 5], [2, 2, 5]]
    polygon = {"rings": [hole, outer_unclosed], "hasM": False}
    gpkg.upsert("z", [{"attributes": {"oid": 1}, "geometry": polygon}])
    outer_cw = [[0.0, 0.0, 1.0], [0.0, 9.0, 1.0], [9.0, 9.0, 1.0], [9.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    hole_ccw = [[float(v) for v in p] for p in hole]
    assert [{"rings": [outer_cw, hole_ccw]}] == [f["geometry"] for f in gpkg.features("z")]


def test_a_geometry_that_cannot_be_converted_is_stored_as_null(gpkg: GeoPackage) -> None:
    """A bad geometry is NULL and counted; its attributes are still written."""
    make(gpkg, "esriGeometryPoint")
    gpkg.upsert("parcels", [{"attributes": attributes(1), "geometry": {"x": "1", "y": 2}}])
    assert (1, [None]) == (
        gpkg.unconvertible_geometries,
        [f["geometry"] for f in gpkg.features("parcels")],
    )


def test_the_spatial_index_follows_every_write(gpkg: GeoPackage, path: Path) -> None:
    """The R-tree has a row per non-null geometry, and GDAL's bbox filter uses it."""
    make(gpkg, "esriGeometryPoint")
    gpkg.upsert(
        "parcels",
        [{"attributes": {"OBJECTID": i}, "geometry": {"x": i, "y": i}} for i in range(10)],
    )
    gpkg.upsert("parcels", [{"attributes": {"OBJECTID": 3}, "geometry": None}])  # indexed -> null
    gpkg.upsert("parcels", [{"attributes": {"OBJECTID": 4}, "geometry": {"x": 50, "y": 50}}])
    gpkg.delete("parcels", [5])
    rows = gpkg._connection.execute("SELECT id, minx FROM rtree_parcels_geom ORDER BY id")
    assert [(0, 0), (1, 1), (2, 2), (4, 50), (6, 6), (7, 7), (8, 8), (9, 9)] == rows.fetchall()
    frame = pyogrio.read_dataframe(
        path, layer="parcels", bbox=(1.5, 1.5, 6.5, 6.5), fid_as_index=True
    )
    assert [2, 6] == sorted(frame.index)
    assert pyogrio.read_info(path, layer="parcels")["capabilities"]["fast_spatial_filter"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_a_transaction_that_raises_leaves_the_file_as_before(
    gpkg: GeoPackage, error: type[BaseException]
) -> None:
    """Writes, a new table, everything in a failed transaction is rolled back."""
    make(gpkg, "esriGeometryPoint")
    gpkg.upsert("parcels", [{"attributes": {"OBJECTID": 1}, "geometry": {"x": 1, "y": 1}}])

    def fail_midway() -> None:
        with gpkg.transaction():
            gpkg.upsert("parcels", [{"attributes": {"OBJECTID": 2}, "geometry": {"x": 2, "y": 2}}])
            gpkg.delete("parcels", [1])
            make(gpkg, None, table="other")
            raise error

    with pytest.raises(error):
        fail_midway()
    assert (["parcels"], [1]) == (gpkg.tables(), list(gpkg.object_ids("parcels")))
    assert [(1,)] == gpkg._connection.execute("SELECT id FROM rtree_parcels_geom").fetchall()


def test_transactions_do_not_nest(gpkg: GeoPackage) -> None:
    """A transaction inside another is refused, and the outer one still commits."""
    make(gpkg, None)
    with gpkg.transaction():
        gpkg.upsert("parcels", [{"attributes": {"OBJECTID": 1}}])
        with pytest.raises(LifecycleError, match="do not nest"), gpkg.transaction():
            pass
    assert [1] == list(gpkg.object_ids("parcels"))


CHILD = """
import sys
from archibald._geopackage import GeoPackage
gpkg = GeoPackage.open(sys.argv[1])
gpkg._connection.execute("PRAGMA cache_size = 5")  # spill pages to disk before the commit
def features():
    for oid in range(100, 50_000):
        if oid == 20_000:
            print("halfway", flush=True)
            sys.stdin.read()  # killed here, inside the upsert's transaction
        yield {"attributes": {"OBJECTID": oid, "name": "x" * 40}, "geometry": {"x": oid, "y": 0}}
gpkg.upsert("parcels", features())
"""


def test_a_process_killed_mid_upsert_leaves_the_last_commit(path: Path) -> None:
    """SIGKILL in the middle of a large upsert: GDAL and the next opener see the last commit."""
    with GeoPackage.open(path) as gpkg:
        make(gpkg, "esriGeometryPoint")
        gpkg.upsert(
            "parcels",
            [{"attributes": {"OBJECTID": i}, "geometry": {"x": i, "y": 0}} for i in range(5)],
        )
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with child:
        assert "halfway\n" == child.stdout.readline()  # type: ignore[union-attr]
        assert path.with_name(path.name + "-wal").stat().st_size > 0  # pages were written
        assert 5 == pyogrio.read_info(path, layer="parcels")["features"]  # a reader meanwhile
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert 5 == pyogrio.read_info(path, layer="parcels")["features"]
    with GeoPackage.open(path) as gpkg:
        assert [0, 1, 2, 3, 4] == list(gpkg.object_ids("parcels"))
        assert (
            5 == gpkg._connection.execute("SELECT count(*) FROM rtree_parcels_geom").fetchone()[0]
        )
    assert [path] == list(path.parent.iterdir())


def test_a_fresh_table_swapped_in_by_rename_is_what_gdal_reads(
    gpkg: GeoPackage, path: Path
) -> None:
    """Drop the old table, rename the new one in its place: GDAL and the index follow."""
    make(gpkg, "esriGeometryPoint")
    gpkg.upsert("parcels", [{"attributes": {"OBJECTID": 1}, "geometry": {"x": 1, "y": 1}}])
    make(gpkg, "esriGeometryPoint", table="parcels_next")
    gpkg.upsert("parcels_next", [{"attributes": {"OBJECTID": 7}, "geometry": {"x": 7, "y": 7}}])
    with gpkg.transaction():
        gpkg.drop_table("parcels")
        gpkg.rename_table("parcels_next", "parcels")
    gpkg.upsert("parcels", [{"attributes": {"OBJECTID": 8}, "geometry": {"x": 8, "y": 8}}])
    gpkg.update_extent("parcels")
    names = {row[0] for row in gpkg._connection.execute("SELECT name FROM sqlite_master")}
    assert not {n for n in names if "next" in n}
    assert {f"rtree_parcels_geom_{s}" for s in _geopackage.schema.TRIGGERS} <= names
    assert [(7,), (8,)] == gpkg._connection.execute("SELECT id FROM rtree_parcels_geom").fetchall()
    assert [["parcels", "Point"]] == pyogrio.list_layers(path).tolist()
    frame = pyogrio.read_dataframe(path, layer="parcels", bbox=(6, 6, 9, 9), fid_as_index=True)
    assert [7, 8] == sorted(frame.index)
    assert (7, 7, 8, 8) == tuple(
        round(v) for v in pyogrio.read_info(path, layer="parcels")["total_bounds"]
    )


@pytest.mark.parametrize("native", [True, False])
def test_columns_are_added_and_dropped(
    gpkg: GeoPackage, path: Path, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A field added or removed on the server, with DROP COLUMN or a rebuild of the table."""
    monkeypatch.setattr(_geopackage, "_HAS_DROP_COLUMN", native)
    make(gpkg, "esriGeometryPoint")
    gpkg.upsert("parcels", [{"attributes": attributes(1), "geometry": {"x": 1, "y": 1}}])
    gpkg.add_column("parcels", {"name": "added", "type": "esriFieldTypeDate"})
    gpkg.drop_column("parcels", "name")
    gpkg.upsert("parcels", [{"attributes": attributes(2, added=0), "geometry": {"x": 2, "y": 2}}])
    assert ("added", "DATETIME") == gpkg.columns("parcels")[-1]
    assert "name" not in dict(gpkg.columns("parcels"))
    assert [None, 0] == [f["attributes"]["added"] for f in gpkg.features("parcels")]
    assert 2 == gpkg._connection.execute("SELECT count(*) FROM rtree_parcels_geom").fetchone()[0]
    info = pyogrio.read_info(path, layer="parcels")
    assert (["count", "added"], False) == (list(info["fields"][[0, -1]]), "name" in info["fields"])


def test_meta_values_are_kept_as_json_out_of_the_table_list(gpkg: GeoPackage, path: Path) -> None:
    """set_meta/get_meta round-trip JSON; GDAL lists the table as a plain table."""
    assert gpkg.get_meta("cursor") is None
    gpkg.set_meta("cursor", {"last": [1, "ü"]})
    gpkg.set_meta("cursor", {"last": [2]})
    assert ({"last": [2]}, []) == (gpkg.get_meta("cursor"), gpkg.tables())
    assert [["archibald_sync", None]] == pyogrio.list_layers(path).tolist()


def test_a_file_that_is_not_a_geopackage_is_refused(tmp_path: Path) -> None:
    """A text file or another SQLite database is refused with what to do."""
    text = tmp_path / "notes.gpkg"
    text.write_text("hello, this is not SQLite at all" * 10)
    with pytest.raises(ConfigurationError, match=r"not a GeoPackage.*not an SQLite database"):
        GeoPackage.open(text)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (a)")
    db.close()
    with pytest.raises(ConfigurationError, match=r"another SQLite database.*new file name"):
        GeoPackage.open(other)


@pytest.mark.parametrize("pyproj", [True, False])
def test_gdal_knows_the_layers_crs(
    gpkg: GeoPackage, path: Path, pyproj: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With or without pyproj, GDAL reads the EPSG code of the wkid the layer gave."""
    if not pyproj:
        monkeypatch.setitem(sys.modules, "pyproj", None)
    for table, wkid in [("swiss", 2056), ("web", 102100)]:
        gpkg.create_feature_table(
            table, fields=[], object_id_field="oid", geometry_type="esriGeometryPoint", wkid=wkid
        )
    assert ["EPSG:2056", "EPSG:3857"] == [
        pyogrio.read_info(path, layer=table)["crs"] for table in ("swiss", "web")
    ]


@pytest.mark.parametrize(
    ("pyproj", "wkid", "warned"),
    [(True, 999999, True), (False, 102003, True), (False, 2056, False), (True, 102003, False)],
)
def test_a_crs_written_without_a_definition_is_logged(
    gpkg: GeoPackage,
    pyproj: bool,
    wkid: int,
    warned: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wkid neither pyproj nor GDAL's EPSG lookup can define (GDAL warns 'Unable to
    parse srs_id' on every open) is logged when its table is made; a known one is not."""
    if not pyproj:
        monkeypatch.setitem(sys.modules, "pyproj", None)
    gpkg.create_feature_table(
        "t", fields=[], object_id_field="oid", geometry_type="esriGeometryPoint", wkid=wkid
    )
    (definition,) = gpkg._connection.execute(
        "SELECT definition FROM gpkg_spatial_ref_sys WHERE srs_id = ?", (wkid,)
    ).fetchone()
    expected = [f"the spatial reference wkid {wkid} is written without a definition"]
    logged = [r.getMessage().split(":")[0] for r in caplog.records if r.name == "archibald"]
    assert expected * warned == logged
    assert (definition == "undefined") == (warned or not pyproj)


def test_misuse_is_refused_clearly(gpkg: GeoPackage) -> None:
    """Reserved or taken names, unknown tables and features without an id are refused."""
    make(gpkg, None)
    with pytest.raises(ConfigurationError, match="reserved"):
        make(gpkg, None, table="gpkg_mine")
    with pytest.raises(ConfigurationError, match="already has a table"):
        make(gpkg, None)
    with pytest.raises(ConfigurationError, match="no feature table 'nope'"):
        gpkg.upsert("nope", [])
    with pytest.raises(ConfigurationError, match="object id"):
        gpkg.upsert("parcels", [{"attributes": {"name": "x"}}])
    gpkg.close()
    with pytest.raises(LifecycleError, match="closed"):
        gpkg.tables()


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("upsert"),
            st.lists(
                st.tuples(
                    st.integers(-3, 12),
                    st.none() | st.text(max_size=5),
                    st.none() | st.integers(-(2**62), 2**62),
                    st.none() | st.tuples(st.integers(-50, 50), st.integers(-50, 50)),
                ),
                max_size=6,
            ),
        ),
        st.tuples(st.just("delete"), st.lists(st.integers(-3, 12), max_size=4)),
    ),
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS)
def test_any_sequence_of_upserts_and_deletes_matches_a_dict(
    tmp_path: Path, operations: list[tuple[str, list[Any]]]
) -> None:
    """After random upserts and deletes the table, and its index, equal a dict of features."""
    path = tmp_path / f"model-{abs(hash(repr(operations)))}.gpkg"
    path.unlink(missing_ok=True)
    fields = [
        {"name": "oid", "type": "esriFieldTypeOID"},
        {"name": "label", "type": "esriFieldTypeString"},
        {"name": "big", "type": "esriFieldTypeBigInteger"},
    ]
    model: dict[int, dict[str, Any]] = {}
    with GeoPackage.open(path) as gpkg:
        gpkg.create_feature_table(
            "t", fields=fields, object_id_field="oid", geometry_type="esriGeometryPoint", wkid=4326
        )
        for kind, items in operations:
            if kind == "delete":
                assert len(set(items) & set(model)) == gpkg.delete("t", items)
                for oid in items:
                    model.pop(oid, None)
                continue
            features = [
                {
                    "attributes": {"oid": oid, "label": label, "big": big},
                    "geometry": None if xy is None else {"x": xy[0], "y": xy[1]},
                }
                for oid, label, big, xy in items
            ]
            gpkg.upsert("t", features)
            model.update((f["attributes"]["oid"], gpkg.normalized("t", f)) for f in features)
        assert [model[oid] for oid in sorted(model)] == list(gpkg.features("t"))
        indexed = gpkg._connection.execute("SELECT id, minx, miny FROM rtree_t_geom ORDER BY id")
        expected = [
            (oid, f["geometry"]["x"], f["geometry"]["y"])
            for oid, f in sorted(model.items())
            if f["geometry"] is not None
        ]
        assert expected == indexed.fetchall()


def test_a_file_another_program_is_writing_is_a_clear_error(tmp_path: Path) -> None:
    """A second writer waits for SQLite's lock, then gets a typed error saying why."""
    path = tmp_path / "locked.gpkg"
    with GeoPackage.open(path) as first, GeoPackage.open(path) as second:
        second._connection.execute("PRAGMA busy_timeout = 10")  # not SQLite's 5 s here
        refused = pytest.raises(ArchieClientError, match="another program is writing it")
        with first.transaction(), refused, second.transaction():
            pass  # pragma: no cover


def test_a_file_locked_by_another_program_is_not_called_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a GeoPackage another program holds locked: says so, not "not a GeoPackage"."""
    path = tmp_path / "held.gpkg"
    GeoPackage.open(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **k, timeout=0.01))
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ArchieClientError, match="another program is writing it"):
            GeoPackage.open(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    GeoPackage.open(path).close()  # and it is a GeoPackage still
