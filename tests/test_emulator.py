"""FakeArcGIS in process: the protocol behaviours archibald relies on, and its faults."""

from __future__ import annotations

import itertools
import json
from typing import Any

import anyio
import httpx
import pytest

from archibald.auth import TokenPlacement, UserTokenAuth
from archibald.testing import FakeArcGIS, FakeLayer

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "wonderland-SECRET"


@pytest.fixture
def fake() -> FakeArcGIS:
    fake = FakeArcGIS()
    fake.add_user(USER, PASSWORD)
    fake.add_feature_layer("Parcels", count=10_001, max_record_count=1000)
    fake.add_feature_layer("Private/Wells", count=50, secured=True)
    return fake


async def call(
    fake: FakeArcGIS, path: str, *, method: str = "GET", **params: Any
) -> tuple[int, Any]:
    """Send one request in process; return the status and the decoded JSON body."""
    async with fake.client() as http:
        url = f"{fake.origin}{path}"
        params.setdefault("f", "json")
        if method == "GET":
            response = await http.get(url, params=params)
        else:
            response = await http.post(url, data=params)
    return response.status_code, response.json()


async def get_token(fake: FakeArcGIS, **extra: Any) -> str:
    form = {"username": USER, "password": PASSWORD, "client": "requestip", **extra}
    status, body = await call(fake, "/sharing/rest/generateToken", method="POST", **form)
    assert 200 == status
    return str(body["token"])


LAYER = "/arcgis/rest/services/Parcels/FeatureServer/0"
WELLS = "/arcgis/rest/services/Private/Wells/FeatureServer/0"


async def test_offset_paging_returns_every_oid_once(fake: FakeArcGIS) -> None:
    """Paging 10,001 features by resultOffset: each OID once; the flag false only at the end."""
    seen: list[int] = []
    flags: list[bool] = []
    offset = 0
    while True:
        _, body = await call(
            fake,
            f"{LAYER}/query",
            where="1=1",
            outFields="OBJECTID",
            orderByFields="OBJECTID",
            resultOffset=offset,
            resultRecordCount=1000,
        )
        seen.extend(f["attributes"]["OBJECTID"] for f in body["features"])
        flags.append(body["exceededTransferLimit"])
        offset += len(body["features"])
        if not body["exceededTransferLimit"]:
            break
    assert list(range(1, 10_002)) == seen
    assert [True] * 10 + [False] == flags


async def test_a_query_without_paging_stops_at_max_record_count(fake: FakeArcGIS) -> None:
    """No resultOffset: the first maxRecordCount features, and exceededTransferLimit true."""
    _, body = await call(fake, f"{LAYER}/query", where="1=1")
    assert 1000 == len(body["features"])
    assert body["exceededTransferLimit"] is True
    assert [{"name": "OBJECTID", "type": "esriFieldTypeOID", "alias": "OBJECTID"}] == body["fields"]


async def test_counts_ids_and_statistics(fake: FakeArcGIS) -> None:
    """returnCountOnly, returnIdsOnly (no limit) and outStatistics agree with the data."""
    where = "POPULATION >= 50000 AND CATEGORY IS NOT NULL"
    _, count = await call(fake, f"{LAYER}/query", where=where, returnCountOnly="true")
    _, ids = await call(fake, f"{LAYER}/query", where=where, returnIdsOnly="true")
    stats = json.dumps(
        [
            {"statisticType": "min", "onStatisticField": "OBJECTID", "outStatisticFieldName": "lo"},
            {"statisticType": "max", "onStatisticField": "OBJECTID", "outStatisticFieldName": "hi"},
            {
                "statisticType": "count",
                "onStatisticField": "OBJECTID",
                "outStatisticFieldName": "n",
            },
        ]
    )
    _, summary = await call(fake, f"{LAYER}/query", where=where, outStatistics=stats)
    layer = fake.layer("Parcels")
    expected = [
        f["attributes"]["OBJECTID"]
        for f in layer.features
        if f["attributes"]["POPULATION"] >= 50000 and f["attributes"]["CATEGORY"] is not None
    ]
    assert len(expected) == count["count"]
    assert "OBJECTID" == ids["objectIdFieldName"]
    assert expected == ids["objectIds"]
    assert {"lo": expected[0], "hi": expected[-1], "n": len(expected)} == summary["features"][0][
        "attributes"
    ]


