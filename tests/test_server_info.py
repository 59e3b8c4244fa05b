"""What a server's ``rest/info`` may say, and what signing in does with it.

A standalone server names its token endpoint there; a federated one names its portal.
Anything that makes signing in impossible (no token security, no endpoint, one on another
origin, the wrong portal) fails at ``async with`` at once, with a message that says what to
do, and no password goes anywhere it should not.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx
import pytest

from archibald import FederatedServerAuth, TokenPolicy, TokenRefreshError, UserTokenAuth

pytestmark = pytest.mark.anyio

SERVER = "https://gis.example.com/arcgis"
PORTAL = "https://gis.example.com/portal"
USER, PASSWORD = "alice", "wonderland-SECRET"


class Site(httpx.AsyncBaseTransport):
    """A server and its portal, answering from a table of path -> JSON body."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.sent.append(request)
        url = str(request.url.copy_with(query=None))
        if url in self.answers.get("token endpoints", ()):
            exchange = b"serverUrl" in request.content
            seconds = self.answers.get("exchange seconds", 3600) if exchange else 3600
            expires = int((time.time() + seconds) * 1000)
            return httpx.Response(200, json={"token": f"token-from-{url}", "expires": expires})
        scripted = self.answers.get("scripted", {}).get(url)
        if scripted:
            return scripted.pop(0)
        if url in self.answers:
            return httpx.Response(200, json=self.answers[url])
        return httpx.Response(404, text="<html>Not Found</html>")

    def posted_to(self) -> list[str]:
        return [str(r.url) for r in self.sent if r.method == "POST"]


def for_server(site: Site) -> UserTokenAuth:
    """Alice's sign-in at the standalone server of *site*, not entered yet."""
    return UserTokenAuth.for_server(
        SERVER, USER, PASSWORD, http_client=httpx.AsyncClient(transport=site)
    )


def server_info(auth_info: Any = None, **more: Any) -> dict[str, Any]:
    return {f"{SERVER}/rest/info": {"currentVersion": 11.1, "authInfo": auth_info, **more}}


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        pytest.param(
            server_info({"isTokenBasedSecurity": False}),
            f"{SERVER} does not use token-based security ({SERVER}/rest/info says so); use NoAuth",
            id="no token security",
        ),
        pytest.param(
            server_info({"isTokenBasedSecurity": True}),
            f"{SERVER}/rest/info names no token endpoint (authInfo.tokenServicesUrl)",
            id="no token endpoint",
        ),
        pytest.param(
            server_info({"isTokenBasedSecurity": True, "tokenServicesUrl": 42}),
            "names no token endpoint (authInfo.tokenServicesUrl)",
            id="an endpoint that is not a string",
        ),
        pytest.param(
            server_info({"isTokenBasedSecurity": True, "tokenServicesUrl": ""}),
            "names no token endpoint (authInfo.tokenServicesUrl)",
            id="an empty endpoint",
        ),
        pytest.param(
            server_info("tokens, please"),
            "names no token endpoint (authInfo.tokenServicesUrl)",
            id="authInfo that is not an object",
        ),
        pytest.param(
            server_info({"tokenServicesUrl": "http://gis.example.com/arcgis/tokens/generateToken"}),
            f"{SERVER}/rest/info: tokenServicesUrl must use https://",
            id="an endpoint over plain HTTP",
        ),
        pytest.param(
            server_info({"tokenServicesUrl": "https://tokens.example.net/arcgis/tokens"}),
            f"{SERVER}/rest/info names a token endpoint on another origin "
            "(https://tokens.example.net/arcgis/tokens)",
            id="an endpoint on another origin",
        ),
        pytest.param(
            server_info({"tokenServicesUrl": f"{SERVER}/tokens"}, owningSystemUrl=PORTAL),
            f"{SERVER} is federated with the portal {PORTAL}: sign in there",
            id="a federated server",
        ),
    ],
)
async def test_a_server_that_cannot_sign_in_users_fails_at_once(
    answers: dict[str, Any], message: str
) -> None:
    """One read of rest/info, no retry, no password sent, and a message saying why."""
    site = Site(answers)
    auth = for_server(site)
    started = anyio.current_time()
    with pytest.raises(TokenRefreshError) as caught:
        async with auth:
            pass
    assert message in str(caught.value)
    assert caught.value.retryable is False
    assert anyio.current_time() == started  # not retried after a pause
    assert [f"{SERVER}/rest/info?f=json"] == [str(r.url) for r in site.sent]


