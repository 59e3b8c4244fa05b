"""Attachments for FakeArcGIS: each feature's files, and the operations on them.

As ArcGIS documents them (see the protocol notes): a layer offers attachments only with
``hasAttachments``; ``queryAttachments`` (GET or POST, one of ``objectIds``,
``globalIds`` or ``definitionExpression``) lists many features' attachments, cut at the
layer's ``maxRecordCount`` with ``exceededTransferLimit``; ``<oid>/attachments`` lists
one feature's; ``<oid>/attachments/<id>`` answers the file itself; ``addAttachment``
(Create or Update capability), ``updateAttachment`` and ``deleteAttachments`` (Update)
are POSTs, the first two multipart with the file in the part ``attachment``. Deleting a
feature deletes its attachments.
"""

from __future__ import annotations

import random
import urllib.parse
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ._edits import new_global_id
from ._wire import (
    Refusal,
    Request,
    Response,
    html_page,
    int_list_param,
    int_param,
    is_true,
    json_response,
    operation_refused,
)

if TYPE_CHECKING:
    from ._data import FakeLayer

__all__ = ["AttachmentStore", "StoredAttachment", "answer_attachments", "is_attachment_path"]

_OPERATIONS = ("addAttachment", "updateAttachment", "deleteAttachments")
_NOT_SUPPORTED = "Requested operation is not supported by this service."


@attrs.frozen(kw_only=True)
class StoredAttachment:
    """One file attached to a feature."""

    id: int
    name: str
    content_type: str
    data: bytes = attrs.field(repr=False)
    global_id: str
    keywords: str = ""

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "globalId": self.global_id,
            "name": self.name,
            "contentType": self.content_type,
            "size": len(self.data),
            "keywords": self.keywords,
        }


@attrs.define(eq=False)
class AttachmentStore:
    """The attachments of a layer's features, by object id; ids are unique in the layer."""

    by_feature: dict[int, dict[int, StoredAttachment]] = attrs.Factory(dict)
    next_id: int = 1

    def of(self, object_id: int) -> list[StoredAttachment]:
        """The attachments of *object_id*, by id."""
        return sorted(self.by_feature.get(object_id, {}).values(), key=lambda a: a.id)

    def keep_only(self, object_ids: Collection[int]) -> None:
        """Forget the attachments of features that are gone (deleted by an edit)."""
        for oid in [oid for oid in self.by_feature if oid not in object_ids]:
            del self.by_feature[oid]


def is_attachment_path(parts: list[str]) -> bool:
    """Whether *parts* (the path below a layer) name an attachment resource."""
    if parts == ["queryAttachments"]:
        return True
    if len(parts) < 2 or not _is_id(parts[0]):
        return False
    if len(parts) == 2:
        return parts[1] == "attachments" or parts[1] in _OPERATIONS
    return len(parts) == 3 and parts[1] == "attachments" and _is_id(parts[2])


def answer_attachments(
    layer: FakeLayer, parts: list[str], request: Request, *, rng: random.Random
) -> Response:
    """Answer the attachment request *parts* names (see `is_attachment_path`)."""
    if not layer.has_attachments:
        raise Refusal(400, _NOT_SUPPORTED, ["The layer does not have attachments."])
    if len(parts) == 3:  # the file itself: answered whatever ``f`` says
        return _download(layer, int(parts[0]), int(parts[2]))
    if request.params.get("f", "html").lower() not in ("json", "pjson"):
        return html_page(request.path)
    if parts == ["queryAttachments"]:
        return _query(layer, request)
    object_id = int(parts[0])
    if parts[1] == "attachments":
        _feature(layer, object_id)
        return json_response(
            {"attachmentInfos": [a.info() for a in layer.attachments.of(object_id)]}
        )
    return _edit(layer, object_id, parts[1], request, rng)


# -- reading ---------------------------------------------------------------------------


def _query(layer: FakeLayer, request: Request) -> Response:
    if not layer.supports_query_attachments:
        raise Refusal(400, _NOT_SUPPORTED, ["queryAttachments is not supported by this layer."])
    params = request.params
    ids = _matching(layer, params)
    limit = layer.max_record_count
    groups: list[dict[str, Any]] = []
    listed = 0
    exceeded = False
    for oid in ids:
        infos = [a.info() for a in layer.attachments.of(oid)]
        if not infos:
            continue
        if listed + len(infos) > limit:
            infos = infos[: limit - listed]
            exceeded = True
        for info in infos:
            if is_true(params.get("returnUrl")):
                info["url"] = f"{request.origin}{layer.url}/{oid}/attachments/{info['id']}"
        if infos:
            groups.append(
                {
                    "parentObjectId": oid,
                    "parentGlobalId": _global_id(layer, oid),
                    "attachmentInfos": infos,
                }
            )
        listed += len(infos)
        if exceeded:
            break
    answer: dict[str, Any] = {"fields": [], "attachmentGroups": groups}
    if exceeded:
        answer["exceededTransferLimit"] = True
    return json_response(answer)


