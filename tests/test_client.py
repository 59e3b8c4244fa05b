"""ArchieClient: errors, one refresh per rejected token, safe retries, trust, limits."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from archibald import (
    ArchieClient,
    AuthorizationError,
    ConfigurationError,
    InvalidCredentialsError,
    InvalidParameterError,
    InvalidServiceURL,
    LifecycleError,
    NetworkError,
    NoAuth,
    NotFoundError,
    RetryPolicy,
    ServiceError,
    TokenExpiredError,
    TokenMissingError,
    TokenPlacement,
    TokenRefreshError,
    UserTokenAuth,
)
from archibald.testing import FakeArcGIS

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "wonderland-SECRET"
WELLS = "Private/Wells/FeatureServer/0"
PARCELS = "Parcels/FeatureServer/0"
COUNT = {"where": "1=1", "returnCountOnly": True}


class Recording(httpx.AsyncBaseTransport):
    """Delegates to another transport; remembers requests and the most in flight at once."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1


@pytest.fixture
def fake() -> FakeArcGIS:
    fake = FakeArcGIS()
    fake.add_user(USER, PASSWORD)
    fake.add_feature_layer("Parcels", count=3000, max_record_count=1000)
    fake.add_feature_layer("Private/Wells", count=50, secured=True)
    return fake


@pytest.fixture
def wire(fake: FakeArcGIS) -> Recording:
    return Recording(fake.transport())


def make_client(fake: FakeArcGIS, wire: Recording, **kwargs: Any) -> ArchieClient:
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    return ArchieClient(fake.services_url, auth, transport=wire, **kwargs)


@pytest.fixture(autouse=True)
def no_token_logged(caplog: pytest.LogCaptureFixture, fake: FakeArcGIS) -> Iterator[None]:
    """No password or issued token in any log record of any test here."""
    caplog.set_level(logging.DEBUG)
    yield
    secrets = [PASSWORD, *fake.issued_tokens()]
    for record in caplog.records:
        for secret in secrets:
            assert secret not in record.getMessage()


async def test_a_query_on_a_secured_layer(fake: FakeArcGIS, wire: Recording) -> None:
    """The client enters the auth, sends f=json and the token, and returns the JSON."""
    async with make_client(fake, wire) as client:
        body = await client.get_json(f"{WELLS}/query", params=COUNT)
        response = await client.get(f"{WELLS}/query", params=COUNT)
        assert client.auth.is_active
    assert {"count": 50} == body
    assert 50 == response.json()["count"]
    assert "json" == wire.requests[0].url.params["f"]
    assert "true" == wire.requests[0].url.params["returnCountOnly"]
    assert not client.auth.is_active  # the client entered it, so it left it


async def test_a_shared_auth_is_left_alone(fake: FakeArcGIS, wire: Recording) -> None:
    """An auth the caller entered is used and left active; one token serves two clients."""
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    async with auth:
        for _ in range(2):
            async with ArchieClient(fake.services_url, auth, transport=wire) as client:
                await client.get_json(f"{WELLS}/query", params=COUNT)
        assert auth.is_active
    assert 1 == fake.statistics().tokens_issued


async def test_revoked_tokens_cost_one_token_request(fake: FakeArcGIS, wire: Recording) -> None:
    """100 concurrent requests meet a revoked token: all succeed after one token request."""
    fake.faults.latency["query"] = 1.0
    results: list[dict[str, Any]] = []

    async def count() -> None:
        results.append(await client.get_json(f"{WELLS}/query", params=COUNT))

    async with make_client(fake, wire) as client:
        fake.revoke_all_tokens()
        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(count)
        stats = client.statistics()
    assert [{"count": 50}] * 100 == results
    assert 2 == fake.statistics().requests["generateToken"]  # entry + one refresh
    assert 20 == stats.token_rejections  # those on the wire; the queued ones read the new token
    assert (1, 0) == (stats.refreshes, stats.retries)


async def test_a_renewal_under_way_serves_the_rejected_requests(
    fake: FakeArcGIS, wire: Recording
) -> None:
    """Revoked while a scheduled renewal is in flight: the renewal's token serves everyone."""
    fake.faults.latency["generateToken"] = 5.0
    results: list[dict[str, Any]] = []

    async def count() -> None:
        results.append(await client.get_json(f"{WELLS}/query", params=COUNT))

    start = anyio.current_time()
    async with make_client(fake, wire) as client:
        # The renewal leaves at 55 minutes and waits 5 s for its answer: revoke meanwhile.
        await anyio.sleep_until(start + 3300 + 1)
        fake.revoke_all_tokens()
        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(count)
    assert [{"count": 50}] * 100 == results
    assert 2 == fake.statistics().requests["generateToken"]  # entry + the scheduled renewal


async def test_late_rejections_reuse_the_new_token(fake: FakeArcGIS, wire: Recording) -> None:
    """Requests rejected after the token was already replaced retry without a new fetch."""
    fake.faults.latency["query"] = 10.0  # the server checks the token after the wait
    results: list[dict[str, Any]] = []

    async def count() -> None:
        results.append(await client.get_json(f"{WELLS}/query", params=COUNT))

    async with make_client(fake, wire) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(count)  # all carry the first token
            await anyio.sleep(1)
            fake.revoke_all_tokens()
            await client.auth.force_refresh()  # the new token arrives before the rejections
        stats = client.statistics()
    assert [{"count": 50}] * 50 == results
    assert 2 == fake.statistics().requests["generateToken"]
    assert 20 == stats.token_rejections  # the ones on the wire when the token was revoked


async def test_a_second_rejection_surfaces(fake: FakeArcGIS) -> None:
    """A token rejected again right after a refresh: TokenExpiredError, no loop."""
    inner = fake.transport()

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(f"{WELLS}/query"):  # this service takes no token at all
            return httpx.Response(200, json=envelope(498, "Invalid token."))
        return await inner.handle_async_request(request)

    async with make_client(fake, Recording(httpx.MockTransport(handle))) as client:
        with pytest.raises(TokenExpiredError) as info:
            await client.get_json(f"{WELLS}/query", params=COUNT)
        stats = client.statistics()
    assert "rejected again with a fresh token" in str(info.value)
    assert (2, 1) == (stats.token_rejections, stats.refreshes)
    assert 2 == fake.statistics().requests["generateToken"]


