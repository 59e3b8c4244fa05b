"""App credentials, API keys, standalone and federated servers, credentials from the environment."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import parse_qs

import anyio
import httpx
import pytest

from archibald import (
    APIKeyAuth,
    AppCredentialsAuth,
    ArchieClient,
    ConfigurationError,
    FederatedServerAuth,
    InvalidCredentialsError,
    TokenExpiredError,
    TokenPlacement,
    TokenPolicy,
    TokenRefreshError,
    UserTokenAuth,
    discover_auth,
)
from archibald.testing import FakeArcGIS

pytestmark = pytest.mark.anyio

HOUR = 3600
USER, PASSWORD = "alice", "wonderland-SECRET"
APP, APP_SECRET = "app-id", "app-SECRET-value"
WELLS = "Private/Wells/FeatureServer/0/query"
COUNT = {"where": "1=1", "returnCountOnly": True}


class FormLog(httpx.AsyncBaseTransport):
    """Records (time, path, form) of every token request, then lets the emulator answer."""

    def __init__(self, fake: FakeArcGIS) -> None:
        self.inner = fake.transport()
        self.sent: list[tuple[float, str, dict[str, str]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        self.sent.append((anyio.current_time(), request.url.path, form))
        return await self.inner.handle_async_request(request)


def make_fake(**kwargs: object) -> FakeArcGIS:
    fake = FakeArcGIS(**kwargs)  # type: ignore[arg-type]
    fake.add_user(USER, PASSWORD)
    fake.add_app(APP, APP_SECRET)
    fake.add_feature_layer("Private/Wells", count=50, secured=True)
    return fake


@pytest.fixture
def fake() -> FakeArcGIS:
    return make_fake()


@pytest.fixture(autouse=True)
def no_secret_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No password, client secret or API key in any log record."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        for secret in (PASSWORD, APP_SECRET, "key-SECRET"):
            assert secret not in record.getMessage()


# -- app credentials --------------------------------------------------------------------


async def test_a_day_of_app_tokens(fake: FakeArcGIS) -> None:
    """24 h of 2-hour app tokens: renewed in the background; no call waits after the first."""
    fake.faults.latency["oauth2/token"] = 2.0
    auth = AppCredentialsAuth(APP, APP_SECRET, fake.portal_url, http_client=fake.client())
    waits = []
    async with ArchieClient(fake.services_url, auth, transport=fake.transport()) as client:
        start = anyio.current_time()
        while anyio.current_time() - start < 24 * HOUR:
            before = anyio.current_time()
            await auth.get_token()
            waits.append(anyio.current_time() - before)
            assert {"count": 50} == await client.get_json(WELLS, params=COUNT)
            await anyio.sleep(300)
        assert 0 == client.statistics().token_rejections
    assert {0.0} == set(waits)
    assert 1 + (24 * HOUR) // (2 * HOUR - 300) == fake.statistics().requests["oauth2/token"]


async def test_the_app_token_request(fake: FakeArcGIS) -> None:
    """client_credentials, the expiration in minutes, f=json; expires_in read in seconds."""
    wire = FormLog(fake)
    auth = AppCredentialsAuth(
        APP,
        APP_SECRET,
        fake.portal_url,
        expiration=90,
        http_client=httpx.AsyncClient(transport=wire),
    )
    async with auth:
        assert 90 * 60 == pytest.approx(auth.statistics().expires_in)
    (_, path, form) = wire.sent[0]
    assert "/sharing/rest/oauth2/token" == path
    assert {
        "client_id": APP,
        "client_secret": APP_SECRET,
        "grant_type": "client_credentials",
        "expiration": "90",
        "f": "json",
    } == form


async def test_a_refused_client_secret_fails_at_entry(fake: FakeArcGIS) -> None:
    """A wrong secret: InvalidCredentialsError at `async with`, the secret nowhere in sight."""
    auth = AppCredentialsAuth(APP, "wrong-SECRET-value", fake.portal_url, http_client=fake.client())
    with pytest.raises(InvalidCredentialsError) as info:
        async with auth:
            pass
    text = " ".join([str(info.value), repr(info.value), repr(auth)])
    assert "invalid_client" in text
    assert f"refused the credentials of app {APP!r}" in text
    assert "check the client id and client secret of the app's credentials" in text
    assert "wrong-SECRET-value" not in text
    assert APP_SECRET not in repr(AppCredentialsAuth(APP, APP_SECRET))


# -- API keys ---------------------------------------------------------------------------


async def test_an_api_key_reaches_secured_services(fake: FakeArcGIS) -> None:
    """A valid key is sent like a token; no background task, no token request."""
    fake.add_api_key("key-SECRET-1")
    async with ArchieClient(
        fake.services_url, APIKeyAuth("key-SECRET-1"), transport=fake.transport()
    ) as client:
        assert {"count": 50} == await client.get_json(WELLS, params=COUNT)
    assert 0 == fake.statistics().tokens_issued


async def test_a_rejected_api_key_is_one_clear_error(fake: FakeArcGIS) -> None:
    """A revoked key: one TokenExpiredError saying so, after one request, no refresh loop."""
    fake.add_api_key("key-SECRET-1")
    fake.revoke_all_tokens()
    auth = APIKeyAuth("key-SECRET-1")
    async with ArchieClient(fake.services_url, auth, transport=fake.transport()) as client:
        with pytest.raises(TokenExpiredError) as info:
            await client.get_json(WELLS, params=COUNT)
        assert 0 == client.statistics().refreshes
    assert "API key was rejected" in str(info.value)
    assert "key-SECRET-1" not in str(info.value)
    assert 1 == fake.statistics().requests["query"]
    assert "key-SECRET" not in repr(auth)


async def test_an_api_key_goes_where_its_placement_says(fake: FakeArcGIS) -> None:
    """placement= and referer= reach the key's requests (here: a form field and a Referer),
    and a key never makes a request wait for a token."""
    fake.add_api_key("key-SECRET-2")
    sent: list[httpx.Request] = []
    inner = fake.transport()

    async def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return await inner.handle_async_request(request)

    auth = APIKeyAuth("key-SECRET-2", placement=TokenPlacement.PARAMETER, referer="https://app")
    async with ArchieClient(
        fake.services_url, auth, transport=httpx.MockTransport(record)
    ) as client:
        assert {"count": 50} == await client.get_json(WELLS, params=COUNT)
        assert 0 == client.statistics().token_waits
    (request,) = sent
    assert "key-SECRET-2" == parse_qs(request.content.decode())["token"][0]
    assert "https://app" == request.headers["Referer"]
    assert "Authorization" not in request.headers


@pytest.mark.parametrize("key", ["", "   ", None, 42])
def test_a_blank_api_key_is_refused(key: object) -> None:
    with pytest.raises(ConfigurationError, match="api_key must be a non-empty string"):
        APIKeyAuth(key)  # type: ignore[arg-type]


# -- standalone and federated servers ---------------------------------------------------


async def test_a_standalone_server_is_discovered_from_rest_info() -> None:
    """for_server reads rest/info, signs in at the server's own token endpoint."""
    fake = make_fake(server="standalone")
    auth = UserTokenAuth.for_server(
        f"{fake.origin}/arcgis/rest/services", USER, PASSWORD, http_client=fake.client()
    )
    assert auth.token_url is None
    assert 60 == auth.expiration  # the documented default
    async with ArchieClient(fake.services_url, auth, transport=fake.transport()) as client:
        assert {"count": 50} == await client.get_json(WELLS, params=COUNT)
    assert fake.server_token_url == auth.token_url
    assert 1 == fake.statistics().requests["info"]


