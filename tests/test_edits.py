"""Editing: applyEdits in batches, results per feature, rollback, unknown outcomes, upsert."""

from __future__ import annotations

from random import Random
from typing import Any

import httpx
import pytest

from archibald import (
    ArchieClient,
    AuthorizationError,
    EditOutcomeUnknownError,
    EditResult,
    FeatureLayer,
    InvalidParameterError,
    LayerCapabilityError,
    NetworkError,
    ServiceError,
    UserTokenAuth,
)
from archibald.testing import FakeArcGIS

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "wonderland"


@pytest.fixture
def fake() -> FakeArcGIS:
    fake = FakeArcGIS()
    fake.add_user(USER, PASSWORD)
    fake.add_feature_layer("Parcels", count=10, secured=True)
    return fake


def client_for(
    fake: FakeArcGIS,
    transport: httpx.AsyncBaseTransport | None = None,
    user: str = USER,
    **kwargs: Any,
) -> ArchieClient:
    auth = UserTokenAuth(user, PASSWORD, fake.portal_url, http_client=fake.client())
    return ArchieClient(fake.services_url, auth, transport=transport or fake.transport(), **kwargs)


def point(name: str, x: float = 1.0) -> dict[str, Any]:
    return {"attributes": {"NAME": name}, "geometry": {"x": x, "y": 2.0}}


async def test_partial_failures_are_reported_per_feature(fake: FakeArcGIS) -> None:
    """Without rollback, good edits apply and each bad one fails alone, in input order."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        results = await layer.apply_edits(
            adds=[point("A"), {"attributes": {"NOPE": 1}}, point("C")],
            updates=[{"attributes": {"OBJECTID": 1, "NAME": "Renamed"}}],
            deletes=[2, 999],
            rollback_on_failure=False,
        )
    assert ["applied", "failed", "applied"] == [r.status for r in results.adds]
    assert [11, None, 12] == [r.object_id for r in results.adds]
    assert "Attribute column not found: NOPE" == results.adds[1].error_description
    assert [True] == [r.success for r in results.updates]
    assert ["applied", "failed"] == [r.status for r in results.deletes]
    assert [("add", 1), ("delete", 1)] == [(r.kind, r.index) for r in results.failures]
    assert "Renamed" == fake.layer("Parcels").row(1)["attributes"]["NAME"]
    assert 11 == len(fake.layer("Parcels"))


async def test_rollback_stops_at_the_failed_batch(fake: FakeArcGIS) -> None:
    """With rollback, the failing batch is undone by the server and later batches are not
    sent; the batches before it stay applied."""
    adds = [point("A"), point("B"), point("C"), {"attributes": {"POPULATION": "x"}}, point("E")]
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Parcels", 0).apply_edits(adds=adds, batch_size=2)
    statuses = [r.status for r in results.adds]
    assert ["applied", "applied", "rolled_back", "rolled_back", "not_sent"] == statuses
    assert results.adds[2].error_description is not None
    assert "rolled back" in results.adds[2].error_description
    assert 12 == len(fake.layer("Parcels"))
    assert 2 == fake.statistics().requests.get("applyEdits", 0)


async def test_a_lost_connection_after_sending_is_unknown_and_not_resent(
    fake: FakeArcGIS,
) -> None:
    """The server applied the batch and the connection broke: the edits are reported as
    of unknown outcome, with the features, and sent only once."""
    inner = fake.transport()

    async def handle(request: httpx.Request) -> httpx.Response:
        response = await inner.handle_async_request(request)
        if request.url.path.endswith("applyEdits"):
            raise httpx.ReadError("connection reset by peer", request=request)
        return response

    adds = [point("A"), point("B")]
    async with client_for(fake, httpx.MockTransport(handle)) as client:
        with pytest.raises(EditOutcomeUnknownError) as caught:
            await FeatureLayer(client, "Parcels", 0).add_features(adds)
    assert adds == caught.value.adds
    assert ["unknown", "unknown"] == [r.status for r in caught.value.results.adds]
    assert 1 == fake.statistics().requests.get("applyEdits", 0)
    assert 12 == len(fake.layer("Parcels"))


async def test_a_gateway_timeout_is_unknown_but_an_arcgis_refusal_is_not(
    fake: FakeArcGIS,
) -> None:
    """A 504 page from a gateway leaves the outcome unknown; the server's own 403 raises."""
    fake.add_user("viewer", PASSWORD, can_edit=False)
    fake.faults.html_next("applyEdits", status=504)
    async with client_for(fake) as client:
        with pytest.raises(EditOutcomeUnknownError):
            await FeatureLayer(client, "Parcels", 0).add_features([point("A")])
    async with client_for(fake, user="viewer") as client:
        with pytest.raises(AuthorizationError):
            await FeatureLayer(client, "Parcels", 0).add_features([point("A")])


