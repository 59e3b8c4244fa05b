"""The token lifecycle of UserTokenAuth: entry, background renewal, failures, exit."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
import pytest

from archibald.auth import RefreshingAuth, UserTokenAuth
from archibald.config import TokenPolicy
from archibald.exceptions import (
    ArchieClientError,
    AuthNotActiveError,
    InvalidCredentialsError,
    TokenRefreshError,
)

from .fake_token_server import PASSWORD, TOKEN_URL, USERNAME, FakeTokenServer, Mode

pytestmark = pytest.mark.anyio

HOUR = 3600.0


@pytest.fixture
def server() -> FakeTokenServer:
    return FakeTokenServer()


@pytest.fixture(autouse=True)
def no_secret_logged(server: FakeTokenServer, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """After each scenario: no password or token in any log record, at any level."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage()
        for secret in server.secrets:
            assert secret not in text, f"secret leaked in log record {record.name}"


def make_auth(server: FakeTokenServer, **kwargs: object) -> UserTokenAuth:
    return UserTokenAuth(
        USERNAME,
        PASSWORD,
        token_url=TOKEN_URL,
        http_client=server.client(),
        **kwargs,  # type: ignore[arg-type]
    )


def assert_no_secret(server: FakeTokenServer, *texts: str) -> None:
    for text in texts:
        for secret in server.secrets:
            assert secret not in text


async def test_entering_fetches_one_token_and_get_token_does_no_io(
    server: FakeTokenServer,
) -> None:
    """Entering fetches exactly one token; 10,000 get_token() calls send nothing."""
    async with make_auth(server) as auth:
        assert 1 == len(server.requests)
        start = anyio.current_time()
        tokens = {await auth.get_token() for _ in range(10_000)}
        assert {"tok-SECRET-1"} == tokens
        assert 1 == len(server.requests)
        assert start == anyio.current_time()
        assert 1 == auth.statistics().fetches


async def test_token_request_is_a_referer_bound_post(server: FakeTokenServer) -> None:
    """generateToken gets f=json, client=referer and the expiration in minutes."""
    async with make_auth(server, expiration=90):
        pass
    form = server.requests[0].form
    assert {
        "username": USERNAME,
        "password": PASSWORD,
        "client": "referer",
        "referer": "archibald",
        "expiration": "90",
        "f": "json",
    } == form


async def test_without_referer_the_token_is_bound_to_the_ip(server: FakeTokenServer) -> None:
    """referer=None asks for client=requestip and sends no referer."""
    async with make_auth(server, referer=None):
        pass
    assert "requestip" == server.requests[0].form["client"]
    assert "referer" not in server.requests[0].form