async def test_object_ids_order_and_out_fields(fake: FakeArcGIS) -> None:
    """objectIds picks features; orderByFields DESC sorts them; outFields selects columns."""
    _, body = await call(
        fake,
        f"{LAYER}/query",
        objectIds="5,3,9",
        outFields="OBJECTID,NAME",
        orderByFields="OBJECTID DESC",
        returnGeometry="false",
    )
    assert [9, 5, 3] == [f["attributes"]["OBJECTID"] for f in body["features"]]
    assert {"OBJECTID", "NAME"} == set(body["features"][0]["attributes"])
    assert "geometry" not in body["features"][0]


async def test_geojson_polygons_keep_their_holes(fake: FakeArcGIS) -> None:
    """f=geojson: a polygon with a hole has a CCW outer ring and a CW hole, per RFC 7946."""
    fake.add_feature_layer("Zones", count=20, geometry="polygon")
    async with fake.client() as http:
        response = await http.get(
            f"{fake.origin}/arcgis/rest/services/Zones/FeatureServer/0/query",
            params={"where": "OBJECTID = 10", "outFields": "*", "f": "geojson"},
        )
    collection = response.json()
    assert "application/geo+json" in response.headers["content-type"]
    (feature,) = collection["features"]
    assert 10 == feature["id"]
    assert "Polygon" == feature["geometry"]["type"]
    outer, hole = feature["geometry"]["coordinates"]

    def area(ring: list[list[float]]) -> float:
        return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in itertools.pairwise(ring))

    assert area(outer) > 0 > area(hole)


async def test_where_errors_are_arcgis_errors(fake: FakeArcGIS) -> None:
    """An unknown field in where: HTTP 200 with a 400 error envelope, as ArcGIS answers."""
    status, body = await call(fake, f"{LAYER}/query", where="NOPE = 1")
    assert 200 == status
    assert 400 == body["error"]["code"]
    assert "NOPE" in body["error"]["details"][0]


async def test_the_html_page_without_f_json(fake: FakeArcGIS) -> None:
    """Without f=json a server answers HTML, as ArcGIS does."""
    async with fake.client() as http:
        response = await http.get(f"{fake.origin}{LAYER}")
    assert response.headers["content-type"].startswith("text/html")


async def test_metadata_describes_the_layer(fake: FakeArcGIS) -> None:
    """Layer metadata has what crawlers read: fields, OID field, limits, capabilities."""
    _, meta = await call(fake, LAYER)
    assert "OBJECTID" == meta["objectIdField"]
    assert 1000 == meta["maxRecordCount"]
    assert meta["advancedQueryCapabilities"]["supportsPagination"] is True
    assert "esriGeometryPoint" == meta["geometryType"]
    assert {"wkid": 4326, "latestWkid": 4326} == meta["spatialReference"]
    assert "Query" in meta["capabilities"].split(",")
    assert {"xmin", "ymin", "xmax", "ymax"} <= set(meta["extent"])
    _, catalog = await call(fake, "/arcgis/rest/services")
    assert ["Private"] == catalog["folders"]
    assert [{"name": "Parcels", "type": "FeatureServer"}] == catalog["services"]
    _, service = await call(fake, "/arcgis/rest/services/Parcels/FeatureServer")
    assert [0] == [layer["id"] for layer in service["layers"]]


