"""Edits for FakeArcGIS: reading an applyEdits request, and the rules edits follow.

`read_edits` turns a request into adds, updates and deletes (refusing what the layer's
capabilities do not allow); `edit_rows` applies them to a copy of a layer's rows, checking
each feature against the layer's fields and geometry type, as applyEdits does.
"""

from __future__ import annotations

import datetime
import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from ._wire import Request, int_list_param, json_list_param, operation_refused

__all__ = ["EditRequest", "LayerSchema", "copy_row", "edit_rows", "new_global_id", "read_edits"]

Rows = dict[int, dict[str, Any]]
Results = list[dict[str, Any]]

_GLOBAL_ID = "esriFieldTypeGlobalID"
_INTEGER_TYPES = {
    "esriFieldTypeOID",
    "esriFieldTypeInteger",
    "esriFieldTypeSmallInteger",
    "esriFieldTypeBigInteger",
    "esriFieldTypeDate",
}
_NUMBER_TYPES = {"esriFieldTypeDouble", "esriFieldTypeSingle"}
_TEXT_TYPES = {"esriFieldTypeString", "esriFieldTypeGUID", _GLOBAL_ID}
# ArcGIS 11.3's date and time types travel as ISO 8601 text, both ways; a timestamp with
# offset must carry its offset.
_ISO_TYPES = {
    "esriFieldTypeDateOnly": datetime.date.fromisoformat,
    "esriFieldTypeTimeOnly": datetime.time.fromisoformat,
    "esriFieldTypeTimestampOffset": datetime.datetime.fromisoformat,
}
_GEOMETRY_KEYS = {
    "esriGeometryPoint": "x",
    "esriGeometryMultipoint": "points",
    "esriGeometryPolyline": "paths",
    "esriGeometryPolygon": "rings",
}


# -- the request -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class EditRequest:
    """The edits an applyEdits request asks for."""

    adds: list[Any]
    updates: list[Any]
    deletes: list[Any]  # object ids (or, as JSON, anything: each is checked)
    rollback_on_failure: bool


def read_edits(request: Request, capabilities: str) -> EditRequest:
    """The edits *request* asks for; refused unless POSTed and allowed by *capabilities*."""
    if request.method != "POST":
        raise operation_refused("applyEdits requires POST.")
    allowed = {c.strip().lower() for c in capabilities.split(",")}
    params = request.params
    adds = json_list_param(params.get("adds"), "adds")
    updates = json_list_param(params.get("updates"), "updates")
    deletes_text = params.get("deletes", "").strip()
    deletes: list[Any]
    if deletes_text.startswith("["):
        deletes = json_list_param(deletes_text, "deletes")
    else:
        deletes = list(int_list_param(deletes_text, "deletes") or [])
    for name, items, capability in (
        ("adds", adds, "create"),
        ("updates", updates, "update"),
        ("deletes", deletes, "delete"),
    ):
        if items and capability not in allowed:
            raise operation_refused(f"This operation is not supported: {name}.")
    rollback = params.get("rollbackOnFailure", "true").lower() != "false"
    return EditRequest(adds=adds, updates=updates, deletes=deletes, rollback_on_failure=rollback)


# -- applying edits ----------------------------------------------------------------------


class LayerSchema(Protocol):
    """What edits are checked against: a layer's fields and geometry type."""

    @property
    def fields(self) -> list[dict[str, Any]]: ...

    @property
    def object_id_field(self) -> str: ...

    @property
    def geometry_type(self) -> str | None: ...


def edit_rows(
    schema: LayerSchema,
    rows: Rows,
    adds: Sequence[Any],
    updates: Sequence[Any],
    deletes: Sequence[Any],
    *,
    rollback_on_failure: bool,
    rng: random.Random,
    next_oid: int | None = None,
) -> tuple[dict[str, Results], Rows | None]:
    """Apply edits to a copy of *rows*: the per-item results, and the edited rows in
    object-id order, or None when *rollback_on_failure* undid them all.

    A bad item fails alone (code 1000); with *rollback_on_failure*, one failure fails
    every item (code 1025) and nothing is applied. Global ids come from *rng*; new
    object ids from *next_oid* (default: one above the highest row).
    """
    staged = {oid: copy_row(row) for oid, row in rows.items()}
    global_id = next((f["name"] for f in schema.fields if f["type"] == _GLOBAL_ID), None)
    add_results = _add(schema, staged, adds, global_id, rng, next_oid)
    update_results = _update(schema, staged, updates, global_id)
    delete_results = _delete(staged, deletes, global_id)
    results = {
        "addResults": add_results,
        "updateResults": update_results,
        "deleteResults": delete_results,
    }
    failed = any(not r["success"] for rs in results.values() for r in rs)
    if failed and rollback_on_failure:
        for items in results.values():
            for item in items:
                if item["success"]:
                    item["success"] = False
                    item["error"] = {"code": 1025, "description": "Operation rolled back."}
        return results, None
    return results, dict(sorted(staged.items()))


