"""Attachments: the files a feature carries (photos, documents), listed, downloaded and
uploaded.

A layer lists the attachments of many features in one request with ``queryAttachments``
when it advertises it (``advancedQueryCapabilities.supportsQueryAttachments``, 10.5+),
else one feature at a time (``<layer>/<oid>/attachments``). A file is downloaded from
``<layer>/<oid>/attachments/<id>`` and uploaded as a multipart form to
``<oid>/addAttachment`` or ``<oid>/updateAttachment``; ``<oid>/deleteAttachments``
removes some. Each is offered only by a layer with ``hasAttachments``: on any other, the
call fails before a request is sent.
"""

from __future__ import annotations

import mimetypes
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .._tasks import gather
from .._validate import is_whole, whole_number
from ..exceptions import InvalidParameterError, LayerCapabilityError, ServiceError
from ._model import LayerInfo

if TYPE_CHECKING:
    from .._client import ArchieClient

__all__ = ["AttachmentEditResult", "AttachmentInfo", "Attachments", "Content"]

# What an upload is made of: the bytes themselves, or the path of a file to send.
Content = bytes | bytearray | memoryview | str | os.PathLike[str]

_IDS_PER_QUERY = 500  # object ids per queryAttachments request


@attrs.frozen(kw_only=True)
class AttachmentInfo:
    """One attachment of a feature, as the layer describes it.

    Attributes:
        id: The attachment id (unique within the layer).
        parent_object_id: The object id of the feature it belongs to.
        name: Its file name.
        content_type: Its media type, such as ``image/jpeg``.
        size: Its size in bytes, if the server said.
        global_id: Its GlobalID, if the layer has them.
        parent_global_id: The GlobalID of its feature, if the server said.
        keywords: Its keywords, if any.
        url: Where to download it, if the server said (``queryAttachments`` with
            ``returnUrl``); `FeatureLayer.download_attachment` needs no URL.
    """

    id: int
    parent_object_id: int
    name: str
    content_type: str
    size: int | None = None
    global_id: str | None = None
    parent_global_id: str | None = None
    keywords: str | None = None
    url: str | None = None


@attrs.frozen(kw_only=True)
class AttachmentEditResult:
    """What the server did with one added, updated or deleted attachment.

    Attributes:
        attachment_id: The attachment's id (ArcGIS calls it ``objectId`` in edit
            results), if the server said.
        success: Whether the edit was made.
        global_id: The attachment's GlobalID, if the server said.
        error_code: Why it was not (such as 1010, "Attachment delete failed"), if it
            was not.
        error_description: The server's words for it.
    """

    attachment_id: int | None
    success: bool
    global_id: str | None = None
    error_code: int | None = None
    error_description: str | None = None