async def test_secured_services_want_a_valid_token(fake: FakeArcGIS) -> None:
    """499 without a token, 498 with a bad one, data with a good one; public needs none."""
    _, missing = await call(fake, f"{WELLS}/query", where="1=1")
    _, bad = await call(fake, f"{WELLS}/query", where="1=1", token="nope")
    token = await get_token(fake)
    _, good = await call(fake, f"{WELLS}/query", where="1=1", token=token)
    _, public = await call(fake, f"{LAYER}/query", where="1=1")
    assert 499 == missing["error"]["code"]
    assert "GWM_0003" == missing["error"]["messageCode"]
    assert 498 == bad["error"]["code"]
    assert 50 == len(good["features"])
    assert 1000 == len(public["features"])
    stats = fake.statistics()
    assert (1, 1, 1) == (stats.rejected_499, stats.rejected_498, stats.tokens_issued)


async def test_tokens_expire_after_their_lifetime(fake: FakeArcGIS) -> None:
    """A 60-minute token works at 59 minutes and is refused (498) at 61."""
    token = await get_token(fake, expiration="60")
    await anyio.sleep(59 * 60)
    _, before = await call(fake, f"{WELLS}/query", where="1=1", token=token)
    await anyio.sleep(2 * 60)
    _, after = await call(fake, f"{WELLS}/query", where="1=1", token=token)
    assert "features" in before
    assert 498 == after["error"]["code"]


async def test_lifetimes_are_capped_silently(fake: FakeArcGIS) -> None:
    """Asking more than the server's maximum yields the maximum, as real servers do."""
    fake.max_token_minutes = 30
    _, body = await call(
        fake,
        "/sharing/rest/generateToken",
        method="POST",
        username=USER,
        password=PASSWORD,
        expiration="600",
    )
    token = body["token"]
    await anyio.sleep(31 * 60)
    _, after = await call(fake, f"{WELLS}/query", where="1=1", token=token)
    assert 498 == after["error"]["code"]


async def test_refused_credentials_look_like_arcgis(fake: FakeArcGIS) -> None:
    """Wrong password: HTTP 200 with error 400 'Unable to generate token.'."""
    status, body = await call(
        fake, "/sharing/rest/generateToken", method="POST", username=USER, password="wrong"
    )
    assert 200 == status
    assert {
        "code": 400,
        "message": "Unable to generate token.",
        "details": ["Invalid username or password."],
    } == body["error"]


async def test_referer_bound_tokens_need_their_referer(fake: FakeArcGIS) -> None:
    """A client=referer token is refused (498) without the matching Referer header."""
    token = await get_token(fake, client="referer", referer="https://app.example.com")
    async with fake.client() as http:
        url = f"{fake.origin}{WELLS}/query"
        params = {"where": "1=1", "f": "json", "token": token}
        without = (await http.get(url, params=params)).json()
        wrong = (await http.get(url, params=params, headers={"Referer": "x"})).json()
        right = (
            await http.get(url, params=params, headers={"Referer": "https://app.example.com"})
        ).json()
    assert 498 == without["error"]["code"]
    assert 498 == wrong["error"]["code"]
    assert 50 == len(right["features"])


@pytest.mark.parametrize("placement", list(TokenPlacement))
async def test_user_token_auth_works_against_the_emulator(
    fake: FakeArcGIS, placement: TokenPlacement
) -> None:
    """UserTokenAuth with each placement reaches a secured layer; one token is issued."""
    auth = UserTokenAuth(
        USER, PASSWORD, fake.portal_url, http_client=fake.client(), placement=placement
    )
    async with auth, fake.client(auth=auth) as http:
        for _ in range(3):
            response = await http.get(
                f"{fake.origin}{WELLS}/query", params={"where": "1=1", "f": "json"}
            )
            assert 50 == len(response.json()["features"])
    assert 1 == fake.statistics().tokens_issued
    assert 1 == fake.statistics().requests["generateToken"]


async def test_revoking_every_token(fake: FakeArcGIS) -> None:
    """revoke_all_tokens(): the next request with an old token gets 498."""
    token = await get_token(fake)
    fake.revoke_all_tokens()
    _, body = await call(fake, f"{WELLS}/query", where="1=1", token=token)
    assert 498 == body["error"]["code"]


