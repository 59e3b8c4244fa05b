"""FakeArcGIS change tracking, editor tracking, its wall clock and its control API."""

from __future__ import annotations

import datetime
import json
from typing import Any

import anyio
import pytest

from archibald import ArchieClient
from archibald.auth import UserTokenAuth
from archibald.testing import FakeArcGIS, FakeLayer

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "wonderland-SECRET"
SERVICE = "/arcgis/rest/services/Parcels/FeatureServer"
EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ROLES = ("creatorField", "creationDateField", "editorField", "editDateField")


def tracked(**kwargs: Any) -> tuple[FakeArcGIS, FakeLayer]:
    fake = FakeArcGIS()
    fake.add_user(USER, PASSWORD)
    kwargs.setdefault("count", 5)
    layer = fake.add_feature_layer("Parcels", change_tracking=True, **kwargs)
    return fake, layer


async def call(fake: FakeArcGIS, path: str, *, method: str = "POST", **params: Any) -> Any:
    """One request in process; the decoded JSON body."""
    params.setdefault("f", "json")
    form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    async with fake.client() as http:
        url = f"{fake.origin}{path}"
        if method == "GET":
            response = await http.get(url, params=form)
        else:
            response = await http.post(url, data=form)
    return response.json()


async def bookmark(fake: FakeArcGIS) -> int:
    info = await call(fake, SERVICE, method="GET", returnUpdates="true")
    return int(info["changeTrackingInfo"]["layerServerGens"][0]["serverGen"])


async def extract(fake: FakeArcGIS, since: int, **params: Any) -> Any:
    return await call(
        fake,
        f"{SERVICE}/extractChanges",
        layers=[0],
        layerServerGens=[{"id": 0, "serverGen": since}],
        returnInserts="true",
        returnUpdates="true",
        returnDeletes="true",
        **params,
    )


def point(name: str) -> dict[str, Any]:
    return {"attributes": {"NAME": name}, "geometry": {"x": 1.0, "y": 2.0}}


async def test_service_advertises_change_tracking() -> None:
    """The service lists ChangeTracking and its extractChangesCapabilities."""
    fake, _ = tracked()
    info = await call(fake, SERVICE, method="GET")
    assert ("ChangeTracking" in info["capabilities"].split(","), True) == (
        True,
        info["extractChangesCapabilities"]["supportsServerGens"],
    )


async def test_extract_changes_ids_only_nets_the_changes() -> None:
    """Add+update is an add, update twice one update, add+delete and a delete are deletes."""
    fake, layer = tracked()
    since = await bookmark(fake)
    added = fake.edit(layer, adds=[point("a"), point("b")])["addResults"]
    new_a, new_b = added[0]["objectId"], added[1]["objectId"]
    fake.edit(layer, updates=[{"attributes": {"OBJECTID": new_a, "NAME": "a2"}}])
    fake.edit(layer, updates=[{"attributes": {"OBJECTID": 2, "NAME": "x"}}])
    fake.edit(layer, updates=[{"attributes": {"OBJECTID": 2, "NAME": "y"}}])
    fake.edit(layer, deletes=[new_b, 3])
    body = await extract(fake, since, returnIdsOnly="true")
    expected = {"adds": [new_a], "updates": [2], "deletes": [3, new_b]}
    assert expected == body["edits"][0]["objectIds"]


async def test_extract_changes_full_rows_and_next_bookmark() -> None:
    """Full rows carry current values; the returned gen extracts nothing more."""
    fake, layer = tracked()
    since = await bookmark(fake)
    fake.edit(layer, updates=[{"attributes": {"OBJECTID": 4, "NAME": "renamed"}}])
    body = await extract(fake, since)
    features = body["edits"][0]["features"]
    again = await extract(fake, body["layerServerGens"][0]["serverGen"], returnIdsOnly="true")
    assert (["renamed"], [], {"adds": [], "updates": [], "deletes": []}) == (
        [f["attributes"]["NAME"] for f in features["updates"]],
        features["deleteIds"],
        again["edits"][0]["objectIds"],
    )


async def test_return_flags_default_to_false() -> None:
    """Without returnInserts/Updates/Deletes, nothing is reported."""
    fake, layer = tracked()
    since = await bookmark(fake)
    fake.edit(layer, adds=[point("a")], deletes=[1])
    body = await call(
        fake,
        f"{SERVICE}/extractChanges",
        layers=[0],
        layerServerGens=[{"id": 0, "serverGen": since}],
        returnIdsOnly="true",
    )
    assert {"adds": [], "updates": [], "deletes": []} == body["edits"][0]["objectIds"]