async def test_refused_credentials_fail_at_entry(fake: FakeArcGIS, wire: Recording) -> None:
    """Bad credentials: InvalidCredentialsError from `async with ArchieClient`, bare."""
    auth = UserTokenAuth(USER, "wrong", fake.portal_url, http_client=fake.client())
    with pytest.raises(InvalidCredentialsError):
        async with ArchieClient(fake.services_url, auth, transport=wire):
            pytest.fail("the block must not run")


async def test_503_twice_then_success(fake: FakeArcGIS, wire: Recording) -> None:
    """Two 503s, then data: the client retried twice and returns the data."""
    fake.faults.fail_next("query", status=503, times=2)
    async with make_client(fake, wire) as client:
        body = await client.get_json(f"{PARCELS}/query", params=COUNT)
        assert 2 == client.statistics().retries
    assert {"count": 3000} == body
    assert 3 == fake.statistics().requests["query"]


async def test_retry_after_is_honoured(fake: FakeArcGIS, wire: Recording) -> None:
    """429 with Retry-After: 2: the retry comes exactly two seconds later."""
    fake.faults.fail_next("query", status=429, retry_after=2)
    async with make_client(fake, wire) as client:
        start = anyio.current_time()
        await client.get_json(f"{PARCELS}/query", params=COUNT)
        assert 2.0 == anyio.current_time() - start


async def test_edits_are_not_retried(fake: FakeArcGIS, wire: Recording) -> None:
    """An applyEdits POST that meets a 503 fails at once: it may have been applied."""
    fake.faults.fail_next("applyEdits", status=503, times=1)
    async with make_client(fake, wire) as client:
        with pytest.raises(ServiceError) as info:
            await client.post_json(f"{PARCELS}/applyEdits", data={"deletes": [1, 2]})
        assert 0 == client.statistics().retries
    assert 503 == info.value.code
    assert 1 == fake.statistics().requests["applyEdits"]
    assert 3000 == len(fake.layer("Parcels"))


async def test_edits_are_retried_when_the_caller_says_so(fake: FakeArcGIS, wire: Recording) -> None:
    """idempotent=True: the caller vouches that the POST may be repeated."""
    fake.faults.fail_next("applyEdits", status=503, times=1)
    async with make_client(fake, wire) as client:
        body = await client.post_json(
            f"{PARCELS}/applyEdits", data={"deletes": [1, 2]}, idempotent=True
        )
    assert [True, True] == [r["success"] for r in body["deleteResults"]]


async def test_query_posts_are_retried(fake: FakeArcGIS, wire: Recording) -> None:
    """A POST to query only reads, so it is retried like a GET."""
    fake.faults.fail_next("query", status=502, times=1)
    async with make_client(fake, wire) as client:
        body = await client.post_json(f"{PARCELS}/query", data=COUNT)
    assert {"count": 3000} == body


async def test_dropped_connections_are_retried_then_reported(
    fake: FakeArcGIS, wire: Recording
) -> None:
    """A dropped connection is retried; when every attempt fails: NetworkError."""
    fake.faults.drop_next("query", times=1)
    async with make_client(fake, wire, retry=RetryPolicy(attempts=3)) as client:
        assert {"count": 3000} == await client.get_json(f"{PARCELS}/query", params=COUNT)
        fake.faults.drop_next("query", times=3)
        with pytest.raises(
            NetworkError, match=r"the connection to arcgis\.example\.com broke"
        ) as info:
            await client.get_json(f"{PARCELS}/query", params=COUNT)
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
    assert info.value.url is not None


async def test_the_retry_budget_bounds_the_waiting(fake: FakeArcGIS, wire: Recording) -> None:
    """A Retry-After beyond the budget is not waited for: the error comes at once."""
    fake.faults.fail_next("query", status=503, retry_after=600)
    async with make_client(fake, wire, retry=RetryPolicy(budget=60)) as client:
        start = anyio.current_time()
        with pytest.raises(ServiceError):
            await client.get_json(f"{PARCELS}/query", params=COUNT)
        assert start == anyio.current_time()


async def test_a_long_query_goes_as_a_post(fake: FakeArcGIS, wire: Recording) -> None:
    """A 3,000-character query is sent as a POST form and answers like the GET would."""
    ids = ",".join(str(i) for i in range(1, 800))
    where = f"OBJECTID IN ({ids})"
    assert len(where) > 3000
    async with make_client(fake, wire) as client:
        body = await client.get_json(
            f"{PARCELS}/query", params={"where": where, "returnCountOnly": True}
        )
    assert {"count": 799} == body
    request = wire.requests[-1]
    assert "POST" == request.method
    assert len(str(request.url)) < 200
    assert b"returnCountOnly=true" in request.content


async def test_the_limiter_bounds_requests_in_flight(fake: FakeArcGIS, wire: Recording) -> None:
    """max_concurrent_requests=5: never more than five requests on the wire at once."""
    fake.faults.latency["query"] = 1.0

    async def count() -> None:
        await client.get_json(f"{PARCELS}/query", params=COUNT)

    client = make_client(fake, wire, max_concurrent_requests=5)
    async with client, anyio.create_task_group() as tg:
        for _ in range(40):
            tg.start_soon(count)
    assert 5 == wire.most_in_flight


async def test_geojson_is_left_as_asked(fake: FakeArcGIS, wire: Recording) -> None:
    """f=geojson is kept; anything else becomes f=json."""
    async with make_client(fake, wire) as client:
        collection = await client.get_json(
            f"{PARCELS}/query", params={"where": "OBJECTID < 3", "f": "geojson"}
        )
        await client.get_json(PARCELS, params={"f": "html"})
    assert "FeatureCollection" == collection["type"]
    assert "json" == wire.requests[-1].url.params["f"]


