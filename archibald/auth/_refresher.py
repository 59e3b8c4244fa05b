"""The one background refresher that every token-issuing auth shares.

A kind of token is a `TokenSource`: how to fetch one token. `RefreshingAuth` owns the
rest: an anyio task group opened by ``async with``, a refresher task that fetches a token,
publishes it, sleeps until a lead time before expiry (on anyio's clock) and renews, with
backoff after failures. Callers of `get_token` only read the published state or wait for
the next publication; they never do I/O.

State and its invariants:

- ``_token`` is the newest token, served until it expires (also while a renewal runs).
- ``_error`` is the failure of the newest attempt, cleared by the next success.
- ``_changed`` is set and replaced on every publication, so a waiter on it always wakes.
- ``_run`` is the current refresher run (a `_Run`); a run publishes only while it is the
  current one (``run is self._run``), so a run that `force_refresh` cancelled, or one
  still finishing after the auth closed, cannot publish a late result.
- ``_state`` is the auth's `Lifecycle`: idle, active (inside ``async with``), or closed.
"""

from __future__ import annotations

import collections
import logging
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import anyio
import attrs
import httpx
from anyio.abc import TaskGroup, TaskStatus

from .._lifecycle import Lifecycle
from .._secrets import Secret
from .._tasks import loop_clock
from ..config import TokenPolicy
from ..exceptions import (
    AuthNotActiveError,
    ConfigurationError,
    InvalidCredentialsError,
    LifecycleError,
    TokenRefreshError,
)
from ._base import ArcGISAuth, TokenPlacement
from ._source import IssuedToken, TokenSource, TokenStatistics

__all__ = ["RefreshingAuth"]

logger = logging.getLogger("archibald.auth")

# Read on every get_token(): a module constant is cheaper than the enum's attribute.
_ACTIVE = Lifecycle.ACTIVE


@attrs.frozen
class _Token:
    value: Secret
    expires_at: float  # on anyio's clock


SourceT = TypeVar("SourceT", bound=TokenSource)