class Attachments:
    """The attachment operations of one layer; `FeatureLayer` delegates to it."""

    def __init__(
        self,
        client: ArchieClient,
        path: str,
        url: str,
        info: Callable[[], Awaitable[LayerInfo]],
    ) -> None:
        self._client = client
        self._path = path
        self._url = url
        self._info = info

    # -- listing -----------------------------------------------------------------------

    async def of(self, object_ids: Iterable[int]) -> dict[int, list[AttachmentInfo]]:
        """The attachments of each feature in *object_ids* (each one a key, in order)."""
        ids = list(dict.fromkeys(_check_id(oid, "object id") for oid in _ids(object_ids)))
        info = await self._with_attachments()
        found: dict[int, list[AttachmentInfo]] = {oid: [] for oid in ids}
        if info.supports_query_attachments:
            chunks = [ids[i : i + _IDS_PER_QUERY] for i in range(0, len(ids), _IDS_PER_QUERY)]
            for chunk in chunks:
                for oid, infos in (await self._query(chunk)).items():
                    found[oid].extend(infos)
        else:
            window = self._client.max_concurrent_requests
            for start in range(0, len(ids), window):
                part = ids[start : start + window]
                for oid, infos in zip(
                    part, await gather([self._one(o) for o in part]), strict=True
                ):
                    found[oid] = infos
        return found

    async def _query(self, ids: Sequence[int]) -> dict[int, list[AttachmentInfo]]:
        """The attachments of *ids* by ``queryAttachments``; a reply cut short by the
        server's limit is asked again in halves, and one feature's, by its own list."""
        endpoint = f"{self._path}/queryAttachments"
        body = await self._client.get_json(endpoint, params={"objectIds": list(ids)})
        if body.get("exceededTransferLimit") is True:
            if len(ids) == 1:
                return {ids[0]: await self._one(ids[0])}
            half = len(ids) // 2
            first, second = await self._query(ids[:half]), await self._query(ids[half:])
            return {**first, **second}
        groups = body.get("attachmentGroups")
        if not isinstance(groups, list):
            raise self._malformed("queryAttachments", "no attachmentGroups list")
        found: dict[int, list[AttachmentInfo]] = {}
        wanted = set(ids)
        for group in groups:
            parent = (
                whole_number(group.get("parentObjectId")) if isinstance(group, Mapping) else None
            )
            if parent is None:
                raise self._malformed("queryAttachments", "a group without its parentObjectId")
            if parent not in wanted:
                continue  # a server that ignored the filter
            parent_gid = _text(group.get("parentGlobalId"))
            infos = group.get("attachmentInfos")
            found.setdefault(parent, []).extend(
                self._read_info(item, parent, parent_gid) for item in _listed(infos)
            )
        return found

    async def _one(self, object_id: int) -> list[AttachmentInfo]:
        """The attachments of one feature, from its own list."""
        body = await self._client.get_json(f"{self._path}/{object_id}/attachments")
        infos = body.get("attachmentInfos")
        if not isinstance(infos, list):
            raise self._malformed(f"{object_id}/attachments", "no attachmentInfos list")
        return [self._read_info(item, object_id, None) for item in infos]

    def _read_info(self, item: Any, parent: int, parent_gid: str | None) -> AttachmentInfo:
        attachment_id = whole_number(item.get("id")) if isinstance(item, Mapping) else None
        if attachment_id is None:
            raise self._malformed("its attachment list", "an attachment without an id")
        size = whole_number(item.get("size"))
        return AttachmentInfo(
            id=attachment_id,
            parent_object_id=parent,
            name=str(item.get("name") or ""),
            content_type=str(item.get("contentType") or "application/octet-stream"),
            size=size,
            global_id=_text(item.get("globalId")),
            parent_global_id=parent_gid,
            keywords=_text(item.get("keywords")),
            url=_text(item.get("url")),
        )

    # -- downloading -------------------------------------------------------------------

    async def download(
        self, object_id: int, attachment_id: int, dest: str | os.PathLike[str] | None
    ) -> bytes | Path:
        """The attachment's bytes, or the path of *dest* once they are written there."""
        object_id = _check_id(object_id, "object_id")
        attachment_id = _check_id(attachment_id, "attachment_id")
        target = None if dest is None else Path(os.fspath(dest))
        if target is not None and await anyio.Path(target).is_dir():
            raise InvalidParameterError(f"dest must be a file path, not a folder: {target}")
        await self._with_attachments()
        endpoint = f"{self._path}/{object_id}/attachments/{attachment_id}"
        content = await self._client._get_raw(endpoint)
        if target is None:
            return content
        await _write_file(target, content)
        return target

    # -- uploading and deleting --------------------------------------------------------

    async def add(
        self,
        object_id: int,
        content: Content,
        *,
        name: str | None,
        content_type: str | None,
        keywords: str | None,
    ) -> AttachmentEditResult:
        """Upload a new attachment of *object_id*."""
        object_id = _check_id(object_id, "object_id")
        upload = await _upload(content, name, content_type)
        await self._with_attachments()
        if keywords is not None and not isinstance(keywords, str):
            raise InvalidParameterError(f"keywords must be a string, got {keywords!r}")
        return await self._send(object_id, "addAttachment", {"keywords": keywords}, upload)

    async def update(
        self,
        object_id: int,
        attachment_id: int,
        content: Content,
        *,
        name: str | None,
        content_type: str | None,
    ) -> AttachmentEditResult:
        """Replace the file of attachment *attachment_id* of *object_id*."""
        object_id = _check_id(object_id, "object_id")
        attachment_id = _check_id(attachment_id, "attachment_id")
        upload = await _upload(content, name, content_type)
        await self._with_attachments()
        form = {"attachmentId": attachment_id}
        return await self._send(object_id, "updateAttachment", form, upload)

    async def delete(
        self, object_id: int, attachment_ids: Iterable[int]
    ) -> list[AttachmentEditResult]:
        """Delete attachments of *object_id*; one result per id, in order."""
        object_id = _check_id(object_id, "object_id")
        ids = [_check_id(a, "attachment id") for a in _ids(attachment_ids)]
        if not ids:
            raise InvalidParameterError("attachment_ids is empty: name at least one to delete")
        await self._with_attachments()
        operation = "deleteAttachments"
        body = await self._client.post_json(
            f"{self._path}/{object_id}/{operation}", data={"attachmentIds": ids}
        )
        results = body.get("deleteAttachmentResults")
        if not isinstance(results, list):
            raise self._malformed(operation, "no deleteAttachmentResults list")
        return [_edit_result(r) for r in results]

    async def _send(
        self,
        object_id: int,
        operation: str,
        form: Mapping[str, Any],
        upload: tuple[str, bytes, str],
    ) -> AttachmentEditResult:
        """POST *upload* as the multipart field ``attachment``; an upload is never sent
        again once it may have reached the server (see the attachments guide)."""
        body = await self._client.post_json(
            f"{self._path}/{object_id}/{operation}", data=form, files={"attachment": upload}
        )
        key = f"{operation}Result"
        result = body.get(key)
        if not isinstance(result, Mapping):
            raise self._malformed(operation, f"no {key}")
        edit = _edit_result(result)
        if not edit.success:
            raise ServiceError(
                edit.error_code,
                f"{operation} of {upload[0]!r} to feature {object_id} failed: "
                f"{edit.error_description or 'the server gave no reason'}",
                url=f"{self._url}/{object_id}/{operation}",
            )
        return edit

    # -- shared ------------------------------------------------------------------------

    async def _with_attachments(self) -> LayerInfo:
        info = await self._info()
        if not info.has_attachments:
            raise LayerCapabilityError(
                f"{self._url} has no attachments (its hasAttachments is not true): an "
                "administrator must enable attachments on the layer first"
            )
        return info

    def _malformed(self, operation: str, what: str) -> ServiceError:
        return ServiceError(
            None, f"{operation} answered {what}", url=f"{self._url}/{operation.split('/')[0]}"
        )


