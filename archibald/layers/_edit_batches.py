"""Edits made ready to send: each feature in Esri JSON (GeoJSON converted), encoded once,
its size in the form body known; then cut into batches by count and by bytes, and each
batch's answer read back into one result per edit.

A batch's body is its items' encoded text joined with commas, so measuring each item
once bounds every batch without encoding a batch again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote_plus

import attrs
import orjson

from .._geojson import GeometryError, geojson_geometry_to_esri
from .._validate import is_whole
from ..exceptions import InvalidParameterError
from ._edit_results import EditKind, EditResult, EditStatus
from ._model import attribute

__all__ = ["Batch", "Item", "cut", "esri_feature", "prepare", "read_items", "whole_batch"]

# Room for the form's other fields (names, separators, rollbackOnFailure, f, token).
_FORM_OVERHEAD = 512
# Item error codes that mean "undone because another edit failed", not "this one failed".
_ROLLED_BACK_CODES = frozenset({1003, 1012, 2000})
_WGS84 = {"wkid": 4326}


@attrs.frozen
class Item:
    """One edit, encoded as it will travel."""

    kind: EditKind
    index: int  # in the caller's list of that kind
    source: Any  # the caller's feature or id, as given
    text: str  # the Esri JSON feature, or the id
    size: int  # bytes in the form body, percent-encoded, with its separator


@attrs.frozen
class Batch:
    """Edits sent in one applyEdits request."""

    items: tuple[Item, ...]

    @property
    def size(self) -> int:
        """The form body's size in bytes, about (an upper bound)."""
        return _FORM_OVERHEAD + sum(item.size for item in self.items)

    def of_kind(self, kind: EditKind) -> list[Item]:
        """The batch's items of *kind*, in order."""
        return [item for item in self.items if item.kind == kind]

    def form(self, *, rollback_on_failure: bool, use_global_ids: bool) -> dict[str, Any]:
        """The applyEdits form fields for this batch."""
        form: dict[str, Any] = {
            "rollbackOnFailure": rollback_on_failure,
            "useGlobalIds": use_global_ids,
        }
        kinds: tuple[tuple[EditKind, str], ...] = (("add", "adds"), ("update", "updates"))
        for kind, name in kinds:
            items = self.of_kind(kind)
            if items:
                form[name] = "[" + ",".join(item.text for item in items) + "]"
        deletes = self.of_kind("delete")
        if deletes:
            joined = ",".join(item.text for item in deletes)
            form["deletes"] = f"[{joined}]" if use_global_ids else joined
        return form

    def halves(self) -> tuple[Batch, Batch]:
        """The batch cut in two (for a server that refused its size)."""
        middle = len(self.items) // 2
        return Batch(self.items[:middle]), Batch(self.items[middle:])


def prepare(
    adds: Iterable[Any],
    updates: Iterable[Any],
    deletes: Iterable[Any],
    *,
    object_id_field: str,
    spatial_reference: Mapping[str, Any] | None,
    use_global_ids: bool,
) -> list[Item]:
    """Every edit converted to Esri JSON and encoded, adds, then updates, then deletes.

    Raises:
        InvalidParameterError: An edit is not a feature (or an id), has a geometry that
            cannot be converted, or is an update without its object id.
    """
    items = []
    for kind, features in (("add", adds), ("update", updates)):
        for index, feature in enumerate(features):
            esri = esri_feature(
                feature,
                kind=kind,
                index=index,
                object_id_field=object_id_field,
                spatial_reference=spatial_reference,
                need_object_id=kind == "update" and not use_global_ids,
            )
            items.append(_item(kind, index, feature, _encode(esri, kind, index)))  # type: ignore[arg-type]
    for index, oid in enumerate(deletes):
        if use_global_ids and isinstance(oid, str):
            text = _encode(oid, "delete", index)
        elif is_whole(oid, 0) and not use_global_ids:
            text = str(oid)
        else:
            wanted = "a global id (text)" if use_global_ids else "a whole object id"
            raise InvalidParameterError(f"delete {index} must be {wanted}, got {oid!r}")
        items.append(_item("delete", index, oid, text))
    return items