async def test_one_debug_record_per_request_without_the_token(
    fake: FakeArcGIS, wire: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    """Each request logs method, URL, status, time and attempt at DEBUG; retries at INFO."""
    fake.faults.fail_next("query", status=503)
    async with make_client(fake, wire) as client:
        await client.get_json(f"{WELLS}/query", params=COUNT)
    records = [r for r in caplog.records if r.name == "archibald"]
    debug = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    info = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert 2 == len(debug)
    assert debug[0].startswith(f"GET {fake.services_url}/{WELLS}/query?")
    assert "-> 503" in debug[0]
    assert "(attempt 1)" in debug[0]
    assert "-> 200" in debug[1]
    assert "(attempt 2)" in debug[1]
    assert 1 == len(info)
    assert "retrying" in info[0]


# -- error shapes (respx: the server answers exactly this) ------------------------------

BASE = "https://gis.example.com/arcgis/rest/services"
LAYER_QUERY = f"{BASE}/Roads/FeatureServer/0/query"


def envelope(code: int, message: str, *details: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": list(details)}}


@pytest.mark.parametrize(
    ("answer", "expected", "text"),
    [
        (httpx.Response(200, json=envelope(400, "Unable to complete operation.", "bad where")),
         ServiceError, "ArcGIS error 400: Unable to complete operation. [bad where]"),
        (httpx.Response(200, json=envelope(403, "You do not have permissions")),
         AuthorizationError, "ArcGIS error 403: You do not have permissions"),
        (httpx.Response(200, json=envelope(404, "Service not found")),
         NotFoundError, "ArcGIS error 404: Service not found"),
        (httpx.Response(200, json=envelope(498, "Invalid token.")),
         TokenExpiredError, "ArcGIS error 498: Invalid token."),
        (httpx.Response(200, json=envelope(499, "Token Required")),
         TokenMissingError, "this service needs a token"),
        (httpx.Response(200, json=envelope(500, "Error performing query operation")),
         ServiceError, "ArcGIS error 500: Error performing query operation"),
        (httpx.Response(498, text=""), TokenExpiredError, "ArcGIS error 498: Invalid token."),
        (httpx.Response(502, html="<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"),
         ServiceError, "HTTP 502 Bad Gateway: <html><body><h1>502 Bad Gateway</h1>nginx"),
        (httpx.Response(200, content=b'{"features": [{"attr',
                        headers={"content-type": "application/json"}),
         ServiceError, "cut short or is malformed (20 bytes, HTTP 200): {\"features\""),
        (httpx.Response(200, html="<html>Sign in</html>"),
         ServiceError, "expected JSON but got text/html"),
    ],
)  # fmt: skip
async def test_each_error_shape_maps_to_one_exception(
    answer: httpx.Response, expected: type[Exception], text: str
) -> None:
    """Every shape of failure becomes the documented exception, with a readable message."""
    with respx.mock(assert_all_called=False) as router:
        router.route(url__startswith=LAYER_QUERY).mock(return_value=answer)
        async with ArchieClient(BASE, NoAuth(), retry=RetryPolicy(attempts=2)) as client:
            with pytest.raises(expected) as info:
                await client.get_json("Roads/FeatureServer/0/query", params={"where": "1=1"})
    assert type(info.value) is expected
    assert text in str(info.value)
    assert LAYER_QUERY in str(info.value)


async def test_an_error_keeps_its_envelope() -> None:
    """code, message, details, messageCode and a token-free URL are on the exception."""
    body = {
        "error": {
            "code": 499,
            "message": "Token Required",
            "messageCode": "GWM_0003",
            "details": ["Token Required"],
        }
    }
    with respx.mock() as router:
        router.route(url__startswith=LAYER_QUERY).respond(json=body)
        async with ArchieClient(BASE) as client:
            with pytest.raises(TokenMissingError) as info:
                await client.get(url=f"{LAYER_QUERY}?token=LEAKED", params={"where": "1=1"})
    error = info.value
    assert (499, "GWM_0003") == (error.code, error.message_code)
    assert ["Token Required"] == error.details
    assert error.raw_response is not None
    assert "LEAKED" not in str(error)
    assert "LEAKED" not in (error.url or "")


# -- where the token goes -------------------------------------------------------------

TOKEN_URL = "https://portal.example.com/sharing/rest/generateToken"


@pytest.fixture
def portal() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).respond(json={"token": "tok-wire", "expires": 4102444800000})
        router.route().respond(json={"ok": True})
        yield router


def wire_auth() -> UserTokenAuth:
    return UserTokenAuth(USER, PASSWORD, "https://portal.example.com")


async def test_the_token_stays_with_trusted_origins(portal: respx.MockRouter) -> None:
    """Only the base URL's origin, the portal and added origins get the token, over HTTPS."""
    async with ArchieClient(
        BASE, wire_auth(), trusted_origins=["https://tiles.example.com"]
    ) as client:
        sent = {}
        for url in (
            f"{BASE}/Roads/FeatureServer/0",
            "https://portal.example.com/sharing/rest/portals/self",
            "https://tiles.example.com/arcgis/rest/services/Base/MapServer",
            "https://elsewhere.example.net/arcgis/rest/services/Roads/FeatureServer/0",
            "http://gis.example.com/arcgis/rest/services/Roads/FeatureServer/0",
        ):
            response = await client.get(url=url)
            sent[url.split("/")[2] + url[:5]] = "Authorization" in response.request.headers
    assert {
        "gis.example.comhttps": True,
        "portal.example.comhttps": True,
        "tiles.example.comhttps": True,
        "elsewhere.example.nethttps": False,
        "gis.example.comhttp:": False,
    } == sent


@pytest.mark.parametrize("placement", list(TokenPlacement))
async def test_a_redirect_to_another_origin_drops_the_token(placement: TokenPlacement) -> None:
    """Redirected elsewhere, the next hop carries no token, whatever the placement: not in
    a header, the URL or the body."""
    with respx.mock() as router:
        router.post(TOKEN_URL).respond(json={"token": "tok-wire", "expires": 4102444800000})
        moved = router.route(url__startswith=f"{BASE}/Moved").respond(
            307, headers={"Location": "https://elsewhere.example.net/data?f=json"}
        )
        landing = router.route(url__startswith="https://elsewhere.example.net/").respond(
            json={"ok": True}
        )
        auth = UserTokenAuth(USER, PASSWORD, "https://portal.example.com", placement=placement)
        async with ArchieClient(BASE, auth) as client:
            assert {"ok": True} == await client.get_json("Moved")
    assert "tok-wire" in everything_sent(moved.calls.last.request)
    assert "tok-wire" not in everything_sent(landing.calls.last.request)


def everything_sent(request: httpx.Request) -> str:
    """Every header (unmasked), the URL and the body of *request*, as one text."""
    headers = b"\n".join(name + b": " + value for name, value in request.headers.raw)
    return f"{headers.decode()}\n{request.url}\n{request.content.decode()}"


# -- construction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "hint"),
    [
        ("https://h.example.com/arcgis", "did you mean 'https://h.example.com/arcgis/rest/services'"),
        ("https://h.example.com/arcgis/rest/services/Roads/FeatureServer/0", "use base_url='https://h.example.com/arcgis/rest/services'"),
        ("ftp://h.example.com/arcgis/rest/services", "http(s) URL"),
        ("https://h.example.com/portal/home", "looks like https://host/arcgis/rest/services"),
    ],
)  # fmt: skip
def test_base_url_must_be_a_services_root(base_url: str, hint: str) -> None:
    """A base URL that is not a services root is refused with a hint."""
    with pytest.raises(InvalidServiceURL) as info:
        ArchieClient(base_url)
    assert hint in str(info.value)


