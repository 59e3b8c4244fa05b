"""What FakeArcGIS says about itself: portal and server info, the catalog, and the
metadata of services and layers.

Each function builds one answer's JSON data from the emulator's state; the emulator
checks tokens before asking for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._changes import change_tracking_info, extract_changes_capabilities, tracks_changes
from ._data import FakeLayer, FakeService
from ._tokens import ServerKind
from ._wire import Refusal, Request

__all__ = [
    "CURRENT_VERSION",
    "all_layers",
    "catalog",
    "layer_metadata",
    "portal_info",
    "server_info",
    "service_info",
]

CURRENT_VERSION = 11.3


def portal_info(request: Request) -> dict[str, Any]:
    """The portal's ``/sharing/rest/info``."""
    return {
        "owningSystemUrl": request.origin,
        "authInfo": {
            "isTokenBasedSecurity": True,
            "tokenServicesUrl": f"{request.origin}/sharing/rest/generateToken",
        },
    }


def server_info(request: Request, *, site: str, server: ServerKind) -> dict[str, Any]:
    """The server's ``/<site>/rest/info``: where its tokens come from."""
    return {
        "currentVersion": CURRENT_VERSION,
        "fullVersion": "11.3.0",
        **({"owningSystemUrl": request.origin} if server != "standalone" else {}),
        "authInfo": {
            "isTokenBasedSecurity": True,
            "tokenServicesUrl": (
                f"{request.origin}/{site}/tokens/generateToken"
                if server == "standalone"
                else f"{request.origin}/sharing/rest/generateToken"
            ),
            "shortLivedTokenValidity": 60,
        },
    }


def catalog(services: Iterable[FakeService], folder: str, *, signed_in: bool) -> dict[str, Any]:
    """The services catalog of *folder* (``""``: the root); secured services are listed
    only to the signed-in."""
    prefix = f"{folder}/" if folder else ""
    folders = set()
    listed = []
    exists = not folder
    for service in services:
        if not service.name.startswith(prefix):
            continue
        exists = True
        rest = service.name[len(prefix) :]
        if "/" in rest:
            folders.add(rest.split("/", 1)[0])
        elif signed_in or not service.secured:
            listed.append({"name": service.name, "type": service.kind})
    if not exists:
        raise Refusal(400, "Invalid URL", ["Invalid URL"])
    return {"currentVersion": CURRENT_VERSION, "folders": sorted(folders), "services": listed}


def service_info(service: FakeService, *, return_updates: bool = False) -> dict[str, Any]:
    """A FeatureServer's or MapServer's metadata; with *return_updates*, a service with
    ``ChangeTracking`` adds its ``changeTrackingInfo``."""
    layers = list(service.layers.values())
    extents = [layer.extent() for layer in layers if layer.geometry_type]
    body: dict[str, Any] = {
        "currentVersion": CURRENT_VERSION,
        "serviceDescription": "",
        "capabilities": layers[0].capabilities if layers else "Query",
        "maxRecordCount": max((layer.max_record_count for layer in layers), default=1000),
        "supportedQueryFormats": "JSON, geoJSON",
        "spatialReference": layers[0].spatial_reference if layers else None,
        "layers": [
            {"id": layer.id, "name": layer.name, "geometryType": layer.geometry_type}
            for layer in layers
            if layer.geometry_type
        ],
        "tables": [
            {"id": layer.id, "name": layer.name} for layer in layers if not layer.geometry_type
        ],
    }
    if extents:
        body["fullExtent"] = body["initialExtent"] = extents[0]
    if service.kind == "FeatureServer" and tracks_changes(layers):
        body["extractChangesCapabilities"] = extract_changes_capabilities()
        if return_updates:
            body["changeTrackingInfo"] = change_tracking_info(layers)
    if service.kind == "MapServer":
        body["mapName"] = service.name.rsplit("/", 1)[-1]
    return body


def all_layers(service: FakeService) -> dict[str, Any]:
    """A service's ``/layers``: the metadata of every layer and table."""
    layers = [layer_metadata(layer) for layer in service.layers.values()]
    return {
        "layers": [m for m in layers if m["geometryType"]],
        "tables": [m for m in layers if not m["geometryType"]],
    }


def layer_metadata(layer: FakeLayer) -> dict[str, Any]:
    """A layer's (or table's) metadata."""
    metadata: dict[str, Any] = {
        "currentVersion": CURRENT_VERSION,
        "id": layer.id,
        "name": layer.name,
        "type": "Feature Layer" if layer.geometry_type else "Table",
        "geometryType": layer.geometry_type,
        "objectIdField": layer.object_id_field,
        "globalIdField": next(
            (f["name"] for f in layer.fields if f["type"] == "esriFieldTypeGlobalID"), ""
        ),
        "fields": layer.fields,
        "maxRecordCount": layer.max_record_count,
        "standardMaxRecordCount": layer.max_record_count,
        "capabilities": layer.capabilities,
        "supportsStatistics": layer.supports_statistics,
        "supportsAdvancedQueries": True,
        "supportedQueryFormats": "JSON, geoJSON",
        "advancedQueryCapabilities": {
            "supportsPagination": layer.supports_pagination,
            "supportsOrderBy": layer.supports_order_by,
            "supportsStatistics": layer.supports_statistics,
            "supportsReturningQueryExtent": False,
            "supportsDistinct": False,
            "supportsQueryAttachments": layer.has_attachments and layer.supports_query_attachments,
        },
        "hasAttachments": layer.has_attachments,
        "supportsRollbackOnFailureParameter": True,
        "advancedEditingCapabilities": {
            "supportsAsyncApplyEdits": layer.supports_async_apply_edits,
        },
        "editFieldsInfo": layer.tracking.edit_fields_info(),
        "editingInfo": layer.tracking.editing_info(),
        **_subtypes(layer),
        "spatialReference": layer.spatial_reference,
    }
    if layer.geometry_type:
        metadata["extent"] = layer.extent()
    return metadata


def _subtypes(layer: FakeLayer) -> dict[str, Any]:
    """A layer's subtypes as 11.x servers describe them, and as older ones did."""
    if layer.subtype_field is None:
        return {}
    types = [
        {"id": s["code"], "name": s["name"], "domains": s.get("domains", {})}
        for s in layer.subtypes
    ]
    return {
        "subtypeField": layer.subtype_field,
        "subtypes": [dict(s) for s in layer.subtypes],
        "typeIdField": layer.subtype_field,
        "types": types,
    }