def esri_feature(
    feature: Any,
    *,
    kind: str,
    index: int,
    object_id_field: str,
    spatial_reference: Mapping[str, Any] | None,
    need_object_id: bool,
) -> dict[str, Any]:
    """*feature* (Esri JSON, or a GeoJSON Feature) as an Esri JSON feature.

    A GeoJSON Feature's ``properties`` become its attributes (and its ``id`` the object
    id of an update that names none); its geometry is converted, in *spatial_reference*
    (by default WGS84, as RFC 7946 says). An Esri geometry without a spatial reference
    gets *spatial_reference*, if given.
    """
    if not isinstance(feature, Mapping):
        raise InvalidParameterError(
            f"{kind} {index} is not a feature (Esri JSON or GeoJSON): a {type(feature).__name__}"
        )
    if feature.get("type") == "Feature":
        attributes = dict(feature.get("properties") or {})
        named = attribute(attributes, object_id_field) is not None
        if kind == "update" and not named and is_whole(feature.get("id"), 0):
            attributes[object_id_field] = feature["id"]
        try:
            geometry = geojson_geometry_to_esri(
                feature.get("geometry"), spatial_reference or _WGS84
            )
        except GeometryError as exc:
            raise InvalidParameterError(f"{kind} {index}: {exc}") from exc
    else:
        attributes = dict(feature.get("attributes") or {})
        geometry = feature.get("geometry")
        if (
            isinstance(geometry, Mapping)
            and spatial_reference
            and "spatialReference" not in geometry
        ):
            geometry = {**geometry, "spatialReference": dict(spatial_reference)}
    if need_object_id and not is_whole(attribute(attributes, object_id_field), 0):
        raise InvalidParameterError(
            f"{kind} {index} names no {object_id_field}: an update needs the object id "
            "of the feature it changes"
        )
    esri: dict[str, Any] = {"attributes": attributes}
    if geometry is not None:
        esri["geometry"] = geometry
    return esri


def _encode(value: Any, kind: str, index: int) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError as exc:  # orjson's JSONEncodeError is a TypeError
        raise InvalidParameterError(f"{kind} {index} cannot be sent as JSON: {exc}") from exc


def _item(kind: EditKind, index: int, source: Any, text: str) -> Item:
    return Item(kind, index, source, text, len(quote_plus(text)) + 3)  # 3: "%2C"


def cut(items: Sequence[Item], *, count: int, max_bytes: int) -> tuple[list[Batch], list[Item]]:
    """*items* in batches of at most *count* edits and *max_bytes* bytes, in order; and
    the items too big to send even alone."""
    batches: list[Batch] = []
    too_big: list[Item] = []
    current: list[Item] = []
    size = _FORM_OVERHEAD
    for item in items:
        if _FORM_OVERHEAD + item.size > max_bytes:
            too_big.append(item)
            continue
        if current and (len(current) >= count or size + item.size > max_bytes):
            batches.append(Batch(tuple(current)))
            current, size = [], _FORM_OVERHEAD
        current.append(item)
        size += item.size
    if current:
        batches.append(Batch(tuple(current)))
    return batches, too_big


def whole_batch(
    batch: Batch | Sequence[Item],
    status: EditStatus,
    description: str,
    code: int | None = None,
) -> list[EditResult]:
    """The same outcome for every edit of *batch*."""
    items = batch.items if isinstance(batch, Batch) else batch
    return [
        EditResult(
            kind=item.kind,
            index=item.index,
            status=status,
            error_code=code,
            error_description=description,
        )
        for item in items
    ]


def read_items(batch: Batch, body: Mapping[str, Any]) -> list[EditResult]:
    """The results an applyEdits answer gives for *batch*'s edits.

    An edit the answer does not mention (a server that answered fewer results than it
    was sent) is reported with the status ``"unknown"``.
    """
    results = []
    for kind, key in (
        ("add", "addResults"),
        ("update", "updateResults"),
        ("delete", "deleteResults"),
    ):
        items = batch.of_kind(kind)  # type: ignore[arg-type]
        answers = body.get(key)
        answers = list(answers) if isinstance(answers, list) else []
        for position, item in enumerate(items):
            answer = answers[position] if position < len(answers) else None
            results.append(_read_item(item, answer))
    return results


def _read_item(item: Item, answer: Any) -> EditResult:
    if not isinstance(answer, Mapping):
        return EditResult(
            kind=item.kind,
            index=item.index,
            status="unknown",
            error_description="the server's answer has no result for this edit",
        )
    object_id = answer.get("objectId")
    global_id = answer.get("globalId")
    common: dict[str, Any] = {
        "kind": item.kind,
        "index": item.index,
        "object_id": object_id if is_whole(object_id) else None,
        "global_id": global_id if isinstance(global_id, str) else None,
    }
    if answer.get("success") is True:
        return EditResult(status="applied", **common)
    raw_error = answer.get("error")
    error: Mapping[str, Any] = raw_error if isinstance(raw_error, Mapping) else {}
    code = error.get("code") if is_whole(error.get("code")) else None
    description = str(error.get("description") or error.get("message") or "no description")
    status: EditStatus = "rolled_back" if code in _ROLLED_BACK_CODES else "failed"
    return EditResult(status=status, error_code=code, error_description=description, **common)
