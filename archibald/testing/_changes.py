"""Change tracking and editor tracking for FakeArcGIS, as hosted feature services keep them.

Each layer keeps a `LayerTracking`: its change log (every applied edit as a server
generation, an object id and a kind), the names of its editor-tracking fields, and the
dates its metadata shows under ``editingInfo``. `stamp_edits` fills the editor fields of
the features of one applyEdits call; `extract_changes` answers a service's
``extractChanges`` from the logs.

Choices where Esri's documentation is silent (see docs/testing.md, "Change tracking"):

- Generations are epoch milliseconds of the emulator's wall clock (without its skew),
  kept strictly increasing; one applyEdits call is one generation.
- Changes are net between two generations: added then updated is an add (current values),
  updated several times is one update, added then deleted is a delete (of an id the client
  may never have seen), anything then deleted is a delete.
- A generation older than the layer's ``minServerGen`` is refused (400, see
  `generation_expired`): the client must re-read the layer.
- ``layerQueries`` filter adds and updates by their current row; deletes are never
  filtered (the row is gone), so a filtered client sees deletes of ids it never had.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from ._wire import Refusal, Request, is_true, operation_refused

__all__ = [
    "ANONYMOUS_EDITOR",
    "EDITOR_FIELDS",
    "ChangeKind",
    "ChangeLog",
    "LayerTracking",
    "change_tracking_info",
    "extract_changes",
    "extract_changes_capabilities",
    "generation_expired",
    "stamp_edits",
    "tracks_changes",
]

ChangeKind = Literal["add", "update", "delete"]

# The editor an edit without a token records: the name ArcGIS Server is known to use for
# anonymous editors (Esri's REST docs do not say; a choice of FakeArcGIS).
ANONYMOUS_EDITOR = "esri_anonymous"

# The editor-tracking fields of a hosted layer, in editFieldsInfo's terms.
EDITOR_FIELDS: dict[str, dict[str, Any]] = {
    "creatorField": {"name": "created_user", "type": "esriFieldTypeString", "length": 128},
    "creationDateField": {"name": "created_date", "type": "esriFieldTypeDate", "length": 8},
    "editorField": {"name": "last_edited_user", "type": "esriFieldTypeString", "length": 128},
    "editDateField": {"name": "last_edited_date", "type": "esriFieldTypeDate", "length": 8},
}


@attrs.define(eq=False)
class ChangeLog:
    """A layer's applied edits, by server generation: what ``extractChanges`` reads.

    Attributes:
        min_server_gen: The oldest generation changes can be extracted from.
        server_gen: The generation of the layer's latest change (or of its creation).
    """

    min_server_gen: int
    server_gen: int
    entries: list[tuple[int, int, ChangeKind]] = attrs.Factory(list)

    def record(self, gen: int, changes: Iterable[tuple[int, ChangeKind]]) -> None:
        """Log *changes* (object id, kind) as made at generation *gen*."""
        for oid, kind in changes:
            self.entries.append((gen, oid, kind))
        self.server_gen = max(self.server_gen, gen)

    def cleanup(self, min_server_gen: int | None) -> None:
        """Forget the changes up to *min_server_gen* (default: all of them)."""
        floor = self.server_gen if min_server_gen is None else min_server_gen
        self.min_server_gen = max(self.min_server_gen, min(floor, self.server_gen))
        self.entries = [e for e in self.entries if e[0] > self.min_server_gen]

    def net(self, since: int, until: int) -> dict[int, ChangeKind]:
        """The net change of each object id after generation *since* up to *until*."""
        first: dict[int, ChangeKind] = {}
        last: dict[int, ChangeKind] = {}
        for gen, oid, kind in self.entries:
            if since < gen <= until:
                first.setdefault(oid, kind)
                last[oid] = kind
        net: dict[int, ChangeKind] = {}
        for oid, kind in last.items():
            if kind == "delete":
                net[oid] = "delete"
            elif first[oid] == "add":
                net[oid] = "add"
            else:
                net[oid] = "update"
        return dict(sorted(net.items()))


@attrs.define(eq=False)
class LayerTracking:
    """What a layer knows of its edits: its change log, editor fields and edit dates.

    Attributes:
        changes: The change log (kept for every editable layer; served by
            ``extractChanges`` only when its service has ``ChangeTracking``).
        edit_fields: ``editFieldsInfo`` role to field name when editor tracking is on,
            else None.
        data_last_edit_date: When the data last changed (epoch ms).
        schema_last_edit_date: When the fields last changed (epoch ms).
        high_water_oid: The highest object id ever given: never given again.
    """

    changes: ChangeLog
    edit_fields: dict[str, str] | None = None
    data_last_edit_date: int = 0
    schema_last_edit_date: int = 0
    high_water_oid: int = 0

    def editing_info(self) -> dict[str, Any]:
        """The layer metadata's ``editingInfo``, as ArcGIS Online shows it."""
        return {
            "lastEditDate": max(self.data_last_edit_date, self.schema_last_edit_date),
            "dataLastEditDate": self.data_last_edit_date,
            "schemaLastEditDate": self.schema_last_edit_date,
        }

    def edit_fields_info(self) -> dict[str, Any] | None:
        """The layer metadata's ``editFieldsInfo``, or None without editor tracking."""
        if self.edit_fields is None:
            return None
        return {**self.edit_fields, "dateFieldsTimeReference": {"timeZone": "UTC"}}