async def test_generations_increase_with_every_edit() -> None:
    """Each edit moves serverGen forward, even with no time passing."""
    fake, layer = tracked()
    gens = [await bookmark(fake)]
    for name in ("a", "b", "c"):
        fake.edit(layer, adds=[point(name)])
        gens.append(await bookmark(fake))
    assert sorted(set(gens)) == gens


async def test_server_gens_window() -> None:
    """serverGens=[start, end] extracts only the changes between the two."""
    fake, layer = tracked()
    start = await bookmark(fake)
    fake.edit(layer, deletes=[1])
    middle = await bookmark(fake)
    fake.edit(layer, deletes=[2])
    body = await call(
        fake,
        f"{SERVICE}/extractChanges",
        layers="0",
        serverGens=[start, middle],
        returnDeletes="true",
        returnIdsOnly="true",
    )
    assert ([1], middle) == (
        body["edits"][0]["objectIds"]["deletes"],
        body["layerServerGens"][0]["serverGen"],
    )


async def test_layer_queries_filter_adds_and_updates_not_deletes() -> None:
    """A useFilter where clause narrows adds and updates; deletes all come through."""
    fake, layer = tracked()
    since = await bookmark(fake)
    fake.edit(layer, adds=[point("keep"), point("drop")], deletes=[5])
    queries = {"0": {"where": "NAME = 'keep'", "queryOption": "useFilter"}}
    body = await extract(fake, since, returnIdsOnly="true", layerQueries=queries)
    assert {"adds": [6], "updates": [], "deletes": [5]} == body["edits"][0]["objectIds"]


async def test_cleaned_up_generation_is_refused() -> None:
    """After cleanup_change_tracking, an older generation gets an error: re-read the layer."""
    fake, layer = tracked()
    since = await bookmark(fake)
    fake.edit(layer, deletes=[1])
    fake.cleanup_change_tracking("Parcels")
    body = await extract(fake, since, returnIdsOnly="true")
    info = await call(fake, SERVICE, method="GET", returnUpdates="true")
    gens = info["changeTrackingInfo"]["layerServerGens"][0]
    assert (400, gens["serverGen"]) == (body["error"]["code"], gens["minServerGen"])


async def test_extract_changes_without_tracking_or_by_get_is_refused() -> None:
    """A service without ChangeTracking refuses extractChanges; GET is refused too."""
    fake = FakeArcGIS()
    fake.add_feature_layer("Plain", count=3)
    untracked = await call(
        fake,
        "/arcgis/rest/services/Plain/FeatureServer/extractChanges",
        layers=[0],
        layerServerGens=[{"id": 0, "serverGen": 0}],
    )
    tracked_fake, _ = tracked()
    by_get = await call(
        tracked_fake, f"{SERVICE}/extractChanges", method="GET", layers="0", serverGens=[0, 1]
    )
    assert (400, 400) == (untracked["error"]["code"], by_get["error"]["code"])


async def test_editor_stamps_follow_the_virtual_clock_and_the_token_user() -> None:
    """Edits over HTTP are stamped with the token's user and the wall clock, days apart."""
    fake, layer = tracked(editor_tracking=True)
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    async with ArchieClient(fake.services_url, auth, transport=fake.transport()) as client:
        await anyio.sleep(86_400)
        await client.post_json(
            "Parcels/FeatureServer/0/applyEdits",
            data={"adds": json.dumps([point("new")]), "f": "json"},
        )
        await anyio.sleep(86_400)
        await client.post_json(
            "Parcels/FeatureServer/0/applyEdits",
            data={"updates": json.dumps([{"attributes": {"OBJECTID": 6, "NAME": "x"}}])},
        )
    row = layer.features[-1]["attributes"]
    stamps = [row[k] for k in ("created_user", "last_edited_user")]
    dates = [row["created_date"] - EPOCH_MS, row["last_edited_date"] - EPOCH_MS]
    assert ([USER, USER], [86_400_000, 172_800_000]) == (stamps, dates)