async def test_using_a_closed_client_is_a_clear_error(fake: FakeArcGIS) -> None:
    """Calls outside `async with`, before it or after it, say to use it."""
    client = ArchieClient(fake.services_url, transport=fake.transport())
    with pytest.raises(LifecycleError, match="not open: use it inside `async with ArchieClient"):
        await client.get("Roads/FeatureServer/0")
    async with client:
        assert repr(client).endswith(", open)")
    with pytest.raises(LifecycleError, match=r"not open \(it has been closed\)"):
        await client.get("Roads/FeatureServer/0")
    assert repr(client).endswith(", closed)")


# -- regressions found in review -------------------------------------------------------


async def test_an_http_client_with_its_own_auth_cannot_leak_the_token(
    portal: respx.MockRouter,
) -> None:
    """http_client=httpx.AsyncClient(auth=auth): the client's trust rules still decide."""
    auth = wire_auth()
    http = httpx.AsyncClient(auth=auth)
    async with auth, http, ArchieClient(BASE, auth, http_client=http) as client:
        response = await client.get(url="https://elsewhere.example.net/x")
    assert "Authorization" not in response.request.headers


async def test_redirects_keep_the_request_whole() -> None:
    """A 301 after a long-query POST repeats the POST there; a 303 becomes a GET carrying
    the form's fields; the answers are those of the new place."""
    moved = "https://gis.example.com/arcgis/rest/services/New/FeatureServer/0/query"
    with respx.mock() as router:
        router.post(f"{BASE}/Old/FeatureServer/0/query").respond(301, headers={"Location": moved})
        landing = router.post(moved).respond(json={"count": 7})
        router.post(f"{BASE}/Other/query").respond(303, headers={"Location": f"{BASE}/Seen"})
        seen = router.get(url__startswith=f"{BASE}/Seen").respond(json={"count": 8})
        async with ArchieClient(BASE) as client:
            where = "OBJECTID IN (" + ",".join(str(i) for i in range(700)) + ")"
            assert {"count": 7} == await client.get_json(
                "Old/FeatureServer/0/query", params={"where": where, "returnCountOnly": True}
            )
            assert {"count": 8} == await client.post_json("Other/query", data={"where": "1=1"})
    assert b"returnCountOnly=true" in landing.calls.last.request.content
    assert "1=1" == seen.calls.last.request.url.params["where"]
    assert "json" == seen.calls.last.request.url.params["f"]


async def test_a_redirect_to_plain_http_is_followed_without_the_token() -> None:
    """A redirect from HTTPS to an HTTP mirror is followed (archibald refuses only other
    schemes), and the token stays behind."""
    mirror = "http://mirror.example.com/arcgis/rest/services/Roads/FeatureServer/0"
    with respx.mock() as router:
        router.post("https://portal.example.com/sharing/rest/generateToken").respond(
            json={"token": "t-SECRET", "expires": int((time.time() + 3600) * 1000)}
        )
        router.get(url__startswith=f"{BASE}/Roads").respond(302, headers={"Location": mirror})
        landing = router.get(url__startswith=mirror).respond(json={"name": "Roads"})
        async with ArchieClient(BASE, wire_auth()) as client:
            response = await client.get("Roads/FeatureServer/0")
    assert {"name": "Roads"} == response.json()
    request = landing.calls.last.request
    assert "Authorization" not in request.headers
    assert "t-SECRET" not in str(request.url)


async def test_post_sends_its_query_string_form_and_url() -> None:
    """post() and post_json(): params go in the query string, data in the form, url= is
    used as it is, and idempotent=True lets an edit be retried."""
    edits = "https://other.example.com/arcgis/rest/services/Roads/FeatureServer/0/applyEdits"
    with respx.mock() as router:
        route = router.post(url__startswith=edits).mock(
            side_effect=[
                httpx.Response(200, json={"addResults": []}),
                httpx.Response(503),
                httpx.Response(200, json={"addResults": []}),
            ]
        )
        async with ArchieClient(BASE) as client:
            response = await client.post(url=edits, data={"deletes": "1"}, idempotent=True)
            body = await client.post_json(
                url=edits,
                params={"rollbackOnFailure": True},
                data={"adds": [{"attributes": {"A": 1}}]},
                idempotent=True,
            )
            assert 1 == client.statistics().retries
    assert {"addResults": []} == body
    assert 200 == response.status_code
    request = route.calls.last.request
    assert "true" == request.url.params["rollbackOnFailure"]
    assert b"adds=" in request.content
    assert "rollbackOnFailure" not in request.content.decode()


async def test_a_redirect_loop_ends_after_five_redirects() -> None:
    """A server that redirects forever: one ServiceError after the sixth answer, with the
    status, the URL and the answer; five redirects are followed, not more."""
    with respx.mock(assert_all_called=False) as router:
        hops = [f"{BASE}/Hop{i}/FeatureServer/0" for i in range(8)]
        routes = [
            router.get(url__startswith=hop).respond(302, headers={"Location": hops[i + 1]})
            for i, hop in enumerate(hops[:-1])
        ]
        async with ArchieClient(BASE) as client:
            with pytest.raises(ServiceError, match="more than 5 redirects") as info:
                await client.get("Hop0/FeatureServer/0")
            assert 6 == client.statistics().requests
    assert [1, 1, 1, 1, 1, 1, 0] == [route.call_count for route in routes]
    assert 302 == info.value.code
    assert (info.value.url or "").startswith(hops[5])
    assert info.value.raw_response is not None
    assert hops[6] == info.value.raw_response.headers["Location"]