async def test_batches_are_cut_by_count_and_size(fake: FakeArcGIS) -> None:
    """Batches respect batch_size and max_batch_bytes; results keep the input order."""
    adds = [point(f"N{i}", float(i)) for i in range(10)]
    inner = fake.transport()
    sizes: list[int] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("applyEdits"):
            sizes.append(len(await request.aread()))
        return await inner.handle_async_request(request)

    async with client_for(fake, httpx.MockTransport(handle)) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        by_count = await layer.add_features(adds, batch_size=3, rollback_on_failure=False)
        assert 4 == len(sizes)
        sizes.clear()
        by_size = await layer.add_features(adds, max_batch_bytes=800)
    assert len(sizes) >= 3
    assert max(sizes) <= 800
    assert list(range(10)) == [r.index for r in by_count.adds]
    assert list(range(11, 21)) == sorted(r.object_id or 0 for r in by_count.adds)
    assert by_size.ok


async def test_a_body_the_server_refuses_is_cut_in_two(fake: FakeArcGIS) -> None:
    """HTTP 413 (nothing applied) makes the batch go again in halves until it fits."""
    fake.max_body_bytes = 500
    adds = [point(f"N{i}") for i in range(8)]
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Parcels", 0).add_features(adds)
    assert results.ok
    assert 18 == len(fake.layer("Parcels"))
    assert fake.statistics().requests.get("applyEdits", 0) > 1


async def test_a_feature_too_big_for_any_batch_is_not_sent(fake: FakeArcGIS) -> None:
    """A feature whose encoding alone passes max_batch_bytes is reported, not sent."""
    big = {"attributes": {"NAME": "x" * 60}, "geometry": {"x": 1.0, "y": 2.0}}
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Parcels", 0).add_features(
            [big, point("A")], max_batch_bytes=640
        )
    assert ["not_sent", "applied"] == [r.status for r in results.adds]


async def test_capabilities_are_checked_before_sending(fake: FakeArcGIS) -> None:
    """A layer without Create refuses adds before any applyEdits request."""
    fake.layer("Parcels").capabilities = "Query,Update"
    async with client_for(fake) as client:
        with pytest.raises(LayerCapabilityError, match="Create"):
            await FeatureLayer(client, "Parcels", 0).add_features([point("A")])
    assert 0 == fake.statistics().requests.get("applyEdits", 0)


async def test_upsert_updates_existing_rows_and_adds_new_ones(fake: FakeArcGIS) -> None:
    """upsert finds rows by key: existing ones are updated, the others added."""
    name_of_3 = fake.layer("Parcels").row(3)["attributes"]["NAME"]
    features = [
        {"attributes": {"NAME": "Brand New", "POPULATION": 5}},
        {"attributes": {"NAME": name_of_3, "POPULATION": 42}},
    ]
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Parcels", 0).upsert(features, key="NAME")
    assert [EditResult(kind="add", index=0, status="applied", object_id=11)] == [
        EditResult(kind=r.kind, index=r.index, status=r.status, object_id=r.object_id)
        for r in results.adds
    ]
    assert [(1, 3)] == [(r.index, r.object_id) for r in results.updates]
    assert 42 == fake.layer("Parcels").row(3)["attributes"]["POPULATION"]


async def test_upsert_refuses_repeated_keys_before_sending(fake: FakeArcGIS) -> None:
    """Two features with one key value are an error, and nothing is sent."""
    features = [{"attributes": {"NAME": "O'Brien"}}, {"attributes": {"NAME": "O'Brien"}}]
    async with client_for(fake) as client:
        with pytest.raises(InvalidParameterError, match="share the key"):
            await FeatureLayer(client, "Parcels", 0).upsert(features, key="NAME")
    assert 0 == fake.statistics().requests.get("applyEdits", 0)


async def test_geojson_polygons_are_wound_as_esri_wants(fake: FakeArcGIS) -> None:
    """A GeoJSON polygon (exterior counter-clockwise) is stored with its exterior
    clockwise and its hole counter-clockwise."""
    fake.add_feature_layer("Zones", count=0, geometry="polygon")
    outer = [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0], [0.0, 0.0]]
    hole = [[1.0, 1.0], [1.0, 2.0], [2.0, 2.0], [2.0, 1.0], [1.0, 1.0]]
    feature = {
        "type": "Feature",
        "properties": {"NAME": "zone"},
        "geometry": {"type": "Polygon", "coordinates": [outer, hole]},
    }
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Zones", 0).add_features([feature])
    stored = fake.layer("Zones").row(results.adds[0].object_id or 0)
    assert [outer[::-1], hole[::-1]] == stored["geometry"]["rings"]
    assert {"wkid": 4326} == stored["geometry"]["spatialReference"]


