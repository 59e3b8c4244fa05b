"""What an authorized request looks like on the wire (checked with respx)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from archibald.auth import ArcGISAuth, NoAuth, TokenPlacement, UserTokenAuth
from archibald.exceptions import ConfigurationError

pytestmark = pytest.mark.anyio

PORTAL = "https://portal.example.com"
TOKEN_URL = f"{PORTAL}/sharing/rest/generateToken"
QUERY_URL = "https://services.example.com/arcgis/rest/services/Parcels/FeatureServer/0/query"
TOKEN = "tok-wire-1"


@pytest.fixture
def wire() -> respx.MockRouter:
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).respond(
            json={"token": TOKEN, "expires": int((time.time() + 3600) * 1000)}
        )
        router.route(url__startswith="https://services.example.com/").respond(json={"features": []})
        router.route(url__startswith="http://").respond(json={"features": []})
        yield router


def auth_for(placement: TokenPlacement, referer: str | None = "archibald") -> UserTokenAuth:
    return UserTokenAuth("alice", "pw-SECRET", PORTAL, placement=placement, referer=referer)


async def send(auth: ArcGISAuth, method: str, url: str, **kwargs: object) -> httpx.Request:
    async with httpx.AsyncClient(auth=auth) as http:
        response = await http.request(method, url, **kwargs)  # type: ignore[arg-type]
    return response.request


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


async def test_default_placement_is_the_authorization_header(wire: respx.MockRouter) -> None:
    """By default: `Authorization: Bearer <token>` and the bound Referer; URL untouched."""
    async with auth_for(TokenPlacement.AUTHORIZATION) as auth:
        request = await send(auth, "GET", QUERY_URL, params={"where": "1=1"})
    assert f"Bearer {TOKEN}" == request.headers["Authorization"]
    assert "archibald" == request.headers["Referer"]
    assert "X-Esri-Authorization" not in request.headers
    assert f"{QUERY_URL}?where=1%3D1" == str(request.url)


async def test_esri_header_placement(wire: respx.MockRouter) -> None:
    """X_ESRI_AUTHORIZATION: the Esri header, and no standard Authorization header."""
    async with auth_for(TokenPlacement.X_ESRI_AUTHORIZATION) as auth:
        request = await send(auth, "GET", QUERY_URL, params={"where": "1=1"})
    assert f"Bearer {TOKEN}" == request.headers["X-Esri-Authorization"]
    assert "Authorization" not in request.headers
    assert "archibald" == request.headers["Referer"]


async def test_parameter_placement_moves_a_get_into_a_form_body(wire: respx.MockRouter) -> None:
    """PARAMETER: a GET goes as a POST whose form holds its parameters and the token."""
    async with auth_for(TokenPlacement.PARAMETER) as auth:
        request = await send(auth, "GET", QUERY_URL, params={"where": "1=1", "f": "json"})
    assert "POST" == request.method
    assert QUERY_URL == str(request.url)  # the token is never in the URL
    assert {"where": ["1=1"], "f": ["json"], "token": [TOKEN]} == form(request)
    assert "application/x-www-form-urlencoded" == request.headers["Content-Type"]
    assert "Authorization" not in request.headers
    assert "archibald" == request.headers["Referer"]


async def test_parameter_placement_extends_a_form_post(wire: respx.MockRouter) -> None:
    """PARAMETER: a form POST keeps its fields and gains the token (Content-Length right)."""
    async with auth_for(TokenPlacement.PARAMETER) as auth:
        request = await send(auth, "POST", QUERY_URL, data={"where": "OBJECTID > 5", "f": "json"})
    assert {"where": ["OBJECTID > 5"], "f": ["json"], "token": [TOKEN]} == form(request)
    assert str(len(request.content)) == request.headers["Content-Length"]


async def test_parameter_placement_leaves_multipart_to_the_esri_header(
    wire: respx.MockRouter,
) -> None:
    """PARAMETER with a multipart upload: the body is untouched, the token in the header."""
    async with auth_for(TokenPlacement.PARAMETER) as auth:
        request = await send(
            auth, "POST", QUERY_URL, files={"attachment": ("a.txt", b"hello")}, data={"f": "json"}
        )
    assert f"Bearer {TOKEN}" == request.headers["X-Esri-Authorization"]
    assert request.headers["Content-Type"].startswith("multipart/form-data")
    body = request.read()
    assert b"hello" in body
    assert b"token" not in body
    assert QUERY_URL == str(request.url)


async def test_ip_bound_tokens_send_no_referer(wire: respx.MockRouter) -> None:
    """referer=None: the token is IP-bound and requests carry no Referer header."""
    async with auth_for(TokenPlacement.AUTHORIZATION, referer=None) as auth:
        request = await send(auth, "GET", QUERY_URL)
    assert "Referer" not in request.headers
    assert f"Bearer {TOKEN}" == request.headers["Authorization"]


async def test_no_token_over_plain_http(wire: respx.MockRouter) -> None:
    """A plain-http request to a non-loopback host goes without the token or Referer."""
    async with auth_for(TokenPlacement.AUTHORIZATION) as auth:
        request = await send(auth, "GET", "http://services.example.com/arcgis/rest/services")
    assert "Authorization" not in request.headers
    assert "Referer" not in request.headers


async def test_loopback_http_gets_the_token(wire: respx.MockRouter) -> None:
    """Plain http to a loopback address (a local emulator) does carry the token."""
    async with auth_for(TokenPlacement.AUTHORIZATION) as auth:
        request = await send(auth, "GET", "http://127.0.0.1:8080/arcgis/rest/services")
    assert f"Bearer {TOKEN}" == request.headers["Authorization"]


async def test_no_auth_adds_nothing(wire: respx.MockRouter) -> None:
    """NoAuth: no token header, no Referer, no token parameter; get_token() is ''."""
    auth = NoAuth()
    async with auth:
        request = await send(auth, "GET", QUERY_URL, params={"f": "json"})
        assert "" == await auth.get_token()
        await auth.force_refresh()
    assert "Authorization" not in request.headers
    assert "X-Esri-Authorization" not in request.headers
    assert "Referer" not in request.headers
    assert f"{QUERY_URL}?f=json" == str(request.url)


def test_a_sync_client_is_refused() -> None:
    """A synchronous httpx.Client would send no token: it gets a clear error instead."""
    with (
        respx.mock,
        httpx.Client(auth=NoAuth()) as http,
        pytest.raises(
            ConfigurationError,
            match=r"NoAuth works with httpx\.AsyncClient only; a synchronous httpx\.Client "
            r"cannot await its token",
        ),
    ):
        http.get(QUERY_URL)
    assert "NoAuth()" == repr(NoAuth())


def test_placement_must_be_a_token_placement() -> None:
    """A string placement is refused with a hint."""
    with pytest.raises(ConfigurationError, match="TokenPlacement"):
        UserTokenAuth("alice", "pw", placement="header")  # type: ignore[arg-type]


async def test_parameter_placement_leaves_other_bodies_alone(wire: respx.MockRouter) -> None:
    """PARAMETER with a JSON body: the body is untouched, the token goes in the header."""
    async with auth_for(TokenPlacement.PARAMETER) as auth:
        request = await send(auth, "POST", QUERY_URL, content=b'{"a": 1}')
    assert b'{"a": 1}' == request.content
    assert f"Bearer {TOKEN}" == request.headers["X-Esri-Authorization"]


async def test_parameter_placement_replaces_any_token_already_there(
    wire: respx.MockRouter,
) -> None:
    """A stale token in the URL or the form (any case) is replaced: one token, in the body."""
    async with auth_for(TokenPlacement.PARAMETER) as auth:
        request = await send(
            auth, "POST", f"{QUERY_URL}?token=OLD&f=json", data={"Token": "OLDER", "where": "1=1"}
        )
    assert f"{QUERY_URL}?f=json" == str(request.url)
    assert {"where": ["1=1"], "token": [TOKEN]} == form(request)


async def test_parameter_placement_keeps_blank_fields_and_the_request_settings(
    wire: respx.MockRouter,
) -> None:
    """A field sent blank on purpose (``where=``, ``outFields=``) stays in the form, and the
    request keeps its settings (httpx's timeout travels in its extensions)."""
    async with auth_for(TokenPlacement.PARAMETER) as auth, httpx.AsyncClient(timeout=7.5) as http:
        request = http.build_request(
            "POST", QUERY_URL, data={"where": "1=1", "outFields": "", "f": "json"}
        )
        authorized = auth.authorize(request, TOKEN)
    assert {"where": ["1=1"], "outFields": [""], "f": ["json"], "token": [TOKEN]} == parse_qs(
        authorized.content.decode(), keep_blank_values=True
    )
    assert request.extensions["timeout"] == authorized.extensions["timeout"]
    assert {"read": 7.5} == {"read": authorized.extensions["timeout"]["read"]}


async def test_parameter_placement_puts_the_token_in_an_empty_post(wire: respx.MockRouter) -> None:
    """A POST without a body or content type gains a form holding only the token; a GET
    with a body is not turned into a form."""
    async with auth_for(TokenPlacement.PARAMETER) as auth:
        empty = await send(auth, "POST", QUERY_URL)
        with_body = auth.authorize(
            httpx.Request("GET", QUERY_URL, content=b"raw", headers={"Content-Type": "text/plain"}),
            TOKEN,
        )
    assert {"token": [TOKEN]} == form(empty)
    assert "application/x-www-form-urlencoded" == empty.headers["Content-Type"]
    assert str(len(empty.content)) == empty.headers["Content-Length"]
    assert "GET" == with_body.method
    assert b"raw" == with_body.content
    assert f"Bearer {TOKEN}" == with_body.headers["X-Esri-Authorization"]


async def test_parameter_placement_reads_a_form_with_a_charset(wire: respx.MockRouter) -> None:
    """A form POST whose content type names a charset is still a form: the token joins it."""
    async with auth_for(TokenPlacement.PARAMETER) as auth:
        request = await send(
            auth,
            "POST",
            QUERY_URL,
            content=b"where=1%3D1",
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
    assert {"where": ["1=1"], "token": [TOKEN]} == form(request)
    assert "X-Esri-Authorization" not in request.headers
