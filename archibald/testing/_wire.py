"""What FakeArcGIS reads and writes: requests, responses, and the errors ArcGIS answers.

The emulator's parts and the adaptors that put it on the wire share these types; a part
refuses a request by raising `Refusal`, which the emulator answers as an ArcGIS error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl

import attrs

from ._multipart import MalformedMultipart, UploadedFile, parse_multipart

__all__ = [
    "ENDPOINTS",
    "ErrorStyle",
    "Refusal",
    "Request",
    "Responder",
    "Response",
    "html_page",
    "int_list_param",
    "int_param",
    "parse_body",
    "is_true",
    "json_list_param",
    "json_response",
    "operation_refused",
    "parse_params",
    "plain_text",
    "proxy_page",
    "query_failed",
    "with_features",
]

ErrorStyle = Literal["body", "http"]

# The endpoints as FakeStatistics counts them and faults name them ("unknown" aside).
ENDPOINTS = frozenset(
    {
        "generateToken",
        "oauth2/token",
        "info",
        "catalog",
        "service",
        "layer",
        "query",
        "applyEdits",
        "attachments",
        "jobs",
        "extractChanges",
    }
)
_FORM = "application/x-www-form-urlencoded"


@attrs.define(eq=False)
class Request:
    """A request as the emulator sees it: parameters from the query string and form."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # lower-case names
    origin: str  # scheme://host[:port]
    url: str = ""  # as sent, for the URL-length fault
    files: dict[str, UploadedFile] = attrs.Factory(dict)  # the file parts of a multipart form
    malformed: bool = False  # a multipart body that could not be read


@attrs.define(eq=False)
class Response:
    """What the emulator answers; ``drop`` means: cut the connection instead."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = attrs.Factory(dict)
    drop: bool = False


class Responder(Protocol):
    """Anything that answers emulated requests, as `FakeArcGIS` does."""

    async def respond(self, request: Request) -> Response:
        """Answer one request."""
        ...


class Refusal(Exception):
    """An ArcGIS error answer (``{"error": {"code": ...}}``), raised by a handler."""

    def __init__(
        self, code: int, message: str, details: Sequence[str] = (), message_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)
        self.message_code = message_code


def parse_params(query: bytes | str, body: bytes, content_type: str) -> dict[str, str]:
    """Merge query-string and form-body parameters (the form wins)."""
    return parse_body(query, body, content_type)[0]


def parse_body(
    query: bytes | str, body: bytes, content_type: str
) -> tuple[dict[str, str], dict[str, UploadedFile], bool]:
    """The parameters of the query string and the form (the form wins), the files of a
    multipart form, and whether a multipart body was malformed."""
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    params = dict(parse_qsl(query, keep_blank_values=True))
    files: dict[str, UploadedFile] = {}
    kind = content_type.split(";")[0].strip().lower()
    if body and kind == _FORM:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif body and kind == "multipart/form-data":
        try:
            fields, files = parse_multipart(body, content_type)
        except MalformedMultipart:
            return params, {}, True
        params.update(fields)
    return params, files, False


# -- reading parameters ----------------------------------------------------------------


def is_true(value: str | None) -> bool:
    """Whether a boolean parameter says ``true``."""
    return value is not None and value.strip().lower() == "true"


def int_param(value: str | None, name: str) -> int | None:
    """An integer parameter, or None when absent; refused when not a number."""
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise _invalid(name) from exc


def int_list_param(value: str | None, name: str) -> list[int] | None:
    """A comma-separated list of integers, or None when absent."""
    if value is None or not value.strip():
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise _invalid(name) from exc


def json_list_param(value: str | None, name: str) -> list[Any]:
    """A JSON array parameter; empty when absent."""
    if value is None or not value.strip():
        return []
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise _invalid(name) from exc
    if not isinstance(data, list):
        raise _invalid(name)
    return data


def operation_refused(detail: str) -> Refusal:
    """The 400 error a server answers to a query or edit it cannot do."""
    return Refusal(400, "Unable to complete operation.", [detail])


def query_failed() -> Refusal:
    """The error ArcGIS Server answers when the database fails a query (HTTP 200)."""
    return Refusal(500, "Error performing query operation")


def _invalid(name: str) -> Refusal:
    return operation_refused(f"'{name}' parameter is invalid")


# -- answering -------------------------------------------------------------------------


def json_response(
    data: Any, status: int = 200, *, content_type: str = "application/json"
) -> Response:
    """*data* as compact JSON."""
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(status, body, {"content-type": f"{content_type}; charset=utf-8"})


def with_features(head: dict[str, Any], encoded: list[bytes], content_type: str) -> Response:
    """*head* with a ``features`` array of already encoded features appended."""
    start = json.dumps(head, separators=(",", ":")).encode()
    content = start[:-1] + b',"features":[' + b",".join(encoded) + b"]}"
    return Response(200, content, {"content-type": f"{content_type}; charset=utf-8"})


def html_page(path: str) -> Response:
    """The HTML page a server shows for a request without ``f=json``."""
    body = f"<html><head><title>ArcGIS REST</title></head><body><h1>{path}</h1></body></html>"
    return Response(200, body.encode(), {"content-type": "text/html; charset=utf-8"})


def plain_text(status: int, text: str) -> Response:
    """A plain-text answer, as a proxy or a failing server sends."""
    return Response(status, text.encode(), {"content-type": "text/plain"})


def proxy_page(status: int, reason: str) -> Response:
    """The HTML error page a proxy or gateway in front of the server answers with."""
    page = (
        f"<html><head><title>{status} {reason}</title></head>"
        f"<body><center><h1>{reason}</h1></center><hr><center>nginx</center></body></html>"
    )
    return Response(status, page.encode(), {"content-type": "text/html"})