async def test_http_error_style(fake: FakeArcGIS) -> None:
    """error_style='http' also puts the error code in the HTTP status."""
    fake.error_style = "http"
    status, body = await call(fake, f"{WELLS}/query", where="1=1", token="nope")
    assert 498 == status
    assert 498 == body["error"]["code"]


async def test_scripted_faults(fake: FakeArcGIS) -> None:
    """fail_next, html_next, malformed_next and drop_next each hit the next request once."""
    fake.faults.fail_next("query", status=429, retry_after=2)
    fake.faults.html_next("query")
    fake.faults.malformed_next("query")
    fake.faults.drop_next("query")
    url = f"{fake.origin}{LAYER}/query"
    params = {"where": "1=1", "f": "json"}
    async with fake.client() as http:
        limited = await http.get(url, params=params)
        html = await http.get(url, params=params)
        malformed = await http.get(url, params=params)
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(url, params=params)
        healthy = await http.get(url, params=params)
    assert (429, "2") == (limited.status_code, limited.headers["retry-after"])
    assert 502 == html.status_code
    assert html.text.startswith("<html>")
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    assert 1000 == len(healthy.json()["features"])
    assert 4 == fake.statistics().faults_injected
    assert 5 == fake.statistics().requests["query"]


async def test_a_page_cap_below_max_record_count(fake: FakeArcGIS) -> None:
    """page_cap: fewer features than asked, with exceededTransferLimit still true."""
    fake.faults.page_cap = 300
    _, body = await call(
        fake, f"{LAYER}/query", where="1=1", resultOffset=0, resultRecordCount=1000
    )
    assert 300 == len(body["features"])
    assert body["exceededTransferLimit"] is True


async def test_ignored_result_offset(fake: FakeArcGIS) -> None:
    """ignore_result_offset: every page is the first page, as some servers do."""
    fake.faults.ignore_result_offset = True
    _, first = await call(fake, f"{LAYER}/query", where="1=1", resultOffset=0)
    _, second = await call(fake, f"{LAYER}/query", where="1=1", resultOffset=1000)
    assert first["features"] == second["features"]


async def test_pagination_unsupported(fake: FakeArcGIS) -> None:
    """A layer without pagination advertises it and refuses resultOffset."""
    fake.layer("Parcels").supports_pagination = False
    _, meta = await call(fake, LAYER)
    _, body = await call(fake, f"{LAYER}/query", where="1=1", resultOffset=1000)
    assert meta["advancedQueryCapabilities"]["supportsPagination"] is False
    assert ["Pagination is not supported."] == body["error"]["details"]


async def test_token_endpoint_outage_and_latency(fake: FakeArcGIS) -> None:
    """token_outage answers 503; latency delays on anyio's clock."""
    fake.faults.token_outage = True
    async with fake.client() as http:
        down = await http.post(fake.token_url, data={"username": USER, "password": PASSWORD})
    assert 503 == down.status_code
    fake.faults.token_outage = False
    fake.faults.latency["generateToken"] = 7.5
    start = anyio.current_time()
    await get_token(fake)
    assert 7.5 == anyio.current_time() - start


async def test_apply_edits_reports_each_item(fake: FakeArcGIS) -> None:
    """applyEdits: adds get new OIDs, a missing update fails alone without rollback."""
    layer = fake.layer("Parcels")
    adds = json.dumps([{"attributes": {"NAME": "New"}, "geometry": {"x": 1.0, "y": 2.0}}])
    updates = json.dumps(
        [{"attributes": {"OBJECTID": 1, "NAME": "Renamed"}}, {"attributes": {"OBJECTID": 99999}}]
    )
    _, result = await call(
        fake,
        f"{LAYER}/applyEdits",
        method="POST",
        adds=adds,
        updates=updates,
        deletes="2,3",
        rollbackOnFailure="false",
    )
    (added,) = result["addResults"]
    assert (10_002, True) == (added["objectId"], added["success"])
    assert added["globalId"] == layer.row(10_002)["attributes"]["GlobalID"]
    assert added["globalId"].startswith("{")
    assert [True, False] == [r["success"] for r in result["updateResults"]]
    assert 1019 == result["updateResults"][1]["error"]["code"]
    assert [True, True] == [r["success"] for r in result["deleteResults"]]
    assert 10_000 == len(layer)
    assert "Renamed" == layer.row(1)["attributes"]["NAME"]


