"""`LayerMirror`: a GeoPackage copy of a layer kept current, by each strategy, against the
emulator's change tracking and editor tracking; what it reports, what it falls back to,
and what it leaves behind when stopped."""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pyogrio
import pytest

from archibald import (
    ArchieClient,
    ConfigurationError,
    FeatureLayer,
    LayerMirror,
    NoAuth,
    SyncReport,
    UserTokenAuth,
)
from archibald._geopackage import GeoPackage
from archibald.testing import FakeArcGIS, FakeLayer

from .test_properties import BACKENDS, run_on

pytestmark = pytest.mark.anyio


COUNT = 300


def make_fake(
    *, tracking: bool = True, editors: bool = True, count: int = COUNT, secured: bool = False
) -> FakeArcGIS:
    fake = FakeArcGIS()
    fake.add_feature_layer(
        "Parcels",
        count=count,
        geometry="polygon",
        max_record_count=100,
        change_tracking=tracking,
        editor_tracking=editors,
        secured=secured,
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


async def test_a_sync_with_nothing_changed_reports_zeros_and_reads_little(
    tmp_path: Path,
) -> None:
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
    info = pyogrio.read_info(path, layer="Parcels")
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


def _a_week_of_hourly_syncs() -> Callable[[], Awaitable[tuple[list[SyncReport], Any, Any, int]]]:
    fake = make_fake(count=200, secured=True)
    fake.max_token_minutes = 60
    fake.add_user("crawler", "hunter2")
    reports: list[SyncReport] = []
    edits: list[int] = []

    async def edit_now_and_then() -> None:
        for n in itertools.count():
            await anyio.sleep(5400)  # every hour and a half
            rows = layer_of(fake).features
            oid = rows[n % 50]["attributes"]["OBJECTID"]
            edits.append(n)
            fake.edit(
                layer_of(fake),
                adds=[{"attributes": {"NAME": f"new {n}"}, "geometry": rows[0]["geometry"]}],
                updates=[{"attributes": {"OBJECTID": oid, "NAME": f"changed {n}"}}],
                deletes=[rows[-1]["attributes"]["OBJECTID"]] if n % 3 == 0 else [],
            )

    async def main() -> tuple[list[SyncReport], Any, Any, int]:
        auth = UserTokenAuth(
            "crawler", "hunter2", fake.portal_url, expiration=60, http_client=fake.client()
        )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "copy.gpkg"
            client = ArchieClient(fake.services_url, auth, transport=fake.transport())
            async with auth, client:
                layer = FeatureLayer(client, "Parcels", 0)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(edit_now_and_then)
                    with anyio.move_on_after(7 * 86400):
                        await LayerMirror(path).sync_every(layer, 3600, on_report=reports.append)
                    tg.cancel_scope.cancel()
                reports.append(await LayerMirror(path).sync(layer))
                assert server_of(fake) == copy_of(path)
                return reports, auth.statistics(), client.statistics(), len(edits)

    return main


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_hour_for_a_week_with_one_hour_tokens(backend: str) -> None:
    """sync_every over a simulated week: every hourly sync ran, by extractChanges, tokens
    were renewed in the background, and no request waited for one."""
    reports, tokens, client, edits = run_on(backend, _a_week_of_hourly_syncs())
    assert len(reports) == 7 * 24 + 1
    assert {r.strategy for r in reports[1:]} == {"extractChanges"}
    assert edits >= 7 * 24 * 60 // 90 - 1
    assert sum(r.added for r in reports[1:]) == edits
    assert sum(r.updated for r in reports[1:]) == edits
    assert sum(r.deleted for r in reports[1:]) == len(range(0, edits, 3))
    assert tokens.fetches >= 7 * 24  # one-hour tokens, renewed ahead of expiry
    assert (client.token_waits, client.token_rejections) == (0, 0)


async def test_extract_changes_answered_as_a_job_is_followed(tmp_path: Path) -> None:
    """A server that answers extractChanges with a status URL: polled, then read."""
    fake = make_fake()
    fake.extract_changes_as_job = True
    path = tmp_path / "copy.gpkg"
    mirror = LayerMirror(path)
    async with open_layer(fake) as layer:
        await mirror.sync(layer)
        some_edits(fake)
        report = await mirror.sync(layer)
    assert (report.strategy, report.added, report.updated, report.deleted) == (
        "extractChanges", 2, 3, 4,
    )  # fmt: skip
    assert fake.statistics().requests["jobs"] >= 2  # a status, then the result
    assert server_of(fake) == copy_of(path)


async def test_deletions_are_found_range_by_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By edit date, only the id ranges whose counts differ are listed to find deletions."""
    monkeypatch.setattr("archibald.sync._strategies._RANGE_SIZE", 500)
    fake = make_fake(count=3000, tracking=False)
    path = tmp_path / "copy.gpkg"
    mirror = LayerMirror(path)
    async with open_layer(fake) as layer:
        await mirror.sync(layer)
        fake.edit(layer_of(fake), deletes=[10, 2900])  # in two of the six ranges
        listed: list[str] = []
        real_object_ids = layer.object_ids

        async def object_ids(where: str = "1=1") -> list[int]:
            listed.append(where)
            return await real_object_ids(where)

        monkeypatch.setattr(layer, "object_ids", object_ids)
        report = await mirror.sync(layer)
    assert (report.strategy, report.deleted) == ("editDate", 2)
    assert len(listed) == 2


class _EditsBeforePage3(httpx.AsyncBaseTransport):
    """The emulator's transport; before the first sync reads its third page, feature 5
    (already read) is edited, and twenty minutes later feature 250 (not yet read)."""

    def __init__(self, fake: FakeArcGIS) -> None:
        self.fake, self.inner, self.armed = fake, fake.transport(), True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.armed and b"OBJECTID+%3E%3D+201" in request.content:
            self.armed = False
            rows = {r["attributes"]["OBJECTID"]: r for r in layer_of(self.fake).features}
            for oid in (5, 250):
                change = {"attributes": {"OBJECTID": rows[oid]["attributes"]["OBJECTID"]}}
                change["attributes"]["NAME"] = f"edited during the crawl {oid}"
                self.fake.edit(layer_of(self.fake), updates=[change])
                await anyio.sleep(1200)
        return await self.inner.handle_async_request(request)


async def test_an_edit_made_during_a_long_crawl_is_found_by_the_next_sync(
    tmp_path: Path,
) -> None:
    """A feature edited after its page was read, twenty minutes before a later page's
    feature was: the next sync by edit date still brings the first edit."""
    fake = make_fake(tracking=False)
    path = tmp_path / "copy.gpkg"
    mirror = LayerMirror(path)
    client = ArchieClient(
        fake.services_url, NoAuth(), transport=_EditsBeforePage3(fake), timeout=3600
    )
    async with client:
        layer = FeatureLayer(client, "Parcels", 0)
        await mirror.sync(layer)
        report = await mirror.sync(layer)
    assert (report.strategy, report.updated) == ("editDate", 1)
    assert server_of(fake) == copy_of(path)