async def test_a_day_of_hourly_tokens_renews_ahead_of_expiry_without_waiting(
    server: FakeTokenServer,
) -> None:
    """24 h of 60-minute tokens: one request per 55 minutes, each before the last lapses."""
    server.latency = 2.0  # each renewal takes a while; callers must not notice
    waits: list[float] = []
    async with make_auth(server) as auth:
        entered = anyio.current_time()
        while anyio.current_time() - entered < 24 * HOUR:
            before = anyio.current_time()
            token = await auth.get_token()
            waits.append(anyio.current_time() - before)
            assert server.valid_at(token, anyio.current_time())
            await anyio.sleep(30)
    assert 1 + int(24 * HOUR // 3300) == len(server.requests)  # 27: entry + 26 renewals
    assert {0.0} == set(waits)
    for previous, renewal in zip(server.issued, server.requests[1:], strict=False):
        assert renewal.at < previous.expires_at
        assert renewal.at - previous.issued_at == pytest.approx(3300 - 2.0, abs=1.0)


async def test_a_short_token_is_renewed_every_half_lifetime(server: FakeTokenServer) -> None:
    """A server capping tokens at 4 minutes: renewal every 2 minutes, not continuously."""
    server.max_expiration = 4
    async with make_auth(server):
        await anyio.sleep(HOUR)
    gaps = {round(b.at - a.at) for a, b in itertools.pairwise(server.requests)}
    assert {120} == gaps


async def test_expires_in_the_past_falls_back_to_the_requested_lifetime(
    server: FakeTokenServer,
) -> None:
    """A server clock far off (expires already past): the requested 60 minutes wins."""
    server.expires_offset = -3 * HOUR
    async with make_auth(server) as auth:
        assert auth.statistics().expires_in == pytest.approx(HOUR)
        await anyio.sleep(3299)
        assert 1 == len(server.requests)
        await anyio.sleep(2)
        assert 2 == len(server.requests)


async def test_expires_far_beyond_the_request_falls_back_to_it(server: FakeTokenServer) -> None:
    """expires a week away for a 60-minute request (clock skew): renew after 55 minutes."""
    server.expires_offset = 7 * 24 * HOUR
    async with make_auth(server):
        await anyio.sleep(3301)
        assert 2 == len(server.requests)


async def test_concurrent_force_refresh_calls_share_one_fetch(server: FakeTokenServer) -> None:
    """100 concurrent force_refresh() calls: one token request; all then see the new token."""
    server.latency = 1.0
    seen: list[str] = []

    async def refresh_then_read() -> None:
        await auth.force_refresh()
        seen.append(await auth.get_token())

    async with make_auth(server) as auth:
        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(refresh_then_read)
        assert 2 == len(server.requests)
        assert ["tok-SECRET-2"] * 100 == seen
        assert 1 == auth.statistics().forced_refreshes


async def test_force_refresh_drops_the_old_token_and_wakes_every_waiter(
    server: FakeTokenServer,
) -> None:
    """Waiters during a forced refresh get the new token, never the dropped one."""
    server.latency = 5.0
    seen: list[str] = []

    async def read() -> None:
        seen.append(await auth.get_token())

    async with make_auth(server) as auth:
        async with anyio.create_task_group() as tg:
            tg.start_soon(auth.force_refresh)
            await anyio.sleep(1)  # the forced fetch is under way
            for _ in range(50):
                tg.start_soon(read)
        assert ["tok-SECRET-2"] * 50 == seen


async def test_a_cancelled_caller_cancels_nothing_else(server: FakeTokenServer) -> None:
    """Cancelling one waiter leaves the forced fetch and the other waiters alone."""
    server.latency = 10.0
    seen: list[str] = []

    async def impatient() -> None:
        with anyio.move_on_after(1):
            await auth.force_refresh()

    async def patient() -> None:
        seen.append(await auth.get_token())

    async with make_auth(server) as auth:
        async with anyio.create_task_group() as tg:
            tg.start_soon(impatient)
            await anyio.sleep(0.5)
            tg.start_soon(patient)
        assert ["tok-SECRET-2"] == seen
        assert 2 == len(server.requests)


async def test_refused_credentials_fail_at_entry(server: FakeTokenServer) -> None:
    """HTTP 200 + error 400: InvalidCredentialsError at `async with`, bare, no retry."""
    server.mode = "refuse"
    auth = make_auth(server)
    with pytest.raises(InvalidCredentialsError) as info:
        async with auth:
            pytest.fail("the block must not run")
    message = str(info.value)
    assert TOKEN_URL in message
    assert repr(USERNAME) in message
    assert "Invalid username or password" in message
    assert_no_secret(server, message, repr(info.value), repr(auth))
    assert 1 == len(server.requests)
    assert not auth.statistics().active


async def test_refused_credentials_during_renewal_surface_after_expiry(
    server: FakeTokenServer,
) -> None:
    """Password changed mid-run: old token served, then InvalidCredentialsError, no loop."""
    async with make_auth(server) as auth:
        server.mode = "refuse"
        await anyio.sleep(3400)  # renewal at 3300 s was refused; the token is still valid
        assert "tok-SECRET-1" == await auth.get_token()
        await anyio.sleep(300)  # past expiry
        with pytest.raises(InvalidCredentialsError) as info:
            await auth.get_token()
        assert 0 == auth.statistics().expires_in  # lapsed, not negative
        assert str(info.value) == str(info.value.__cause__)  # the server's refusal, as said
        assert info.value.retryable is False
        assert info.value.__suppress_context__  # the caller's traceback is not the refresher's
        assert 2 == len(server.requests)  # refused once, never retried
        server.mode = "ok"
        await auth.force_refresh()
        assert "tok-SECRET-2" == await auth.get_token()
    assert_no_secret(server, str(info.value), str(info.value.__cause__))


@pytest.mark.parametrize(
    ("mode", "down_for", "requests"),
    [("unavailable", 0.5, 2), ("busy-json", 1.5, (2, 3))],  # 503 with text, 503 with JSON
)
async def test_transient_startup_failures_are_retried(
    server: FakeTokenServer, mode: Mode, down_for: float, requests: int | tuple[int, int]
) -> None:
    """A 503 at entry, with a text or a JSON error body, is a passing failure: retried with
    backoff, and entry succeeds once the endpoint answers."""
    server.mode = mode

    async def recover() -> None:
        await anyio.sleep(down_for)
        server.mode = "ok"

    async with anyio.create_task_group() as tg:
        tg.start_soon(recover)
        async with make_auth(server) as auth:
            assert "tok-SECRET-1" == await auth.get_token()
    low, high = requests if isinstance(requests, tuple) else (requests, requests)
    assert low <= len(server.requests) <= high


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("down", "could not reach"),
        ("unavailable", "HTTP 503"),
        ("html", "Gateway hiccup"),
        ("no-token", "without a token"),
    ],
)
async def test_entry_gives_up_after_the_startup_attempts(
    server: FakeTokenServer, mode: str, expected: str
) -> None:
    """Endpoint broken at entry: TokenRefreshError after startup_attempts, saying why."""
    server.mode = mode  # type: ignore[assignment]
    auth = make_auth(server, policy=TokenPolicy(startup_attempts=3))
    with pytest.raises(TokenRefreshError) as info:
        async with auth:
            pass
    assert type(info.value) is TokenRefreshError
    assert expected in str(info.value)
    assert TOKEN_URL in str(info.value)
    assert 3 == len(server.requests)