async def test_an_empty_owning_system_url_is_a_standalone_server() -> None:
    """``owningSystemUrl: ""`` names no portal: the server's own endpoint signs in."""
    endpoint = f"{SERVER}/tokens/generateToken"
    site = Site(
        {
            **server_info({"tokenServicesUrl": endpoint}, owningSystemUrl=""),
            "token endpoints": [endpoint],
        }
    )
    auth = UserTokenAuth.for_server(
        f"{SERVER}/rest/services/Roads/FeatureServer/0",
        USER,
        PASSWORD,
        http_client=httpx.AsyncClient(transport=site),
    )
    async with auth:
        assert f"token-from-{endpoint}" == await auth.get_token()
    assert [endpoint] == site.posted_to()


async def test_an_unreadable_rest_info_names_the_user_and_the_url() -> None:
    """A server whose rest/info is not there says which URL and whose sign-in."""
    site = Site({})
    auth = for_server(site)
    with pytest.raises(TokenRefreshError) as caught:
        async with auth:
            pass
    assert f"could not read {SERVER}/rest/info for user {USER!r}" in str(caught.value)
    assert not site.posted_to()


# -- a federated server ------------------------------------------------------------------


def federated_site(server: dict[str, Any], portal_info: dict[str, Any] | None) -> Site:
    answers: dict[str, Any] = {
        f"{SERVER}/rest/info": server,
        "token endpoints": [f"{PORTAL}/sharing/rest/generateToken"],
    }
    if portal_info is not None:
        answers[f"{PORTAL}/sharing/rest/info"] = portal_info
    return Site(answers)


@pytest.mark.parametrize(
    ("server", "message"),
    [
        pytest.param(
            {"authInfo": {"isTokenBasedSecurity": True}},
            f"{SERVER} is not federated with a portal (its rest/info has no owningSystemUrl): "
            "use UserTokenAuth.for_server()",
            id="not federated",
        ),
        pytest.param(
            {"owningSystemUrl": ""},
            "is not federated with a portal",
            id="an empty portal URL",
        ),
        pytest.param(
            {"owningSystemUrl": "https://other.example.org/portal"},
            f"{SERVER} is federated with https://other.example.org/portal, not with the portal "
            f"that user {USER!r} at {PORTAL}/sharing/rest/generateToken signs in to",
            id="another portal",
        ),
    ],
)
async def test_a_server_that_does_not_take_this_portals_token_fails_at_once(
    server: dict[str, Any], message: str
) -> None:
    """The portal token is never sent to a server, or a portal, that did not ask for it."""
    site = federated_site(server, {"authInfo": {}})
    site.answers["https://other.example.org/portal/sharing/rest/info"] = {"authInfo": {}}
    http = httpx.AsyncClient(transport=site)
    portal = UserTokenAuth(USER, PASSWORD, PORTAL, http_client=http)
    auth = FederatedServerAuth(portal, SERVER, http_client=http)
    started = anyio.current_time()
    with pytest.raises(TokenRefreshError) as caught:
        async with auth:
            pass
    assert message in str(caught.value)
    assert caught.value.retryable is False
    assert anyio.current_time() == started
    assert [f"{PORTAL}/sharing/rest/generateToken"] == site.posted_to()  # the sign-in only
    assert not portal.is_active


@pytest.mark.parametrize("owner", [PORTAL, PORTAL + "/"])
@pytest.mark.parametrize(
    "portal_info",
    [
        pytest.param({"authInfo": {}}, id="no endpoint named"),
        pytest.param({"authInfo": "open"}, id="authInfo not an object"),
    ],
)
async def test_the_exchange_goes_to_the_portals_token_endpoint(
    owner: str, portal_info: dict[str, Any]
) -> None:
    """However the portal writes its URL, the exchange goes to its generateToken, with
    the portal token and the server's URL (never the password)."""
    site = federated_site({"owningSystemUrl": owner}, portal_info)
    http = httpx.AsyncClient(transport=site)
    portal = UserTokenAuth(USER, PASSWORD, PORTAL, http_client=http)
    async with FederatedServerAuth(portal, SERVER, http_client=http) as auth:
        await auth.get_token()
    endpoint = f"{PORTAL}/sharing/rest/generateToken"
    assert f"{PORTAL}/sharing/rest/info?f=json" in [str(r.url) for r in site.sent]
    assert [endpoint, endpoint] == site.posted_to()
    exchange = dict(httpx.QueryParams(site.sent[-1].content.decode()))
    assert SERVER == exchange["serverUrl"]
    assert f"token-from-{endpoint}" == exchange["token"]
    assert "password" not in exchange
    assert json.dumps(exchange).count(PASSWORD) == 0