async def test_for_server_keeps_every_setting() -> None:
    """expiration, referer, placement and policy reach the standalone server's auth."""
    fake = make_fake(server="standalone")
    policy = TokenPolicy(renew_before=123)
    wire = FormLog(fake)
    auth = UserTokenAuth.for_server(
        f"{fake.origin}/arcgis/rest/services/Private/Wells/FeatureServer/0", USER, PASSWORD,
        expiration=17, referer="my-app", placement=TokenPlacement.X_ESRI_AUTHORIZATION,
        policy=policy, http_client=httpx.AsyncClient(transport=wire),
    )  # fmt: skip
    assert (17, "my-app", TokenPlacement.X_ESRI_AUTHORIZATION, policy) == (
        auth.expiration, auth.referer, auth.placement, auth.policy,
    )  # fmt: skip
    assert f"user {USER!r} at {fake.origin}/arcgis" in repr(auth)
    async with ArchieClient(fake.services_url, auth, transport=fake.transport()) as client:
        assert {"count": 50} == await client.get_json(WELLS, params=COUNT)
        assert 17 * 60 == round(auth.statistics().expires_in or 0)
    ((_, path, form),) = wire.sent[1:]
    assert "/arcgis/tokens/generateToken" == path
    assert {"expiration": "17", "client": "referer", "referer": "my-app"}.items() <= form.items()