async def test_delete_features_by_where(fake: FakeArcGIS) -> None:
    """delete_features(where=) lists the matching ids and deletes each, with results."""
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Parcels", 0).delete_features(where="OBJECTID <= 3")
    assert [1, 2, 3] == [r.object_id for r in results.deletes]
    assert [4, 5] == fake.layer("Parcels").object_ids[:2]


async def test_deleted_ids_are_never_given_again(fake: FakeArcGIS) -> None:
    """After the last feature is deleted, a new one gets a new id, as servers do."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        await layer.delete_features(object_ids=[10])
        results = await layer.add_features([point("A")])
    assert 11 == results.adds[0].object_id


async def test_background_apply_edits_polls_the_job(fake: FakeArcGIS) -> None:
    """With background=True on a layer that supports it, the job is polled to the end
    and its result read like a normal answer."""
    fake.layer("Parcels").supports_async_apply_edits = True
    fake.async_edit_seconds = 5.0
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Parcels", 0).add_features(
            [point("A")], background=True
        )
    assert [11] == [r.object_id for r in results.adds]
    assert fake.statistics().requests["jobs"] >= 3  # statuses, then the result


async def test_a_rolled_back_background_job_reports_its_features(fake: FakeArcGIS) -> None:
    """A background job whose result is a rollback error gives rolled-back results."""
    fake.layer("Parcels").supports_async_apply_edits = True
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Parcels", 0).add_features(
            [point("A"), {"attributes": {"NOPE": 1}}], background=True
        )
    assert ["rolled_back", "rolled_back"] == [r.status for r in results.adds]
    assert 10 == len(fake.layer("Parcels"))


async def test_long_text_and_missing_required_values_fail(fake: FakeArcGIS) -> None:
    """The emulator enforces a string field's length and a field that is not nullable."""
    fake.layer("Parcels").fields[3]["nullable"] = False  # CATEGORY
    adds = [
        {"attributes": {"NAME": "x" * 65, "CATEGORY": "park"}},
        {"attributes": {"NAME": "ok"}},
        {"attributes": {"NAME": "ok", "CATEGORY": "park"}},
    ]
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Parcels", 0).add_features(
            adds, rollback_on_failure=False
        )
    assert [(False, 1000), (False, 1001), (True, None)] == [
        (r.success, r.error_code) for r in results.adds
    ]


async def test_an_edit_that_never_connected_is_refused_not_unknown(fake: FakeArcGIS) -> None:
    """A connection that was never made: the client tries again (the server never saw
    the edit), then raises NetworkError; nothing is reported as unknown."""
    inner = fake.transport()

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("applyEdits"):
            raise httpx.ConnectError("connection refused", request=request)
        return await inner.handle_async_request(request)

    async with client_for(fake, httpx.MockTransport(handle)) as client:
        with pytest.raises(NetworkError, match="could not connect"):
            await FeatureLayer(client, "Parcels", 0).add_features([point("A")])
    assert 10 == len(fake.layer("Parcels"))


async def test_too_many_requests_is_sent_again_after_the_wait(fake: FakeArcGIS) -> None:
    """HTTP 429 means the server turned the request away: the write is sent again after
    Retry-After, and applied once."""
    fake.faults.fail_next("applyEdits", status=429, retry_after=1.0)
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Parcels", 0).add_features([point("A")])
    assert ["applied"] == [r.status for r in results.adds]
    assert 2 == fake.statistics().requests["applyEdits"]
    assert 11 == len(fake.layer("Parcels"))


async def test_too_many_requests_to_the_end_is_a_refusal(fake: FakeArcGIS) -> None:
    """HTTP 429 through every attempt: raised as a refusal, not unknown; nothing added."""
    fake.faults.fail_next("applyEdits", status=429, retry_after=1.0, times=100)
    async with client_for(fake) as client:
        with pytest.raises(ServiceError) as caught:
            await FeatureLayer(client, "Parcels", 0).add_features([point("A")])
    assert not isinstance(caught.value, EditOutcomeUnknownError)
    assert 429 == caught.value.code
    assert 10 == len(fake.layer("Parcels"))