# httpx leaves its body iterators to the garbage collector when decoding fails, which Trio
# reports as a ResourceWarning: httpx's own doing, not archibald's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_an_answer_that_cannot_be_decoded_is_retried_then_named() -> None:
    """A body that httpx cannot decode (a broken gzip stream): retried like a network
    failure, then a ServiceError that names the request and chains httpx's error."""
    sent: list[httpx.Request] = []

    def broken_gzip(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(
            200,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            stream=httpx.ByteStream(b"not gzip at all"),
        )

    transport = httpx.MockTransport(broken_gzip)
    async with ArchieClient(BASE, retry=RetryPolicy(attempts=3), transport=transport) as client:
        with pytest.raises(ServiceError) as info:
            await client.get_json("Roads/FeatureServer/0/query")
        assert 2 == client.statistics().retries
    assert 3 == len(sent)
    assert "the answer could not be read (DecodingError)" in str(info.value)
    assert (info.value.url or "").startswith(LAYER_QUERY)
    assert isinstance(info.value.__cause__, httpx.DecodingError)


async def test_a_network_error_names_its_request_and_chains_its_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The NetworkError of a failed connection and of the client's timeout carries the URL
    and its cause; the debug log says what failed and on which attempt."""
    with respx.mock() as router:
        router.get(url__startswith=f"{BASE}/Down").mock(side_effect=httpx.ConnectError("down"))
        router.get(url__startswith=f"{BASE}/Slow").mock(side_effect=TimeoutError())
        async with ArchieClient(BASE, retry=RetryPolicy(attempts=2)) as client:
            with pytest.raises(NetworkError) as down:
                await client.get("Down/FeatureServer/0")
            with pytest.raises(NetworkError) as slow:
                await client.get("Slow/FeatureServer/0")
    assert (down.value.url or "").startswith(f"{BASE}/Down/FeatureServer/0")
    assert isinstance(down.value.__cause__, httpx.ConnectError)
    assert f"GET {BASE}/Down/FeatureServer/0 failed: could not connect" in str(down.value)
    assert (slow.value.url or "").startswith(f"{BASE}/Slow/FeatureServer/0")
    assert isinstance(slow.value.__cause__, TimeoutError)
    assert f"GET {BASE}/Slow/FeatureServer/0 failed: no complete answer" in str(slow.value)
    logged = [r.getMessage() for r in caplog.records if "failed after" in r.getMessage()]
    assert [
        f"GET {BASE}/Down/FeatureServer/0 failed after 0.000 s (attempt 1): ConnectError",
        f"GET {BASE}/Down/FeatureServer/0 failed after 0.000 s (attempt 2): ConnectError",
    ] == logged


async def test_a_token_that_cannot_be_had_during_a_request_is_retried_then_raised(
    fake: FakeArcGIS, wire: Recording
) -> None:
    """The token endpoint is down when a request needs a new token: the request waits and
    tries again, then raises the TokenRefreshError itself (no request goes without)."""
    async with make_client(fake, wire, retry=RetryPolicy(attempts=2)) as client:
        fake.revoke_all_tokens()
        fake.faults.fail_next("generateToken", status=503, times=1000)
        with pytest.raises(TokenRefreshError, match="503"):
            await client.get_json(f"{PARCELS}/query", params=COUNT)
        assert 1 == client.statistics().retries
    assert all("token" not in str(r.url) for r in wire.requests)


@pytest.mark.parametrize(
    ("body", "headers", "shown"),
    [
        (b"x" * 200, {}, "x" * 200 + " at"),
        (b"y" * 201, {}, "y" * 200 + "…"),
        (b"", {}, "(empty body)"),
    ],
)  # fmt: skip
async def test_an_unexpected_body_is_quoted_short_and_readable(
    body: bytes, headers: dict[str, str], shown: str
) -> None:
    """What a proxy answered instead of JSON is quoted in the error: 200 characters at most
    (an ellipsis says it was cut)."""
    with respx.mock() as router:
        router.get(url__startswith=LAYER_QUERY).respond(400, content=body, headers=headers)
        async with ArchieClient(BASE) as client:
            with pytest.raises(ServiceError) as info:
                await client.get_json("Roads/FeatureServer/0/query")
    assert shown in str(info.value)


async def test_get_is_retried_after_a_transient_failure() -> None:
    with respx.mock() as router:
        route = router.get(url__startswith=f"{BASE}/Roads").mock(
            side_effect=[httpx.Response(503), httpx.Response(200, json={"name": "Roads"})]
        )
        async with ArchieClient(BASE) as client:
            response = await client.get("Roads/FeatureServer/0")
    assert {"name": "Roads"} == response.json()
    assert 2 == route.call_count


@pytest.mark.parametrize(
    ("error", "description"),
    [
        (httpx.PoolTimeout("x"), "no free connection to gis.example.com in time (PoolTimeout)"),
        (
            httpx.ConnectTimeout("x"),
            "could not connect to gis.example.com in time (ConnectTimeout)",
        ),
        (httpx.ReadTimeout("x"), "gis.example.com took too long to answer (ReadTimeout)"),
        (httpx.ReadError("reset"), "the connection to gis.example.com broke: reset"),
    ],
)
def test_each_network_failure_is_described_in_words(
    error: httpx.TransportError, description: str
) -> None:
    from archibald._sending import describe_transport_error

    assert description == describe_transport_error(error, f"{BASE}/x")


@pytest.mark.parametrize(
    ("status", "expected"), [(403, AuthorizationError), (404, NotFoundError), (500, ServiceError)]
)
async def test_http_statuses_without_a_body_map_by_status(
    status: int, expected: type[Exception]
) -> None:
    """403 and 404 as bare HTTP statuses are AuthorizationError and NotFoundError too."""
    with respx.mock() as router:
        router.route(url__startswith=LAYER_QUERY).respond(status, text="")
        async with ArchieClient(BASE) as client:
            with pytest.raises(expected) as info:
                await client.get_json("Roads/FeatureServer/0/query")
    assert status == info.value.code  # type: ignore[attr-defined]


async def test_a_float_498_is_a_rejected_token(fake: FakeArcGIS, wire: Recording) -> None:
    """An envelope with code 498.0 is recognised: the token is refreshed and the request
    retried."""
    answers = iter([{"error": {"code": 498.0, "message": "Invalid token."}}])

    async def handle(request: httpx.Request) -> httpx.Response:
        for answer in answers:
            return httpx.Response(200, json=answer)
        return await wire.handle_async_request(request)

    async with make_client(fake, Recording(httpx.MockTransport(handle))) as client:
        assert {"count": 50} == await client.get_json(f"{WELLS}/query", params=COUNT)
        assert (1, 1) == (client.statistics().token_rejections, client.statistics().refreshes)


async def test_no_secret_in_bad_argument_errors() -> None:
    """Mistakes with secrets in them are reported without the secrets."""
    with pytest.raises(ConfigurationError) as auth_error:
        ArchieClient(BASE, "AAPK-SECRET")  # type: ignore[arg-type]
    with pytest.raises(InvalidServiceURL) as url_error:
        ArchieClient(f"{BASE}/Roads?token=SECRET-1")
    async with ArchieClient(BASE) as client:
        with pytest.raises(InvalidParameterError) as bad_port:
            await client.get(url="https://h.example.com:abc/x?token=SECRET-2")
    for error in (auth_error, url_error, bad_port):
        assert "SECRET" not in str(error.value)


async def test_an_echoed_token_is_masked_in_error_pages() -> None:
    """A proxy page that echoes the caller's own token shows it masked."""
    with respx.mock() as router:
        router.route(url__startswith=LAYER_QUERY).respond(
            400, html="<html>bad request ?token=SECRET-3&f=json</html>"
        )
        async with ArchieClient(BASE) as client:
            with pytest.raises(ServiceError) as info:
                await client.get(url=f"{LAYER_QUERY}?token=SECRET-3")
    assert "SECRET-3" not in str(info.value)


async def test_odd_inputs_and_answers_are_typed_errors() -> None:
    """Circular or empty parameters, absurdly nested JSON: typed errors."""
    circular: list[Any] = []
    circular.append(circular)
    with respx.mock() as router:
        router.get(url__startswith=f"{BASE}/deep").respond(
            content=b"[" * 100_000 + b"]" * 100_000, headers={"content-type": "application/json"}
        )
        async with ArchieClient(BASE, retry=RetryPolicy(attempts=1)) as client:
            with pytest.raises(InvalidParameterError):
                await client.get("x", params={"outStatistics": circular})
            with pytest.raises(InvalidParameterError, match="empty list"):
                await client.get("x", params={"objectIds": []})
            with pytest.raises(ServiceError):
                await client.get("deep")


async def test_a_client_is_closed_in_the_task_that_opened_it(fake: FakeArcGIS) -> None:
    """aclose() from another task is refused (the client's task group belongs to the task
    that opened it) and leaves the client working; the opener closes it."""
    client = ArchieClient(fake.services_url, transport=fake.transport())
    await client.__aenter__()
    errors: list[Exception] = []

    async def close_elsewhere() -> None:
        try:
            await client.aclose()
        except LifecycleError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(close_elsewhere)
    assert "must run in the task that opened the client" in str(errors[0])
    assert {"count": 3000} == await client.get_json(f"{PARCELS}/query", params=COUNT)
    await client.aclose()
    assert repr(client).endswith(", closed)")


async def test_closing_during_a_retry_wait_is_a_clear_error(
    fake: FakeArcGIS, wire: Recording
) -> None:
    """A request waiting to retry when its client closes ends with a typed error."""
    fake.faults.fail_next("query", status=503, retry_after=5)
    errors: list[BaseException] = []

    async def count() -> None:
        try:
            await client.get_json(f"{PARCELS}/query", params=COUNT)
        except LifecycleError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg, make_client(fake, wire) as client:
        tg.start_soon(count)
        await anyio.sleep(1)
    assert "not open (it has been closed)" in str(errors[0])


async def test_a_format_in_the_url_counts(fake: FakeArcGIS, wire: Recording) -> None:
    """f in a url= query string is honoured when geojson, replaced by json otherwise."""
    url = f"{fake.services_url}/{PARCELS}/query?where=OBJECTID%3D1&f=geojson"
    async with make_client(fake, wire) as client:
        collection = await client.get_json(url=url)
        await client.get_json(url=f"{fake.services_url}/{PARCELS}?f=html")
    assert "FeatureCollection" == collection["type"]
    assert ["json"] == wire.requests[-1].url.params.get_list("f")


async def test_a_token_endpoint_hiccup_during_a_refresh_is_retried(
    fake: FakeArcGIS, wire: Recording
) -> None:
    """The token endpoint fails once while refreshing a revoked token: the request waits
    and succeeds instead of failing."""
    async with make_client(fake, wire) as client:
        fake.revoke_all_tokens()
        fake.faults.fail_next("generateToken", status=503)
        assert {"count": 50} == await client.get_json(f"{WELLS}/query", params=COUNT)
        assert client.statistics().retries >= 1


async def test_an_edit_that_never_left_is_sent_again(fake: FakeArcGIS) -> None:
    """applyEdits that could not even connect is retried: the server never saw it."""
    attempts = 0
    inner = fake.transport()

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        if request.url.path.endswith("applyEdits"):
            attempts += 1
            if attempts == 1:
                raise httpx.ConnectError("connection refused", request=request)
        return await inner.handle_async_request(request)

    async with make_client(fake, Recording(httpx.MockTransport(handle))) as client:
        body = await client.post_json(f"{PARCELS}/applyEdits", data={"deletes": [1]})
    assert [True] == [r["success"] for r in body["deleteResults"]]
    assert 2 == attempts


# -- hardening: each test below failed before its fix ----------------------------------


class Trickle(httpx.AsyncBaseTransport):
    """A server that sends its headers at once, then one body byte every half second."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "application/json"}, stream=TrickleBody()
        )


class TrickleBody(httpx.AsyncByteStream):
    async def __aiter__(self) -> Any:
        for byte in b'{"count": ' + b" " * 400 + b"1}":
            await anyio.sleep(0.5)
            yield bytes([byte])


async def test_the_timeout_bounds_the_whole_exchange() -> None:
    """A trickling answer fails after `timeout` seconds in all, not after every byte."""
    async with ArchieClient(
        BASE, NoAuth(), timeout=3, retry=RetryPolicy(attempts=1), transport=Trickle()
    ) as client:
        started = anyio.current_time()
        with pytest.raises(NetworkError, match="no complete answer within 3 s"):
            await client.get_json("Roads/FeatureServer/0/query", params={"where": "1=1"})
        elapsed = anyio.current_time() - started
    assert 3 <= elapsed < 3.5


async def test_a_read_that_times_out_is_retried_within_the_policy() -> None:
    """Each attempt gets its own deadline: two attempts take twice the timeout."""
    async with ArchieClient(
        BASE, NoAuth(), timeout=2, retry=RetryPolicy(attempts=2, base=0), transport=Trickle()
    ) as client:
        started = anyio.current_time()
        with pytest.raises(NetworkError):
            await client.get_json("Roads/FeatureServer/0/query")
        assert 1 == client.statistics().retries
    assert 4 <= anyio.current_time() - started < 4.5


@pytest.mark.parametrize(
    "base_url",
    [
        "https://bob:PASSWORD-1@gis.example.com/arcgis/rest/services",
        "https://PASSWORD-1@gis.example.com/arcgis/rest/services",
        "https://bob:PASSWORD-1@gis.example.com/arcgis/rest/services?f=json",
    ],
)
def test_credentials_in_a_url_are_refused_without_showing_them(base_url: str) -> None:
    """A user name or password in base_url: a clear error that does not repeat it."""
    with pytest.raises(InvalidServiceURL, match="user name or password") as info:
        ArchieClient(base_url)
    assert "PASSWORD-1" not in str(info.value)
    assert "bob" not in str(info.value)


async def test_credentials_in_a_request_url_or_origin_are_refused() -> None:
    """The same rule for url=, trusted origins and token endpoints."""
    with pytest.raises(ConfigurationError, match="user name or password") as origin:
        ArchieClient(BASE, trusted_origins=["https://u:PASSWORD-2@tiles.example.com"])
    with pytest.raises(ConfigurationError, match="user name or password") as portal:
        UserTokenAuth(USER, PASSWORD, "https://u:PASSWORD-3@portal.example.com")
    with respx.mock(assert_all_called=False):
        async with ArchieClient(BASE) as client:
            with pytest.raises(InvalidParameterError, match="user name or password") as url:
                await client.get(url="https://u:PASSWORD-4@gis.example.com/x")
    for error in (origin, portal, url):
        assert "PASSWORD" not in str(error.value)


def test_a_fragment_is_named_as_a_fragment() -> None:
    """base_url with '#...' says fragment, not query string."""
    with pytest.raises(InvalidServiceURL, match="must not have a fragment"):
        ArchieClient(f"{BASE}#layers")


@pytest.mark.parametrize("params", [[1, 2], "where=1=1", {1: "x"}])
async def test_parameters_that_are_not_a_mapping_are_refused_locally(params: Any) -> None:
    """params=[1, 2] and the like: InvalidParameterError, and nothing is sent."""
    with respx.mock(assert_all_called=False) as router:
        route = router.route().respond(json={})
        async with ArchieClient(BASE) as client:
            with pytest.raises(InvalidParameterError, match="params"):
                await client.get_json("Roads/FeatureServer/0/query", params=params)
            with pytest.raises(InvalidParameterError, match="data"):
                await client.post_json("Roads/FeatureServer/0/query", data=params)
    assert 0 == route.call_count


@pytest.mark.parametrize("endpoint", ["../Other/FeatureServer/0", "Roads/../../admin"])
async def test_an_endpoint_cannot_climb_out_of_the_services_root(endpoint: str) -> None:
    """'..' in an endpoint is refused, not resolved to another path on the server."""
    async with ArchieClient(BASE) as client:
        with pytest.raises(InvalidParameterError, match=r"'\.\.'"):
            client.url_for(endpoint)


def refused(request: httpx.Request) -> httpx.Response:
    error = OSError(111, "Connection refused")
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request) from error


def unknown_host(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)


@pytest.mark.parametrize(
    ("handler", "cause"),
    [(refused, "Connection refused"), (unknown_host, "Name or service not known")],
)
async def test_a_connection_error_names_its_cause_and_host(handler: Any, cause: str) -> None:
    """Not just 'ConnectError': the host, and what the operating system said."""
    transport = httpx.MockTransport(handler)
    async with ArchieClient(BASE, retry=RetryPolicy(attempts=1), transport=transport) as client:
        with pytest.raises(NetworkError) as info:
            await client.get_json("Roads/FeatureServer/0")
    assert f"could not connect to gis.example.com: {cause}" in str(info.value)


async def test_plain_http_to_a_trusted_origin_is_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three requests with retries to a trusted http:// origin: one warning, not one each."""
    plain = "http://gis.example.com/arcgis/rest/services"
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).respond(json={"token": "tok-wire", "expires": 4102444800000})
        router.get(url__startswith=plain).mock(
            side_effect=[httpx.Response(503), httpx.Response(503)]
            + [httpx.Response(200, json={})] * 5
        )
        async with ArchieClient(plain, wire_auth(), retry=RetryPolicy(base=0)) as client:
            for _ in range(3):
                await client.get_json("Roads/FeatureServer/0")
    warnings = [r.getMessage() for r in caplog.records if "not sending the token" in r.getMessage()]
    assert [
        "not sending the token to http://gis.example.com: tokens travel over HTTPS only "
        "(loopback excepted)"
    ] == warnings