def _add(
    schema: LayerSchema,
    staged: Rows,
    adds: Sequence[Any],
    global_id: str | None,
    rng: random.Random,
    next_oid: int | None,
) -> Results:
    results = []
    if next_oid is None:
        next_oid = (max(staged) + 1) if staged else 1
    for feature in adds:
        problem = _problem(schema, feature, updating=False)
        if problem:
            results.append(_failure(None, 1000, problem))
            continue
        attributes = dict(feature.get("attributes") or {})
        attributes[schema.object_id_field] = next_oid
        result: dict[str, Any] = {"objectId": next_oid}
        if global_id is not None:
            attributes[global_id] = new_global_id(rng)
            result["globalId"] = attributes[global_id]
        row: dict[str, Any] = {"attributes": attributes}
        if feature.get("geometry") is not None:
            row["geometry"] = feature["geometry"]
        staged[next_oid] = row
        results.append({**result, "success": True})
        next_oid += 1
    return results


def _update(
    schema: LayerSchema, staged: Rows, updates: Sequence[Any], global_id: str | None
) -> Results:
    results = []
    for feature in updates:
        problem = _problem(schema, feature, updating=True)
        oid = _object_id(feature, schema.object_id_field)
        if problem:
            results.append(_failure(oid, 1000, problem))
            continue
        if oid not in staged:
            results.append(_failure(oid, 1019, "Object is missing."))
            continue
        staged[oid]["attributes"].update(feature["attributes"])
        if feature.get("geometry") is not None:
            staged[oid]["geometry"] = feature["geometry"]
        results.append(_success(oid, staged[oid], global_id))
    return results


def _delete(staged: Rows, deletes: Sequence[Any], global_id: str | None) -> Results:
    results = []
    for oid in deletes:
        if not _is_whole(oid):
            results.append(_failure(None, 1000, f"Invalid object id: {oid!r}"))
        elif oid not in staged:
            results.append(_failure(oid, 1019, "Object is missing."))
        else:
            results.append(_success(oid, staged.pop(oid), global_id))
    return results


def _problem(schema: LayerSchema, feature: Any, *, updating: bool) -> str | None:
    """What is wrong with an edited feature, or None."""
    if not isinstance(feature, Mapping):
        return f"A feature must be an object, got {type(feature).__name__}."
    attributes = feature.get("attributes", {})
    if not isinstance(attributes, Mapping):
        return "'attributes' must be an object."
    if updating and not _is_whole(attributes.get(schema.object_id_field)):
        return f"An update needs an integer {schema.object_id_field}."
    types = {f["name"]: f["type"] for f in schema.fields}
    for name, value in attributes.items():
        if name not in types:
            return f"Attribute column not found: {name}"
        if value is not None and not _fits(types[name], value):
            return f"Invalid value for field {name}: {value!r}"
    geometry = feature.get("geometry")
    if geometry is not None:
        if schema.geometry_type is None:
            return "This table has no geometry."
        if not _geometry_fits(schema.geometry_type, geometry):
            return f"Invalid geometry for {schema.geometry_type}."
    return None


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(field_type: str, value: Any) -> bool:
    if field_type in _INTEGER_TYPES:
        return _is_whole(value)
    if field_type in _NUMBER_TYPES:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if field_type in _TEXT_TYPES:
        return isinstance(value, str)
    if field_type in _ISO_TYPES:
        return isinstance(value, str) and _is_iso(field_type, value)
    return True


def _is_iso(field_type: str, value: str) -> bool:
    try:
        parsed = _ISO_TYPES[field_type](value)
    except ValueError:
        return False
    return not isinstance(parsed, datetime.datetime) or parsed.utcoffset() is not None


def _geometry_fits(geometry_type: str, geometry: Any) -> bool:
    if not isinstance(geometry, Mapping):
        return False
    key = _GEOMETRY_KEYS.get(geometry_type)
    if key == "x":
        return all(
            isinstance(geometry.get(k), int | float) and not isinstance(geometry.get(k), bool)
            for k in ("x", "y")
        )
    if key is None or not isinstance(geometry.get(key), list):
        return False
    parts = geometry[key] if key != "points" else [geometry[key]]
    return all(
        isinstance(part, list)
        and all(
            isinstance(point, list)
            and len(point) >= 2
            and all(isinstance(c, int | float) and not isinstance(c, bool) for c in point)
            for point in part
        )
        for part in parts
    )


def _object_id(feature: Any, field: str) -> int | None:
    if isinstance(feature, Mapping) and isinstance(feature.get("attributes"), Mapping):
        oid = feature["attributes"].get(field)
        if _is_whole(oid):
            return int(oid)
    return None


def _success(oid: int, row: dict[str, Any], global_id: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"objectId": oid}
    if global_id is not None:
        result["globalId"] = row["attributes"].get(global_id)
    result["success"] = True
    return result


def _failure(oid: int | None, code: int, description: str) -> dict[str, Any]:
    return {"objectId": oid, "success": False, "error": {"code": code, "description": description}}


def new_global_id(rng: random.Random) -> str:
    """A GlobalID drawn from *rng*, in braces and upper case as ArcGIS writes them."""
    return "{" + str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper() + "}"


def copy_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a stored feature whose attributes can be changed without harm."""
    copy: dict[str, Any] = {"attributes": dict(row["attributes"])}
    if "geometry" in row:
        copy["geometry"] = row["geometry"]
    return copy
