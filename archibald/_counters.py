"""What an `ArchieClient` counts: its running counters, and the frozen snapshot of them
that `ArchieClient.statistics` hands out."""

from __future__ import annotations

import attrs

__all__ = ["ClientStatistics", "Counters"]


@attrs.frozen(kw_only=True)
class ClientStatistics:
    """A snapshot of what an `ArchieClient` has done.

    Attributes:
        requests: HTTP requests sent, retries included.
        retries: Requests sent again after a transient failure.
        token_rejections: Answers that rejected the token (498 or 499).
        refreshes: Token refreshes this client asked its auth for.
        token_waits: Requests that had to wait for a token (none, while background
            renewal keeps ahead of expiry).
    """

    requests: int
    retries: int
    token_rejections: int
    refreshes: int
    token_waits: int


@attrs.define
class Counters:
    requests: int = 0
    retries: int = 0
    token_rejections: int = 0
    refreshes: int = 0
    token_waits: int = 0
