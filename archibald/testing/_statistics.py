"""What a FakeArcGIS has served: counters its parts share, and their frozen snapshot."""

from __future__ import annotations

import collections
from collections.abc import Mapping

import attrs

__all__ = ["Counters", "FakeStatistics"]


@attrs.frozen(kw_only=True)
class FakeStatistics:
    """A snapshot of what a FakeArcGIS has served.

    Attributes:
        requests: Requests per endpoint (``generateToken``, ``oauth2/token``, ``info``,
            ``catalog``, ``service``, ``layer``, ``query``, ``applyEdits``, ``attachments``,
            ``extractChanges``,
            ``unknown``).
        tokens_issued: Tokens handed out by generateToken and oauth2/token.
        rejected_498: Requests answered 498 (invalid or expired token).
        rejected_499: Requests answered 499 (token required).
        faults_injected: Requests that a fault switch altered.
    """

    requests: Mapping[str, int]
    tokens_issued: int
    rejected_498: int
    rejected_499: int
    faults_injected: int

    @property
    def total_requests(self) -> int:
        """All requests, whatever the endpoint."""
        return sum(self.requests.values())


@attrs.define(eq=False)
class Counters:
    """The live counters behind `FakeStatistics`, counted by the emulator's parts."""

    requests: collections.Counter[str] = attrs.Factory(collections.Counter)
    tokens_issued: int = 0
    rejected_498: int = 0
    rejected_499: int = 0
    faults_injected: int = 0

    def snapshot(self) -> FakeStatistics:
        """The counters as they are now."""
        return FakeStatistics(
            requests=dict(self.requests),
            tokens_issued=self.tokens_issued,
            rejected_498=self.rejected_498,
            rejected_499=self.rejected_499,
            faults_injected=self.faults_injected,
        )

    def reset(self) -> None:
        """Every counter back to zero."""
        self.requests.clear()
        self.tokens_issued = self.rejected_498 = self.rejected_499 = self.faults_injected = 0
