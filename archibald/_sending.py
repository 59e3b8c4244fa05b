"""What one request is made of, before and after it is sent: parameters encoded the
ArcGIS way, the format asked for, whether it may be repeated, where a redirect leads,
and what a network failure was."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import attrs
import httpx

from ._responses import Transient, decode_json
from ._secrets import SECRET_PARAMETERS, redact_url
from ._urls import split_query
from .exceptions import ArchieError, InvalidParameterError, NetworkError, ServiceError

__all__ = [
    "READ_OPERATIONS",
    "Exchange",
    "build",
    "describe_transport_error",
    "encode",
    "enforce_format",
    "follow",
    "is_safe",
    "secret_values",
]

Params = Mapping[str, Any]

# Operations that only read, so a POST of them may be repeated safely.
READ_OPERATIONS = frozenset(
    {
        "query",
        "extractChanges",
        "queryRelatedRecords",
        "queryAttachments",
        "queryDomains",
        "queryTopFeatures",
        "queryAnalytic",
        "queryBins",
        "identify",
        "find",
        "export",
        "generateRenderer",
        "legend",
        "layers",
    }
)


@attrs.define
class Exchange:
    """One request on its way: where it goes now, and what has happened to it so far."""

    method: Literal["GET", "POST"]
    url: str
    query: dict[str, str]
    form: dict[str, str]
    files: Mapping[str, Any] | None
    fmt: str  # the format asked for (json, geojson or pbf)
    safe: bool  # whether it may be sent again after a transient failure
    secrets: list[str]  # values to keep out of messages
    decode: Callable[[bytes], Any] = decode_json  # how its JSON answer is read
    redirects: int = 0
    refreshed: bool = False  # whether its rejected token was refreshed already
    failures: int = 0  # transient failures so far
    waited: float = 0.0  # seconds spent waiting to retry


def encode(params: Params | None, what: str = "params") -> dict[str, str]:
    """ArcGIS parameter values: lists comma-joined, objects as JSON, booleans as words."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidParameterError(
            f"{what} must be a mapping of parameter names to values, such as "
            f"{{'where': '1=1'}}; got a {type(params).__name__}"
        )
    encoded = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise InvalidParameterError(f"{what} names must be strings, got {key!r}")
        if value is not None:
            encoded[key] = _encode_value(key, value)
    return encoded


