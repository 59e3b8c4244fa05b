"""TokenPolicy: defaults, validation, renewal and backoff arithmetic."""

from __future__ import annotations

import attrs
import pytest

from archibald.config import TokenPolicy
from archibald.exceptions import ConfigurationError


def test_an_hour_token_is_renewed_five_minutes_early() -> None:
    """Default lead time: a 60-minute token is renewed after 55 minutes."""
    assert 3300.0 == TokenPolicy().renew_delay(3600.0)


def test_a_short_token_is_renewed_at_half_its_lifetime() -> None:
    """A 4-minute token (shorter than the lead time) is renewed after 2 minutes."""
    assert 120.0 == TokenPolicy().renew_delay(240.0)


def test_backoff_doubles_and_is_capped() -> None:
    """Without jitter: 1, 2, 4, ... seconds, never above retry_max."""
    policy = TokenPolicy(retry_jitter=0, retry_initial=1, retry_max=60)
    assert [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0] == [
        policy.retry_delay(n) for n in range(1, 9)
    ]
    assert 60.0 == policy.retry_delay(10_000)


def test_jitter_stays_within_its_bound() -> None:
    """Jitter adds between 0 and retry_jitter seconds."""
    policy = TokenPolicy(retry_jitter=0.5)
    delays = {policy.retry_delay(1) for _ in range(200)}
    assert all(1.0 <= d <= 1.5 for d in delays)
    assert len(delays) > 1


def test_policies_are_frozen_and_keyword_only() -> None:
    """Policies cannot be changed in place; attrs.evolve makes a variant."""
    policy = TokenPolicy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.renew_before = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        TokenPolicy(300.0)  # type: ignore[misc]
    assert 600.0 == attrs.evolve(policy, renew_before=600).renew_before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"renew_before": -1}, "renew_before must be >= 0"),
        ({"min_renew_fraction": 0}, "min_renew_fraction must be > 0"),
        ({"min_renew_fraction": 1.5}, "min_renew_fraction must be <= 1"),
        ({"retry_initial": 0}, "retry_initial must be > 0"),
        ({"retry_initial": 10, "retry_max": 5}, "retry_max .5.0. must be >= retry_initial"),
        ({"startup_attempts": 0}, "startup_attempts must be >= 1"),
        ({"startup_attempts": 2.5}, "whole number"),
        ({"request_timeout": "30"}, "number of seconds"),
        ({"retry_jitter": True}, "number of seconds"),
    ],
)
def test_invalid_values_are_refused_clearly(kwargs: dict[str, object], message: str) -> None:
    """Each invalid setting raises ConfigurationError naming the field."""
    with pytest.raises(ConfigurationError, match=message):
        TokenPolicy(**kwargs)  # type: ignore[arg-type]


def test_renewal_is_never_more_frequent_than_the_minimum_interval() -> None:
    """A 15-second token is renewed after the 10-s minimum, not at half its life."""
    assert 10.0 == TokenPolicy().renew_delay(15.0)


@pytest.mark.parametrize("lifetime", [0.5, 2.0, 8.0, 10.0])
def test_a_token_shorter_than_the_minimum_interval_is_renewed_before_it_expires(
    lifetime: float,
) -> None:
    """The guard never pushes renewal past 90% of the lifetime (an 8-s token: at 7.2 s)."""
    assert lifetime * 0.9 == TokenPolicy().renew_delay(lifetime)


def test_a_sources_preferred_delay_is_guarded_but_not_past_expiry() -> None:
    """A delay a source asks for (a federated token) is kept; the guard lifts a tiny one,
    but never past 90% of an 8-s token; nothing is renewed after expiry."""
    assert 30.0 == TokenPolicy().renew_delay(100.0, preferred=30.0)
    assert 10.0 == TokenPolicy().renew_delay(100.0, preferred=1.0)
    assert 7.2 == TokenPolicy().renew_delay(8.0, preferred=1.0)
    assert 100.0 == TokenPolicy().renew_delay(100.0, preferred=500.0)