async def test_a_missing_endpoint_is_not_retried(server: FakeTokenServer) -> None:
    """HTTP 404 from the token URL: one attempt, an error that says to check the URL."""
    server.mode = "not-found"
    with pytest.raises(TokenRefreshError, match="check the token URL"):
        async with make_auth(server):
            pass
    assert 1 == len(server.requests)


async def test_outage_serves_the_old_token_then_fails_fast_then_recovers(
    server: FakeTokenServer,
) -> None:
    """Endpoint down after the first token: old token until expiry, then a prompt error,
    then tokens again once the endpoint is back, without re-entering."""
    async with make_auth(server) as auth:
        server.mode = "down"
        await anyio.sleep(56 * 60)  # the renewal at 55 minutes has failed at least once
        assert "tok-SECRET-1" == await auth.get_token()
        failed = len(server.requests)
        assert failed >= 3  # retrying with backoff
        await anyio.sleep(5 * 60)  # the token has lapsed
        before = anyio.current_time()
        with pytest.raises(TokenRefreshError) as info:
            await auth.get_token()
        assert before == anyio.current_time()  # raised at once, not after a wait
        assert isinstance(info.value.__cause__, TokenRefreshError)
        assert "could not reach" in str(info.value)
        retries = [s.at for s in server.requests[1:]]
        gaps = [b - a for a, b in itertools.pairwise(retries)]
        assert gaps[0] < 3  # 1 s backoff + jitter (+ no latency)
        assert 32 <= gaps[5] < 34  # doubling: 1, 2, 4, 8, 16, 32
        assert max(gaps) <= 61  # capped at 60 s + up to 1 s of jitter
        server.mode = "ok"
        await anyio.sleep(62)  # the next retry succeeds
        token = await auth.get_token()
        assert server.valid_at(token, anyio.current_time())
        assert auth.statistics().last_error is None
    assert_no_secret(server, str(info.value), str(info.value.__cause__))


async def test_leaving_the_block_wakes_waiters_with_a_clear_error(
    server: FakeTokenServer,
) -> None:
    """Waiters in other tasks when the block ends: AuthNotActiveError, nothing left running."""
    server.latency = 100.0
    errors: list[BaseException] = []

    async def waiter() -> None:
        try:
            await auth.get_token()
        except AuthNotActiveError as exc:
            errors.append(exc)

    async def forcer() -> None:
        try:
            await auth.force_refresh()
        except AuthNotActiveError as exc:
            errors.append(exc)

    auth = make_auth(server)
    async with anyio.create_task_group() as tg:
        server.latency = 0.0
        async with auth:
            server.latency = 100.0
            tg.start_soon(forcer)
            await anyio.sleep(1)
            for _ in range(5):
                tg.start_soon(waiter)
            await anyio.sleep(1)
    assert 6 == len(errors)
    assert all("async with" in str(e) for e in errors)
    assert not auth.statistics().active