async def test_a_torn_answer_is_unknown(fake: FakeArcGIS) -> None:
    """An answer cut short after the server worked: unknown, sent once."""
    fake.faults.malformed_next("applyEdits")
    async with client_for(fake) as client:
        with pytest.raises(EditOutcomeUnknownError) as caught:
            await FeatureLayer(client, "Parcels", 0).apply_edits(deletes=[1, 2])
    assert [1, 2] == caught.value.deletes
    assert 1 == fake.statistics().requests.get("applyEdits", 0)


async def test_updates_from_geojson_take_the_feature_id(fake: FakeArcGIS) -> None:
    """A GeoJSON Feature's id is the object id of an update that names none."""
    update = {"type": "Feature", "id": 4, "properties": {"NAME": "Four"}, "geometry": None}
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Parcels", 0).update_features([update])
    assert [(4, True)] == [(r.object_id, r.success) for r in results.updates]
    assert "Four" == fake.layer("Parcels").row(4)["attributes"]["NAME"]


async def test_an_update_without_an_object_id_is_refused_before_sending(
    fake: FakeArcGIS,
) -> None:
    """An update that names no feature is an error naming its position; nothing is sent."""
    async with client_for(fake) as client:
        with pytest.raises(InvalidParameterError, match="update 1 names no OBJECTID"):
            await FeatureLayer(client, "Parcels", 0).update_features(
                [{"attributes": {"OBJECTID": 1}}, {"attributes": {"NAME": "x"}}]
            )
    assert 0 == fake.statistics().requests.get("applyEdits", 0)


async def test_upsert_quotes_keys_with_quotes(fake: FakeArcGIS) -> None:
    """A key with a quote in it is matched (doubled in the where clause), not broken."""
    fake.layer("Parcels").apply_edits(
        [{"attributes": {"NAME": "O'Brien"}}], [], [], rollback_on_failure=True, rng=Random(0)
    )
    async with client_for(fake) as client:
        results = await FeatureLayer(client, "Parcels", 0).upsert(
            [{"attributes": {"NAME": "O'Brien", "POPULATION": 3}}], key="name"
        )
    assert [(0, 11)] == [(r.index, r.object_id) for r in results.updates]
    assert () == results.adds


class _RefuseSecondApplyEdits(httpx.AsyncBaseTransport):
    """The emulator, but the second applyEdits request is refused with an ArcGIS error."""

    def __init__(self, fake: FakeArcGIS) -> None:
        self.inner, self.seen = fake.transport(), 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/applyEdits"):
            self.seen += 1
            if self.seen == 2:
                error = {"code": 500, "message": "Unable to complete operation.", "details": []}
                return httpx.Response(200, json={"error": error})
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("rollback", [True, False])
async def test_a_batch_refused_after_others_applied_is_reported_not_raised(
    fake: FakeArcGIS, rollback: bool
) -> None:
    """Batches applied before a refused one: the results say which were applied (the
    refused batch failed, with its error), rather than an exception that hides them."""
    adds = [point(name) for name in "ABCDEF"]
    async with client_for(fake, _RefuseSecondApplyEdits(fake)) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        results = await layer.apply_edits(adds=adds, batch_size=2, rollback_on_failure=rollback)
    statuses = [r.status for r in results.adds]
    applied = sum(1 for r in results.adds if r.success)
    assert 10 + applied == len(fake.layer("Parcels"))
    assert statuses.count("failed") == 2
    assert "Unable to complete operation" in (results.failures[0].error_description or "")
    if rollback:
        assert ["applied", "applied", "failed", "failed", "not_sent", "not_sent"] == statuses