class RefreshingAuth(ArcGISAuth, Generic[SourceT]):
    """An auth whose token a background task renews before it expires.

    Subclasses (such as `UserTokenAuth`) only provide a `TokenSource`.

    ``async with auth:`` opens a task group and fetches the first token before the block's
    body runs, so refused credentials raise `InvalidCredentialsError` right there. Inside
    the block a refresher task renews the token ahead of expiry; `get_token` returns at
    once while a valid token exists. Leaving the block stops the refresher and closes the
    HTTP client the auth created.

    One auth may be shared: by several clients, in one task or in several. Each
    ``async with`` takes a hold on it. The first starts the refresher; one that comes
    while the first is still fetching the first token waits for it (and gets its error
    if that fails); the refresher stops when the last hold is released. The refresher
    belongs to the task that entered first, so that task, on leaving normally, waits for
    holders in other tasks to leave first; leaving with an error or cancelled, it stops
    the auth at once, and their calls raise `AuthNotActiveError`. The simplest shape is
    to enter the auth once, around the tasks that share it.

    Args:
        source: How to fetch one token.
        policy: When to renew and how to retry.
        placement: Where requests carry the token.
        referer: The ``Referer`` header requests carry, for referer-bound tokens.
        http_client: The client for token requests; by default the auth creates one on
            entry and closes it on exit. A client passed here is left open.
    """

    def __init__(
        self,
        source: SourceT,
        *,
        policy: TokenPolicy | None = None,
        placement: TokenPlacement = TokenPlacement.AUTHORIZATION,
        referer: str | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(placement=placement, referer=referer)
        if policy is None:
            policy = TokenPolicy()
        elif not isinstance(policy, TokenPolicy):
            raise ConfigurationError(f"policy must be a TokenPolicy, got {policy!r}")
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError(
                f"http_client must be an httpx.AsyncClient, got {type(http_client).__name__}"
            )
        self._source = source
        self._policy = policy
        self._own_http = http_client is None
        self._http = http_client
        self._stack: AsyncExitStack | None = None
        self._host_task: int | None = None
        self._task_group: TaskGroup | None = None
        self._entering: _Entry | None = None  # set while the first holder is entering
        self._holds: collections.Counter[int] = collections.Counter()  # by task id
        self._released: anyio.Event | None = None  # set when a hold in another task ends
        self._closing: anyio.Event | None = None  # set while aclose() is under way
        self._left_with_holders = False  # the first holder left while others held it
        self._state = Lifecycle.IDLE
        self._token: _Token | None = None
        self._error: TokenRefreshError | None = None
        # Events and cancel scopes belong to an event loop, so they are made on entry.
        self._changed: anyio.Event | None = None
        self._forced: anyio.Event | None = None
        self._run: _Run | None = None  # the refresher run that may publish
        self._now = anyio.current_time  # the event loop's clock, read faster once entered
        self._renew_at = 0.0  # when the current token is due for renewal (anyio clock)
        self._fetches = 0
        self._failures = 0
        self._forced_refreshes = 0

    @property
    def policy(self) -> TokenPolicy:
        """The renewal policy."""
        return self._policy

    @property
    def is_active(self) -> bool:
        """Whether the auth is inside its ``async with`` block."""
        return self._state is _ACTIVE

    @property
    def _description(self) -> str:
        # Asked each time: a server's token endpoint is learnt on the first fetch.
        return self._source.describe()

    @property
    def can_refresh(self) -> bool:
        """True: a rejected token can be replaced."""
        return True

    @property
    def trusted_origins(self) -> frozenset[str]:
        """The origins of the token endpoint (the portal or server that issues tokens)."""
        return self._source.origins()

    # -- the public contract -------------------------------------------------------------

    def has_valid_token(self) -> bool:
        """Whether a valid token is at hand, so `get_token` returns without waiting."""
        token = self._token
        return self._state is _ACTIVE and token is not None and self._now() < token.expires_at

    async def get_token(self) -> str:
        """Return the current token, waiting only if none is valid yet.

        Raises:
            AuthNotActiveError: The auth is not inside its ``async with`` block, or left
                it while this call waited.
            InvalidCredentialsError: The server refused the credentials and the last
                token has expired; `force_refresh` tries again.
            TokenRefreshError: No valid token exists and the last attempt to fetch one
                failed (the cause is chained). The refresher keeps retrying.
        """
        while True:
            if self._state is not _ACTIVE:
                self._check_active()  # raises, saying why
            token = self._token
            if token is not None and self._now() < token.expires_at:
                return token.value.reveal()
            if self._error is not None:
                raise self._error_for_caller()
            assert self._changed is not None
            await self._changed.wait()

    async def force_refresh(self, rejected: str | None = None) -> None:
        """Drop the current token and fetch a new one at once.

        The refresher is cancelled and restarted. Concurrent calls share one fetch; each
        returns when it has finished. Cancelling a caller cancels only its wait.

        Args:
            rejected: The token the server rejected, if known. When the auth already
                holds a different, valid token (another caller's refresh replaced it),
                nothing is fetched: many requests that saw the same token rejected cause
                one refresh, however late they report it.

        Raises:
            AuthNotActiveError: The auth is not inside its ``async with`` block.
            TokenRefreshError: The new fetch failed (the refresher keeps retrying unless
                the credentials were refused).
        """
        self._check_active()
        current = self._token
        if (
            rejected is not None
            and self._forced is None
            and current is not None
            and current.value.reveal() != rejected
            and anyio.current_time() < current.expires_at
        ):
            return
        if self._forced is None:
            self._forced = anyio.Event()
            self._forced_refreshes += 1
            logger.info("refreshing the token for %s now", self._description)
            self._token = None
            self._error = None
            assert self._run is not None
            if not self._run.fetching:
                self._restart()
            # else: a renewal is already on its way; its token is the fresh one we need.
        done = self._forced
        await done.wait()
        await self.get_token()

    def statistics(self) -> TokenStatistics:
        """Return a snapshot of the auth's state and counters."""
        expires_in = renews_in = None
        if self.is_active and self._token is not None:  # inside the block: in an event loop
            now = anyio.current_time()
            expires_in = max(0.0, self._token.expires_at - now)
            renews_in = self._renew_at - now
        return TokenStatistics(
            active=self.is_active,
            fetches=self._fetches,
            failures=self._failures,
            forced_refreshes=self._forced_refreshes,
            expires_in=expires_in,
            renews_in=renews_in,
            last_error=str(self._error) if self._error is not None else None,
        )

    async def __aenter__(self) -> Self:
        task = anyio.get_current_task().id
        while not self.is_active:
            if self._closing is not None:  # the last holder is still closing: let it finish
                await self._closing.wait()
                continue
            entry = self._entering
            if entry is None:
                await self._start()
                break
            await entry.done.wait()  # another holder is entering: share its outcome
            if isinstance(entry.error, Exception):
                raise _entry_failed(self, entry.error) from entry.error
        self._holds[task] += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Release this block's hold; the last one out stops the refresher."""
        task = anyio.get_current_task().id
        self._holds[task] -= 1
        if self._holds[task] <= 0:
            del self._holds[task]
        if task != self._host_task:
            if self._released is not None:
                self._released.set()  # the host may be waiting for this hold to end
            return
        if task in self._holds:
            return  # an inner hold of the host task: the host's own is still open
        try:
            if exc_type is None and self._holds and self.is_active:
                # Holders in other tasks: let them finish. (Leaving with an error or a
                # cancellation stops the auth at once: an error is never held back.)
                logger.info(
                    "waiting for %d other holders of %r to leave before stopping it",
                    len(self._holds),
                    self,
                )
                while self._holds and self.is_active:
                    self._released = anyio.Event()
                    await self._released.wait()
        finally:
            await self.aclose()

    async def _enter_dependencies(self, stack: AsyncExitStack) -> None:
        """Enter what this auth needs while it is active (an auth it draws tokens from)
        into *stack*, which is left when the auth stops."""

    async def _start(self) -> None:
        """Enter as the first holder: open the task group, fetch the first token."""
        entry = self._entering = _Entry()
        self._host_task = anyio.get_current_task().id
        stack = AsyncExitStack()
        try:
            await self._enter_dependencies(stack)
            if self._own_http:
                self._http = httpx.AsyncClient(timeout=self._policy.request_timeout)
                stack.push_async_callback(_close_shielded, self._http)
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            await self._task_group.start(self._refresher, self._reset_state())
        except BaseException as exc:
            entry.error = exc
            if self._task_group is not None:
                self._task_group.cancel_scope.cancel()
            try:
                await stack.aclose()
            finally:
                self._task_group = None
                if self._own_http:
                    self._http = None
            raise
        finally:
            self._entering = None
            entry.done.set()
        self._stack = stack
        self._state = Lifecycle.ACTIVE

    async def aclose(self) -> None:
        """Stop the refresher now, wake every waiter with `AuthNotActiveError`, close the
        client.

        Unlike leaving an ``async with`` block, this does not wait for other holders: it
        stops the auth for all of them. It must run in the task that entered the auth
        first, and does nothing if the auth is not active.
        """
        if not self.is_active or self._stack is None or self._task_group is None:
            return
        if anyio.get_current_task().id != self._host_task:
            raise LifecycleError(
                f"{type(self).__name__}.aclose() must run in the task that entered the auth; "
                "leave its `async with` block instead"
            )
        self._state = Lifecycle.CLOSED
        self._left_with_holders = any(task != self._host_task for task in self._holds)
        self._holds.clear()
        self._run = None  # a fetch finishing now must not publish
        self._token = None
        self._notify()
        self._task_group.cancel_scope.cancel()
        stack, self._stack, self._task_group = self._stack, None, None
        closing = self._closing = anyio.Event()  # a new entry waits until this is done
        try:
            await stack.aclose()
        finally:
            if self._own_http:
                self._http = None
            self._closing = None
            closing.set()

    def __repr__(self) -> str:
        state = "active" if self.is_active else "inactive"
        return f"{type(self).__name__}({self._description}, {state})"

    # -- the refresher -------------------------------------------------------------------

    async def _refresher(
        self,
        run: _Run,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Fetch, publish, sleep until the renewal time, repeat; back off after failures.

        Started with ``task_status`` (by ``__aenter__``), the first fetch's failure is
        raised instead of published, so it surfaces at ``async with``.
        """
        starting = task_status is not anyio.TASK_STATUS_IGNORED
        attempt = 0
        with run.scope:
            while True:
                sent_at = anyio.current_time()
                run.fetching = True
                try:
                    issued = await self._fetch_one()
                except TokenRefreshError as exc:
                    run.fetching = False
                    attempt += 1
                    if starting and (not exc.retryable or attempt >= self._policy.startup_attempts):
                        raise
                    if run is self._run:
                        self._error = exc
                        self._notify()
                    if isinstance(exc, InvalidCredentialsError):
                        logger.error("token refresh stopped until force_refresh(): %s", exc)
                        return
                    if exc.retryable:
                        delay = self._policy.retry_delay(attempt)
                        log = logger.warning
                    else:
                        # Worked before, fails oddly now (a portal restarting answers 404):
                        # keep trying, slowly, rather than give up on a long-running job.
                        delay = self._policy.retry_max
                        log = logger.error
                    log(
                        "token refresh failed (attempt %d), retrying in %.1f s: %s",
                        attempt,
                        delay,
                        exc,
                    )
                    await anyio.sleep(delay)
                    continue
                attempt = 0
                renew_at = sent_at + self._policy.renew_delay(issued.lifetime, issued.renew_after)
                run.fetching = False
                if run is self._run:
                    self._renew_at = renew_at
                    self._token = _Token(Secret(issued.value), sent_at + issued.lifetime)
                    self._error = None
                    self._notify()
                logger.info(
                    "fetched a token for %s, valid for %.0f s; renewing in %.0f s",
                    self._description,
                    issued.lifetime,
                    renew_at - anyio.current_time(),
                )
                if starting:
                    starting = False
                    task_status.started()
                await anyio.sleep_until(renew_at)

    async def _fetch_one(self) -> IssuedToken:
        """Ask the source for one token; anything but `TokenRefreshError` becomes one.

        The whole fetch is bounded by the policy's ``request_timeout``, whatever the HTTP
        client's own timeouts are, so a hung endpoint cannot strand the waiters.
        """
        assert self._http is not None
        self._fetches += 1
        limit = self._policy.request_timeout
        try:
            with anyio.fail_after(limit):
                return await self._source.fetch(self._http)
        except TimeoutError as exc:
            self._failures += 1
            raise TokenRefreshError(
                f"fetching a token for {self._description} took longer than {limit:g} s"
            ) from exc
        except TokenRefreshError:
            self._failures += 1
            raise
        except Exception as exc:
            self._failures += 1
            raise TokenRefreshError(
                f"fetching a token for {self._description} failed unexpectedly: "
                f"{type(exc).__name__}",
                retryable=False,
            ) from exc

    def _restart(self) -> None:
        """Cancel the running refresher and start a fresh one, which fetches at once."""
        assert self._task_group is not None
        assert self._run is not None
        self._run.scope.cancel()
        self._run = _Run()
        self._task_group.start_soon(self._refresher, self._run)

    def _notify(self) -> None:
        """Wake everyone waiting for a change of state."""
        changed, self._changed = self._changed, anyio.Event()
        if changed is not None:
            changed.set()
        forced, self._forced = self._forced, None
        if forced is not None:
            forced.set()

    def _reset_state(self) -> _Run:
        """Start afresh on entry; return the first refresher run."""
        self._token = None
        self._error = None
        self._forced = None
        self._state = Lifecycle.IDLE
        self._left_with_holders = False
        self._changed = anyio.Event()
        self._now = loop_clock()
        self._run = _Run()
        return self._run

    def _check_active(self) -> None:
        if self._state is _ACTIVE:
            return
        if self._state is Lifecycle.CLOSED and self._left_with_holders:
            raise AuthNotActiveError(
                f"{type(self).__name__} was stopped: the task that entered it first left "
                "(with an error, or cancelled) while others still held it; enter the auth "
                "once, around every task that shares it"
            )
        if self._state is Lifecycle.CLOSED:
            raise AuthNotActiveError(
                f"{type(self).__name__} has left its `async with` block; tokens are only "
                "available inside it"
            )
        raise AuthNotActiveError(
            f"{type(self).__name__} is not active: use it inside `async with auth:` "
            "(or hand it to ArchieClient, which enters it for you)"
        )

    def _error_for_caller(self) -> TokenRefreshError:
        """A fresh exception for one caller, chained to the stored failure."""
        cause = self._error
        assert cause is not None
        error: TokenRefreshError
        if isinstance(cause, InvalidCredentialsError):
            error = InvalidCredentialsError(str(cause))
        else:
            error = TokenRefreshError(
                f"no valid token for {self._description}: "
                f"the last attempt to fetch one failed: {cause}",
                retryable=cause.retryable,
            )
        error.__cause__ = cause
        error.__suppress_context__ = True
        return error


@attrs.define(eq=False)
class _Run:
    """One run of the refresher task: the scope that cancels it, and whether it is
    waiting for a token request (a forced refresh then waits for that request instead of
    starting another)."""

    scope: anyio.CancelScope = attrs.Factory(anyio.CancelScope)
    fetching: bool = False


@attrs.define(eq=False)
class _Entry:
    """The first holder's entry, which later holders wait for."""

    done: anyio.Event = attrs.Factory(anyio.Event)
    error: BaseException | None = None


def _entry_failed(auth: RefreshingAuth[Any], error: Exception) -> Exception:
    """What a holder that waited for another holder's failed entry raises."""
    if isinstance(error, TokenRefreshError):
        try:
            return type(error)(str(error), retryable=error.retryable)
        except TypeError:  # a source's own subclass, built differently
            return TokenRefreshError(str(error), retryable=error.retryable)
    return AuthNotActiveError(
        f"{type(auth).__name__} could not be entered (another holder's `async with` "
        f"failed: {type(error).__name__}: {error})"
    )


async def _close_shielded(http: httpx.AsyncClient) -> None:
    """Close *http* even while being cancelled, so no connection is left open."""
    with anyio.CancelScope(shield=True):
        await http.aclose()