async def test_use_outside_the_block_is_a_clear_error(server: FakeTokenServer) -> None:
    """Before entering and after leaving, get_token and force_refresh say to use async with."""
    auth = make_auth(server)
    with pytest.raises(AuthNotActiveError, match="async with"):
        await auth.get_token()
    with pytest.raises(AuthNotActiveError, match="async with"):
        await auth.force_refresh()
    async with auth:
        pass
    with pytest.raises(AuthNotActiveError, match="async with"):
        await auth.get_token()
    assert 1 == len(server.requests)


async def test_entering_an_active_auth_shares_it(server: FakeTokenServer) -> None:
    """A second `async with` on an active auth takes a hold: no new token, and leaving it
    leaves the auth running for the first."""
    async with make_auth(server) as auth:
        async with auth:
            assert "tok-SECRET-1" == await auth.get_token()
        assert auth.is_active
        assert "tok-SECRET-1" == await auth.get_token()
    assert not auth.is_active
    assert 1 == len(server.requests)


async def test_an_auth_can_be_entered_again_after_leaving(server: FakeTokenServer) -> None:
    """Leaving and entering again fetches a fresh token."""
    auth = make_auth(server)
    async with auth:
        assert "tok-SECRET-1" == await auth.get_token()
    async with auth:
        assert "tok-SECRET-2" == await auth.get_token()


@pytest.mark.parametrize("outcome", ["ok", "refuse"])
async def test_the_auth_closes_the_http_client_it_made(
    server: FakeTokenServer, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    """Without http_client, the client the auth made is closed when it leaves the block,
    and when entering fails."""
    made: list[httpx.AsyncClient] = []
    real_client = httpx.AsyncClient

    def own_client(**kwargs: Any) -> httpx.AsyncClient:
        client = real_client(transport=httpx.MockTransport(server.handle), **kwargs)
        made.append(client)
        return client

    monkeypatch.setattr(httpx, "AsyncClient", own_client)
    server.mode = outcome  # type: ignore[assignment]
    auth = UserTokenAuth(USERNAME, PASSWORD, token_url=TOKEN_URL)
    try:
        async with auth:
            assert not made[0].is_closed
    except InvalidCredentialsError:
        assert "refuse" == outcome
    assert 1 == len(made)
    assert made[0].is_closed


async def test_a_given_http_client_is_left_open(server: FakeTokenServer) -> None:
    """A client passed as http_client is the caller's: still usable after the block."""
    http = server.client()
    async with UserTokenAuth(USERNAME, PASSWORD, token_url=TOKEN_URL, http_client=http):
        pass
    assert not http.is_closed
    await http.aclose()


async def test_reprs_show_no_secret(server: FakeTokenServer) -> None:
    """repr() of the auth and its statistics name the user and URL, never a secret."""
    auth = make_auth(server)
    async with auth:
        texts = [repr(auth), str(auth), repr(auth.statistics()), repr(auth._source)]
    assert_no_secret(server, *texts)
    assert USERNAME in repr(auth)
    assert TOKEN_URL in repr(auth)


# -- regressions found in review -------------------------------------------------------


async def test_a_hung_renewal_cannot_strand_waiters(server: FakeTokenServer) -> None:
    """A renewal that never answers is cut at request_timeout; callers get an error."""
    async with make_auth(server, policy=TokenPolicy(request_timeout=10)) as auth:
        server.latency = 10 * 24 * HOUR
        await anyio.sleep(HOUR + 1)  # expired; every renewal attempt has hung
        with pytest.raises(TokenRefreshError, match="took longer than 10 s"):
            await auth.get_token()


@pytest.mark.parametrize(
    "body",
    [
        {"error": "Service Unavailable"},
        {"error": {"code": 400, "message": "busy"}},
        {"error": "temporarily_unavailable"},
    ],
)
async def test_a_busy_endpoint_with_a_json_body_is_retried(
    server: FakeTokenServer, body: dict[str, object]
) -> None:
    """HTTP 503 with an error envelope is transient: renewal resumes when it recovers."""
    busy = True
    answer_ok = server.handle

    async def handle(request: httpx.Request) -> httpx.Response:
        if busy:
            return httpx.Response(503, json=body)
        return await answer_ok(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    busy = False
    async with UserTokenAuth(USERNAME, PASSWORD, token_url=TOKEN_URL, http_client=http) as auth:
        busy = True
        await anyio.sleep(3400)  # the renewal at 3300 s failed
        busy = False
        await anyio.sleep(120)
        assert "tok-SECRET-2" == await auth.get_token()


async def test_a_fetch_finishing_at_exit_publishes_nothing(server: FakeTokenServer) -> None:
    """A token arriving as the block ends is dropped: no secret outlives the block."""
    errors: list[BaseException] = []

    async def forcer() -> None:
        try:
            await auth.force_refresh()
        except AuthNotActiveError as exc:
            errors.append(exc)

    auth = make_auth(server)
    async with anyio.create_task_group() as tg, auth:
        server.latency = 1.0
        tg.start_soon(forcer)
        await anyio.sleep(1.0)  # the forced fetch answers as the block ends
    assert 1 == len(errors)
    assert auth._token is None
    assert auth.statistics().expires_in is None


async def test_aclose_from_another_task_is_refused(server: FakeTokenServer) -> None:
    """aclose() from a task other than the one that entered: a clear error, state intact."""
    errors: list[ArchieClientError] = []

    async def close_elsewhere() -> None:
        try:
            await auth.aclose()
        except ArchieClientError as exc:
            errors.append(exc)

    async with make_auth(server) as auth:
        async with anyio.create_task_group() as tg:
            tg.start_soon(close_elsewhere)
        assert "task that entered" in str(errors[0])
        assert "tok-SECRET-1" == await auth.get_token()
    assert not auth.statistics().active


async def test_late_reports_of_a_replaced_token_fetch_nothing(server: FakeTokenServer) -> None:
    """force_refresh(rejected=old) after the token was replaced returns at once."""
    async with make_auth(server) as auth:
        old = await auth.get_token()
        await auth.force_refresh(rejected=old)
        for _ in range(10):
            await auth.force_refresh(rejected=old)
        assert "tok-SECRET-2" == await auth.get_token()
        assert 2 == len(server.requests)
        await auth.force_refresh(rejected="tok-SECRET-2")
        assert 3 == len(server.requests)


async def test_a_missing_endpoint_after_start_is_retried_slowly(server: FakeTokenServer) -> None:
    """A 404 during renewal (a portal restarting) does not end renewal for good."""
    async with make_auth(server) as auth:
        server.mode = "not-found"
        await anyio.sleep(3400)
        server.mode = "ok"
        await anyio.sleep(61)
        assert "tok-SECRET-2" == await auth.get_token()


async def test_a_failed_entry_can_be_retried(server: FakeTokenServer) -> None:
    """After refused credentials at entry, the same auth can be entered again."""
    server.mode = "refuse"
    auth = make_auth(server)
    with pytest.raises(InvalidCredentialsError):
        async with auth:
            pass
    server.mode = "ok"
    async with auth:
        assert "tok-SECRET-1" == await auth.get_token()


# -- sharing one auth ---------------------------------------------------------------------

SERVICES = "https://gis.example.com/arcgis/rest/services"


def services_transport() -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))


