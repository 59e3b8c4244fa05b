"""What an answer means: ArcGIS error envelopes, and which failures are worth another try.

This is the one home of two rules: how an error is read from a body, and which statuses
are transient.

ArcGIS answers ``{"error": {"code": 498, "message": "...", "details": [...],
"messageCode": "GWM_0003"}}``, usually with HTTP 200; OAuth endpoints add ``error`` and
``error_description`` inside it, or send ``{"error": "invalid_client"}`` flat; the Admin
API says ``{"status": "error", "messages": [...], "code": 499}``. `read_envelope` turns
each of these into one `Envelope`, and `arcgis_error` into the matching exception.
"""

from __future__ import annotations

import array
import email.utils
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import httpx
import orjson

from ._secrets import is_secure_url, origin_of, scrub
from ._validate import whole_number
from .exceptions import (
    ArcGISError,
    ArchieError,
    AuthorizationError,
    NetworkError,
    NotFoundError,
    ServiceError,
    TokenExpiredError,
    TokenMissingError,
)

__all__ = [
    "Envelope",
    "Failure",
    "Success",
    "TokenRejected",
    "Transient",
    "arcgis_error",
    "classify",
    "decode_json",
    "is_transient",
    "may_have_applied",
    "turned_away",
    "read_envelope",
    "rejection_hint",
    "retry_after",
    "snippet",
]

# Statuses after which the same request may well succeed later: too many requests, and a
# gateway or server that is busy or lost its upstream.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
# A token endpoint's failures are also worth another try after a request timeout (408) or
# any other 5xx: for a service operation, a 500 is the operation failing ("Unable to
# complete operation.", a query the database refused) and would fail again, while for a
# token endpoint it is the portal itself failing, which passes.
_TOKEN_ENDPOINT_TRANSIENT = TRANSIENT_STATUSES | {408}


def is_transient(status: int | None, *, token_endpoint: bool = False) -> bool:
    """Whether a failure with HTTP status (or envelope code) *status* is worth retrying."""
    if status is None:
        return False
    if token_endpoint:
        return status in _TOKEN_ENDPOINT_TRANSIENT or status >= 500
    return status in TRANSIENT_STATUSES


_ERRORS_BY_CODE: dict[int, type[ArcGISError]] = {
    498: TokenExpiredError,
    499: TokenMissingError,
    403: AuthorizationError,
    404: NotFoundError,
}


@attrs.frozen
class Envelope:
    """The fields of one error envelope."""

    code: int | None
    message: str
    details: tuple[str, ...]
    message_code: str | None
    oauth_error: str | None  # "invalid_client" and the like


def read_envelope(body: Mapping[str, Any]) -> Envelope | None:
    """The error in *body*, or None if *body* reports no error."""
    if "error" in body:
        error = body["error"]
        if not isinstance(error, Mapping):
            error = {"error": error, "error_description": body.get("error_description")}
    elif body.get("status") == "error":
        error = {"code": body.get("code"), "details": body.get("messages")}
    else:
        return None
    code = whole_number(error.get("code"))
    oauth = error.get("error") if isinstance(error.get("error"), str) else None
    details = error.get("details")
    detail_list = [str(d) for d in details if d not in (None, "")] if _is_list(details) else []
    message = error.get("message") or error.get("error_description") or oauth
    if not message:
        message = detail_list[0] if detail_list else "no message"
    message_code = error.get("messageCode")
    return Envelope(
        code=code,
        message=str(message),
        details=tuple(detail_list),
        message_code=str(message_code) if message_code else None,
        oauth_error=oauth,
    )


def arcgis_error(
    envelope: Envelope,
    *,
    url: str | None,
    response: httpx.Response | None = None,
    secrets: Sequence[str] = (),
    hint: str = "",
) -> ArcGISError:
    """The exception for *envelope*: its class chosen by the code (498, 499, 403, 404)."""
    cls = _ERRORS_BY_CODE.get(envelope.code or 0, ServiceError)
    message = scrub(envelope.message, secrets)
    if hint:
        message = f"{message} ({hint})"
    return cls(
        envelope.code,
        message,
        [scrub(d, secrets) for d in envelope.details],
        response,
        message_code=scrub(envelope.message_code, secrets) if envelope.message_code else None,
        url=url,
    )


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def snippet(response: httpx.Response, secrets: Sequence[str], limit: int = 200) -> str:
    """The start of a body that is not what was expected, on one line, secrets masked."""
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError):
        text = repr(response.content[:limit])
    text = scrub(" ".join(text.split()), secrets)  # before the cut, which may halve one
    if len(text) > limit:
        text = text[:limit] + "…"
    return text or "(empty body)"


