"""The query engine of FakeArcGIS: a layer's ``query`` endpoint.

It reads the parameters (where, objectIds, orderByFields, outFields, outSR, paging), asks
the layer for the matching ids, and answers counts, id lists, statistics, or a page of
features as Esri JSON or GeoJSON. The faults that bend a result (``page_cap``,
``unordered``, ``ignore_result_offset``, ``omit_false_transfer_limit``) act here, and
count themselves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from .._geojson import GeoJSONConverter
from ._data import FakeLayer
from ._faults import Faults
from ._statistics import Counters
from ._where import WhereError
from ._wire import (
    Refusal,
    Response,
    int_list_param,
    int_param,
    is_true,
    json_response,
    operation_refused,
    proxy_page,
    query_failed,
    with_features,
)

__all__ = ["answer_query", "extracted_feature", "statistics"]

# Query parameters FakeArcGIS does not implement: refused, rather than silently ignored.
_UNSUPPORTED_QUERY_PARAMETERS = (
    "geometry",
    "distance",
    "groupByFieldsForStatistics",
    "having",
    "returnDistinctValues",
    "returnExtentOnly",
    "quantizationParameters",
    "time",
)
_NUMERIC_FIELD_TYPES = frozenset(
    {
        "esriFieldTypeOID",
        "esriFieldTypeInteger",
        "esriFieldTypeSmallInteger",
        "esriFieldTypeBigInteger",
        "esriFieldTypeDouble",
        "esriFieldTypeSingle",
    }
)
_WEB_MERCATOR = (102100, 102113, 3857, 900913)


def answer_query(
    layer: FakeLayer, params: Mapping[str, str], *, faults: Faults, counters: Counters
) -> Response:
    """Answer a query of *layer* (its token already checked)."""
    fmt = params.get("f", "json").lower()
    _refuse_unsupported(params, fmt)
    object_ids = int_list_param(params.get("objectIds"), "objectIds")
    oids, ascending = _matching_ids(layer, params, object_ids, faults=faults, counters=counters)
    if is_true(params.get("returnCountOnly")):
        return json_response({"count": len(oids)})
    if is_true(params.get("returnIdsOnly")):
        return _id_list(layer, oids, ascending=ascending, counters=counters)
    if params.get("outStatistics"):
        spec = params["outStatistics"]
        return json_response(statistics(layer, oids, spec, ascending=ascending))
    offset, limit = _page_bounds(layer, params, faults=faults, counters=counters)
    page = oids[offset : offset + limit]
    # An objectIds list longer than a page is cut silently, as real servers do.
    exceeded = object_ids is None and offset + len(page) < len(oids)
    shape = _Shape.read(layer, params, fmt)
    encoded = _encoded(layer, page, shape)
    if fmt == "geojson":
        collection: dict[str, Any] = {"type": "FeatureCollection"}
        if exceeded:
            collection["properties"] = {"exceededTransferLimit": True}
        return with_features(collection, encoded, "application/geo+json")
    body = _esri_head(layer, shape)
    if exceeded or not faults.omit_false_transfer_limit:
        body["exceededTransferLimit"] = exceeded
    if shape.geometry:
        body["geometryType"] = layer.geometry_type
        body["spatialReference"] = shape.out_sr or layer.spatial_reference
    return with_features(body, encoded, "application/json")


def _refuse_unsupported(params: Mapping[str, str], fmt: str) -> None:
    if fmt == "pbf":
        raise operation_refused("f=pbf is not supported by FakeArcGIS.")
    for unsupported in _UNSUPPORTED_QUERY_PARAMETERS:
        if params.get(unsupported) not in (None, "", "false"):
            raise operation_refused(f"'{unsupported}' is not supported by FakeArcGIS.")


def _matching_ids(
    layer: FakeLayer,
    params: Mapping[str, str],
    object_ids: list[int] | None,
    *,
    faults: Faults,
    counters: Counters,
) -> tuple[Sequence[int], bool]:
    """The ids that match the where clause and objectIds, in the order asked for, and
    whether that order is ascending object ids."""
    order_by = params.get("orderByFields", "").strip()
    if order_by and not layer.supports_order_by:
        raise operation_refused("orderByFields is not supported.")
    where = params.get("where", "").strip()
    if not where and object_ids is None:
        raise operation_refused("'where' parameter is invalid")
    scrambled = not order_by and faults.unordered
    if scrambled:
        counters.faults_injected += 1
    try:
        oids = layer.matching_ids(where or "1=1", object_ids, order_by, scrambled)
    except WhereError as exc:
        raise operation_refused(f"'where' parameter is invalid: {exc}") from exc
    except ValueError as exc:
        raise operation_refused(str(exc)) from exc
    return oids, not order_by and not scrambled


def _id_list(
    layer: FakeLayer, oids: Sequence[int], *, ascending: bool, counters: Counters
) -> Response:
    """A ``returnIdsOnly`` answer, or the failure of a server asked for too many ids.

    The limit is checked on the length alone, before a lazy layer's range of ids
    becomes a list.
    """
    body: dict[str, Any] = {"objectIdFieldName": layer.object_id_field}
    limit = layer.id_list_limit
    if limit is not None and len(oids) > limit:
        counters.faults_injected += 1
        if layer.id_list_failure == "error":
            raise query_failed()
        if layer.id_list_failure == "timeout":
            return proxy_page(504, "Gateway Time-out")
        oids = oids[:limit] if ascending else sorted(oids)[:limit]
        body["exceededTransferLimit"] = True
    body["objectIds"] = list(oids)
    return json_response(body)


def _page_bounds(
    layer: FakeLayer, params: Mapping[str, str], *, faults: Faults, counters: Counters
) -> tuple[int, int]:
    """The offset and size of the page asked for, as the layer and the faults allow."""
    offset_text, count_text = params.get("resultOffset"), params.get("resultRecordCount")
    if (offset_text or count_text) and not layer.supports_pagination:
        raise operation_refused("Pagination is not supported.")
    offset = int_param(offset_text, "resultOffset") or 0
    if offset < 0:
        raise operation_refused("'resultOffset' must be >= 0")
    if faults.ignore_result_offset and offset:
        offset = 0
        counters.faults_injected += 1
    limit = layer.max_record_count
    requested = int_param(count_text, "resultRecordCount")
    if requested is not None and requested > 0:
        limit = min(limit, requested)
    if faults.page_cap is not None and faults.page_cap < limit:
        limit = faults.page_cap
        counters.faults_injected += 1
    return offset, limit


def _esri_head(layer: FakeLayer, shape: _Shape) -> dict[str, Any]:
    """The start of an Esri JSON feature set: id fields and the fields returned."""
    fields_by_name = {f["name"]: f for f in layer.fields}
    return {
        "objectIdFieldName": layer.object_id_field,
        "globalIdFieldName": next(
            (f["name"] for f in layer.fields if f["type"] == "esriFieldTypeGlobalID"), ""
        ),
        "fields": [fields_by_name[name] for name in shape.out_fields],
    }


# -- the features of a page ------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Shape:
    """How features are returned: which fields, with geometry or not, projected, as what."""

    out_fields: tuple[str, ...]
    geometry: bool
    out_sr: dict[str, Any] | None  # the projection to apply, or None for the layer's own
    geojson: bool

    @classmethod
    def read(cls, layer: FakeLayer, params: Mapping[str, str], fmt: str) -> _Shape:
        out_fields = _out_fields(layer, params.get("outFields"))
        geometry = is_true(params.get("returnGeometry", "true")) and layer.geometry_type is not None
        out_sr = _out_sr(layer, params.get("outSR"), fmt)
        return cls(
            out_fields=out_fields, geometry=geometry, out_sr=out_sr, geojson=fmt == "geojson"
        )


def _encoded(layer: FakeLayer, page: Sequence[int], shape: _Shape) -> list[bytes]:
    """The features of *page*, each encoded once per output shape and then reused."""
    key = (shape.out_fields, shape.geometry, shape.out_sr is not None, shape.geojson)
    cache = layer.fragments(key)
    encoded = []
    for oid in page:
        fragment = cache.get(oid)
        if fragment is None:
            feature = _feature(layer, oid, shape)
            if shape.geojson:
                feature = GeoJSONConverter().feature(feature, layer.object_id_field)
            fragment = cache[oid] = json.dumps(feature, separators=(",", ":")).encode()
        encoded.append(fragment)
    return encoded


def _feature(layer: FakeLayer, oid: int, shape: _Shape) -> dict[str, Any]:
    row = layer.row(oid)
    attributes = row["attributes"]
    feature: dict[str, Any] = {
        "attributes": {name: attributes.get(name) for name in shape.out_fields}
    }
    if shape.geometry and "geometry" in row:
        feature["geometry"] = row["geometry"]
        if shape.out_sr is not None:  # one of the two projections the emulator knows
            to_wgs84 = shape.out_sr.get("wkid") == 4326
            feature["geometry"] = (wgs84 if to_wgs84 else web_mercator)(row["geometry"])
    return feature


def extracted_feature(layer: FakeLayer, oid: int, geometry: bool) -> dict[str, Any]:
    """One feature as extractChanges returns it: every field, and its geometry if asked."""
    fields = tuple(f["name"] for f in layer.fields)
    shape = _Shape(out_fields=fields, geometry=geometry, out_sr=None, geojson=False)
    return _feature(layer, oid, shape)


def _out_fields(layer: FakeLayer, value: str | None) -> tuple[str, ...]:
    names = {f["name"].upper(): f["name"] for f in layer.fields}
    if value is None or not value.strip():
        return (layer.object_id_field,)
    wanted = [part.strip() for part in value.split(",") if part.strip()]
    if "*" in wanted:
        return tuple(f["name"] for f in layer.fields)
    result = []
    for part in wanted:
        name = names.get(part.upper())
        if name is None:
            raise operation_refused(f"Invalid field: {part}")
        result.append(name)
    return tuple(result)


def _out_sr(layer: FakeLayer, value: str | None, fmt: str) -> dict[str, Any] | None:
    if fmt == "geojson" or not value:
        return None
    try:
        wkid = int(json.loads(value)["wkid"]) if value.strip().startswith("{") else int(value)
    except (ValueError, KeyError, TypeError) as exc:
        raise operation_refused("Invalid outSR.") from exc
    own = layer.spatial_reference.get("wkid")
    if wkid == own or (wkid in _WEB_MERCATOR and own in _WEB_MERCATOR):
        return None
    if wkid in _WEB_MERCATOR and own == 4326:
        return {"wkid": 102100, "latestWkid": 3857}
    if wkid == 4326 and own in _WEB_MERCATOR:
        return {"wkid": 4326, "latestWkid": 4326}
    raise operation_refused(f"FakeArcGIS cannot project to wkid {wkid}.")


# -- statistics --------------------------------------------------------------------------


def statistics(
    layer: FakeLayer, oids: Sequence[int], spec: str, *, ascending: bool = False
) -> dict[str, Any]:
    """The ``outStatistics`` answer over the features *oids*: one feature of results.

    ``min``, ``max`` and ``count`` of the object-id field come from the ids themselves,
    as a database answers them from its index: the first and last when *ascending*.
    """
    if not layer.supports_statistics:
        raise operation_refused("Statistics are not supported.")
    try:
        wanted = json.loads(spec)
    except ValueError as exc:
        raise _invalid_statistics() from exc
    if not isinstance(wanted, list) or not wanted:
        raise _invalid_statistics()
    fields_by_name = {f["name"].upper(): f for f in layer.fields}
    attributes: dict[str, Any] = {}
    out_fields = []
    for item in wanted:
        out_name, value, out_type = _statistic(layer, oids, item, fields_by_name, ascending)
        attributes[out_name] = value
        out_fields.append({"name": out_name, "type": out_type, "alias": out_name})
    return {"fields": out_fields, "features": [{"attributes": attributes}]}


def _statistic(
    layer: FakeLayer,
    oids: Sequence[int],
    item: Any,
    fields_by_name: Mapping[str, Any],
    ascending: bool,
) -> tuple[str, Any, str]:
    """One statistic: its output name, its value and its field type."""
    if not isinstance(item, dict):
        raise _invalid_statistics()
    kind = str(item.get("statisticType", "")).lower()
    field = fields_by_name.get(str(item.get("onStatisticField", "")).upper())
    if field is None or kind not in ("min", "max", "count", "sum", "avg"):
        raise _invalid_statistics()
    if kind in ("sum", "avg") and field["type"] not in _NUMERIC_FIELD_TYPES:
        raise operation_refused(
            f"'{kind}' needs a numeric field; {field['name']} is {field['type']}"
        )
    out_name = str(item.get("outStatisticFieldName") or f"{kind}_{field['name']}")
    if field["name"] == layer.object_id_field and kind in ("min", "max", "count"):
        result = _id_statistic(kind, oids, ascending)
    else:
        values = [layer.row(oid)["attributes"].get(field["name"]) for oid in oids]
        present = [v for v in values if v is not None]
        try:
            result = _compute(kind, present)
        except TypeError as exc:
            message = f"the values of {field['name']} cannot be compared"
            raise operation_refused(message) from exc
    if kind == "count":
        out_type = "esriFieldTypeInteger"
    elif kind in ("min", "max"):
        out_type = field["type"]
    else:
        out_type = "esriFieldTypeDouble"
    return out_name, result, out_type


def _id_statistic(kind: str, oids: Sequence[int], ascending: bool) -> int | None:
    """``min``, ``max`` or ``count`` of object ids (never NULL), without reading a row."""
    if kind == "count":
        return len(oids)
    if not oids:
        return None
    if ascending:
        return oids[0] if kind == "min" else oids[-1]
    return min(oids) if kind == "min" else max(oids)


def _compute(kind: str, present: list[Any]) -> Any:
    """The statistic *kind* of the non-NULL values *present*."""
    if kind == "count":
        return len(present)
    if not present:
        return None
    if kind == "min":
        return min(present)
    if kind == "max":
        return max(present)
    if kind == "sum":
        return sum(present)
    return sum(present) / len(present)


def _invalid_statistics() -> Refusal:
    return operation_refused("'outStatistics' parameter is invalid")


# -- projections (outSR) -----------------------------------------------------------------

_HALF_WORLD = 20037508.342789244
_EARTH_RADIUS = 6378137.0


def web_mercator(geometry: Mapping[str, Any]) -> dict[str, Any]:
    """Project a WGS84 Esri geometry to Web Mercator (wkid 102100 / 3857)."""

    def project(point: Sequence[float]) -> list[float]:
        x = point[0] * _HALF_WORLD / 180.0
        lat = max(min(point[1], 89.9), -89.9)
        y = math.log(math.tan((90.0 + lat) * math.pi / 360.0)) * _EARTH_RADIUS
        return [round(x, 3), round(y, 3), *point[2:]]

    return _map_points(geometry, project)


def wgs84(geometry: Mapping[str, Any]) -> dict[str, Any]:
    """Project a Web Mercator Esri geometry back to WGS84 (wkid 4326)."""

    def project(point: Sequence[float]) -> list[float]:
        lon = point[0] * 180.0 / _HALF_WORLD
        lat = math.degrees(2 * math.atan(math.exp(point[1] / _EARTH_RADIUS)) - math.pi / 2)
        return [round(lon, 9), round(lat, 9), *point[2:]]

    return _map_points(geometry, project)


def _map_points(
    geometry: Mapping[str, Any], project: Callable[[Sequence[float]], list[float]]
) -> dict[str, Any]:
    if "x" in geometry:
        if geometry["x"] is None:
            return dict(geometry)
        x, y = project([geometry["x"], geometry["y"]])
        return {**geometry, "x": x, "y": y}
    result = dict(geometry)
    if "points" in geometry:
        result["points"] = [project(p) for p in geometry["points"]]
    for key in ("paths", "rings"):
        if key in geometry:
            result[key] = [[project(p) for p in part] for part in geometry[key]]
    return result