async def test_the_exchange_goes_where_the_portal_says() -> None:
    """A portal that names its own token endpoint (on its origin) gets the exchange there;
    a referer-bound portal token is exchanged with that referer; the server token lives as
    long as the server granted, if shorter than asked."""
    named = "https://gis.example.com/portal/sharing/generateToken"
    site = Site(
        {
            f"{SERVER}/rest/info": {"owningSystemUrl": PORTAL},
            f"{PORTAL}/sharing/rest/info": {"authInfo": {"tokenServicesUrl": named}},
            "token endpoints": [f"{PORTAL}/sharing/rest/generateToken", named],
            "exchange seconds": 600,
        }
    )
    http = httpx.AsyncClient(transport=site)
    portal = UserTokenAuth(
        USER, PASSWORD, PORTAL, referer="https://app.example.com", http_client=http
    )
    async with FederatedServerAuth(portal, SERVER, http_client=http) as auth:
        assert f"token-from-{named}" == await auth.get_token()
        assert 600 == round(auth.statistics().expires_in or 0)
    assert [f"{PORTAL}/sharing/rest/generateToken", named] == site.posted_to()
    exchange = site.sent[-1]
    form = dict(httpx.QueryParams(exchange.content.decode()))
    assert {
        "serverUrl": SERVER,
        "expiration": "60",
        "f": "json",
        "client": "referer",
        "referer": "https://app.example.com",
    }.items() <= form.items()
    assert "https://app.example.com" == exchange.headers["Referer"]


async def test_an_exchange_answered_without_a_token_says_so() -> None:
    site = federated_site({"owningSystemUrl": PORTAL}, {"authInfo": {}})
    site.answers["scripted"] = {
        f"{PORTAL}/sharing/rest/generateToken": [
            httpx.Response(200, json={"token": "portal-token", "expires": 4102444800000}),
            httpx.Response(200, json={"expires": 4102444800000}),
        ]
    }
    site.answers["token endpoints"] = []
    http = httpx.AsyncClient(transport=site)
    portal = UserTokenAuth(USER, PASSWORD, PORTAL, http_client=http)
    auth = FederatedServerAuth(
        portal, SERVER, http_client=http, policy=TokenPolicy(startup_attempts=1)
    )
    with pytest.raises(TokenRefreshError) as caught:
        async with auth:
            pass
    assert (
        f"{PORTAL}/sharing/rest/generateToken answered the exchange for server {SERVER} "
        "without a token"
    ) in str(caught.value)


async def test_a_busy_rest_info_is_read_again() -> None:
    """rest/info answering 500 with an error envelope (a server restarting) is retried at
    entry, like the token endpoint; a 400 with any JSON is an error at once."""
    endpoint = f"{SERVER}/tokens/generateToken"
    busy = httpx.Response(500, json={"error": {"code": 500, "message": "Server busy"}})
    site = Site(
        {
            **server_info({"tokenServicesUrl": endpoint}),
            "token endpoints": [endpoint],
            "scripted": {f"{SERVER}/rest/info": [busy]},
        }
    )
    auth = for_server(site)
    async with auth:
        assert f"token-from-{endpoint}" == await auth.get_token()
    assert 2 == sum(1 for r in site.sent if r.url.path.endswith("/rest/info"))

    refused = httpx.Response(400, json={"message": "bad request"})
    site = Site({"scripted": {f"{SERVER}/rest/info": [refused]}})
    auth = for_server(site)
    with pytest.raises(
        TokenRefreshError, match=r"could not read .*/rest/info for user 'alice' \(HTTP 400"
    ):
        async with auth:
            pass
    assert 1 == len(site.sent)