async def test_for_server_on_a_federated_server_says_what_to_do() -> None:
    """A federated server's rest/info names its portal: the error says to use it."""
    fake = make_fake(server="federated")
    auth = UserTokenAuth.for_server(
        f"{fake.origin}/arcgis", USER, PASSWORD, http_client=fake.client()
    )
    with pytest.raises(TokenRefreshError, match="FederatedServerAuth") as info:
        async with auth:
            pass
    assert f"federated with the portal {fake.origin}" in str(info.value)
    assert 0 == fake.statistics().tokens_issued


async def test_a_federated_server_token_follows_the_portal_token() -> None:
    """The portal token is exchanged for a server token, renewed right after the portal's."""
    fake = make_fake(server="federated")
    wire = FormLog(fake)
    http = httpx.AsyncClient(transport=wire)
    portal = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=http)
    server = FederatedServerAuth(portal, f"{fake.origin}/arcgis", http_client=http)
    async with portal:
        async with ArchieClient(fake.services_url, server, transport=fake.transport()) as client:
            start = anyio.current_time()
            while anyio.current_time() - start < 3 * HOUR:
                assert {"count": 50} == await client.get_json(WELLS, params=COUNT)
                await anyio.sleep(60)
            assert 0 == client.statistics().token_rejections
        sent = list(wire.sent)
        async with ArchieClient(fake.services_url, portal, transport=fake.transport()) as direct:
            with pytest.raises(TokenExpiredError):  # portal tokens do not open this server
                await direct.get_json(WELLS, params=COUNT)
    sign_ins = [t for t, _, form in sent if "username" in form]
    exchanges = [(t, form) for t, _, form in sent if "serverUrl" in form]
    assert f"{fake.origin}/arcgis" == exchanges[0][1]["serverUrl"]
    assert len(sign_ins) == len(exchanges) == 4  # 0, 55, 110 and 165 minutes
    for signed_in, (exchanged, _) in zip(sign_ins[1:], exchanges[1:], strict=True):
        assert exchanged - signed_in == pytest.approx(1.0)  # a second after the portal renewed


async def test_a_federated_server_enters_its_portal() -> None:
    """FederatedServerAuth enters a portal auth that is not active, and leaves it."""
    fake = make_fake(server="federated")
    portal = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    server = FederatedServerAuth(portal, f"{fake.origin}/arcgis", http_client=fake.client())
    async with ArchieClient(fake.services_url, server, transport=fake.transport()) as client:
        assert portal.is_active
        assert {"count": 50} == await client.get_json(WELLS, params=COUNT)
    assert not portal.is_active


async def test_an_app_signs_in_at_the_token_url_it_was_given(fake: FakeArcGIS) -> None:
    sent = FormLog(fake)
    auth = AppCredentialsAuth(
        APP, APP_SECRET, "https://unused.example.com",
        token_url=f"{fake.origin}/sharing/rest/oauth2/token",
        http_client=httpx.AsyncClient(transport=sent),
    )  # fmt: skip
    async with auth:
        await auth.get_token()
    assert ["/sharing/rest/oauth2/token"] == [path for _, path, _ in sent.sent]
    assert frozenset({fake.origin}) == auth.trusted_origins


async def test_a_federated_server_with_a_given_exchange_url_reads_no_rest_info() -> None:
    """exchange_url= skips discovery; the server auth takes the portal's placement unless
    told otherwise; only a token auth can be the portal."""
    fake = make_fake(server="federated")
    http = httpx.AsyncClient(transport=FormLog(fake))
    portal = UserTokenAuth(
        USER, PASSWORD, fake.portal_url, placement=TokenPlacement.X_ESRI_AUTHORIZATION,
        http_client=http,
    )  # fmt: skip
    server = FederatedServerAuth(
        portal, f"{fake.origin}/arcgis", exchange_url=fake.token_url, http_client=http
    )
    assert TokenPlacement.X_ESRI_AUTHORIZATION is server.placement
    assert {"count": 50} == await crawl_wells(fake, server)
    assert 0 == fake.statistics().requests.get("info", 0)
    with pytest.raises(
        ConfigurationError, match="portal must be a token auth such as UserTokenAuth"
    ):
        FederatedServerAuth(APIKeyAuth("key-SECRET-3"), f"{fake.origin}/arcgis")  # type: ignore[arg-type]