# -- what one response of a service means ---------------------------------------------


@attrs.frozen
class Success:
    """The answer: its decoded JSON, or the bytes of a binary (pbf) answer."""

    body: Any


@attrs.frozen
class TokenRejected:
    """The token was refused (498 or 499, in the body or as the status)."""

    envelope: Envelope


@attrs.frozen
class Transient:
    """A failure that may pass: the same request may be sent again, after a pause.

    Attributes:
        error: What the caller gets if no retry is left.
        retry_after: The pause the server asked for (``Retry-After``), in seconds.
        never_sent: The request never reached the server (no connection), so even one
            that is not safe to repeat may be sent again.
    """

    error: ArchieError
    retry_after: float | None = None
    never_sent: bool = False


@attrs.frozen
class Failure:
    """A failure that sending again would not mend."""

    error: ArchieError


def decode_json(content: bytes) -> Any:
    """Decode a JSON answer: with orjson, about three times as fast as the standard
    library on a page of features; what orjson refuses and the standard library reads
    (``NaN``, integers beyond 64 bits, UTF-16) is read by the standard library.

    Raises:
        ValueError: It is not JSON.
    """
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


_ID_CHUNK = 1 << 16  # bytes of an id list decoded at a time
_NOT_IN_IDS = b"0123456789-, \t\r\n"  # what is left of a piece that is not plain integers


def decode_id_list(content: bytes) -> Any:
    """Decode a ``returnIdsOnly`` answer with its ``objectIds`` as an ``array('q')``,
    read a piece at a time, so that a million ids never exist as a million Python ints
    (8 MB instead of about 45). Anything unusual (ids as floats or strings, another
    layout) is decoded as any answer is (`decode_json`), and read by the caller.

    Raises:
        ValueError: It is not JSON.
    """
    key = content.find(b'"objectIds"')
    start = content.find(b"[", key) if key >= 0 else -1
    end = content.find(b"]", start) if start >= 0 else -1
    if end < 0 or content[key + len(b'"objectIds"') : start].strip() != b":":
        return decode_json(content)
    if content.find(b'"objectIds"', end) >= 0 or _ends_in_comma(content, start, end):
        return decode_json(content)  # a key given twice, or a list ending in a comma
    ids = array.array("q")
    position = start + 1
    try:
        while position < end and content[position:end].strip():
            cut = (
                content.rfind(b",", position, position + _ID_CHUNK)
                if position + _ID_CHUNK < end
                else end
            )
            cut = end if cut <= position else cut
            piece = content[position:cut]
            if piece.translate(None, _NOT_IN_IDS):
                return decode_json(content)
            ids.extend(orjson.loads(b"[" + piece + b"]"))
            position = cut + 1
        body = orjson.loads(content[:start] + b"[]" + content[end + 1 :])
    except (orjson.JSONDecodeError, OverflowError, TypeError):
        return decode_json(content)
    if not isinstance(body, dict) or body.get("objectIds") != []:
        return decode_json(content)
    body["objectIds"] = ids
    return body


def _ends_in_comma(content: bytes, start: int, end: int) -> bool:
    """Whether the list between *start* and *end* ends in a comma (not JSON)."""
    position = end - 1
    while position > start and content[position] in b" \t\r\n":
        position -= 1
    return content[position] == ord(",")


