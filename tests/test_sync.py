"""`LayerMirror`: a GeoPackage copy of a layer kept current, by each strategy, against the
emulator's change tracking and editor tracking; what it reports, what it falls back to,
and what it leaves behind when stopped."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pyogrio
import pytest

from archibald import (
    ArchieClient,
    ConfigurationError,
    FeatureLayer,
    LayerMirror,
    NoAuth,
)
from archibald._geopackage import GeoPackage
from archibald.testing import FakeArcGIS, FakeLayer

pytestmark = pytest.mark.anyio

COUNT = 300


def make_fake(*, tracking: bool = True, editors: bool = True, count: int = COUNT) -> FakeArcGIS:
    fake = FakeArcGIS()
    fake.add_feature_layer(
        "Parcels",
        count=count,
        geometry="polygon",
        max_record_count=100,
        change_tracking=tracking,
        editor_tracking=editors,
    )
    return fake


def layer_of(fake: FakeArcGIS) -> FakeLayer:
    return fake.layer("Parcels")


def copy_of(path: Path) -> dict[int, dict[str, Any]]:
    """The mirror's features by object id (attributes only)."""
    with GeoPackage.open(path) as gpkg:
        [table] = [t for t in gpkg.tables() if not t.startswith("archibald")]
        return {f["attributes"]["OBJECTID"]: dict(f["attributes"]) for f in gpkg.features(table)}


def server_of(fake: FakeArcGIS) -> dict[int, dict[str, Any]]:
    """The server's features by object id (attributes only; a field a row lacks is null)."""
    names = [f["name"] for f in layer_of(fake).fields]
    return {
        f["attributes"]["OBJECTID"]: {n: f["attributes"].get(n) for n in names}
        for f in layer_of(fake).features
    }


@contextlib.asynccontextmanager
async def open_layer(fake: FakeArcGIS) -> AsyncIterator[FeatureLayer]:
    """The layer, on a client for the emulator."""
    async with ArchieClient(fake.services_url, NoAuth(), transport=fake.transport()) as client:
        yield FeatureLayer(client, "Parcels", 0)


def some_edits(fake: FakeArcGIS) -> None:
    """Add 2, update 3 and delete 4 features on the server."""
    rows = layer_of(fake).features
    updates = [
        {"attributes": {"OBJECTID": r["attributes"]["OBJECTID"], "NAME": "changed"}}
        for r in rows[10:13]
    ]
    adds = [{"attributes": {"NAME": "new"}, "geometry": rows[0]["geometry"]} for _ in range(2)]
    deletes = [r["attributes"]["OBJECTID"] for r in rows[20:24]]
    fake.edit(layer_of(fake), adds=adds, updates=updates, deletes=deletes)


@pytest.mark.parametrize("strategy", ["extractChanges", "editDate", "full"])
async def test_each_strategy_applies_adds_updates_and_deletes(
    tmp_path: Path, strategy: str
) -> None:
    """After edits on the server, a sync by each strategy reports them and the copy matches."""
    fake = make_fake()
    path = tmp_path / "copy.gpkg"
    mirror = LayerMirror(path)
    async with open_layer(fake) as layer:
        first = await mirror.sync(layer)
        assert (first.added, first.updated, first.deleted, first.first) == (COUNT, 0, 0, True)
        await anyio.sleep(3600)  # an hour later
        some_edits(fake)
        report = await mirror.sync(layer, strategy=strategy)  # type: ignore[arg-type]
    assert (report.strategy, report.added, report.updated, report.deleted) == (strategy, 2, 3, 4)
    assert server_of(fake) == copy_of(path)


async def test_a_sync_with_nothing_changed_reports_zeros_and_reads_little(tmp_path: Path) -> None:
    """No edits since the last sync: zeros by every strategy, and far fewer queries than
    a full copy (the edit-date window re-reads only the last edits, compared)."""
    fake = make_fake(count=3000)
    mirror = LayerMirror(tmp_path / "copy.gpkg")
    async with open_layer(fake) as layer:
        before = fake.statistics().requests.get("query", 0)
        await mirror.sync(layer)
        full = fake.statistics().requests.get("query", 0) - before
        await anyio.sleep(3600)
        some_edits(fake)
        await mirror.sync(layer)
        for strategy in ("extractChanges", "editDate"):
            before = fake.statistics().requests.get("query", 0)
            report = await mirror.sync(layer, strategy=strategy)  # type: ignore[arg-type]
            used = fake.statistics().requests.get("query", 0) - before
            assert (report.strategy, report.added, report.updated, report.deleted) == (
                strategy, 0, 0, 0,
            )  # fmt: skip
            assert used * 3 < full