def _matching(layer: FakeLayer, params: Mapping[str, str]) -> list[int]:
    """The features a queryAttachments request names, in object-id order."""
    object_ids = int_list_param(params.get("objectIds"), "objectIds")
    global_ids = [g.strip() for g in params.get("globalIds", "").split(",") if g.strip()]
    where = params.get("definitionExpression", "").strip()
    if object_ids is None and not global_ids and not where:
        raise operation_refused(
            "One of 'objectIds', 'globalIds' or 'definitionExpression' must be specified."
        )
    try:
        ids = list(layer.matching_ids(where or "1=1", object_ids, ""))
    except ValueError as exc:
        raise operation_refused("'definitionExpression' parameter is invalid") from exc
    if global_ids:
        wanted = {g.upper() for g in global_ids}
        ids = [oid for oid in ids if (_global_id(layer, oid) or "").upper() in wanted]
    return sorted(ids)


def _download(layer: FakeLayer, object_id: int, attachment_id: int) -> Response:
    _feature(layer, object_id)
    stored = layer.attachments.by_feature.get(object_id, {}).get(attachment_id)
    if stored is None:
        raise Refusal(404, "Attachment not found.", [f"Attachment {attachment_id} not found."])
    quoted = urllib.parse.quote(stored.name)
    headers = {
        "content-type": stored.content_type,
        "content-disposition": f"inline; filename*=UTF-8''{quoted}",
    }
    return Response(200, stored.data, headers)


# -- editing ---------------------------------------------------------------------------


def _edit(
    layer: FakeLayer, object_id: int, operation: str, request: Request, rng: random.Random
) -> Response:
    if request.method != "POST":
        raise operation_refused(f"{operation} requires POST.")
    allowed = {c.strip().lower() for c in layer.capabilities.split(",")}
    needed = {"create", "update"} if operation == "addAttachment" else {"update"}
    if not allowed & needed:
        names = " or ".join(sorted(n.capitalize() for n in needed))
        raise Refusal(400, _NOT_SUPPORTED, [f"{operation} needs the {names} capability."])
    if request.malformed:
        raise operation_refused("The multipart request could not be read.")
    _feature(layer, object_id)
    store = layer.attachments
    if operation == "deleteAttachments":
        ids = int_list_param(request.params.get("attachmentIds"), "attachmentIds")
        if not ids:
            raise operation_refused("'attachmentIds' parameter is invalid")
        return json_response(
            {"deleteAttachmentResults": [_delete(store, object_id, a) for a in ids]}
        )
    return _upload(layer, object_id, operation, request, rng)


def _upload(
    layer: FakeLayer, object_id: int, operation: str, request: Request, rng: random.Random
) -> Response:
    """Store the file of an addAttachment or updateAttachment request."""
    store = layer.attachments
    upload = request.files.get("attachment")
    if upload is None:
        raise operation_refused("'attachment' parameter is missing (a file part).")
    if layer.max_upload_bytes is not None and len(upload.data) > layer.max_upload_bytes:
        raise operation_refused(
            f"The file exceeds the maximum upload size ({layer.max_upload_bytes} bytes)."
        )
    attachments = store.by_feature.setdefault(object_id, {})
    if operation == "addAttachment":
        attachment_id = store.next_id
        store.next_id += 1
        global_id = new_global_id(rng)
    else:
        given = int_param(request.params.get("attachmentId"), "attachmentId")
        if given is None:
            raise operation_refused("'attachmentId' parameter is missing.")
        attachment_id = given
        old = attachments.get(attachment_id)
        if old is None:
            failed = _failure(attachment_id, 1009, f"Attachment {attachment_id} does not exist.")
            return json_response({"updateAttachmentResult": failed})
        global_id = old.global_id
    attachments[attachment_id] = StoredAttachment(
        id=attachment_id,
        name=upload.filename,
        content_type=upload.content_type,
        data=upload.data,
        global_id=global_id,
        keywords=request.params.get("keywords", ""),
    )
    result = {"objectId": attachment_id, "globalId": global_id, "success": True}
    return json_response({f"{operation}Result": result})


def _delete(store: AttachmentStore, object_id: int, attachment_id: int) -> dict[str, Any]:
    attachments = store.by_feature.get(object_id, {})
    stored = attachments.pop(attachment_id, None)
    if stored is None:
        return _failure(attachment_id, 1010, f"Attachment {attachment_id} does not exist.")
    return {"objectId": attachment_id, "globalId": stored.global_id, "success": True}


def _failure(attachment_id: int, code: int, description: str) -> dict[str, Any]:
    return {
        "objectId": attachment_id,
        "success": False,
        "error": {"code": code, "description": description},
    }


# -- shared ----------------------------------------------------------------------------


def _feature(layer: FakeLayer, object_id: int) -> None:
    """Refuse a request about a feature that does not exist."""
    if not layer.matching_ids("1=1", [object_id], ""):
        raise Refusal(404, "Feature not found.", [f"Feature {object_id} does not exist."])


def _global_id(layer: FakeLayer, object_id: int) -> str | None:
    field = next((f["name"] for f in layer.fields if f["type"] == "esriFieldTypeGlobalID"), None)
    if field is None:
        return None
    value = layer.row(object_id)["attributes"].get(field)
    return value if isinstance(value, str) else None


def _is_id(text: str) -> bool:
    return text.isascii() and text.isdecimal()