async def test_layer_metadata_describes_editor_tracking() -> None:
    """editFieldsInfo names the four fields; editingInfo dates follow the data and schema."""
    fake, layer = tracked(editor_tracking=True)
    await anyio.sleep(60)
    fake.edit(layer, deletes=[1])
    await anyio.sleep(60)
    fake.add_field(layer, {"name": "NOTE", "type": "esriFieldTypeString"})
    meta = await call(fake, f"{SERVICE}/0", method="GET")
    info = meta["editFieldsInfo"]
    assert (
        ("created_user", "created_date", "last_edited_user", "last_edited_date"),
        {"timeZone": "UTC"},
        EPOCH_MS + 60_000,
        EPOCH_MS + 120_000,
        EPOCH_MS + 120_000,
    ) == (
        tuple(info[k] for k in ROLES),
        info["dateFieldsTimeReference"],
        meta["editingInfo"]["dataLastEditDate"],
        meta["editingInfo"]["schemaLastEditDate"],
        meta["editingInfo"]["lastEditDate"],
    )


async def test_edit_date_where_clauses_and_skew() -> None:
    """TIMESTAMP and DATE literals compare in UTC; at_ms and the skew set the edit date."""
    fake, layer = tracked(editor_tracking=True)
    await anyio.sleep(2 * 86_400)  # 2026-01-03
    fake.edit(layer, updates=[{"attributes": {"OBJECTID": 1, "NAME": "now"}}])
    fake.clock_skew_ms = -86_400_000  # the server's clock a day behind: 2026-01-02
    fake.edit(layer, updates=[{"attributes": {"OBJECTID": 2, "NAME": "behind"}}])
    fake.edit(layer, updates=[{"attributes": {"OBJECTID": 3, "NAME": "old"}}], at_ms=EPOCH_MS)
    answers = []
    for where in (
        "last_edited_date >= TIMESTAMP '2026-01-03 00:00:00'",
        "last_edited_date >= DATE '2026-01-02' AND last_edited_date < DATE '2026-01-03'",
        "last_edited_date < TIMESTAMP '2026-01-01 00:00:00.001' AND OBJECTID <= 3",
    ):
        body = await call(
            fake, f"{SERVICE}/0/query", method="GET", where=where, returnIdsOnly="true"
        )
        answers.append(body["objectIds"])
    assert [[1], [2], [3]] == answers


async def test_object_ids_are_never_reused() -> None:
    """Deleting the highest feature and adding one gives a new id, over HTTP too."""
    fake, layer = tracked()
    fake.edit(layer, deletes=[5])
    first = fake.edit(layer, adds=[point("a")])["addResults"][0]["objectId"]
    fake.edit(layer, deletes=[first])
    body = await call(fake, f"{SERVICE}/0/applyEdits", adds=[point("b")])
    assert (6, 7) == (first, body["addResults"][0]["objectId"])


async def test_fields_added_and_deleted_show_in_metadata_and_queries() -> None:
    """A new field is queryable (null); a deleted one is gone from metadata and queries."""
    fake, layer = tracked()
    fake.add_field(layer, {"name": "NOTE", "type": "esriFieldTypeString"})
    fake.edit(layer, updates=[{"attributes": {"OBJECTID": 1, "NOTE": "hi"}}])
    fake.delete_field(layer.url, "NAME")
    meta = await call(fake, f"{SERVICE}/0", method="GET")
    rows = await call(fake, f"{SERVICE}/0/query", method="GET", where="NOTE IS NOT NULL")
    refused = await call(fake, f"{SERVICE}/0/query", method="GET", where="NAME = 'x'")
    names = [f["name"] for f in meta["fields"]]
    assert (True, False, [1], "error" in refused) == (
        "NOTE" in names,
        "NAME" in names,
        [f["attributes"]["OBJECTID"] for f in rows["features"]],
        True,
    )


async def test_edit_refuses_a_bad_item_and_applies_nothing() -> None:
    """The control API raises on a refused item, and the layer is unchanged."""
    fake, layer = tracked()
    with pytest.raises(ValueError, match="Attribute column not found: NOPE"):
        fake.edit(layer, adds=[point("ok"), {"attributes": {"NOPE": 1}}])
    assert 5 == len(layer)


async def test_extract_changes_is_counted() -> None:
    """extractChanges is an endpoint of its own in the statistics."""
    fake, _ = tracked()
    await extract(fake, await bookmark(fake), returnIdsOnly="true")
    assert 1 == fake.statistics().requests["extractChanges"]


def test_epoch_must_be_timezone_aware() -> None:
    """A naive epoch is refused, saying how to give one."""
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeArcGIS(epoch=datetime.datetime(2026, 1, 1))