async def test_upsert_follows_a_server_that_ignores_case(
    fake: FakeArcGIS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key found by a case-insensitive server ('abc' finds 'ABC') is updated, not added."""
    name_of_3 = fake.layer("Parcels").row(3)["attributes"]["NAME"]

    async def query(where: str, **_: Any) -> Any:  # as SQL Server's default collation does
        assert name_of_3.lower() in where
        row = {"attributes": {"NAME": name_of_3, "OBJECTID": 3}}
        return type("Found", (), {"features": [row]})()

    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        monkeypatch.setattr(layer, "query", query)
        feature = {"attributes": {"NAME": name_of_3.lower(), "POPULATION": 7}}
        results = await layer.upsert([feature], key="NAME")
        with pytest.raises(InvalidParameterError, match="both match the row"):
            await layer.upsert([feature, {"attributes": {"NAME": name_of_3}}], key="NAME")
    assert [(0, 3)] == [(r.index, r.object_id) for r in results.updates]
    assert 7 == fake.layer("Parcels").row(3)["attributes"]["POPULATION"]


class _BreakAfterApplyEdits:
    """Applies each applyEdits, then loses the connection before the answer."""

    def __init__(self, fake: FakeArcGIS) -> None:
        self.inner = fake.transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("applyEdits"):
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


async def test_an_unknown_upsert_names_the_callers_features_and_positions(
    fake: FakeArcGIS,
) -> None:
    """An upsert whose outcome is unknown hands back the caller's own features, and its
    results' indexes are positions in the caller's list, as a finished upsert's are."""
    name_of_3 = fake.layer("Parcels").row(3)["attributes"]["NAME"]
    features = [
        {"attributes": {"NAME": name_of_3, "POPULATION": 42}},
        {"attributes": {"NAME": "Brand New", "POPULATION": 5}},
    ]
    transport = httpx.MockTransport(_BreakAfterApplyEdits(fake).handle_async_request)
    async with client_for(fake, transport) as client:
        with pytest.raises(EditOutcomeUnknownError) as caught:
            await FeatureLayer(client, "Parcels", 0).upsert(features, key="NAME")
    error = caught.value
    assert ([features[1]], [features[0]]) == (error.adds, error.updates)
    assert ([1], [0]) == (
        [r.index for r in error.results.adds],
        [r.index for r in error.results.updates],
    )


async def test_an_answer_that_cannot_be_decoded_is_unknown(fake: FakeArcGIS) -> None:
    """The server applied the batch and its answer's compression is corrupt: the edits
    are of unknown outcome (not refused), and sent once."""
    inner = fake.transport()

    async def handle(request: httpx.Request) -> httpx.Response:
        response = await inner.handle_async_request(request)
        if request.url.path.endswith("applyEdits"):
            return httpx.Response(
                200, headers={"content-encoding": "gzip"}, content=b"not gzip at all"
            )
        return response

    async with client_for(fake, httpx.MockTransport(handle)) as client:
        with pytest.raises(EditOutcomeUnknownError) as caught:
            await FeatureLayer(client, "Parcels", 0).add_features([point("A")])
    assert ["unknown"] == [r.status for r in caught.value.results.adds]
    assert 1 == fake.statistics().requests.get("applyEdits", 0)
    assert 11 == len(fake.layer("Parcels"))


async def test_a_redirect_loop_is_a_refusal_not_unknown(fake: FakeArcGIS) -> None:
    """An applyEdits redirected in a loop never reached the service: it raises, rather
    than leaving the caller to check the layer for edits that cannot be there."""

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("applyEdits"):
            return httpx.Response(307, headers={"location": str(request.url)})
        return await fake.transport().handle_async_request(request)

    async with client_for(fake, httpx.MockTransport(handle)) as client:
        with pytest.raises(ServiceError, match="redirects"):
            await FeatureLayer(client, "Parcels", 0).add_features([point("A")])
    assert 10 == len(fake.layer("Parcels"))


class _HalveThenRefuse(httpx.AsyncBaseTransport):
    """The emulator, but the first applyEdits is refused as too large (HTTP 413), and
    the request numbered *refuse* (if any) with an ArcGIS error."""

    def __init__(self, fake: FakeArcGIS, refuse: int | None = None) -> None:
        self.inner, self.seen, self.refuse = fake.transport(), 0, refuse

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/applyEdits"):
            self.seen += 1
            if self.seen == 1:
                return httpx.Response(413, text="<html>Request Entity Too Large</html>")
            if self.seen == self.refuse:
                error = {"code": 500, "message": "Unable to complete operation.", "details": []}
                return httpx.Response(200, json={"error": error})
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("rollback", [True, False])
async def test_a_halved_batch_whose_second_half_is_refused_keeps_the_first(
    fake: FakeArcGIS, rollback: bool
) -> None:
    """A batch cut in two after a 413: the first half applied, the second refused; the
    results say so, rather than calling the applied half failed or raising."""
    async with client_for(fake, _HalveThenRefuse(fake, refuse=3)) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        results = await layer.apply_edits(
            adds=[point("A"), point("B")], rollback_on_failure=rollback
        )
    assert ["applied", "failed"] == [r.status for r in results.adds]
    assert 11 == len(fake.layer("Parcels"))


async def test_with_rollback_a_halved_batch_stops_at_its_failed_half(fake: FakeArcGIS) -> None:
    """With rollback, the first half of a halved batch rolled back: the second half is
    not sent, as a batch after a rolled-back one is not."""
    bad = {"attributes": {"POPULATION": "x"}}
    async with client_for(fake, _HalveThenRefuse(fake)) as client:
        results = await FeatureLayer(client, "Parcels", 0).add_features([bad, point("B")])
    assert ["rolled_back", "not_sent"] == [r.status for r in results.adds]
    assert 10 == len(fake.layer("Parcels"))