def test_the_portal_token_only_goes_to_the_portal() -> None:
    """An exchange URL on another origin than the portal's is refused."""
    portal = UserTokenAuth(USER, PASSWORD, "https://portal.example.com/portal")
    with pytest.raises(ConfigurationError, match="portal's origin"):
        FederatedServerAuth(
            portal,
            "https://gis.example.com/server",
            exchange_url="https://elsewhere.example.net/sharing/rest/generateToken",
        )


# -- from the environment ---------------------------------------------------------------


async def test_credentials_from_the_environment(fake: FakeArcGIS) -> None:
    """Each kind reads its documented variables, and they work: the user and the app sign
    in at the portal that ARCGIS_PORTAL_URL names, the key is the key."""
    fake.add_api_key("key-SECRET-9")
    env = {
        "ARCGIS_USERNAME": USER,
        "ARCGIS_PASSWORD": PASSWORD,
        "ARCGIS_CLIENT_ID": APP,
        "ARCGIS_CLIENT_SECRET": APP_SECRET,
        "ARCGIS_API_KEY": "key-SECRET-9",
        "ARCGIS_PORTAL_URL": fake.portal_url,
    }
    user = UserTokenAuth.from_env(env, http_client=fake.client())
    app = AppCredentialsAuth.from_env(env, expiration=30, http_client=fake.client())
    key = APIKeyAuth.from_env(env)
    assert (USER, fake.token_url) == (user.username, user.token_url)
    assert APP == app.client_id
    assert frozenset({fake.origin}) == app.trusted_origins  # ARCGIS_PORTAL_URL was read
    for auth in (user, app, key):  # each reaches the secured layer
        assert {"count": 50} == await crawl_wells(fake, auth)
    assert 2 == fake.statistics().tokens_issued
    async with app:  # the other arguments reach the constructor: 30-minute tokens
        assert 30 * 60 == app.statistics().expires_in
    assert "key-SECRET" not in repr(key)


