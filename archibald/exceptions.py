"""Every error archibald raises, in one tree.

::

    ArchieError
    ├── ArcGISError                 the ArcGIS server answered with an error
    │   ├── TokenExpiredError       498: the token is invalid or has expired
    │   ├── TokenMissingError       499: the resource needs a token
    │   ├── AuthorizationError      403: the token's user may not do this
    │   ├── NotFoundError           404: no such service, layer or item
    │   └── ServiceError            anything else the server or a proxy got wrong
    └── ArchieClientError           archibald could not do what was asked
        ├── TokenRefreshError       no token could be obtained
        │   └── InvalidCredentialsError   the server refused the credentials
        ├── AuthNotActiveError      an auth was used outside its ``async with`` block
        ├── NetworkError            the server could not be reached, or the connection broke
        ├── ConfigurationError      a setting is invalid
        ├── InvalidServiceURL       a URL is not an ArcGIS REST services URL
        ├── InvalidParameterError   a query parameter is invalid
        ├── LayerCapabilityError    the layer does not offer that operation
        ├── IncompleteResultError   some of the requested rows could not be fetched
        └── EditOutcomeUnknownError edits were sent, and whether they were applied is unknown

Messages say what failed, where (a URL with any token removed) and what to try.
No message ever contains a password, a client secret, an API key or a token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._secrets import redact_url

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ArcGISError",
    "ArchieClientError",
    "ArchieError",
    "AuthNotActiveError",
    "AuthorizationError",
    "ConfigurationError",
    "EditOutcomeUnknownError",
    "IncompleteResultError",
    "InvalidCredentialsError",
    "InvalidParameterError",
    "InvalidServiceURL",
    "LayerCapabilityError",
    "LifecycleError",
    "NetworkError",
    "NotFoundError",
    "ServiceError",
    "TokenExpiredError",
    "TokenMissingError",
    "TokenRefreshError",
]


class ArchieError(Exception):
    """The root of every exception archibald raises."""


class ArcGISError(ArchieError):
    """The ArcGIS server answered with an error.

    ArcGIS usually reports errors inside an HTTP 200 response as
    ``{"error": {"code": ..., "message": ..., "details": [...]}}``; the fields of that
    envelope are kept here.

    Attributes:
        code: The ArcGIS error code (often an HTTP-like number such as 498), if any.
        message: The server's message.
        details: The server's list of details (may be empty).
        raw_response: The `httpx.Response` the error came from, if any.
        message_code: The server's ``messageCode`` (for example ``"GWM_0003"``), if any.
        url: The URL of the failed request, with any token removed.
    """

    def __init__(
        self,
        code: int | None,
        message: str,
        details: Sequence[str] = (),
        raw_response: httpx.Response | None = None,
        *,
        message_code: str | None = None,
        url: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.details = list(details)
        self.raw_response = raw_response
        self.message_code = message_code
        self.url = redact_url(url) if url is not None else None
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = f"ArcGIS error {self.code}" if self.code is not None else "ArcGIS error"
        if self.message_code:
            head += f" ({self.message_code})"
        text = f"{head}: {self.message}"
        extra = [d for d in self.details if d and d != self.message]
        if extra:
            text += " [" + "; ".join(extra) + "]"
        if self.url:
            text += f" at {self.url}"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_arcgis_error,
            (type(self), self.code, self.message, self.details, self.message_code, self.url),
        )


def _rebuild_arcgis_error(
    cls: type[ArcGISError],
    code: int | None,
    message: str,
    details: list[str],
    message_code: str | None,
    url: str | None,
) -> ArcGISError:
    return cls(code, message, details, message_code=message_code, url=url)


class TokenExpiredError(ArcGISError):
    """Code 498: the token is invalid, expired or was revoked."""


class TokenMissingError(ArcGISError):
    """Code 499: the resource is secured and the request carried no token."""


class AuthorizationError(ArcGISError):
    """Code 403: the token is valid but its user may not access the resource."""


class NotFoundError(ArcGISError):
    """Code 404: the service, layer or item does not exist."""


class ServiceError(ArcGISError):
    """Any other error from the server, or a response that is not what ArcGIS sends."""


class ArchieClientError(ArchieError):
    """archibald could not do what was asked (as opposed to the server refusing it)."""


class TokenRefreshError(ArchieClientError):
    """No token could be obtained.

    The cause (a network error, a server error, a malformed answer) is chained as
    ``__cause__``.

    Attributes:
        retryable: Whether trying again later may help. The background refresher retries
            these with backoff; it stops on errors that are not retryable.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_refresh_error, (type(self), str(self), self.retryable))


def _rebuild_refresh_error(
    cls: type[TokenRefreshError], message: str, retryable: bool
) -> TokenRefreshError:
    return cls(message, retryable=retryable)


class InvalidCredentialsError(TokenRefreshError):
    """The server refused the credentials; retrying with the same ones will not help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)


class LifecycleError(ArchieClientError, RuntimeError):
    """An object was used outside the part of its life where that use is allowed.

    A client, an auth or a stream used before its ``async with`` block, after it, or
    entered twice; an auth closed from a task other than the one that entered it.
    """


class AuthNotActiveError(LifecycleError):
    """An auth was used before its ``async with`` block was entered, or after it was left."""


class NetworkError(ArchieClientError):
    """The server could not be reached, or the connection broke, even after retries.

    The httpx error is chained as ``__cause__``.

    Attributes:
        url: The URL of the failed request, with any token removed.
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = redact_url(url) if url is not None else None

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_network_error, (str(self), self.url))


def _rebuild_network_error(message: str, url: str | None) -> NetworkError:
    return NetworkError(message, url=url)


class ConfigurationError(ArchieClientError, ValueError):
    """A setting or argument is invalid. Raised when the object is built."""


class InvalidServiceURL(ArchieClientError, ValueError):
    """A URL is not an ArcGIS REST services URL."""


class InvalidParameterError(ArchieClientError, ValueError):
    """A query parameter is invalid."""


class LayerCapabilityError(ArchieClientError):
    """The layer does not advertise the operation that was asked of it."""


class IncompleteResultError(ArchieClientError):
    """Some of the requested rows could not be fetched, even after retries.

    The cause (the request that failed) is chained as ``__cause__``.

    Attributes:
        missing: The object ids that were not delivered, when known.
    """

    def __init__(self, message: str, *, missing: Sequence[int] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing) if missing is not None else None

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_incomplete, (str(self), self.missing))


def _rebuild_incomplete(message: str, missing: list[int] | None) -> IncompleteResultError:
    return IncompleteResultError(message, missing=missing)


class EditOutcomeUnknownError(ArchieClientError):
    """Edits were sent, and whether the server applied them is unknown.

    The connection broke or timed out after the request left, or a gateway gave up
    waiting for the server: the server may have applied the edits, or not. They are
    not sent again (that could add features twice); check the layer (for example by
    querying a key of the features) and send again what is missing.

    Attributes:
        adds: The features to add whose outcome is unknown, as given.
        updates: The features to update whose outcome is unknown, as given.
        deletes: The object ids (or global ids) to delete whose outcome is unknown.
        results: Every edit's result (an `archibald.EditResults`), those of the
            unknown batches with the status ``"unknown"``.
    """

    def __init__(
        self,
        message: str,
        *,
        adds: Sequence[Any] = (),
        updates: Sequence[Any] = (),
        deletes: Sequence[Any] = (),
        results: Any = None,
    ) -> None:
        super().__init__(message)
        self.adds = list(adds)
        self.updates = list(updates)
        self.deletes = list(deletes)
        self.results = results
