"""The auth contract (`ArcGISAuth`), where a token goes on a request, and `NoAuth`."""

from __future__ import annotations

import abc
import enum
import logging
from collections.abc import AsyncGenerator, Generator
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl, urlencode

import httpx

from .._secrets import is_secure_origin, redact_url
from .._validate import has_line_break
from ..exceptions import ConfigurationError

__all__ = ["ArcGISAuth", "NoAuth", "TokenPlacement"]

logger = logging.getLogger("archibald.auth")

_FORM = "application/x-www-form-urlencoded"


class TokenPlacement(enum.Enum):
    """Where an authorized request carries its token.

    ArcGIS servers differ in what they accept: the standard header works with
    ArcGIS-tier security, the Esri header also behind web-tier authentication (IWA, PKI),
    and the ``token`` parameter everywhere, including servers older than 10.6.
    """

    AUTHORIZATION = "authorization"
    """``Authorization: Bearer <token>`` (the default)."""

    X_ESRI_AUTHORIZATION = "x-esri-authorization"
    """``X-Esri-Authorization: Bearer <token>``, for servers behind web-tier authentication."""

    PARAMETER = "parameter"
    """A ``token`` field in a form-encoded POST body.

    A token never goes into a URL, where access logs and proxies would keep it: a GET
    request is sent as a POST with its query parameters moved into the form body (ArcGIS
    REST operations accept both). A request with a body that is not form-encoded (a
    multipart upload) carries the token in the ``X-Esri-Authorization`` header instead.
    """