async def test_the_copy_opens_in_gdal_with_its_crs_and_an_index(tmp_path: Path) -> None:
    """pyogrio reads the copy as a polygon layer in EPSG:4326 with every feature."""
    fake = make_fake()
    path = tmp_path / "copy.gpkg"
    async with open_layer(fake) as layer:
        await LayerMirror(path).sync(layer)
    info = pyogrio.read_info(path, layer="parcels")
    assert (info["features"], info["crs"], info["geometry_type"]) == (
        COUNT, "EPSG:4326", "MultiPolygon",
    )  # fmt: skip


async def test_a_purged_generation_falls_back_and_says_why(tmp_path: Path) -> None:
    """Change tracking cleaned up past the copy's generation: by edit date, with the reason."""
    fake = make_fake()
    path = tmp_path / "copy.gpkg"
    mirror = LayerMirror(path)
    async with open_layer(fake) as layer:
        await mirror.sync(layer)
        some_edits(fake)
        fake.cleanup_change_tracking("Parcels")
        report = await mirror.sync(layer)
        assert report.strategy == "editDate"
        assert "purged" in report.fallbacks[0]
        assert (report.added, report.updated, report.deleted) == (2, 3, 4)
        some_edits(fake)
        again = await mirror.sync(layer)  # the generation was renewed: extractChanges again
    assert again.strategy == "extractChanges"
    assert server_of(fake) == copy_of(path)


async def test_a_layer_without_tracking_is_copied_in_full(tmp_path: Path) -> None:
    """Neither change nor editor tracking: the full strategy, with both reasons given."""
    fake = make_fake(tracking=False, editors=False)
    path = tmp_path / "copy.gpkg"
    mirror = LayerMirror(path)
    async with open_layer(fake) as layer:
        await mirror.sync(layer)
        some_edits(fake)
        report = await mirror.sync(layer)
    assert (report.strategy, report.added, report.updated, report.deleted) == ("full", 2, 3, 4)
    assert len(report.fallbacks) == 2
    assert server_of(fake) == copy_of(path)


async def test_a_field_added_on_the_server_is_applied(tmp_path: Path) -> None:
    """A new field: the sync says so, copies again, and the column holds the values."""
    fake = make_fake()
    path = tmp_path / "copy.gpkg"
    mirror = LayerMirror(path)
    async with open_layer(fake) as layer:
        await mirror.sync(layer)
        fake.add_field(layer_of(fake), {"name": "ZONE", "type": "esriFieldTypeString", "length": 8})
        report = await mirror.sync(layer)
    assert report.schema_changes == ("field ZONE added",)
    assert report.strategy == "full"
    assert all("ZONE" in row for row in copy_of(path).values())


async def test_another_layer_or_where_is_refused(tmp_path: Path) -> None:
    """A file that mirrors one where clause refuses another, and keeps its copy."""
    fake = make_fake()
    path = tmp_path / "copy.gpkg"
    mirror = LayerMirror(path)
    async with open_layer(fake) as layer:
        await mirror.sync(layer)
        with pytest.raises(ConfigurationError, match="where"):
            await mirror.sync(layer, where="OBJECTID < 10")
    assert len(copy_of(path)) == COUNT


async def test_a_sync_cancelled_midway_leaves_the_last_copy(tmp_path: Path) -> None:
    """Cancelled while crawling, the copy and its record are those of the last sync."""
    fake = make_fake(tracking=False, editors=False)
    path = tmp_path / "copy.gpkg"
    mirror = LayerMirror(path)
    async with open_layer(fake) as layer:
        await mirror.sync(layer)
        record = mirror.record()
        some_edits(fake)
        fake.faults.latency["query"] = 10.0
        with anyio.move_on_after(15) as scope:
            await mirror.sync(layer)
        assert scope.cancelled_caught
        fake.faults.latency["query"] = 0.0
        assert mirror.record() == record
        assert len(copy_of(path)) == COUNT
        await mirror.sync(layer)
    assert server_of(fake) == copy_of(path)