@pytest.mark.real_clock
async def test_a_refused_connection_says_so_on_real_sockets() -> None:
    """Through httpx's real network stack, on either backend: "Connection refused"."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with ArchieClient(
        f"http://127.0.0.1:{port}/arcgis/rest/services", retry=RetryPolicy(attempts=1)
    ) as client:
        with pytest.raises(NetworkError) as info:
            await client.get_json("")
    assert "could not connect to 127.0.0.1: Connection refused" in str(info.value)


async def test_an_endpoint_of_only_a_query_string_is_the_root() -> None:
    """url_for('?f=json') is the services root with that query, not an error."""
    async with ArchieClient(BASE) as client:
        assert f"{BASE}?f=json" == client.url_for("?f=json")


# -- guarding promises: each test below fails with a bug planted in the code it covers ----


async def test_an_edit_whose_connection_broke_after_sending_is_not_sent_again(
    fake: FakeArcGIS,
) -> None:
    """applyEdits reached the server, which applied it, then the connection broke: the
    client reports it and does not send the edit twice."""
    inner = fake.transport()

    async def handle(request: httpx.Request) -> httpx.Response:
        response = await inner.handle_async_request(request)
        if request.url.path.endswith("applyEdits"):
            await response.aread()  # the server did the work...
            raise httpx.ReadError("connection reset by peer", request=request)  # ...then
        return response

    async with make_client(fake, Recording(httpx.MockTransport(handle))) as client:
        with pytest.raises(NetworkError, match="broke"):
            await client.post_json(f"{PARCELS}/applyEdits", data={"deletes": [1, 2]})
        assert 0 == client.statistics().retries
    assert 1 == fake.statistics().requests["applyEdits"]
    assert 2998 == len(fake.layer("Parcels"))


@pytest.mark.parametrize(
    ("status", "location", "upload", "message"),
    [
        (303, f"{BASE}/Elsewhere", True,
         "an upload was redirected elsewhere; it was not sent again"),
        (302, "ftp://files.example.com/data", False, "redirected to a URL that is not HTTP"),
    ],
)  # fmt: skip
async def test_a_redirect_that_cannot_be_followed_is_one_clear_error(
    status: int, location: str, upload: bool, message: str
) -> None:
    """An upload sent elsewhere by a 303, a redirect out of HTTP: a ServiceError with the
    status, the request's URL and what happened; nothing sent on."""
    with respx.mock(assert_all_called=False) as router:
        start = router.post(f"{BASE}/Roads/FeatureServer/0/addAttachment").respond(
            status, headers={"Location": location}
        )
        elsewhere = router.route(url__startswith=f"{BASE}/Elsewhere").respond(json={})
        async with ArchieClient(BASE) as client:
            with pytest.raises(ServiceError) as info:
                await client.post(
                    "Roads/FeatureServer/0/addAttachment",
                    files={"attachment": ("a.txt", b"hello")} if upload else None,
                    data={"f": "json"},
                )
    assert message in str(info.value)
    assert status == info.value.code
    assert (info.value.url or "").startswith(f"{BASE}/Roads/FeatureServer/0/addAttachment")
    assert info.value.raw_response is not None
    assert 1 == start.call_count
    assert 0 == elsewhere.call_count