def _ids(values: Iterable[int]) -> list[Any]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidParameterError(f"expected a list of ids, got {values!r}")
    return list(values)


def _check_id(value: Any, what: str) -> int:
    if not is_whole(value, 0):
        raise InvalidParameterError(f"{what} must be a whole number >= 0, got {value!r}")
    return int(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _edit_result(item: Any) -> AttachmentEditResult:
    """One edit result: ``{objectId, globalId, success}``, or ``success: false`` with
    ``error: {code, description}``."""
    if not isinstance(item, Mapping):
        return AttachmentEditResult(attachment_id=None, success=False)
    error = item.get("error")
    error = error if isinstance(error, Mapping) else {}
    return AttachmentEditResult(
        attachment_id=whole_number(item.get("objectId")),
        success=item.get("success") is True,
        global_id=_text(item.get("globalId")),
        error_code=whole_number(error.get("code")),
        error_description=_text(error.get("description")),
    )


async def _upload(
    content: Content, name: str | None, content_type: str | None
) -> tuple[str, bytes, str]:
    """The multipart file part of an upload: its name, bytes and media type."""
    if isinstance(content, bytes | bytearray | memoryview):
        data = bytes(content)
        if name is None:
            raise InvalidParameterError("name= is needed for bytes: the attachment's file name")
    elif isinstance(content, str | os.PathLike):
        path = anyio.Path(os.fspath(content))
        if not await path.is_file():
            raise InvalidParameterError(f"no file to upload at {os.fspath(content)}")
        data = await path.read_bytes()
        name = path.name if name is None else name
    else:
        raise InvalidParameterError(
            f"the attachment must be bytes or a file path, got a {type(content).__name__}"
        )
    if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name:
        raise InvalidParameterError(f"name must be a file name (no folders), got {name!r}")
    if content_type is None:
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    elif not isinstance(content_type, str) or "/" not in content_type:
        raise InvalidParameterError(
            f"content_type must be a media type such as 'image/jpeg', got {content_type!r}"
        )
    return name, data, content_type


async def _write_file(target: Path, content: bytes) -> None:
    """Write *content* to *target* through a file beside it, renamed at the end, so that
    a failed write leaves neither a half file nor a changed *target*."""
    part = anyio.Path(target.with_name(f".{target.name}.{secrets.token_hex(4)}.part"))
    try:
        await part.write_bytes(content)
        await part.replace(target)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await part.unlink(missing_ok=True)
        raise