async def test_apply_edits_rolls_back_on_failure(fake: FakeArcGIS) -> None:
    """rollbackOnFailure (the default): one failure refuses the whole request as real
    servers do (a top-level error 400 naming the cause, no per-item results), nothing
    applied."""
    layer = fake.layer("Parcels")
    _, result = await call(fake, f"{LAYER}/applyEdits", method="POST", deletes="1,424242")
    expected = {
        "code": 400,
        "message": "Unable to complete operation.",
        "details": ["Object is missing.", "Operation rolled back."],
    }
    assert {"error": expected} == result
    assert 10_001 == len(layer)


async def test_read_only_layers_refuse_edits(fake: FakeArcGIS) -> None:
    """A layer without Delete in its capabilities refuses deletes."""
    fake.add_feature_layer("ReadOnly", count=5, editable=False)
    _, result = await call(
        fake,
        "/arcgis/rest/services/ReadOnly/FeatureServer/0/applyEdits",
        method="POST",
        deletes="1",
    )
    assert 400 == result["error"]["code"]
    assert 5 == len(fake.layer("ReadOnly"))


async def test_server_info_and_standalone_tokens(fake: FakeArcGIS) -> None:
    """rest/info names the portal for a hosted server, and a standalone server's own token
    endpoint, which issues working tokens."""
    _, hosted = await call(fake, "/arcgis/rest/info")
    assert fake.token_url == hosted["authInfo"]["tokenServicesUrl"]
    assert fake.origin == hosted["owningSystemUrl"]
    fake.server = "standalone"
    _, info = await call(fake, "/arcgis/rest/info")
    assert fake.server_token_url == info["authInfo"]["tokenServicesUrl"]
    _, body = await call(
        fake,
        "/arcgis/tokens/generateToken",
        method="POST",
        username=USER,
        password=PASSWORD,
    )
    _, data = await call(fake, f"{WELLS}/query", where="1=1", token=body["token"])
    assert 50 == len(data["features"])


async def test_oauth_app_tokens(fake: FakeArcGIS) -> None:
    """oauth2/token: expires_in in seconds; a wrong secret is an invalid_client error."""
    fake.add_app("app-id", "app-secret")
    form = {"client_id": "app-id", "grant_type": "client_credentials", "expiration": "120"}
    _, good = await call(
        fake, "/sharing/rest/oauth2/token", method="POST", client_secret="app-secret", **form
    )
    _, bad = await call(
        fake, "/sharing/rest/oauth2/token", method="POST", client_secret="nope", **form
    )
    assert 7200 == good["expires_in"]
    assert "invalid_client" == bad["error"]["error"]


async def test_users_own_features(fake: FakeArcGIS) -> None:
    """A layer from the user's own features and fields answers queries on them."""
    fields = [
        {"name": "FID", "type": "esriFieldTypeOID", "alias": "FID"},
        {"name": "LABEL", "type": "esriFieldTypeString", "alias": "Label"},
    ]
    features = [{"attributes": {"FID": i, "LABEL": f"item {i}"}} for i in (10, 20, 30)]
    fake.add_map_layer(
        "Mine", features=features, fields=fields, object_id_field="FID", geometry=None
    )
    _, body = await call(
        fake,
        "/arcgis/rest/services/Mine/MapServer/0/query",
        where="LABEL LIKE '%2%'",
        outFields="*",
    )
    assert [{"attributes": {"FID": 20, "LABEL": "item 20"}}] == body["features"]