def classify(
    response: httpx.Response,
    fmt: str,
    url: str,
    *,
    secrets: Sequence[str],
    decode: Callable[[bytes], Any] = decode_json,
) -> Success | TokenRejected | Transient | Failure:
    """Decide what one response of a service means (*fmt* is the ``f`` asked for, or
    ``raw`` for a file such as an attachment; *decode* reads a JSON body)."""
    status = response.status_code
    content_type = response.headers.get("content-type", "").lower()
    if fmt == "raw":  # a file; only an answer that may be JSON may be an error envelope
        binary = "json" not in content_type and "text/plain" not in content_type
    else:
        binary = fmt == "pbf" and ("protobuf" in content_type or "octet-stream" in content_type)
    body: Any = None
    parsed = False
    if not binary:
        try:
            body = decode(response.content)
            parsed = True
        except (ValueError, RecursionError):
            pass
    envelope = _error_of(response, body, secrets)
    if envelope is not None:
        if envelope.code in (498, 499):
            return TokenRejected(envelope)
        error = arcgis_error(envelope, url=url, response=response, secrets=secrets)
        if is_transient(status) or is_transient(envelope.code):
            return Transient(error, retry_after(response))
        return Failure(error)
    if parsed or (fmt in ("pbf", "raw") and status < 400):
        return Success(body if parsed and fmt not in ("pbf", "raw") else response.content)
    if "json" in content_type:  # a torn JSON body: worth another try
        torn = ServiceError(
            status,
            f"the JSON answer could not be decoded: it was cut short or is malformed "
            f"({len(response.content):,} bytes, HTTP {status}): {snippet(response, secrets)}",
            raw_response=response,
            url=url,
        )
        return Transient(torn)
    error = ServiceError(
        status,
        f"expected JSON but got {content_type or 'no content type'} (HTTP {status}): "
        f"{snippet(response, secrets)}",
        raw_response=response,
        url=url,
    )
    return Failure(error)


def _error_of(response: httpx.Response, body: Any, secrets: Sequence[str]) -> Envelope | None:
    """The error a response reports: in its body's envelope, else by its HTTP status."""
    status = response.status_code
    envelope = read_envelope(body) if isinstance(body, dict) else None
    if envelope is None and status in (498, 499):
        message = "Invalid token." if status == 498 else "Token Required"
        return Envelope(status, message, (), None, None)
    if envelope is None and status >= 400:
        message = f"HTTP {status} {response.reason_phrase}: {snippet(response, secrets)}"
        return Envelope(status, message, (), None, None)
    if envelope is not None and envelope.code is None and status >= 400:
        return attrs.evolve(envelope, code=status)
    return envelope


def rejection_hint(
    url: str, token: str, *, refreshed: bool, code: int | None, no_auth: bool, auth_hint: str
) -> str:
    """What to tell the user when *url* rejected *token* for good (or got none)."""
    if not token:
        if no_auth and code == 499:
            return "this service needs a token: sign in with UserTokenAuth or another auth"
        if no_auth:
            return "no token was sent (NoAuth)"
        if not is_secure_url(url):
            return "no token was sent: tokens travel over HTTPS only"
        return (
            f"no token was sent to {origin_of(url)}, which is not trusted; "
            "add it to ArchieClient(trusted_origins=...) if it should get one"
        )
    if refreshed:
        return (
            "rejected again with a fresh token: the user may not have access, or the "
            "token is bound to another referer or IP address"
        )
    return auth_hint


def retry_after(response: httpx.Response) -> float | None:
    """The pause a ``Retry-After`` header asks for, in seconds (never negative)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


# -- whether a write that failed may have been applied ---------------------------------

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def may_have_applied(error: BaseException) -> bool:
    """Whether a write (applyEdits) that failed with *error* may have been applied.

    Not applied: the request never left (no connection), ArcGIS itself answered with an
    error envelope (it refused, and with rollback nothing was kept), or a server or
    proxy turned the request away before passing it on (429, 503 with ``Retry-After``,
    and any 4xx such as 413), or a redirect that was not followed. Perhaps applied: the
    connection broke or timed out after the request was sent, a gateway gave up waiting
    (502, 504) or any other 5xx without an envelope, and an answer cut short or that
    cannot be read (a corrupt encoding, not a JSON object): the server may have done
    the work.
    """
    if isinstance(error, NetworkError):
        return not isinstance(error.__cause__, _NEVER_SENT)
    if not isinstance(error, ServiceError):
        return False
    response = error.raw_response
    if response is None:  # an answer that could not be read (its encoding, its shape)
        return True
    status = response.status_code
    if 300 <= status < 400:  # redirected (in a loop, or nowhere usable): not applied
        return False
    try:
        body = decode_json(response.content)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict) and read_envelope(body) is not None:
        return False
    if turned_away(error):
        return False
    return not 400 <= status < 500


def turned_away(error: BaseException) -> bool:
    """Whether *error* is a server or proxy asking to come back later (429, or 503 with
    ``Retry-After``): the request was not passed on, so even a write may be sent again."""
    response = error.raw_response if isinstance(error, ServiceError) else None
    if response is None:
        return False
    status = response.status_code
    return status == 429 or (status == 503 and retry_after(response) is not None)