async def test_credentials_from_the_process_environment(
    fake: FakeArcGIS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a mapping, from_env() reads the process's environment; other arguments
    reach the constructor."""
    fake.add_api_key("key-SECRET-8")
    monkeypatch.setenv("ARCGIS_API_KEY", "key-SECRET-8")
    key = APIKeyAuth.from_env(placement=TokenPlacement.X_ESRI_AUTHORIZATION)
    assert TokenPlacement.X_ESRI_AUTHORIZATION is key.placement
    assert {"count": 50} == await crawl_wells(fake, key)
    monkeypatch.delenv("ARCGIS_API_KEY")
    with pytest.raises(ConfigurationError, match=r"APIKeyAuth\.from_env\(\) needs"):
        APIKeyAuth.from_env()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "needs the environment variable ARCGIS_USERNAME and ARCGIS_PASSWORD, which are "),
        ({"ARCGIS_USERNAME": USER}, "needs the environment variable ARCGIS_PASSWORD, which is "),
    ],
)
def test_the_missing_variables_are_named_in_a_sentence(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        UserTokenAuth.from_env(env)
    assert f"UserTokenAuth.from_env() {message}not set" == str(info.value)


@pytest.mark.parametrize(
    ("build", "env", "missing"),
    [
        (UserTokenAuth.from_env, {"ARCGIS_USERNAME": USER}, "ARCGIS_PASSWORD"),
        (AppCredentialsAuth.from_env, {"ARCGIS_CLIENT_SECRET": APP_SECRET}, "ARCGIS_CLIENT_ID"),
        (APIKeyAuth.from_env, {"ARCGIS_API_KEY": ""}, "ARCGIS_API_KEY"),
    ],
)
def test_a_missing_variable_is_named(build: object, env: dict[str, str], missing: str) -> None:
    """The error names the missing variable and shows no value."""
    with pytest.raises(ConfigurationError, match=missing) as info:
        build(env)  # type: ignore[operator]
    assert PASSWORD not in str(info.value)
    assert APP_SECRET not in str(info.value)


# -- discover_auth: signing in where the server says --------------------------------------


def token_requests(sent: FormLog) -> list[tuple[str, dict[str, str]]]:
    return [(path, form) for _, path, form in sent.sent if path.endswith("/generateToken")]


async def crawl_wells(fake: FakeArcGIS, auth: object) -> dict[str, object]:
    async with ArchieClient(fake.services_url, auth, transport=fake.transport()) as client:  # type: ignore[arg-type]
        return await client.get_json(WELLS, params=COUNT)


async def test_discovery_on_a_federated_server_exchanges_the_portal_token() -> None:
    """owningSystemUrl names the portal: sign in there, exchange for a server token."""
    fake = make_fake(server="federated")
    sent = FormLog(fake)
    auth = await discover_auth(
        f"{fake.services_url}/Private/Wells/FeatureServer/0",
        USER,
        PASSWORD,
        http_client=httpx.AsyncClient(transport=sent),
    )
    assert isinstance(auth, FederatedServerAuth)
    assert {"count": 50} == await crawl_wells(fake, auth)
    (sign_in, exchange) = token_requests(sent)
    assert "/sharing/rest/generateToken" == sign_in[0] == exchange[0]
    assert USER == sign_in[1]["username"]  # the password went to the portal it named
    assert "serverUrl" in exchange[1]


async def test_discovery_on_a_standalone_server_uses_its_token_endpoint() -> None:
    """No portal: the server's own tokenServicesUrl, and nothing else, gets the password."""
    fake = make_fake(server="standalone")
    sent = FormLog(fake)
    auth = await discover_auth(
        fake.services_url, USER, PASSWORD, http_client=httpx.AsyncClient(transport=sent)
    )
    assert isinstance(auth, UserTokenAuth)
    assert fake.server_token_url == auth.token_url
    assert {"count": 50} == await crawl_wells(fake, auth)
    assert ["/arcgis/tokens/generateToken"] == [path for path, _ in token_requests(sent)]


async def test_discovery_on_arcgis_online_uses_the_portal_token_as_it_is() -> None:
    """A hosted service on *.arcgis.com: the ArcGIS Online token, no exchange."""
    fake = make_fake(origin="https://services.arcgis.com", server="hosted")
    sent = FormLog(fake)
    auth = await discover_auth(
        fake.services_url, USER, PASSWORD, http_client=httpx.AsyncClient(transport=sent)
    )
    assert isinstance(auth, UserTokenAuth)
    assert {"count": 50} == await crawl_wells(fake, auth)
    ((path, form),) = token_requests(sent)
    assert "/sharing/rest/generateToken" == path
    assert "serverUrl" not in form


async def test_discovery_with_app_credentials_on_a_federated_server() -> None:
    """An app signs in at the portal the server names, then exchanges."""
    fake = make_fake(server="federated")
    auth = await discover_auth(
        fake.services_url, client_id=APP, client_secret=APP_SECRET, http_client=fake.client()
    )
    assert isinstance(auth, FederatedServerAuth)
    assert isinstance(auth.portal, AppCredentialsAuth)


async def test_discovery_refuses_what_cannot_work() -> None:
    """App credentials for a standalone server, a server whose rest/info cannot be read,
    half a set of credentials: clear errors, and no password sent anywhere."""
    standalone = make_fake(server="standalone")
    with pytest.raises(ConfigurationError, match="signs in users, not apps"):
        await discover_auth(
            standalone.services_url, client_id=APP, client_secret=APP_SECRET,
            http_client=standalone.client(),
        )  # fmt: skip
    broken = make_fake(server="standalone")
    broken.faults.fail_next("info", status=503, times=10)
    with pytest.raises(TokenRefreshError, match="rest/info"):
        await discover_auth(broken.services_url, USER, PASSWORD, http_client=broken.client())
    assert "generateToken" not in broken.statistics().requests
    with pytest.raises(ConfigurationError, match="username and password"):
        await discover_auth(broken.services_url, USER)
    with pytest.raises(ConfigurationError, match="https"):
        await discover_auth("http://gis.example.com/arcgis/rest/services", USER, PASSWORD)


@pytest.mark.parametrize(
    ("server", "portal", "expected"),
    [
        ("https://services.arcgis.com/org/arcgis", "https://www.arcgis.com", True),
        ("https://services3.arcgis.com/org/arcgis", "https://myorg.maps.arcgis.com", True),
        ("https://servicesdev.arcgis.com/org/arcgis", "https://www.arcgis.com", False),
        ("https://servicesdev.arcgis.com/org/arcgis", "https://devext.arcgis.com", True),
        ("https://gis.example.com/server", "https://www.arcgis.com", False),
        ("https://services.arcgis.com.evil.example/x", "https://www.arcgis.com", False),
    ],
)
def test_which_servers_take_an_arcgis_online_token(
    server: str, portal: str, expected: bool
) -> None:
    """Only ArcGIS Online hosts, in the portal's own environment, skip the exchange."""
    from archibald.auth._discover import _hosted_on_arcgis_online

    assert expected == _hosted_on_arcgis_online(server, portal)


@pytest.mark.parametrize(
    ("url", "environment"),
    [
        ("https://services.arcgis.com/org/arcgis", "production"),
        ("https://services7.arcgis.com/org/arcgis", "production"),
        ("https://www.arcgis.com", "production"),
        ("https://myorg.maps.arcgis.com", "production"),
        ("https://SERVICES.ArcGIS.com/org", "production"),
        ("https://servicesdev.arcgis.com/org/arcgis", "dev"),
        ("https://devext.arcgis.com", "dev"),
        ("https://myorg.mapsdevext.arcgis.com", "dev"),
        ("https://servicesqa.arcgis.com/org/arcgis", "qa"),
        ("https://qaext.arcgis.com", "qa"),
        ("https://myorg.mapsqa.arcgis.com", "qa"),
        ("https://devteam.maps.arcgis.com", "production"),  # an org named dev...
        ("https://qa-team.maps.arcgis.com", "production"),
        ("https://gis.example.com/server", None),
        ("https://arcgis.com.example.net", None),
        ("not a url", None),
    ],
)
def test_the_arcgis_online_environment_of_a_host(url: str, environment: str | None) -> None:
    from archibald._urls import arcgis_online_environment

    assert environment == arcgis_online_environment(url)


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({"username": USER}, "needs a username and password, or a client_id and client_secret"),
        ({"password": PASSWORD}, "needs a username and password, or a client_id"),
        ({"username": USER, "password": ""}, "needs a username and password"),
        ({"client_id": APP}, "needs both client_id and client_secret"),
        ({"client_secret": APP_SECRET}, "needs both client_id and client_secret"),
        ({"username": USER, "password": PASSWORD, "client_id": APP}, "needs a username and"),
        ({}, "needs a username and password, or a client_id and client_secret"),
    ],
)
async def test_discovery_needs_one_whole_set_of_credentials(
    credentials: dict[str, str], message: str
) -> None:
    """Half a set, or two sets, is refused before anything is sent."""
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    with pytest.raises(ConfigurationError, match=message):
        await discover_auth(
            "https://gis.example.com/arcgis/rest/services",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(record)),
            **credentials,  # type: ignore[arg-type]
        )
    assert not sent