class ArcGISAuth(httpx.Auth, abc.ABC):
    """The base of every archibald auth: an `httpx.Auth` that puts a token on requests.

    Use it as an async context manager: ``async with auth:`` starts whatever background
    work the auth needs (token renewal) and leaving the block stops it. Inside the block,
    pass it to `httpx.AsyncClient(auth=auth)` or to archibald's client.

    httpx follows redirects (when ``follow_redirects`` is on) without consulting the
    auth, and strips only the ``Authorization`` header on a redirect to another host: with
    the other placements, leave ``follow_redirects`` off.

    Args:
        placement: Where authorized requests carry the token.
        referer: The ``Referer`` header that every authorized request carries, for tokens
            bound to a referer (ArcGIS answers 498 to a referer-bound token without it).
    """

    def __init__(
        self,
        *,
        placement: TokenPlacement = TokenPlacement.AUTHORIZATION,
        referer: str | None = None,
    ) -> None:
        if not isinstance(placement, TokenPlacement):
            raise ConfigurationError(
                f"placement must be a TokenPlacement, got {placement!r}; "
                "for example TokenPlacement.X_ESRI_AUTHORIZATION"
            )
        if referer is not None and (
            not isinstance(referer, str)
            or not referer
            or has_line_break(referer)
            or not referer.isprintable()
        ):
            raise ConfigurationError(
                "referer must be a non-empty string without line breaks or control "
                f"characters (it is sent as a header), or None; got {referer!r}"
            )
        self._placement = placement
        self._referer = referer

    @property
    def placement(self) -> TokenPlacement:
        """Where authorized requests carry the token."""
        return self._placement

    @property
    def referer(self) -> str | None:
        """The ``Referer`` header authorized requests carry, if the token is bound to one."""
        return self._referer

    @property
    def is_active(self) -> bool:
        """Whether the auth is ready for use (token auths: inside their ``async with``)."""
        return True

    @property
    def can_refresh(self) -> bool:
        """Whether `force_refresh` can replace a rejected token (a static key cannot)."""
        return False

    @property
    def rejection_hint(self) -> str:
        """What to tell the user when the server rejects this auth's token for good."""
        return f"{type(self).__name__} cannot replace a rejected token"

    @property
    def trusted_origins(self) -> frozenset[str]:
        """Origins (``https://host[:port]``) that issued the token and may receive it.

        archibald's client sends the token only to these and to origins the user trusts.
        """
        return frozenset()

    def has_valid_token(self) -> bool:
        """Whether `get_token` would return at once, without waiting (no I/O, no await)."""
        return True

    @abc.abstractmethod
    async def get_token(self) -> str:
        """Return a valid token, or ``""`` when requests need none.

        Never performs I/O itself: it returns the token the auth already holds, or waits
        for the one being fetched.
        """

    @abc.abstractmethod
    async def force_refresh(self, rejected: str | None = None) -> None:
        """Replace the current token at once, for example after the server rejected it.

        Args:
            rejected: The token the server rejected, if known; an auth may skip the
                fetch when it already holds a different one.
        """

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Put the token on *request* (see `authorize`) and send it."""
        token = await self.get_token()
        yield self.authorize(request, token)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Refuse synchronous clients, which would otherwise send requests without a token."""
        raise ConfigurationError(
            f"{type(self).__name__} works with httpx.AsyncClient only; "
            "a synchronous httpx.Client cannot await its token"
        )
        yield request  # pragma: no cover  (makes this a generator, as httpx expects)

    def authorize(self, request: httpx.Request, token: str) -> httpx.Request:
        """Return *request* carrying *token* as `placement` says.

        An empty token leaves the request as it is. A token is never sent over plain
        HTTP, except to a loopback address: such a request goes without it.
        """
        if not token:
            return request
        if not is_secure_origin(request.url.scheme, request.url.host):
            logger.warning(
                "not sending the token to %s: tokens travel over HTTPS only (loopback excepted)",
                redact_url(request.url),
            )
            return request
        if self._referer is not None:
            request.headers["Referer"] = self._referer
        if self._placement is TokenPlacement.AUTHORIZATION:
            request.headers["Authorization"] = f"Bearer {token}"
            return request
        if self._placement is TokenPlacement.PARAMETER:
            with_body = _with_form_token(request, token)
            if with_body is not None:
                return with_body
        request.headers["X-Esri-Authorization"] = f"Bearer {token}"
        return request

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the auth's background work and release what it owns.

        The same as leaving the ``async with`` block; does nothing if it is not active.
        """


def _with_form_token(request: httpx.Request, token: str) -> httpx.Request | None:
    """A copy of *request* with ``token`` in a form body, or None if it has another body.

    Any ``token`` already in the URL or the form (in any letter case) is replaced, so the
    request carries exactly one token, and never in its URL.
    """
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    try:
        body = request.content.decode("ascii")
    except (httpx.RequestNotRead, UnicodeDecodeError):
        return None  # a streamed or binary body: not a form we can extend
    query = list(request.url.params.multi_items())
    if request.method == "GET" and not body:
        fields, query = query, []
    elif request.method == "POST" and (content_type == _FORM or (not body and not content_type)):
        fields = parse_qsl(body, keep_blank_values=True)
    else:
        return None
    fields = [(k, v) for k, v in fields if k.lower() != "token"]
    fields.append(("token", token))
    query = [(k, v) for k, v in query if k.lower() != "token"]
    headers = httpx.Headers(request.headers)
    for name in ("Content-Length", "Content-Type", "Transfer-Encoding"):
        headers.pop(name, None)
    headers["Content-Type"] = _FORM
    return httpx.Request(
        "POST",
        request.url.copy_with(query=urlencode(query).encode("ascii") if query else None),
        headers=headers,
        content=urlencode(fields).encode("ascii"),
        extensions=request.extensions,
    )


class NoAuth(ArcGISAuth):
    """For public services: requests go without a token.

    `get_token` returns ``""`` and `force_refresh` does nothing. It needs no
    ``async with``, but accepts one so that code can treat every auth alike.
    """

    def __init__(self) -> None:
        super().__init__()

    async def get_token(self) -> str:
        """Return ``""``: public services need no token."""
        return ""

    async def force_refresh(self, rejected: str | None = None) -> None:
        """Do nothing: there is no token to replace."""

    def __repr__(self) -> str:
        return "NoAuth()"
