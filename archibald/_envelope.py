"""Reading ArcGIS error envelopes, whatever shape a server or proxy gave them.

ArcGIS answers ``{"error": {"code": 498, "message": "...", "details": [...],
"messageCode": "GWM_0003"}}``, usually with HTTP 200; OAuth endpoints add ``error`` and
``error_description`` inside it, or send ``{"error": "invalid_client"}`` flat; the Admin
API says ``{"status": "error", "messages": [...], "code": 499}``. `read_envelope` turns
each of these into one `Envelope`, and `arcgis_error` into the matching exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._secrets import scrub
from .exceptions import (
    ArcGISError,
    AuthorizationError,
    NotFoundError,
    ServiceError,
    TokenExpiredError,
    TokenMissingError,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["Envelope", "arcgis_error", "read_envelope", "snippet", "whole_number"]

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
        message_code=envelope.message_code,
        url=url,
    )


def whole_number(value: object) -> int | None:
    """*value* as an int: also from a whole float or a string of digits; else None.

    Servers send error codes and object ids as numbers, floats or strings.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if (text[1:] if text.startswith("-") else text).isdecimal():
            return int(text)
    return None


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def snippet(response: httpx.Response, secrets: Sequence[str], limit: int = 200) -> str:
    """The start of a body that is not what was expected, on one line, secrets masked."""
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError):
        text = repr(response.content[:limit])
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return scrub(text, secrets) or "(empty body)"