# -- bad input never crashes the emulator (found in review) ------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "[1]",
        "[null]",
        "{}",
        "[]",
        "not json",
        '[{"statisticType": "sum", "onStatisticField": "NAME"}]',
        '[{"statisticType": "median", "onStatisticField": "AREA"}]',
    ],
)
async def test_bad_statistics_are_arcgis_errors(fake: FakeArcGIS, spec: str) -> None:
    """Every malformed outStatistics is an error 400, never a crash."""
    _, body = await call(fake, f"{LAYER}/query", where="1=1", outStatistics=spec)
    assert 400 == body["error"]["code"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("adds", "[1]"),
        ("adds", "[null]"),
        ("adds", '[{"attributes": [1]}]'),
        ("adds", '[{"attributes": {"POPULATION": "lots"}}]'),
        ("adds", '[{"attributes": {}, "geometry": "junk"}]'),
        ("adds", '[{"attributes": {}, "geometry": {"paths": [[[0, 0], [1, 1]]]}}]'),
        ("updates", '[{"attributes": {"OBJECTID": true, "NAME": "x"}}]'),
        ("updates", '[{"attributes": {"OBJECTID": [1]}}]'),
        ("deletes", "[1.5]"),
        ("deletes", '["a"]'),
        ("deletes", "[[1]]"),
    ],
)
async def test_bad_edits_fail_alone_and_change_nothing(
    fake: FakeArcGIS, field: str, value: str
) -> None:
    """Each malformed edit is a failed item with code 1000; the layer is untouched."""
    layer = fake.layer("Parcels")
    before = layer.features[:3]
    _, body = await call(
        fake, f"{LAYER}/applyEdits", method="POST", rollbackOnFailure="false", **{field: value}
    )
    (item,) = body[
        {"adds": "addResults", "updates": "updateResults", "deletes": "deleteResults"}[field]
    ]
    assert item["success"] is False
    assert 1000 == item["error"]["code"]
    assert 10_001 == len(layer)
    assert before == layer.features[:3]
    _, meta = await call(fake, LAYER)  # the layer still answers
    assert "extent" in meta


async def test_long_and_deep_where_clauses(fake: FakeArcGIS) -> None:
    """2,000 ORs work; absurd nesting is an error 400, not a RecursionError."""
    fake.add_feature_layer("Small", count=20)
    small = "/arcgis/rest/services/Small/FeatureServer/0/query"
    many = " OR ".join(f"OBJECTID = {i}" for i in range(5, 2005))
    _, body = await call(fake, small, method="POST", where=many, returnCountOnly="true")
    assert {"count": 16} == body
    deep = "(" * 3000 + "OBJECTID = 1" + ")" * 3000
    _, body = await call(fake, small, method="POST", where=deep)
    assert 400 == body["error"]["code"]


@pytest.mark.parametrize("where", ["OBJECTID = 1 AND 5", "OBJECTID", "'a'", "(POP)"])
async def test_a_where_must_test_something(fake: FakeArcGIS, where: str) -> None:
    """A where clause that is a value rather than a condition is refused."""
    _, body = await call(fake, f"{LAYER}/query", where=where)
    assert 400 == body["error"]["code"]


async def test_negative_offsets_are_refused(fake: FakeArcGIS) -> None:
    """resultOffset=-5 would make a naive pager loop forever: error 400."""
    _, body = await call(fake, f"{LAYER}/query", where="1=1", resultOffset=-5)
    assert 400 == body["error"]["code"]


async def test_strange_layer_ids_are_invalid_urls(fake: FakeArcGIS) -> None:
    """A layer id of superscript digits is an unknown URL, not a crash."""
    _, body = await call(fake, "/arcgis/rest/services/Parcels/FeatureServer/²")
    assert 400 == body["error"]["code"]


def test_own_features_need_their_fields() -> None:
    """Features whose object-id field is not among the fields are refused when added."""
    with pytest.raises(ValueError, match="pass fields="):
        FakeArcGIS().add_feature_layer(
            "B", features=[{"attributes": {"FID": 1}}], object_id_field="FID"
        )