@pytest.mark.parametrize(
    ("auth", "url", "code", "hint"),
    [
        (None, f"{BASE}/Roads/FeatureServer/0", 499,
         "(this service needs a token: sign in with UserTokenAuth or another auth)"),
        (None, f"{BASE}/Roads/FeatureServer/0", 498, "(no token was sent (NoAuth))"),
        ("user", "https://tiles.example.net/arcgis/rest/services/X/MapServer", 499,
         "(no token was sent to https://tiles.example.net, which is not trusted; add it to "
         "ArchieClient(trusted_origins=...) if it should get one)"),
        ("user", "http://gis.example.com/arcgis/rest/services/X/MapServer", 499,
         "(no token was sent: tokens travel over HTTPS only)"),
        ("key", f"{BASE}/Roads/FeatureServer/0", 498,
         "(the API key was rejected: it may have expired or been revoked"),
    ],
)  # fmt: skip
async def test_a_rejection_says_why_no_good_token_was_sent(
    auth: str | None, url: str, code: int, hint: str
) -> None:
    """Each way of ending up without a usable token gets its own hint."""
    from archibald import APIKeyAuth

    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).respond(json={"token": "tok-wire", "expires": 4102444800000})
        router.route().respond(
            json=envelope(code, "Invalid token." if code == 498 else "Token Required")
        )
        chosen = {"user": wire_auth(), "key": APIKeyAuth("AAPK-key"), None: NoAuth()}[auth]
        async with ArchieClient(BASE, chosen) as client:
            with pytest.raises((TokenExpiredError, TokenMissingError)) as info:
                await client.get(url=url)
    assert hint in str(info.value)


