"""Policy objects: immutable, keyword-only, validated when built.

Use `attrs.evolve` to derive a variant::

    import attrs
    from archibald.config import TokenPolicy

    eager = attrs.evolve(TokenPolicy(), renew_before=600)
"""

from __future__ import annotations

import random
from typing import Any

import attrs

from ._validate import is_number, is_whole
from .exceptions import ConfigurationError

__all__ = ["LATEST_RENEWAL", "RetryPolicy", "TokenPolicy"]

LATEST_RENEWAL = 0.9
"""The latest point of a token's life, as a fraction, at which it is renewed."""


def _at_least(minimum: float, *, strict: bool = False) -> Any:
    """An attrs validator that raises `ConfigurationError` naming the field."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
        ok = value > minimum if strict else value >= minimum
        if not ok:
            relation = ">" if strict else ">="
            raise ConfigurationError(
                f"{type(instance).__name__}.{attribute.name} must be {relation} {minimum}, "
                f"got {value!r}"
            )

    return check


def _at_most(maximum: float) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
        if value > maximum:
            raise ConfigurationError(
                f"{type(instance).__name__}.{attribute.name} must be <= {maximum}, got {value!r}"
            )

    return check


def _number(value: Any) -> float:
    if not is_number(value):
        raise ConfigurationError(f"expected a number of seconds, got {value!r}")
    return float(value)


def _count(value: Any) -> int:
    if not is_whole(value):
        raise ConfigurationError(f"expected a whole number, got {value!r}")
    return value


@attrs.frozen(kw_only=True)
class TokenPolicy:
    """When a token is renewed, and how failed renewals are retried.

    All durations are in seconds. The defaults suit ArcGIS Online and Enterprise tokens
    of an hour or more.

    Attributes:
        renew_before: Renew this long before the token expires (the lead time).
        min_renew_fraction: Never renew sooner than this fraction of the token's lifetime
            after it was issued, so a short-lived token is renewed at most every half
            lifetime by default instead of continuously.
        min_renew_interval: Never renew sooner than this many seconds after the last
            token was issued (a guard against a server whose clock makes its tokens look
            nearly expired), unless the token would expire first: the guard never pushes
            renewal later than 90% of a token's lifetime, so tokens of a few seconds are
            renewed at 90% of their life.
        retry_initial: The first wait after a failed renewal.
        retry_max: The longest wait between two attempts.
        retry_jitter: A random extra wait of up to this many seconds, so that many
            clients do not retry in step.
        startup_attempts: How many attempts entering ``async with auth:`` makes before it
            gives up with `TokenRefreshError`. Refused credentials fail at once.
        request_timeout: The longest one token request may take, in all; also the HTTP
            timeout of the client the auth creates.
    """

    renew_before: float = attrs.field(default=300.0, converter=_number, validator=_at_least(0))
    min_renew_fraction: float = attrs.field(
        default=0.5, converter=_number, validator=[_at_least(0, strict=True), _at_most(1)]
    )
    min_renew_interval: float = attrs.field(default=10.0, converter=_number, validator=_at_least(0))
    retry_initial: float = attrs.field(
        default=1.0, converter=_number, validator=_at_least(0, strict=True)
    )
    retry_max: float = attrs.field(default=60.0, converter=_number)
    retry_jitter: float = attrs.field(default=1.0, converter=_number, validator=_at_least(0))
    startup_attempts: int = attrs.field(default=3, converter=_count, validator=_at_least(1))
    request_timeout: float = attrs.field(
        default=30.0, converter=_number, validator=_at_least(0, strict=True)
    )

    @retry_max.validator
    def _check_retry_max(self, attribute: attrs.Attribute[float], value: float) -> None:
        if value < self.retry_initial:
            raise ConfigurationError(
                f"TokenPolicy.retry_max ({value!r}) must be >= retry_initial "
                f"({self.retry_initial!r})"
            )

    def renew_delay(self, lifetime: float, preferred: float | None = None) -> float:
        """Seconds after issue at which a token of *lifetime* seconds is renewed.

        The `min_renew_interval` guard may delay renewal, but never past
        `LATEST_RENEWAL` (90%) of the lifetime: a token shorter than the guard's interval
        is renewed at 90% of its life, not after it has expired.

        Args:
            lifetime: The token's lifetime in seconds.
            preferred: A delay the token's source asks for instead of the policy's (a
                server token that follows its portal token); never beyond *lifetime*.
        """
        guard = min(self.min_renew_interval, lifetime * LATEST_RENEWAL)
        if preferred is not None:
            return min(max(preferred, guard), lifetime)
        return max(lifetime - self.renew_before, lifetime * self.min_renew_fraction, guard)

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number *attempt* (1 for the first failure).

        Exponential backoff from `retry_initial`, doubling, capped at `retry_max`, plus
        up to `retry_jitter` seconds of random jitter.
        """
        exponent = min(max(attempt - 1, 0), 62)
        base = min(self.retry_max, self.retry_initial * 2.0**exponent)
        return base + random.uniform(0.0, self.retry_jitter)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How `ArchieClient` retries requests that failed for a passing reason.

    Transient failures are network errors and timeouts, HTTP 429, 502, 503 and 504, and
    ArcGIS error envelopes with those codes. Only requests that are safe to repeat are
    retried (GET, and POSTs that only read, such as ``query``). A ``Retry-After`` header
    is honoured as long as it fits in the budget.

    Attributes:
        attempts: The most times one request is sent, the first included.
        base: The wait after the first failure; it doubles with each further one.
        cap: The longest single wait (a ``Retry-After`` may ask for more).
        budget: The most time one request may spend waiting between attempts.
        jitter: Each wait is shortened by a random fraction of up to this much, so that
            many clients do not retry in step (0 turns jitter off).
    """

    attempts: int = attrs.field(default=5, converter=_count, validator=_at_least(1))
    base: float = attrs.field(default=0.5, converter=_number, validator=_at_least(0))
    cap: float = attrs.field(default=30.0, converter=_number, validator=_at_least(0))
    budget: float = attrs.field(default=120.0, converter=_number, validator=_at_least(0))
    jitter: float = attrs.field(
        default=0.5, converter=_number, validator=[_at_least(0), _at_most(1)]
    )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number *attempt* (1 for the first).

        A server's *retry_after* wins over the computed backoff.
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        exponent = min(max(attempt - 1, 0), 62)
        full = min(self.cap, self.base * 2.0**exponent)
        return full * (1.0 - random.uniform(0.0, self.jitter))