def stamp_edits(
    tracking: LayerTracking, adds: Sequence[Any], updates: Sequence[Any], *, user: str, at_ms: int
) -> tuple[list[Any], list[Any]]:
    """Copies of *adds* and *updates* with their editor fields set, as the server sets
    them whatever the client sent; items that are not features pass unchanged (and fail)."""
    if tracking.edit_fields is None:
        return list(adds), list(updates)
    names = tracking.edit_fields
    edited = {names["editorField"]: user, names["editDateField"]: at_ms}
    created = {names["creatorField"]: user, names["creationDateField"]: at_ms}

    def stamp(feature: Any, stamps: Mapping[str, Any]) -> Any:
        if not isinstance(feature, Mapping) or not isinstance(
            feature.get("attributes", {}), Mapping
        ):
            return feature
        return {**feature, "attributes": {**feature.get("attributes", {}), **stamps}}

    return (
        [stamp(f, {**created, **edited}) for f in adds],
        [stamp(f, edited) for f in updates],
    )


def extract_changes_capabilities() -> dict[str, bool]:
    """The service's ``extractChangesCapabilities``: what the emulator can extract."""
    return {
        "supportsReturnIdsOnly": True,
        "supportsReturnExtentOnly": False,
        "supportsReturnAttachments": False,
        "supportsLayerQueries": True,
        "supportsGeometry": False,
        "supportsFeatureReturn": True,
        "supportsReturnFeature": True,
        "supportsReturnHasGeometryUpdates": False,
        "supportsFieldsToCompare": False,
        "supportsServerGens": True,
    }


def change_tracking_info(layers: Iterable[Any]) -> dict[str, Any]:
    """A service's ``changeTrackingInfo`` (``?returnUpdates=true``): each layer's gens."""
    gens = [
        {
            "id": layer.id,
            "minServerGen": layer.tracking.changes.min_server_gen,
            "serverGen": layer.tracking.changes.server_gen,
        }
        for layer in layers
    ]
    return {
        "lastSyncDate": max((g["serverGen"] for g in gens), default=0),
        "layerServerGens": gens,
    }


def tracks_changes(layers: Sequence[Any]) -> bool:
    """Whether a service has ``ChangeTracking``: all its layers do (as Esri documents)."""
    return bool(layers) and all(
        "changetracking" in {c.strip().lower() for c in layer.capabilities.split(",")}
        for layer in layers
    )


def generation_expired(layer_id: int, gen: int, min_gen: int) -> Refusal:
    """The error for a generation older than what the layer still tracks (FakeArcGIS's
    choice: Esri documents none)."""
    return operation_refused(
        f"Invalid layerServerGens: serverGen {gen} of layer {layer_id} is older than its "
        f"minServerGen {min_gen}; the changes before it were cleaned up."
    )


