"""The seam between a kind of token and the refresher: `TokenSource` (how to fetch one
token), `IssuedToken` (what it fetched), and the statistics the refresher reports."""

from __future__ import annotations

import abc
import logging
import math
import time

import attrs
import httpx

__all__ = ["IssuedToken", "TokenSource", "TokenStatistics", "lifetime_from_expires"]

logger = logging.getLogger("archibald.auth")


@attrs.frozen(kw_only=True)
class IssuedToken:
    """One token as a `TokenSource` fetched it.

    Attributes:
        value: The token (never shown in a repr).
        lifetime: Seconds the token stays valid, counted from when its request was sent.
        renew_after: Seconds after which to renew it, when the source knows better than
            the policy (a server token that should follow its portal token's renewal).
            None leaves it to `TokenPolicy.renew_delay`.
    """

    value: str = attrs.field(repr=False)
    lifetime: float = attrs.field()
    renew_after: float | None = attrs.field(default=None)

    @lifetime.validator
    def _check_lifetime(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"a token lifetime must be a positive number, got {value!r}")


def lifetime_from_expires(
    expires_ms: object, requested: float, *, now: float | None = None
) -> float:
    """The lifetime in seconds of a token whose server said it ``expires`` at *expires_ms*.

    ``expires`` is wall-clock epoch milliseconds, so it is read once, here, to learn the
    lifetime the server granted (which may be shorter than requested: servers cap it).
    When it is missing, in the past, or beyond the requested lifetime by more than a
    minute (the two clocks disagree), the *requested* lifetime in seconds wins.
    """
    if isinstance(expires_ms, bool) or not isinstance(expires_ms, int | float):
        return requested
    wall = time.time() if now is None else now
    try:
        lifetime = float(expires_ms) / 1000.0 - wall
    except OverflowError:
        lifetime = math.inf
    if not math.isfinite(lifetime) or lifetime <= 0 or lifetime > requested + 60.0:
        logger.debug(
            "server's expires=%r disagrees with the requested %.0f s; using the request",
            expires_ms,
            requested,
        )
        return requested
    return lifetime


class TokenSource(abc.ABC):
    """How to fetch one token: the only code a new kind of token needs.

    `fetch` raises `TokenRefreshError` (``retryable=True`` for network trouble and server
    errors, `InvalidCredentialsError` when the credentials are refused); the refresher of
    `RefreshingAuth` does the scheduling, retrying and publishing.
    """

    @abc.abstractmethod
    def describe(self) -> str:
        """A short description for messages and logs, such as ``user 'bob' at <url>``.

        It must not contain a secret.
        """

    @abc.abstractmethod
    async def fetch(self, http: httpx.AsyncClient) -> IssuedToken:
        """Fetch one token using *http*."""

    def origins(self) -> frozenset[str]:
        """Origins that issue these tokens, and so may receive them (by default none)."""
        return frozenset()


@attrs.frozen(kw_only=True)
class TokenStatistics:
    """A snapshot of a token auth's state, from `RefreshingAuth.statistics`.

    Attributes:
        active: Whether the auth is inside its ``async with`` block.
        fetches: Token requests sent since the auth was created.
        failures: Token requests that failed.
        forced_refreshes: Refreshes started by `RefreshingAuth.force_refresh`.
        expires_in: Seconds until the current token lapses, or None without one.
        renews_in: Seconds until the refresher renews it (negative while a renewal is
            overdue, for example being retried), or None without a token.
        last_error: The message of the newest failed attempt, if it has not been
            followed by a success.
    """

    active: bool
    fetches: int
    failures: int
    forced_refreshes: int
    expires_in: float | None
    renews_in: float | None
    last_error: str | None