async def test_discovery_with_app_credentials_keeps_every_setting() -> None:
    """placement, policy, expiration and the HTTP client reach the app's portal auth and
    the server auth over it."""
    fake = make_fake(server="federated")
    policy = TokenPolicy(renew_before=123)
    http = fake.client()
    auth = await discover_auth(
        fake.services_url, client_id=APP, client_secret=APP_SECRET, expiration=90,
        placement=TokenPlacement.X_ESRI_AUTHORIZATION, policy=policy, http_client=http,
    )  # fmt: skip
    assert isinstance(auth, FederatedServerAuth)
    app = auth.portal
    assert isinstance(app, AppCredentialsAuth)
    assert (APP, TokenPlacement.X_ESRI_AUTHORIZATION, policy) == (
        app.client_id, app.placement, app.policy,
    )  # fmt: skip
    assert (policy, TokenPlacement.X_ESRI_AUTHORIZATION) == (auth.policy, auth.placement)
    async with auth:  # both tokens asked for 90 minutes
        assert 90 * 60 == round(app.statistics().expires_in or 0)
        assert 90 * 60 == round(auth.statistics().expires_in or 0)
    assert not http.is_closed  # the given client was used and left open
    assert {"count": 50} == await crawl_wells(fake, auth)


@pytest.mark.parametrize("server", ["federated", "standalone"])
async def test_discovery_keeps_every_setting(server: str) -> None:
    """expiration, referer, placement and policy reach the auths discover_auth builds."""
    from archibald import TokenPlacement, TokenPolicy

    fake = make_fake(server=server)
    policy = TokenPolicy(renew_before=123)
    auth = await discover_auth(
        fake.services_url, USER, PASSWORD, expiration=17, referer="my-app",
        placement=TokenPlacement.X_ESRI_AUTHORIZATION, policy=policy, http_client=fake.client(),
    )  # fmt: skip
    user = auth.portal if isinstance(auth, FederatedServerAuth) else auth
    assert isinstance(user, UserTokenAuth)
    assert (17, "my-app", TokenPlacement.X_ESRI_AUTHORIZATION, policy) == (
        user.expiration, user.referer, user.placement, user.policy,
    )  # fmt: skip
    assert (policy, TokenPlacement.X_ESRI_AUTHORIZATION) == (auth.policy, auth.placement)
    assert {"count": 50} == await crawl_wells(fake, auth)


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        (1800, 1800),  # the server granted less: its word
        (7260, 7260),  # up to a minute more than asked (clocks and rounding)
        (7261, 7200),  # more than that: the request's
        (0, 7200),
        (-5, 7200),
        (True, 7200),
        ("1800", 7200),
        (None, 7200),
        (1800.5, 1800.5),
        (1, 1),  # a second is short, but what the server granted
    ],
)
async def test_an_app_tokens_lifetime_is_the_granted_one_when_plausible(
    expires_in: object, lifetime: float
) -> None:
    """expires_in (seconds) wins when it is a plausible number; else the requested 120 min."""

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "tok-app", "expires_in": expires_in})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    async with AppCredentialsAuth(APP, APP_SECRET, http_client=http) as auth:
        assert lifetime == auth.statistics().expires_in
    await http.aclose()