def extract_changes(
    layers: Mapping[int, Any],
    request: Request,
    feature: Callable[[Any, int, bool], dict[str, Any]],
) -> dict[str, Any]:
    """The ``extractChanges`` answer for *request* over the service's *layers*.

    *feature* makes the Esri JSON of one row (layer, object id, with geometry?).
    """
    if request.method != "POST":
        raise operation_refused("extractChanges requires POST.")
    params = request.params
    data_format = params.get("dataFormat", "json").strip().lower() or "json"
    if data_format != "json":
        raise operation_refused(f"FakeArcGIS extracts changes as json only, not {data_format}.")
    wanted = _layer_ids(params.get("layers"), layers)
    since = _since(params, wanted, layers)
    queries = _json(params.get("layerQueries"), "layerQueries", {})
    if not isinstance(queries, dict):
        raise operation_refused("'layerQueries' parameter is invalid")
    ids_only = is_true(params.get("returnIdsOnly"))
    geometry = params.get("returnGeometry", "true").strip().lower() != "false"
    kinds = {
        "add": is_true(params.get("returnInserts")),
        "update": is_true(params.get("returnUpdates")),
        "delete": is_true(params.get("returnDeletes")),
    }
    gens, edits = [], []
    for layer_id in wanted:
        layer = layers[layer_id]
        log = layer.tracking.changes
        start, end = since[layer_id]
        end = log.server_gen if end is None else min(end, log.server_gen)
        net = log.net(start, end)
        net = _filtered(layer, net, queries.get(str(layer_id)))
        picked = {k: [oid for oid, kind in net.items() if kind == k and kinds[k]] for k in kinds}
        gens.append({"id": layer_id, "serverGen": end})
        if ids_only:
            ids = {"adds": picked["add"], "updates": picked["update"], "deletes": picked["delete"]}
            edits.append({"id": layer_id, "objectIds": ids})
        else:
            rows = {
                "adds": [feature(layer, oid, geometry) for oid in picked["add"]],
                "updates": [feature(layer, oid, geometry) for oid in picked["update"]],
                "deleteIds": picked["delete"],
            }
            edits.append({"id": layer_id, "features": rows})
    return {"layerServerGens": gens, "edits": edits}


def _json(value: str | None, name: str, default: Any) -> Any:
    if value is None or not value.strip():
        return default
    try:
        return json.loads(value)
    except ValueError as exc:
        raise operation_refused(f"'{name}' parameter is invalid") from exc


def _layer_ids(value: str | None, layers: Mapping[int, Any]) -> list[int]:
    """The ids of ``layers`` (``[0,1]`` or ``0,1``), each a layer of the service."""
    if value is None or not value.strip():
        raise operation_refused("'layers' parameter is required.")
    text = value.strip()
    try:
        ids = json.loads(text if text.startswith("[") else f"[{text}]")
    except ValueError as exc:
        raise operation_refused("'layers' parameter is invalid") from exc
    if not isinstance(ids, list) or not all(isinstance(i, int) and i in layers for i in ids):
        raise operation_refused(f"'layers' parameter is invalid: {text}")
    return list(dict.fromkeys(ids))


def _since(
    params: Mapping[str, str], wanted: list[int], layers: Mapping[int, Any]
) -> dict[int, tuple[int, int | None]]:
    """Each wanted layer's window (after *start*, up to *end* or the latest)."""
    windows: dict[int, tuple[int, int | None]] = {}
    per_layer = _json(params.get("layerServerGens"), "layerServerGens", None)
    both = _json(params.get("serverGens"), "serverGens", None)
    if per_layer is not None:
        if not isinstance(per_layer, list) or not all(
            isinstance(g, dict) and isinstance(g.get("serverGen"), int) for g in per_layer
        ):
            raise operation_refused("'layerServerGens' parameter is invalid")
        given = {g.get("id"): g["serverGen"] for g in per_layer}
        for layer_id in wanted:
            if layer_id not in given:
                raise operation_refused(f"'layerServerGens' has no serverGen for layer {layer_id}")
            windows[layer_id] = (given[layer_id], None)
    elif both is not None:
        if not (
            isinstance(both, list) and len(both) == 2 and all(isinstance(g, int) for g in both)
        ):
            raise operation_refused("'serverGens' parameter is invalid: give [start, end]")
        windows = dict.fromkeys(wanted, (both[0], both[1]))
    else:
        raise operation_refused("'layerServerGens' or 'serverGens' must be specified.")
    for layer_id, (start, _) in windows.items():
        floor = layers[layer_id].tracking.changes.min_server_gen
        if start < floor:
            raise generation_expired(layer_id, start, floor)
    return windows


def _filtered(layer: Any, net: dict[int, ChangeKind], query: Any) -> dict[int, ChangeKind]:
    """*net* narrowed by the layer's ``layerQueries`` entry (deletes are never filtered)."""
    if query is None:
        return net
    if not isinstance(query, dict):
        raise operation_refused("'layerQueries' parameter is invalid")
    option = str(query.get("queryOption", "useFilter")).lower()
    if option == "none":
        return {}
    if option == "all" or not str(query.get("where", "")).strip():
        return net
    if option != "usefilter":
        raise operation_refused(f"Invalid queryOption: {query.get('queryOption')}")
    kept = [oid for oid, kind in net.items() if kind != "delete"]
    try:
        matching = set(layer.matching_ids(str(query["where"]), kept, ""))
    except ValueError as exc:
        raise operation_refused(f"Invalid where clause in layerQueries: {exc}") from exc
    return {oid: kind for oid, kind in net.items() if kind == "delete" or oid in matching}
