"""Faults: the switches that make FakeArcGIS misbehave as real servers and proxies do.

`Faults` holds the switches and the scripted faults (``fail_next`` and friends);
`fault_answer` applies those that replace a whole answer. The query engine reads the
switches that bend a query's result (``page_cap``, ``unordered`` and so on) itself.
"""

from __future__ import annotations

import random
from typing import Literal

import anyio
import attrs

from ._wire import ENDPOINTS, Request, Response, plain_text, proxy_page

__all__ = ["Faults", "fault_answer"]

_TOKEN_ENDPOINTS = ("generateToken", "oauth2/token")


@attrs.define(eq=False)
class _Scripted:
    kind: str  # an endpoint name, or "*" for any
    action: Literal["status", "drop", "html", "malformed"]
    times: int
    status: int = 503
    retry_after: float | None = None


@attrs.define(eq=False)
class Faults:
    """Switches that make a FakeArcGIS misbehave as real servers and proxies do.

    Endpoint names are those of `FakeStatistics.requests`; ``"*"`` means any.

    Attributes:
        latency: Seconds to wait before answering, per endpoint (``"*"`` for all).
        page_cap: Return at most this many features per query, whatever
            ``maxRecordCount`` says (a server that caps pages below what it advertises).
        ignore_result_offset: Answer every page as if ``resultOffset`` were 0.
        token_outage: Token endpoints answer 503.
        refuse_credentials: Token endpoints refuse every credential.
        unordered: Without ``orderByFields``, return rows in a fixed but scrambled
            order, as some databases do, instead of object-id order.
        omit_false_transfer_limit: Leave ``exceededTransferLimit`` out of the last page
            instead of sending ``false`` (real servers do both).
        max_url_length: Answer HTTP 414 to GET requests whose URL is longer.
        failure_rate: The share of requests, per endpoint, answered with HTTP 503
            (``{"query": 0.05}``: one in twenty, at random but repeatably for a seed).
    """

    latency: dict[str, float] = attrs.Factory(dict)
    page_cap: int | None = None
    ignore_result_offset: bool = False
    token_outage: bool = False
    refuse_credentials: bool = False
    unordered: bool = False
    omit_false_transfer_limit: bool = False
    max_url_length: int | None = None
    failure_rate: dict[str, float] = attrs.Factory(dict)
    _scripted: list[_Scripted] = attrs.Factory(list)

    def fail_next(
        self,
        endpoint: str = "*",
        *,
        status: int = 503,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next *times* requests to *endpoint* with HTTP *status*.

        With *retry_after*, the answer carries a ``Retry-After`` header (seconds).
        """
        self._script(_Scripted(endpoint, "status", times, status, retry_after))

    def drop_next(self, endpoint: str = "*", *, times: int = 1) -> None:
        """Cut the connection of the next *times* requests to *endpoint* mid-answer."""
        self._script(_Scripted(endpoint, "drop", times))

    def html_next(self, endpoint: str = "*", *, times: int = 1, status: int = 502) -> None:
        """Answer the next *times* requests with a proxy's HTML error page."""
        self._script(_Scripted(endpoint, "html", times, status))

    def malformed_next(self, endpoint: str = "*", *, times: int = 1) -> None:
        """Answer the next *times* requests with truncated JSON (HTTP 200)."""
        self._script(_Scripted(endpoint, "malformed", times))

    def _script(self, scripted: _Scripted) -> None:
        if scripted.kind != "*" and scripted.kind not in ENDPOINTS:
            raise ValueError(
                f"unknown endpoint {scripted.kind!r}; use one of {', '.join(sorted(ENDPOINTS))}"
            )
        if scripted.times < 1:
            raise ValueError(f"times must be at least 1, got {scripted.times}")
        self._scripted.append(scripted)

    def clear(self) -> None:
        """Turn every fault off."""
        self.latency.clear()
        self.page_cap = None
        self.ignore_result_offset = False
        self.token_outage = False
        self.refuse_credentials = False
        self.unordered = False
        self.omit_false_transfer_limit = False
        self.max_url_length = None
        self.failure_rate.clear()
        self._scripted.clear()

    def _take(self, endpoint: str) -> _Scripted | None:
        for scripted in self._scripted:
            if scripted.kind in ("*", endpoint):
                scripted.times -= 1
                if scripted.times <= 0:
                    self._scripted.remove(scripted)
                return scripted
        return None


async def fault_answer(
    faults: Faults, endpoint: str, request: Request, rng: random.Random
) -> Response | None:
    """Wait out the latency of *endpoint*; then what a fault answers instead, or None.

    The scripted faults come first, then the random failures (drawn from *rng*), the
    token outage and the URL length limit.
    """
    latency = faults.latency.get(endpoint, faults.latency.get("*", 0.0))
    if latency:
        await anyio.sleep(latency)
    scripted = faults._take(endpoint)
    if scripted is not None:
        return _scripted_answer(scripted)
    rate = faults.failure_rate.get(endpoint, faults.failure_rate.get("*", 0.0))
    if rate and rng.random() < rate:
        return plain_text(503, "Service Unavailable")
    if endpoint in _TOKEN_ENDPOINTS and faults.token_outage:
        return plain_text(503, "Service Unavailable")
    limit = faults.max_url_length
    if limit is not None and request.method == "GET" and len(request.url) > limit:
        return plain_text(414, "Request-URI Too Long")
    return None


def _scripted_answer(scripted: _Scripted) -> Response:
    if scripted.action == "drop":
        return Response(drop=True)
    if scripted.action == "html":
        return proxy_page(scripted.status, "Bad Gateway")
    if scripted.action == "malformed":
        return Response(
            200,
            b'{"features": [{"attributes": {"OBJECTID": 1',
            {"content-type": "application/json"},
        )
    headers = {"content-type": "text/plain"}
    if scripted.retry_after is not None:
        headers["retry-after"] = f"{scripted.retry_after:g}"
    return Response(scripted.status, f"HTTP {scripted.status}".encode(), headers)
