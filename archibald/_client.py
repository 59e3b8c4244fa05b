"""ArchieClient: ArcGIS-aware requests over one httpx client.

A request is sent in layers, each a short method of `ArchieClient`, like httpx's own
``send`` -> ``_send_handling_redirects`` -> ``_send_single_request``:

- ``_request`` prepares it (`archibald._sending`) and retries it: a transient failure
  (network error, timeout, 429/502/503/504; the one rule is in `archibald._responses`) of
  a request that is safe to repeat waits (exponential backoff with jitter, or the server's
  ``Retry-After``) and goes again, within the `RetryPolicy`;
- ``_exchange`` follows redirects (authorized only where the origin is trusted) and
  refreshes a rejected token (498 or 499, in the body or as the HTTP status) once, through
  ``force_refresh(rejected=token)``, which fetches at most one new token however many
  requests report the same rejection;
- ``_attempt`` sends it once, with the token if the origin may have it, within the
  client's timeout;
- anything else becomes one typed exception.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import anyio.abc
import httpx

from ._counters import ClientStatistics, Counters
from ._lifecycle import Lifecycle
from ._responses import (
    Failure,
    Success,
    TokenRejected,
    Transient,
    arcgis_error,
    classify,
    decode_id_list,
    decode_json,
    rejection_hint,
    turned_away,
)
from ._secrets import is_secure_url, origin_of, redact_url
from ._sending import (
    Exchange,
    build,
    encode,
    enforce_format,
    follow,
    is_safe,
    secret_values,
    too_long_for_get,
    unanswered,
)
from ._tasks import loop_clock
from ._urls import check_base_url, check_http_url, check_origin, join_endpoint, split_query
from ._validate import is_number, is_whole
from ._version import __version__
from .auth import ArcGISAuth, NoAuth, RefreshingAuth
from .config import RetryPolicy
from .exceptions import (
    ConfigurationError,
    InvalidParameterError,
    LifecycleError,
    ServiceError,
    TokenRefreshError,
)

__all__ = ["ArchieClient", "ClientStatistics"]

logger = logging.getLogger("archibald")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5

Params = Mapping[str, Any]


class ArchieClient:
    """An async client for one ArcGIS REST services root.

    ```python
    async with ArchieClient("https://host/arcgis/rest/services", auth) as client:
        layer = await client.get_json("Parcels/FeatureServer/0")
    ```

    Errors that ArcGIS reports inside HTTP 200 responses become typed exceptions; a
    rejected token is refreshed once and the request retried; transient failures of
    requests that are safe to repeat are retried with backoff. The client takes a hold on
    a token auth for its block: it enters the auth if nobody has, and an auth shared with
    other clients (or entered by the caller) is stopped by the last holder to leave (see
    `RefreshingAuth`). Any other auth is entered only if it is not active yet.

    Args:
        base_url: The services root, ending in ``rest/services``.
        auth: How requests are authorized; `NoAuth` by default.
        timeout: The longest one attempt of a request may take, in seconds, from sending
            it to the last byte of the answer (also httpx's timeout for each read). Raise
            it for answers that take longer to download (large exports, attachments).
        max_concurrent_requests: The most requests in flight at once, for this client.
        retry: How transient failures are retried.
        trusted_origins: More origins (``https://host``) that may receive the token,
            besides the base URL's and the auth's own.
        max_url_length: A GET longer than this is sent as a POST with a form body.
        transport: An httpx transport to send with (for tests: `FakeArcGIS.transport`).
        http_client: An httpx client of your own (proxies, certificates); it is left
            open. Its redirects are handled by archibald, never by httpx.

    Raises:
        InvalidServiceURL: *base_url* is not a services root.
        ConfigurationError: Another argument is invalid.
    """

    def __init__(
        self,
        base_url: str,
        auth: ArcGISAuth | None = None,
        timeout: float = 60.0,
        max_concurrent_requests: int = 20,
        *,
        retry: RetryPolicy | None = None,
        trusted_origins: Iterable[str] = (),
        max_url_length: int = 2000,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._base_url = check_base_url(base_url)
        if auth is None:
            auth = NoAuth()
        if not isinstance(auth, ArcGISAuth):
            raise ConfigurationError(
                "auth must be an archibald auth (NoAuth, UserTokenAuth, APIKeyAuth, ...), "
                f"got a {type(auth).__name__}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got a {type(retry).__name__}")
        if not is_whole(max_url_length, 100):
            raise ConfigurationError(
                f"max_url_length must be a whole number of at least 100, got {max_url_length!r}"
            )
        if not is_number(timeout) or not 0 < timeout < math.inf:
            raise ConfigurationError(f"timeout must be a positive number of seconds: {timeout!r}")
        if not is_whole(max_concurrent_requests, 1):
            raise ConfigurationError(
                f"max_concurrent_requests must be a whole number >= 1: {max_concurrent_requests!r}"
            )
        if transport is not None and http_client is not None:
            raise ConfigurationError("give transport or http_client, not both")
        self._auth = auth
        self._timeout = float(timeout)
        self._max_concurrent = max_concurrent_requests
        self._retry = retry if retry is not None else RetryPolicy()
        self._max_url_length = max_url_length
        self._endpoints: dict[str, str] = {}  # endpoint -> its URL, checked
        self._transport = transport
        self._given_http = http_client
        self._trusted = {origin_of(self._base_url), *auth.trusted_origins}
        for origin in trusted_origins:
            self._trusted.add(check_origin(origin))
        self._http: httpx.AsyncClient | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._now = anyio.current_time  # the event loop's clock, read faster once open
        self._tasks: anyio.abc.TaskGroup | None = None
        self._host_task: int | None = None  # the task that opened the client
        self._stack: AsyncExitStack | None = None
        self._state = Lifecycle.IDLE
        self._counters = Counters()
        self._last_rejected: str | None = None
        self._warned_plain_http: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is Lifecycle.ACTIVE:
            raise LifecycleError(f"{self!r} is already open; use one `async with` at a time")
        stack = AsyncExitStack()
        async with AsyncExitStack() as unwind:
            unwind.push_async_exit(stack)
            if isinstance(self._auth, RefreshingAuth) or not self._auth.is_active:
                # A hold on a token auth (see "Sharing one auth"); an auth of your own that
                # you entered is left to you.
                await stack.enter_async_context(self._auth)
            if self._given_http is not None:
                self._http = self._given_http
            else:
                self._http = await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=self._transport,
                        timeout=self._timeout,
                        limits=httpx.Limits(max_connections=self._max_concurrent),
                        headers={"User-Agent": f"archibald/{__version__}"},
                    )
                )
            self._limiter = anyio.CapacityLimiter(self._max_concurrent)
            self._now = loop_clock()
            # Work the client runs for its streams (fetching ahead): entered last, so that
            # on leaving it is cancelled, then awaited, before the HTTP client closes.
            tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tasks.cancel_scope.cancel)
            self._tasks = tasks
            unwind.pop_all()
        self._stack = stack
        self._host_task = anyio.get_current_task().id
        self._state = Lifecycle.ACTIVE
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the streams fetching in the background, close the HTTP client, and release
        the auth; the same as leaving the ``async with`` block.

        It must run in the task that opened the client (its task group belongs to that
        task): to stop a client from elsewhere, cancel the code that opened it.

        Raises:
            LifecycleError: Called from another task while the client is open.
        """
        if self._stack is not None and anyio.get_current_task().id != self._host_task:
            raise LifecycleError(
                "ArchieClient.aclose() must run in the task that opened the client; leave "
                "its `async with` block there (cancel that code to stop it from elsewhere)"
            )
        stack, self._stack = self._stack, None
        self._http = None
        self._tasks = None
        if self._state is Lifecycle.ACTIVE:
            self._state = Lifecycle.CLOSED
        if stack is not None:
            await stack.aclose()

    # -- the public calls ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The services root, without a trailing slash."""
        return self._base_url

    @property
    def auth(self) -> ArcGISAuth:
        """The auth that authorizes this client's requests."""
        return self._auth

    @property
    def max_concurrent_requests(self) -> int:
        """The most requests this client has in flight at once."""
        return self._max_concurrent

    @property
    def trusted_origins(self) -> frozenset[str]:
        """The origins that receive the token."""
        return frozenset(self._trusted)

    def url_for(self, endpoint: str = "") -> str:
        """The absolute URL of *endpoint* (a path below `base_url`)."""
        if not isinstance(endpoint, str):
            return join_endpoint(self._base_url, endpoint)  # which says what is wrong
        url = self._endpoints.get(endpoint)
        if url is None:  # checked once per endpoint: a crawl asks for the same few
            url = join_endpoint(self._base_url, endpoint)
            if len(self._endpoints) >= 256:
                self._endpoints.clear()
            self._endpoints[endpoint] = url
        return url

    async def get(
        self, endpoint: str = "", *, url: str | None = None, params: Params | None = None
    ) -> httpx.Response:
        """GET *endpoint* (below `base_url`) or an absolute *url*; return the response.

        Raises:
            ArcGISError: The server answered with an error (a subclass names which).
            NetworkError: The server could not be reached, even after retries.
            TokenRefreshError: No token could be obtained.
        """
        response, _ = await self._request("GET", self._target(endpoint, url), params, None, None)
        return response

    async def post(
        self,
        endpoint: str = "",
        *,
        url: str | None = None,
        params: Params | None = None,
        data: Params | None = None,
        files: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """POST a form (*data*, and *files* for uploads) to *endpoint* or *url*.

        Args:
            endpoint: A path below `base_url`.
            url: An absolute URL instead.
            params: Query-string parameters.
            data: Form fields.
            files: Files for a multipart upload.
            idempotent: Whether the POST is safe to repeat after a transient failure.
                By default only operations that read (``query`` and the like) are;
                editing operations (``applyEdits``) are not retried unless you say so.

        Raises:
            ArcGISError: The server answered with an error (a subclass names which).
            NetworkError: The server could not be reached, even after retries.
            TokenRefreshError: No token could be obtained.
        """
        target = self._target(endpoint, url)
        response, _ = await self._request("POST", target, params, data, files, idempotent)
        return response

    async def get_json(
        self, endpoint: str = "", *, url: str | None = None, params: Params | None = None
    ) -> dict[str, Any]:
        """Like `get`, returning the decoded JSON object."""
        _, body = await self._request("GET", self._target(endpoint, url), params, None, None)
        return _object(body)

    async def post_json(
        self,
        endpoint: str = "",
        *,
        url: str | None = None,
        params: Params | None = None,
        data: Params | None = None,
        files: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> dict[str, Any]:
        """Like `post`, returning the decoded JSON object."""
        target = self._target(endpoint, url)
        _, body = await self._request("POST", target, params, data, files, idempotent)
        return _object(body)

    async def _post_id_list(self, endpoint: str, data: Params) -> dict[str, Any]:
        """`post_json` for a ``returnIdsOnly`` query, its ids read as an array."""
        target = self.url_for(endpoint)
        _, body = await self._request("POST", target, None, data, None, decode=decode_id_list)
        return _object(body)

    async def _get_raw(self, endpoint: str) -> bytes:
        """GET *endpoint*'s answer as it is (an attachment's bytes): no ``f`` is sent, and
        only a JSON error envelope or an error status is read as an error."""
        target = self.url_for(endpoint)
        _, body = await self._request("GET", target, None, None, None, raw=True)
        return bytes(body)

    def statistics(self) -> ClientStatistics:
        """A snapshot of the client's counters."""
        c = self._counters
        return ClientStatistics(
            requests=c.requests,
            retries=c.retries,
            token_rejections=c.token_rejections,
            refreshes=c.refreshes,
            token_waits=c.token_waits,
        )

    def __repr__(self) -> str:
        state = "open" if self._state is Lifecycle.ACTIVE else "closed"
        return f"ArchieClient({self._base_url!r}, auth={self._auth!r}, {state})"

    # -- the one request loop ------------------------------------------------------------

    def _target(self, endpoint: str, url: str | None) -> str:
        if url is None:
            return self.url_for(endpoint)
        if endpoint:
            raise InvalidParameterError("give an endpoint or url=, not both")
        check_http_url(url, "url", InvalidParameterError, extras="allow")
        return url

    def _background(self) -> anyio.abc.TaskGroup:
        """The task group in which this client's streams fetch ahead, while it is open."""
        self._open()
        assert self._tasks is not None
        return self._tasks

    def _open(self) -> tuple[httpx.AsyncClient, anyio.CapacityLimiter]:
        http, limiter = self._http, self._limiter
        if http is None or limiter is None or self._state is not Lifecycle.ACTIVE:
            closed = " (it has been closed)" if self._state is Lifecycle.CLOSED else ""
            raise LifecycleError(
                f"ArchieClient is not open{closed}: use it inside "
                "`async with ArchieClient(...) as client:`"
            )
        return http, limiter

    async def _request(
        self,
        method: Literal["GET", "POST"],
        url: str,
        params: Params | None,
        data: Params | None,
        files: Mapping[str, Any] | None,
        idempotent: bool | None = None,
        decode: Callable[[bytes], Any] = decode_json,
        *,
        raw: bool = False,
    ) -> tuple[httpx.Response, Any]:
        """Send a request until it succeeds, fails for good, or runs out of retries."""
        self._open()
        exchange = self._prepare(method, url, params, data, files, idempotent, raw=raw)
        exchange.decode = decode
        while True:
            outcome = await self._exchange(exchange)
            if not isinstance(outcome, Transient):
                return outcome
            await self._pause_before_retry(exchange, outcome)

    def _prepare(
        self,
        method: Literal["GET", "POST"],
        url: str,
        params: Params | None,
        data: Params | None,
        files: Mapping[str, Any] | None,
        idempotent: bool | None,
        *,
        raw: bool = False,
    ) -> Exchange:
        """The request as it will be sent: parameters encoded, ``f`` set (unless the answer
        is *raw* bytes), and a GET too long for a URL turned into a POST of the same read."""
        url, query = split_query(url)
        query.update(encode(params))
        form = encode(data, "data")
        if files is not None and not isinstance(files, Mapping):
            raise InvalidParameterError(f"files must be a mapping, got a {type(files).__name__}")
        if idempotent is not None and not isinstance(idempotent, bool):
            raise InvalidParameterError(f"idempotent must be True, False or None: {idempotent!r}")
        secrets = secret_values(query, form)
        fmt = (
            "raw"
            if raw
            else enforce_format(query, form if method == "POST" and not files else None)
        )
        if method == "GET" and too_long_for_get(url, query, self._max_url_length):
            method, form, query, idempotent = "POST", query, {}, True
        safe = idempotent if idempotent is not None else is_safe(method, url)
        return Exchange(method, url, query, form, files, fmt, safe, secrets)

    async def _pause_before_retry(self, exchange: Exchange, transient: Transient) -> None:
        """Wait before sending *exchange* again, or raise its error if no retry is left."""
        exchange.failures += 1
        may_repeat = exchange.safe or transient.never_sent or turned_away(transient.error)
        if may_repeat and exchange.failures < self._retry.attempts:
            delay = self._retry.delay(exchange.failures, transient.retry_after)
            if exchange.waited + delay <= self._retry.budget:
                logger.info(
                    "%s %s failed (attempt %d), retrying in %.2f s: %s",
                    exchange.method,
                    redact_url(exchange.url),
                    exchange.failures,
                    delay,
                    transient.error,
                )
                self._counters.retries += 1
                await anyio.sleep(delay)
                exchange.waited += delay
                return
        raise transient.error

    async def _exchange(self, exchange: Exchange) -> tuple[httpx.Response, Any] | Transient:
        """Send *exchange*, following redirects and refreshing a rejected token once, until
        an answer; a failure that may pass is returned, any other raised."""
        while True:
            sent = await self._attempt(exchange)
            if isinstance(sent, Transient):
                return sent
            response, token = sent
            if response.status_code in _REDIRECTS and "location" in response.headers:
                self._redirect(exchange, response)
                continue
            secrets = [token, *exchange.secrets]
            outcome = classify(
                response, exchange.fmt, exchange.url, secrets=secrets, decode=exchange.decode
            )
            if isinstance(outcome, Success):
                return response, outcome.body
            if isinstance(outcome, Failure):
                raise outcome.error
            if isinstance(outcome, Transient):
                return outcome
            failed_refresh = await self._refresh_rejected(exchange, response, token, outcome)
            if failed_refresh is not None:
                return failed_refresh

    async def _attempt(self, exchange: Exchange) -> tuple[httpx.Response, str] | Transient:
        """Send *exchange* once, with a token if its origin is trusted, within the timeout;
        return the answer and the token sent, or the failure."""
        http, limiter = self._open()  # it may have closed while this request waited
        method, url = exchange.method, exchange.url
        token = ""
        started = self._now()
        try:
            async with limiter:
                # The token is read once a slot is free, so a request that queued behind
                # others does not carry a token replaced in the meantime.
                if self._may_send_token(url):
                    if not self._auth.has_valid_token():
                        self._counters.token_waits += 1
                    token = await self._auth.get_token()
                request = build(http, method, url, exchange.query, exchange.form, exchange.files)
                if token:
                    request = self._auth.authorize(request, token)
                self._counters.requests += 1
                started = self._now()
                # httpx's timeout bounds each read; this bounds the whole exchange, so a
                # server that trickles its answer cannot hold a request forever. (A cancel
                # scope with a deadline: anyio.fail_after costs three times as much.)
                with anyio.CancelScope(deadline=started + self._timeout) as deadline:
                    response = await http.send(request, auth=None, follow_redirects=False)
                if deadline.cancelled_caught:
                    raise TimeoutError
        except (TokenRefreshError, TimeoutError, httpx.HTTPError) as exc:
            return self._failed_attempt(exchange, exc, self._now() - started)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %d in %.3f s (attempt %d)",
                request.method,
                redact_url(request.url),
                response.status_code,
                self._now() - started,
                exchange.failures + 1,
            )
        return response, token

    def _failed_attempt(self, exchange: Exchange, exc: Exception, took: float) -> Transient:
        """What an attempt that got no answer means: a failure that may pass (a token
        failure that may not is raised as it is)."""
        method, url = exchange.method, exchange.url
        if isinstance(exc, TokenRefreshError):
            if not exc.retryable:
                raise exc
            return Transient(exc)
        if isinstance(exc, httpx.TransportError):
            logger.debug(
                "%s %s failed after %.3f s (attempt %d): %s",
                method,
                redact_url(url),
                took,
                exchange.failures + 1,
                type(exc).__name__,
            )
        return unanswered(method, url, exc, self._timeout)

    def _redirect(self, exchange: Exchange, response: httpx.Response) -> None:
        """Point *exchange* where the redirect *response* leads (see `_follow`)."""
        exchange.redirects += 1
        if exchange.redirects > _MAX_REDIRECTS:
            raise ServiceError(
                response.status_code,
                f"more than {_MAX_REDIRECTS} redirects",
                raw_response=response,
                url=exchange.url,
            )
        exchange.url, exchange.method, exchange.query, exchange.form = follow(
            response, exchange.method, exchange.query, exchange.form, exchange.files
        )

    async def _refresh_rejected(
        self, exchange: Exchange, response: httpx.Response, token: str, rejected: TokenRejected
    ) -> Transient | None:
        """Refresh the token *response* rejected, once per request; raise if it was
        already refreshed or cannot be, return the failure of a refresh that may pass."""
        self._counters.token_rejections += 1
        url, envelope = exchange.url, rejected.envelope
        if exchange.refreshed or not self._may_send_token(url) or not self._auth.can_refresh:
            raise arcgis_error(
                envelope,
                url=url,
                response=response,
                secrets=[token, *exchange.secrets],
                hint=rejection_hint(
                    url,
                    token,
                    refreshed=exchange.refreshed,
                    code=envelope.code,
                    no_auth=isinstance(self._auth, NoAuth),
                    auth_hint=self._auth.rejection_hint,
                ),
            )
        exchange.refreshed = True
        if token != self._last_rejected:  # the first to report this token
            self._last_rejected = token
            self._counters.refreshes += 1
            logger.info(
                "%s rejected the token (%s); refreshing it and retrying",
                redact_url(url),
                envelope.code,
            )
        try:
            await self._auth.force_refresh(rejected=token or None)
        except TokenRefreshError as exc:
            if not exc.retryable:
                raise
            exchange.refreshed = False  # no new token came: another refresh may be tried
            return Transient(exc)
        return None

    def _may_send_token(self, url: str) -> bool:
        """Whether *url* may receive the token: a trusted origin, over HTTPS (or loopback).
        A trusted origin over plain HTTP gets none, with a warning."""
        if origin_of(url) not in self._trusted:
            return False
        if is_secure_url(url):
            return True
        if not isinstance(self._auth, NoAuth):
            self._warn_plain_http(url)
        return False

    def _warn_plain_http(self, url: str) -> None:
        """Warn, once per origin, that a trusted origin gets no token over plain HTTP."""
        origin = origin_of(url)
        if origin in self._warned_plain_http:
            return
        self._warned_plain_http.add(origin)
        logger.warning(
            "not sending the token to %s: tokens travel over HTTPS only (loopback excepted)",
            origin,
        )


def _object(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    raise ServiceError(None, f"expected a JSON object, got {type(body).__name__}")
