"""Reading a multipart/form-data body (RFC 7578), as uploads to FakeArcGIS arrive.

Small and strict, byte for byte: each part's bytes are exactly those between its header
block and the delimiter, whatever they hold (CR, LF, NUL, ``--``). A malformed body is
refused, as a server refuses one.
"""

from __future__ import annotations

import email.message
import email.policy

import attrs

__all__ = ["MalformedMultipart", "UploadedFile", "parse_multipart"]


@attrs.frozen
class UploadedFile:
    """One file part of an upload."""

    filename: str
    content_type: str
    data: bytes = attrs.field(repr=False)


class MalformedMultipart(ValueError):
    """The body is not the multipart form its content type announces."""


def parse_multipart(
    body: bytes, content_type: str
) -> tuple[dict[str, str], dict[str, UploadedFile]]:
    """The text fields and the files of a multipart/form-data *body*."""
    boundary = _header_parameters("Content-Type", content_type).get("boundary")
    if not boundary:
        raise MalformedMultipart("no boundary in the content type")
    delimiter = b"--" + boundary.encode("latin-1")
    if not body.startswith(delimiter):
        raise MalformedMultipart("the body does not start with its boundary")
    fields: dict[str, str] = {}
    files: dict[str, UploadedFile] = {}
    position = len(delimiter)
    while True:
        if body.startswith(b"--", position):
            return fields, files  # the closing delimiter
        if not body.startswith(b"\r\n", position):
            raise MalformedMultipart("a boundary not followed by a line break")
        end = body.find(b"\r\n" + delimiter, position)
        if end < 0:
            raise MalformedMultipart("a part without a closing boundary")
        name, part = _read_part(body[position + 2 : end])
        if isinstance(part, UploadedFile):
            files[name] = part
        else:
            fields[name] = part
        position = end + 2 + len(delimiter)


def _read_part(part: bytes) -> tuple[str, str | UploadedFile]:
    """The name of one part, and its text or its file."""
    head, separator, data = part.partition(b"\r\n\r\n")
    if not separator:
        raise MalformedMultipart("a part without a header block")
    headers = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    disposition = _header_parameters("Content-Disposition", headers.get("content-disposition", ""))
    name = disposition.get("name")
    if name is None:
        raise MalformedMultipart("a part without a name")
    filename = disposition.get("filename")
    if filename is None:
        return name, data.decode("utf-8", "replace")
    content_type = headers.get("content-type") or "application/octet-stream"
    return name, UploadedFile(filename, content_type, data)


def _header_parameters(name: str, value: str) -> dict[str, str]:
    """The parameters of a header (``boundary``, ``name``, ``filename``), unquoted."""
    message = email.message.EmailMessage(policy=email.policy.HTTP)
    message[name] = value
    return {k.lower(): str(v) for k, v in message[name].params.items()}