@pytest.mark.parametrize(("first_stays", "second_stays"), [(1.0, 10.0), (10.0, 1.0)])
async def test_two_clients_entering_one_auth_at_once_share_it(
    server: FakeTokenServer, first_stays: float, second_stays: float
) -> None:
    """Two clients enter the same auth concurrently: one token, neither fails, and the auth
    stops only after the last one left, whichever leaves first."""
    from archibald import ArchieClient

    server.latency = 1.0  # the second client arrives while the first is still entering
    auth = make_auth(server)
    answers: list[object] = []

    async def use(stay: float) -> None:
        async with ArchieClient(SERVICES, auth, transport=services_transport()) as client:
            answers.append(await client.get_json("Roads/FeatureServer/0"))
            await anyio.sleep(stay)
            answers.append(await client.get_json("Roads/FeatureServer/0"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(use, first_stays)
        await anyio.sleep(0.5)
        tg.start_soon(use, second_stays)
    assert [{"ok": True}] * 4 == answers
    assert 1 == len(server.requests)
    assert not auth.is_active


async def test_a_failed_entry_fails_every_holder_waiting_for_it(server: FakeTokenServer) -> None:
    """Refused credentials: each client waiting on the same entry gets the refusal, from
    one token request."""
    server.mode = "refuse"
    server.latency = 1.0
    auth = make_auth(server)
    errors: list[TokenRefreshError] = []
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(enter_and_keep_the_error, auth, errors)
    assert [InvalidCredentialsError] * 3 == [type(error) for error in errors]
    assert 1 == len({str(error) for error in errors})  # the same words for every holder
    assert "refused the credentials of user 'alice'" in str(errors[0])
    assert all(error.retryable is False for error in errors)
    assert 1 == len(server.requests)
    assert not auth.is_active


async def test_a_waiting_holder_gets_a_plain_error_for_a_sources_own_kind() -> None:
    """A source raising its own TokenRefreshError subclass (built differently): holders that
    waited get a TokenRefreshError with the same words and retry flag."""
    from archibald.auth import IssuedToken, TokenSource

    class Odd(TokenRefreshError):
        def __init__(self, where: str) -> None:
            super().__init__(f"no token at {where}", retryable=False)

    class Failing(TokenSource):
        def describe(self) -> str:
            return "a failing source"

        async def fetch(self, http: httpx.AsyncClient) -> IssuedToken:
            await anyio.sleep(1)
            raise Odd("the moon")

    auth = RefreshingAuth(Failing(), http_client=httpx.AsyncClient())
    errors: list[TokenRefreshError] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(enter_and_keep_the_error, auth, errors)
        await anyio.sleep(0.5)
        tg.start_soon(enter_and_keep_the_error, auth, errors)
    assert [Odd, TokenRefreshError] == [type(e) for e in errors]
    assert ["no token at the moon"] * 2 == [str(e) for e in errors]
    assert [False, False] == [e.retryable for e in errors]


async def enter_and_keep_the_error(
    auth: UserTokenAuth | Any, errors: list[TokenRefreshError]
) -> None:
    """Enter *auth* and leave at once, keeping the TokenRefreshError entering raised."""
    try:
        async with auth:
            pass
    except TokenRefreshError as exc:
        errors.append(exc)


async def test_statistics_and_repr_follow_the_lifecycle(server: FakeTokenServer) -> None:
    """statistics() and repr() say what the auth is doing, before, inside and after."""
    auth = make_auth(server)
    assert f"UserTokenAuth(user 'alice' at {TOKEN_URL}, inactive)" == repr(auth)
    async with auth:
        await anyio.sleep(100)
        server.mode = "unavailable"
        stats = auth.statistics()
        assert (True, 1, 0, 0) == (
            stats.active,
            stats.fetches,
            stats.failures,
            stats.forced_refreshes,
        )
        assert 3500 == round(stats.expires_in or 0)
        assert 3200 == round(stats.renews_in or 0)
        assert stats.last_error is None
        assert repr(auth).endswith(", active)")
        await anyio.sleep(3300)  # the renewal fails (503) and is retried
        failing = auth.statistics()
        assert failing.failures >= 1
        assert "503" in (failing.last_error or "")
        assert (failing.renews_in or 0) < 0  # overdue while it is retried
    after = auth.statistics()
    assert (False, None, None) == (after.active, after.expires_in, after.renews_in)
    assert repr(auth).endswith(", inactive)")


async def test_a_cancelled_first_holder_stops_the_auth_clearly(server: FakeTokenServer) -> None:
    """The task that started the refresher is cancelled: other holders get a clear error,
    not a hang."""
    auth = make_auth(server)
    host = anyio.CancelScope()

    async def first() -> None:
        with host:
            async with auth:
                await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await anyio.sleep(1)
        async with auth:
            assert "tok-SECRET-1" == await auth.get_token()
            host.cancel()
            await anyio.sleep(1)
            with pytest.raises(AuthNotActiveError):
                await auth.get_token()
    assert not auth.is_active


async def test_tokens_shorter_than_the_minimum_interval_never_lapse() -> None:
    """8-second tokens: renewed before they expire, so no request ever waits or is rejected."""
    from archibald import ArchieClient, FeatureLayer
    from archibald.testing import FakeArcGIS

    fake = FakeArcGIS(max_token_minutes=8 / 60)
    fake.add_user(USERNAME, PASSWORD)
    fake.add_feature_layer("Short", count=10, secured=True)
    fake.faults.latency["generateToken"] = 0.2
    auth = UserTokenAuth(USERNAME, PASSWORD, fake.portal_url, http_client=fake.client())
    async with ArchieClient(fake.services_url, auth, transport=fake.transport()) as client:
        layer = FeatureLayer(client, "Short", 0)
        for _ in range(120):  # a request every half second for a minute
            assert 10 == await layer.count()
            await anyio.sleep(0.5)
        stats = client.statistics()
        renewals = auth.statistics().fetches
    assert (0, 0) == (stats.token_waits, stats.token_rejections)
    assert 8 <= renewals <= 10  # about every 7.2 s (90% of 8 s)


async def test_a_first_holder_that_fails_does_not_wait_for_the_others(
    server: FakeTokenServer,
) -> None:
    """The task that entered first raises: its error comes out at once (not when the other
    holders finish), and the others get a clear AuthNotActiveError."""
    auth = make_auth(server)
    seen: list[BaseException] = []
    failed_at: list[float] = []

    async def first() -> None:
        try:
            async with auth:
                await anyio.sleep(1)
                raise RuntimeError("the first holder's own failure")
        except RuntimeError:
            failed_at.append(anyio.current_time())

    async def second() -> None:
        await anyio.sleep(0.5)
        async with auth:
            await anyio.sleep(30)
            try:
                await auth.get_token()
            except AuthNotActiveError as exc:
                seen.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        tg.start_soon(second)
    assert failed_at[0] < 2
    assert 1 == len(seen)
    assert "entered it first left" in str(seen[0])


class FailsToStart(UserTokenAuth):
    """An auth whose entry fails after a second, with an error of its own making."""

    async def _enter_dependencies(self, stack: AsyncExitStack) -> None:
        await anyio.sleep(1)
        raise RuntimeError("the portal is gone")


async def test_a_holder_waiting_on_a_failed_entry_is_told_why(server: FakeTokenServer) -> None:
    """A second holder arrives while the first is entering, and that entry fails with an
    error that is not about tokens: the second gets AuthNotActiveError naming it."""
    auth = FailsToStart(USERNAME, PASSWORD, token_url=TOKEN_URL, http_client=server.client())
    errors: list[BaseException] = []

    async def enter() -> None:
        try:
            async with auth:
                pass
        except (RuntimeError, AuthNotActiveError) as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(enter)
        await anyio.sleep(0.5)
        tg.start_soon(enter)
    first, second = errors
    assert "the portal is gone" == str(first)
    assert isinstance(second, AuthNotActiveError)
    assert (
        "FailsToStart could not be entered (another holder's `async with` failed: "
        "RuntimeError: the portal is gone)"
    ) == str(second)


class SlowToClose(UserTokenAuth):
    """An auth whose closing takes a second (as one that leaves a busy portal would)."""

    async def _enter_dependencies(self, stack: AsyncExitStack) -> None:
        stack.push_async_callback(anyio.sleep, 1)


async def test_entering_while_the_last_holder_is_closing_starts_afresh(
    server: FakeTokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder arriving while the auth is still closing waits, then starts it again with
    a fresh token and a working HTTP client of its own."""
    real_client = httpx.AsyncClient

    def own_client(**kwargs: Any) -> httpx.AsyncClient:  # the one the auth makes on entry
        return real_client(transport=httpx.MockTransport(server.handle), **kwargs)

    monkeypatch.setattr(httpx, "AsyncClient", own_client)
    auth = SlowToClose(USERNAME, PASSWORD, token_url=TOKEN_URL)
    tokens: list[str] = []

    async def first() -> None:
        async with auth:
            tokens.append(await auth.get_token())

    async def second() -> None:
        await anyio.sleep(0.5)  # the first is closing now
        async with auth:
            await anyio.sleep(HOUR)  # a renewal: the refresher's client still works
            tokens.append(await auth.get_token())

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        tg.start_soon(second)
    assert ["tok-SECRET-1", "tok-SECRET-3"] == tokens


async def test_a_refresh_that_fails_oddly_is_retried_slowly(server: FakeTokenServer) -> None:
    """A token endpoint that worked and now answers 404 (not retryable): tried again every
    retry_max (60 s), not with the fast backoff meant for passing failures."""
    async with make_auth(server):
        server.mode = "not-found"
        start = len(server.requests)
        await anyio.sleep(3300 + 300)  # the renewal is due, then five minutes pass
        times = [sent.at for sent in server.requests[start:]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 3
    assert all(60 <= gap <= 61 for gap in gaps)


async def test_the_fast_clock_is_the_event_loops_own() -> None:
    """The clock get_token() reads without a backend lookup is the one anyio reads, virtual
    time included; outside a running loop it falls back to anyio's."""
    from archibald._tasks import loop_clock

    now = loop_clock()
    assert anyio.current_time() == now()
    await anyio.sleep(3600)
    assert anyio.current_time() == now()