async def test_an_emulator_bug_is_a_500_envelope(
    fake: FakeArcGIS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception inside the emulator answers error 500 (and is logged)."""

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(FakeLayer, "matching_ids", broken)
    _, body = await call(fake, f"{LAYER}/query", where="1=1")
    assert 500 == body["error"]["code"]
    assert ["RuntimeError: boom"] == body["error"]["details"]


# -- more ways to misbehave ------------------------------------------------------------


async def test_unordered_rows_and_an_absent_flag(fake: FakeArcGIS) -> None:
    """unordered scrambles rows without orderByFields; omit_false_transfer_limit drops
    the flag from the last page. Paging still yields every row once."""
    fake.faults.unordered = True
    fake.faults.omit_false_transfer_limit = True
    seen: list[int] = []
    offset = 0
    while True:
        _, body = await call(fake, f"{LAYER}/query", where="1=1", resultOffset=offset)
        seen += [f["attributes"]["OBJECTID"] for f in body["features"]]
        offset += len(body["features"])
        if not body.get("exceededTransferLimit"):
            assert "exceededTransferLimit" not in body
            break
    assert seen != sorted(seen)
    assert list(range(1, 10_002)) == sorted(seen)


async def test_long_urls_can_be_refused(fake: FakeArcGIS) -> None:
    """max_url_length: a GET with a longer URL gets HTTP 414; a POST is fine."""
    fake.faults.max_url_length = 2000
    ids = ",".join(str(i) for i in range(1, 800))
    async with fake.client() as http:
        url = f"{fake.origin}{LAYER}/query"
        too_long = await http.get(url, params={"objectIds": ids, "f": "json"})
        posted = await http.post(
            url, data={"objectIds": ids, "f": "json", "returnCountOnly": "true"}
        )
    assert 414 == too_long.status_code
    assert {"count": 799} == posted.json()


async def test_object_ids_beyond_a_page_are_cut_silently(fake: FakeArcGIS) -> None:
    """More objectIds than maxRecordCount: the page is cut, and nothing says so."""
    ids = ",".join(str(i) for i in range(1, 1501))
    _, body = await call(fake, f"{LAYER}/query", method="POST", objectIds=ids)
    assert 1000 == len(body["features"])
    assert body["exceededTransferLimit"] is False


async def test_unsupported_parameters_are_refused(fake: FakeArcGIS) -> None:
    """A parameter the emulator does not implement is refused, not silently ignored."""
    _, body = await call(fake, f"{LAYER}/query", where="1=1", groupByFieldsForStatistics="NAME")
    assert (
        "'groupByFieldsForStatistics' is not supported by FakeArcGIS." in body["error"]["details"]
    )


async def test_a_standalone_server_wants_its_own_tokens() -> None:
    """server='standalone': portal tokens are refused; the server's own tokens work."""
    fake = FakeArcGIS(server="standalone")
    fake.add_user(USER, PASSWORD)
    fake.add_feature_layer("Private/Wells", count=5, secured=True)
    portal_token = await get_token(fake)
    _, refused = await call(fake, f"{WELLS}/query", where="1=1", token=portal_token)
    _, own = await call(
        fake, "/arcgis/tokens/generateToken", method="POST", username=USER, password=PASSWORD
    )
    _, served = await call(fake, f"{WELLS}/query", where="1=1", token=own["token"])
    _, info = await call(fake, "/arcgis/rest/info")
    assert 498 == refused["error"]["code"]
    assert 5 == len(served["features"])
    assert "owningSystemUrl" not in info


async def test_the_catalog_shows_secured_services_to_the_signed_in(fake: FakeArcGIS) -> None:
    """Anonymous callers see public services only; a bad token is refused."""
    token = await get_token(fake)
    _, anonymous = await call(fake, "/arcgis/rest/services/Private")
    _, signed_in = await call(fake, "/arcgis/rest/services/Private", token=token)
    _, bad = await call(fake, "/arcgis/rest/services", token="nope")
    assert [] == anonymous["services"]
    assert [{"name": "Private/Wells", "type": "FeatureServer"}] == signed_in["services"]
    assert 498 == bad["error"]["code"]


async def test_multipart_geometries_as_geojson(fake: FakeArcGIS) -> None:
    """Generated two-part lines and polygons come out as MultiLineString and MultiPolygon."""
    fake.add_feature_layer("Lines", count=15, geometry="polyline")
    fake.add_feature_layer("Areas", count=15, geometry="polygon")
    kinds = {}
    for name in ("Lines", "Areas"):
        async with fake.client() as http:
            response = await http.get(
                f"{fake.services_url}/{name}/FeatureServer/0/query",
                params={"objectIds": "1,15", "f": "geojson"},
            )
        kinds[name] = [f["geometry"]["type"] for f in response.json()["features"]]
    assert {
        "Lines": ["LineString", "MultiLineString"],
        "Areas": ["Polygon", "MultiPolygon"],
    } == kinds


def test_scripted_faults_check_their_arguments(fake: FakeArcGIS) -> None:
    """A misspelled endpoint or times=0 is an error, not a fault that never fires."""
    with pytest.raises(ValueError, match="unknown endpoint 'querry'"):
        fake.faults.fail_next("querry")
    with pytest.raises(ValueError, match="at least 1"):
        fake.faults.drop_next("query", times=0)


async def test_a_body_over_the_limit_gets_413_from_the_web_server(fake: FakeArcGIS) -> None:
    """With max_body_bytes, a bigger POST is answered 413 as an HTML page, unapplied."""
    fake.max_body_bytes = 100
    async with fake.client() as http:
        response = await http.post(
            f"{fake.origin}{LAYER}/applyEdits", data={"f": "json", "deletes": "1," * 60 + "2"}
        )
    assert (413, "text/html") == (response.status_code, response.headers["content-type"])
    assert 10_001 == len(fake.layer("Parcels"))


async def test_a_background_apply_edits_job_runs_then_answers(fake: FakeArcGIS) -> None:
    """async=true answers a status URL: Executing, then Completed with the result."""
    fake.layer("Parcels").supports_async_apply_edits = True
    _, meta = await call(fake, LAYER)
    assert meta["advancedEditingCapabilities"]["supportsAsyncApplyEdits"] is True
    _, started = await call(
        fake, f"{LAYER}/applyEdits", method="POST", deletes="1", **{"async": "true"}
    )
    status_path = started["statusUrl"].removeprefix(fake.origin)
    assert status_path.startswith("/arcgis/rest/services/Parcels/FeatureServer/jobs/")
    _, running = await call(fake, status_path)
    assert "Executing" == running["status"]
    await anyio.sleep(fake.async_edit_seconds)
    _, done = await call(fake, status_path)
    assert "Completed" == done["status"]
    _, result = await call(fake, done["resultUrl"].removeprefix(fake.origin))
    assert [
        {"objectId": 1, "globalId": result["deleteResults"][0]["globalId"], "success": True}
    ] == result["deleteResults"]


async def test_a_user_who_cannot_edit_gets_403(fake: FakeArcGIS) -> None:
    """add_user(can_edit=False): queries work, applyEdits answers error 403."""
    fake.add_user("viewer", "pw", can_edit=False)
    _, body = await call(
        fake, "/sharing/rest/generateToken", method="POST", username="viewer", password="pw"
    )
    token = body["token"]
    _, counted = await call(
        fake, f"{LAYER}/query", where="1=1", returnCountOnly="true", token=token
    )
    assert 10_001 == counted["count"]
    _, refused = await call(fake, f"{LAYER}/applyEdits", method="POST", deletes="1", token=token)
    assert 403 == refused["error"]["code"]
    assert 10_001 == len(fake.layer("Parcels"))