def cycle(message: str) -> BaseException:
    """Two errors, each the other's context (it happens in async code)."""
    first, second = RuntimeError(message), RuntimeError("")
    first.__context__, second.__context__ = second, first
    return first


def connect_error(message: str, cause: BaseException | None = None) -> httpx.ConnectError:
    error = httpx.ConnectError(message)
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (connect_error("[Errno 111] Connection refused"), "Connection refused"),
        (connect_error("all attempts failed", ExceptionGroup("attempts", [
            OSError(111, "Connect call failed ('127.0.0.1', 9)")])), "Connection refused"),
        (connect_error("lookup failed", socket.gaierror(-2, "Name or service not known")),
         "Name or service not known"),
        (connect_error("outer words", OSError(-3, "a negative errno")), "outer words"),
        (connect_error("", OSError(0, "")), "ConnectError"),
        (connect_error("", RuntimeError("inner words")), "inner words"),
        (connect_error("", OSError(1, "not allowed")), "Operation not permitted"),
        (connect_error("[Errno 5] odd] words"), "odd] words"),
        (connect_error("outer", cycle("inner")), "outer"),
        (connect_error("", cycle("inner")), "inner"),
    ],
)  # fmt: skip
def test_the_reason_of_a_network_error_is_the_systems_own(
    error: httpx.ConnectError, reason: str
) -> None:
    """The OS's words from anywhere in the chain or in a group; else the first message."""
    from archibald._sending import describe_transport_error

    assert f"could not connect to gis.example.com: {reason}" == describe_transport_error(
        error, f"{BASE}/x"
    )


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("1.5", 1.5, 1.5),
        ("0", 0.0, 0.0),
        ("-3", 0.0, 0.0),
        ("in+30", 28.0, 30.5),  # an HTTP date, 30 s from now
        ("in-30", 0.0, 0.0),  # an HTTP date in the past
    ],
)
async def test_retry_after_in_seconds_or_as_a_date(
    retry_after: str, low: float, high: float
) -> None:
    """Retry-After as seconds or as an HTTP date is waited for (never a negative wait)."""
    import email.utils
    import time

    if retry_after.startswith("in"):
        retry_after = email.utils.formatdate(time.time() + float(retry_after[2:]), usegmt=True)
    with respx.mock() as router:
        router.get(url__startswith=LAYER_QUERY).mock(
            side_effect=[
                httpx.Response(503, headers={"Retry-After": retry_after}),
                httpx.Response(200, json={"count": 1}),
            ]
        )
        async with ArchieClient(BASE, retry=RetryPolicy(attempts=2)) as client:
            started = anyio.current_time()
            assert {"count": 1} == await client.get_json("Roads/FeatureServer/0/query")
            waited = anyio.current_time() - started
            assert (2, 1) == (client.statistics().requests, client.statistics().retries)
    assert low <= waited <= high


def test_a_get_with_emoji_is_measured_as_it_will_be_encoded() -> None:
    """Four UTF-8 bytes a character: the quick bound must not let a long GET through."""
    from urllib.parse import urlencode

    from archibald._sending import too_long_for_get

    url = "https://h.example.com/arcgis/rest/services/S/FeatureServer/0/query"
    query = {"where": "\N{GRINNING FACE}" * 100}
    limit = len(url) + 1 + len(urlencode(query)) - 1
    assert too_long_for_get(url, query, limit)
    assert not too_long_for_get(url, query, limit + 1)