def _encode_value(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        if not value:
            raise InvalidParameterError(
                f"parameter {key!r} is an empty list, which ArcGIS would ignore (and so match "
                "everything); leave it out instead"
            )
        if all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
            return ",".join(str(v) for v in value)
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidParameterError(
            f"parameter {key!r} cannot be sent: {type(value).__name__} is not JSON"
        ) from exc


def enforce_format(query: dict[str, str], form: dict[str, str] | None) -> str:
    """Make ``f`` json unless geojson or pbf was asked for; return the format.

    ``f`` ends up once, in the form of a form POST, else in the query string.
    """
    fmt = ((form or {}).get("f") or query.get("f") or "").lower()
    if fmt not in ("geojson", "pbf", "pjson"):
        fmt = "json"
    query.pop("f", None)
    target = form if form is not None else query
    target["f"] = fmt
    return "json" if fmt == "pjson" else fmt


def secret_values(*fields: Mapping[str, str]) -> list[str]:
    """Values of secret parameters the caller put in a request, to keep out of messages."""
    return [v for f in fields for k, v in f.items() if k.lower() in SECRET_PARAMETERS and v]


def build(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    query: dict[str, str],
    form: dict[str, str],
    files: Mapping[str, Any] | None,
) -> httpx.Request:
    if query:  # encoded here, in one step: httpx's params= costs twice as long
        url = f"{url}?{urlencode(query)}"
    try:
        return http.build_request(method, url, data=form or None, files=files)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise InvalidParameterError(
            f"the request to {redact_url(url)} cannot be built: {type(exc).__name__}"
        ) from exc


def too_long_for_get(url: str, query: Mapping[str, str], limit: int) -> bool:
    """Whether *url* with *query* would pass *limit*, the longest URL sent as a GET."""
    # A character is at most 12 once percent-encoded (4 UTF-8 bytes, an emoji): below
    # that bound, the query need not be encoded to know it fits.
    raw = sum(len(key) + len(value) + 2 for key, value in query.items())
    if len(url) + 12 * raw <= limit:
        return False
    return len(url) + 1 + len(urlencode(query)) > limit


def unanswered(method: str, url: str, exc: Exception, timeout: float) -> Transient:
    """What an attempt that got no answer (the client's *timeout*, a transport error, a
    body that cannot be read) means: a failure that may pass, with a clear message."""
    if isinstance(exc, TimeoutError):
        error: ArchieError = NetworkError(
            f"{method} {redact_url(url)} failed: no complete answer within "
            f"{timeout:g} s (the client's timeout)",
            url=url,
        )
        error.__cause__ = exc
        return Transient(error)
    if isinstance(exc, httpx.TransportError):
        error = NetworkError(
            f"{method} {redact_url(url)} failed: {describe_transport_error(exc, url)}",
            url=url,
        )
        error.__cause__ = exc
        # A request that never left (no connection, no free connection) may be sent
        # again whatever it does, an edit included.
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return Transient(error, never_sent=never_sent)
    # A body that cannot be decoded, and the like.
    error = ServiceError(None, f"the answer could not be read ({type(exc).__name__})", url=url)
    error.__cause__ = exc
    return Transient(error)


def is_safe(method: str, url: str) -> bool:
    if method == "GET":
        return True
    operation = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return operation in READ_OPERATIONS


def follow(
    response: httpx.Response,
    method: Literal["GET", "POST"],
    query: dict[str, str],
    form: dict[str, str],
    files: Mapping[str, Any] | None,
) -> tuple[str, Literal["GET", "POST"], dict[str, str], dict[str, str]]:
    """Where a redirect leads, keeping the request's meaning.

    307, 308, 301 and 302 repeat the request as it was at the new URL (an ArcGIS
    operation, unlike a browser form, means the same thing there); 303 asks for a GET,
    so the form's fields move into the query string.
    """
    location = response.headers["location"]
    try:
        target = str(httpx.URL(str(response.request.url)).join(location))
        url, new_query = split_query(target)
    except (httpx.InvalidURL, InvalidParameterError, ValueError) as exc:
        raise ServiceError(
            response.status_code, f"redirected to an unusable URL ({type(exc).__name__})",
            raw_response=response, url=str(response.request.url),
        ) from exc  # fmt: skip
    if urlsplit(url).scheme not in ("http", "https"):
        raise ServiceError(
            response.status_code, "redirected to a URL that is not HTTP",
            raw_response=response, url=str(response.request.url),
        )  # fmt: skip
    kept = {**query, **new_query}
    if response.status_code == 303 and method == "POST":
        if files:
            raise ServiceError(
                303, "an upload was redirected elsewhere; it was not sent again",
                raw_response=response, url=str(response.request.url),
            )  # fmt: skip
        return url, "GET", {**kept, **form}, {}
    return url, method, kept, form


def describe_transport_error(exc: httpx.TransportError, url: str) -> str:
    """What went wrong, in the words of the operating system where it said any."""
    host = urlsplit(url).hostname or "the server"
    if isinstance(exc, httpx.PoolTimeout):
        return f"no free connection to {host} in time ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"could not connect to {host} in time ({type(exc).__name__})"
    if isinstance(exc, httpx.TimeoutException):
        return f"{host} took too long to answer ({type(exc).__name__})"
    reason = _os_reason(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect to {host}: {reason}"
    return f"the connection to {host} broke: {reason}"


def _os_reason(exc: BaseException) -> str:
    """The operating system's words for the innermost cause of *exc*, such as
    "Connection refused" or "Name or service not known", else its own message.

    The cause may sit in ``__cause__``, ``__context__``, or inside an exception group
    (one error per address tried).
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    message = ""
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror) and current.strerror:
            return str(current.strerror)
        if isinstance(current, OSError) and current.errno and current.errno > 0:
            return os.strerror(current.errno)
        if str(current) and not message:
            message = str(current)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    # httpx quotes the OS error as "[Errno -2] Name or service not known"
    return message.split("] ", 1)[-1] if message.startswith("[Errno") else message