@pytest.mark.parametrize("token", [None, "", 42])
async def test_an_app_answer_without_a_token_says_what_it_had(token: object) -> None:
    """No usable access_token in the answer: a TokenRefreshError listing the keys it had."""

    def handle(request: httpx.Request) -> httpx.Response:
        answer: dict[str, object] = {"expires_in": 60, "token_type": "bearer"}
        if token is not None:
            answer["access_token"] = token
        return httpx.Response(200, json=answer)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    auth = AppCredentialsAuth(
        APP, APP_SECRET, http_client=http, policy=TokenPolicy(startup_attempts=1)
    )
    keys = "expires_in, token_type" if token is None else "access_token, expires_in, token_type"
    with pytest.raises(TokenRefreshError, match=rf"without an access_token \(keys: {keys}\)"):
        async with auth:
            pass
    await http.aclose()


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("https://gis.example.com/arcgis", "https://gis.example.com/arcgis"),
        ("https://gis.example.com/arcgis/", "https://gis.example.com/arcgis"),
        ("https://gis.example.com/arcgis/rest", "https://gis.example.com/arcgis"),
        ("https://gis.example.com/arcgis/rest/services", "https://gis.example.com/arcgis"),
        (" https://gis.example.com/server/rest/services/A/FeatureServer/0?f=json#x ",
         "https://gis.example.com/server"),
        ("https://h.example.com:6443/arcgis/rest/info", "https://h.example.com:6443/arcgis"),
        # a service named "rest": the first /rest/ is the REST API's
        ("https://gis.example.com/arcgis/rest/services/rest/FeatureServer/0",
         "https://gis.example.com/arcgis"),
    ],
)  # fmt: skip
def test_the_server_root_of_any_url_below_it(url: str, root: str) -> None:
    """server_root cuts a URL back to the server: no /rest, no query, no fragment."""
    from archibald._urls import server_root

    assert root == server_root(url)


def test_a_server_url_must_be_a_string() -> None:
    """A server URL that is not a string is a ConfigurationError naming it."""
    from archibald._urls import server_root

    with pytest.raises(ConfigurationError, match="server_url must be a URL string, got 42"):
        server_root(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["http://[bad", "https://host]/arcgis", "ftp://host/arcgis"])
def test_a_server_url_urlsplit_cannot_read_is_a_configuration_error(url: str) -> None:
    """A server URL with an unclosed IPv6 bracket (found beside the property tests of
    join_endpoint) is a ConfigurationError, not urlsplit's ValueError."""
    with pytest.raises(ConfigurationError, match="server_url"):
        UserTokenAuth.for_server(url, "alice", "pw")
