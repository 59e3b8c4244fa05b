"""Esri JSON geometries and features as GeoJSON (RFC 7946), and GeoJSON geometries as
Esri JSON (for edits).

Esri polygons are a flat list of rings: outer rings run clockwise, holes counter-clockwise,
and nothing says which hole belongs to which outer ring. GeoJSON wants each polygon's
outer ring (counter-clockwise) followed by its holes (clockwise). So rings are classified
by the sign of their area, and each hole goes to the smallest outer ring that contains it.

The rules for what real servers send (each one seen in the wild):

- A ring needs four positions once closed (RFC 7946 3.1.6); a ring that closes on itself
  sooner (A-B-A) has no area and is dropped, and a line needs two positions. A geometry
  with nothing left is null.
- An empty point is ``{"x": "NaN", ...}`` or ``{"x": null, ...}``: null.
- Positions keep x, y and z. The third value of an Esri position is M, not z, when the
  answer says ``hasM`` without ``hasZ``; M never reaches GeoJSON, which has no place for it.
- A geometry that cannot be converted (strings or booleans for numbers, infinities, an
  envelope whose minimum is above its maximum, unknown shapes) raises `GeometryError`
  here; `GeoJSONConverter` turns that into a null geometry and a count the caller can
  read, so one bad row never stops a crawl.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ._validate import is_number

__all__ = [
    "GeoJSONConverter",
    "GeometryError",
    "esri_feature_to_geojson",
    "esri_geometry_to_geojson",
    "geojson_geometry_to_esri",
]

logger = logging.getLogger("archibald")

Position = list[float]
Ring = list[Position]

_EMPTY = (None, "NaN", "nan")
_NUMBER_TYPES = frozenset({int, float})


class GeometryError(ValueError):
    """An Esri geometry that has no GeoJSON equivalent (bad numbers, unknown shape)."""


def esri_geometry_to_geojson(
    geometry: Mapping[str, Any] | None,
    *,
    has_z: bool | None = None,
    has_m: bool | None = None,
) -> dict[str, Any] | None:
    """Convert one Esri JSON geometry to a GeoJSON geometry; an empty one becomes None.

    The result's positions may be the input's own lists (copying them would cost a
    crawl a third of its conversion time): copy before changing them in place.

    Args:
        geometry: The Esri geometry.
        has_z: Whether positions carry z (the answer's ``hasZ``), if known.
        has_m: Whether positions carry M (the answer's ``hasM``), if known. With M and no
            z, the third value of a position is M and is left out.

    Raises:
        GeometryError: The geometry cannot be converted.
    """
    if not geometry:
        return None
    if not isinstance(geometry, Mapping):
        raise GeometryError(f"not an Esri geometry: a {type(geometry).__name__}")
    has_z = geometry.get("hasZ", has_z)
    has_m = geometry.get("hasM", has_m)
    keep = 3 if has_z or (has_z is None and not has_m) else 2
    try:
        if "x" in geometry:  # a point names its z: no need to guess from hasM
            return _point(geometry, keep=has_z is not False)
        return _convert(geometry, keep)
    except GeometryError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, ArithmeticError) as exc:
        raise GeometryError(f"not a valid Esri geometry ({type(exc).__name__}: {exc})") from exc


def esri_feature_to_geojson(
    feature: Mapping[str, Any],
    object_id_field: str | None = None,
    *,
    has_z: bool | None = None,
    has_m: bool | None = None,
) -> dict[str, Any]:
    """Convert one Esri JSON feature to a GeoJSON Feature, its object id as the ``id``.

    Raises:
        GeometryError: The geometry cannot be converted (see `GeoJSONConverter` for a
            converter that writes null instead).
    """
    geometry = esri_geometry_to_geojson(feature.get("geometry"), has_z=has_z, has_m=has_m)
    return _feature(feature, object_id_field, geometry)


class GeoJSONConverter:
    """Converts Esri features to GeoJSON, never failing on a bad geometry.

    A geometry that cannot be converted becomes a null geometry (the attributes are kept),
    is counted in `unconvertible`, and is logged once per converter.
    """

    def __init__(self) -> None:
        self.unconvertible = 0

    def feature(
        self,
        feature: Mapping[str, Any],
        object_id_field: str | None = None,
        *,
        has_z: bool | None = None,
        has_m: bool | None = None,
    ) -> dict[str, Any]:
        """The GeoJSON Feature for *feature* (arguments as for `esri_feature_to_geojson`)."""
        try:
            return esri_feature_to_geojson(feature, object_id_field, has_z=has_z, has_m=has_m)
        except GeometryError as exc:
            self.unconvertible += 1
            if self.unconvertible == 1:
                oid = (feature.get("attributes") or {}).get(object_id_field or "")
                logger.warning(
                    "a geometry could not be converted to GeoJSON and is written as null "
                    "(object id %s): %s",
                    oid,
                    exc,
                )
            return _feature(feature, object_id_field, None)


def _feature(
    feature: Mapping[str, Any], object_id_field: str | None, geometry: dict[str, Any] | None
) -> dict[str, Any]:
    attributes = dict(feature.get("attributes") or {})
    result: dict[str, Any] = {"type": "Feature"}
    if object_id_field is not None and attributes.get(object_id_field) is not None:
        result["id"] = attributes[object_id_field]
    result["geometry"] = geometry
    result["properties"] = attributes
    return result


def _convert(geometry: Mapping[str, Any], keep: int) -> dict[str, Any] | None:
    if "rings" in geometry:
        polygons = _polygons(geometry["rings"], keep)
        if not polygons:
            return None
        if len(polygons) == 1:
            return {"type": "Polygon", "coordinates": polygons[0]}
        return {"type": "MultiPolygon", "coordinates": polygons}
    if "paths" in geometry:
        lines = (_positions(path, keep) for path in _list(geometry["paths"]))
        paths = [line for line in lines if len(line) >= 2]
        if not paths:
            return None
        if len(paths) == 1:
            return {"type": "LineString", "coordinates": paths[0]}
        return {"type": "MultiLineString", "coordinates": paths}
    if "points" in geometry:
        points = _positions(geometry["points"], keep)
        return {"type": "MultiPoint", "coordinates": points} if points else None
    if "xmin" in geometry:
        return _envelope(geometry)
    raise GeometryError(f"not an Esri geometry: keys {sorted(geometry)}")


def _point(geometry: Mapping[str, Any], *, keep: bool) -> dict[str, Any] | None:
    x, y = geometry["x"], geometry.get("y")
    if _is_empty(x) or _is_empty(y):
        return None
    coordinates = [_number(x), _number(y)]
    z = geometry.get("z")
    if keep and z is not None and not _is_empty(z):
        coordinates.append(_number(z))
    return {"type": "Point", "coordinates": coordinates}


def _envelope(geometry: Mapping[str, Any]) -> dict[str, Any] | None:
    values = [geometry.get(k) for k in ("xmin", "ymin", "xmax", "ymax")]
    if any(_is_empty(v) for v in values):
        return None
    xmin, ymin, xmax, ymax = (_number(v) for v in values)
    if xmin > xmax or ymin > ymax:  # wrapped across the antimeridian, or just wrong
        raise GeometryError(f"an envelope with its minimum above its maximum: {values}")
    ring = [[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax], [xmin, ymin]]
    return {"type": "Polygon", "coordinates": [ring]}


def _is_empty(value: object) -> bool:
    return value in _EMPTY or (isinstance(value, float) and math.isnan(value))


def _number(value: object) -> float:
    if not is_number(value) or not math.isfinite(value):
        raise GeometryError(f"a coordinate is not a finite number: {value!r}")
    return value


def _list(value: object) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise GeometryError(f"expected a list of coordinates, got a {type(value).__name__}")
    return value


def _positions(raw: object, keep: int) -> list[Position]:
    """Positions cut to *keep* values, each checked to hold finite numbers."""
    positions = [p if len(p) <= keep else p[:keep] for p in _list(raw)]
    _check_numbers(positions)
    return positions


def _check_numbers(positions: list[Position], *, finite: bool = True) -> None:
    """Raise unless every position has x and y and every value is a number (not a bool,
    which Python would count as one), and, if *finite*, a finite one: the types at once,
    then one sum (an area, which overflows as its sum does, may stand in for it)."""
    if min(map(len, positions), default=2) < 2:
        short = next(p for p in positions if len(p) < 2)
        raise GeometryError(f"a position needs x and y, got {short!r}")
    values = itertools.chain.from_iterable
    if not _NUMBER_TYPES.issuperset(map(type, values(positions))):
        bad = next(v for v in values(positions) if type(v) not in _NUMBER_TYPES)
        raise GeometryError(f"a coordinate is not a number: {bad!r}")
    if finite and not math.isfinite(sum(values(positions))):
        raise GeometryError("a coordinate is not a finite number")


def _signed_area(ring: Ring) -> float:
    """Twice the signed area: negative for clockwise rings (x right, y up)."""
    total = 0.0
    x1, y1 = ring[0][0], ring[0][1]
    for position in ring[1:]:
        x2, y2 = position[0], position[1]
        total += x1 * y2 - x2 * y1
        x1, y1 = x2, y2
    return total


def _contains(ring: Ring, point: Sequence[float]) -> bool:
    """Even-odd point-in-ring test."""
    x, y = point[0], point[1]
    inside = False
    x1, y1 = ring[0][0], ring[0][1]
    for position in ring[1:]:
        x2, y2 = position[0], position[1]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
        x1, y1 = x2, y2
    return inside


def _polygons(raw_rings: object, keep: int) -> list[list[Ring]]:
    outers: list[tuple[Ring, float]] = []
    holes: list[Ring] = []
    for raw in _list(raw_rings):
        ring = [p if len(p) <= keep else p[:keep] for p in _list(raw)]
        if ring and ring[0] != ring[-1]:
            ring.append(ring[0])
        if len(ring) < 4:  # no area: A-B-A, or fewer positions still
            continue
        _check_numbers(ring, finite=keep == 3)  # x and y: the area's check below
        area = _signed_area(ring)
        if not math.isfinite(area):
            raise GeometryError("a coordinate is not a finite number")
        if area < 0:
            ring.reverse()  # clockwise outer ring to GeoJSON's counter-clockwise
            outers.append((ring, -area))
        else:
            holes.append(ring)
    if not outers:  # wrongly wound data: every ring is an outer ring, already CCW
        return [[ring] for ring in holes]
    polygons: list[list[Ring]] = [[ring] for ring, _ in outers]
    for hole in holes:
        owners = [i for i, (outer, _) in enumerate(outers) if _contains(outer, hole[0])]
        hole.reverse()  # to GeoJSON's clockwise
        if owners:
            smallest = min(owners, key=lambda i: outers[i][1])
            polygons[smallest].append(hole)
        else:  # a counter-clockwise ring inside nothing: an outer ring wound the other way
            hole.reverse()
            polygons.append([hole])
    return polygons


# -- GeoJSON to Esri JSON (edits) -------------------------------------------------------


def geojson_geometry_to_esri(
    geometry: Mapping[str, Any] | None, spatial_reference: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """Convert one GeoJSON geometry to an Esri JSON geometry (None stays None).

    Polygon rings are wound as Esri wants them whatever their winding in the input:
    every polygon's exterior clockwise, its holes counter-clockwise (the same signed
    area that reads Esri rings). Rings are closed if they are not. *spatial_reference*
    (``{"wkid": 4326}``), if given, is set on the geometry, so that a server whose layer
    has another one projects it.

    Raises:
        GeometryError: Not a GeoJSON geometry of a kind Esri has (a
            GeometryCollection has none), or a coordinate that is not a finite number.
    """
    if geometry is None:
        return None
    if not isinstance(geometry, Mapping):
        raise GeometryError(f"not a GeoJSON geometry: a {type(geometry).__name__}")
    kind = geometry.get("type")
    try:
        esri = _to_esri(kind, geometry.get("coordinates"))
    except (TypeError, IndexError) as exc:
        raise GeometryError(f"not a valid GeoJSON {kind} ({type(exc).__name__})") from exc
    if spatial_reference is not None:
        esri["spatialReference"] = dict(spatial_reference)
    return esri


def _to_esri(kind: object, coordinates: Any) -> dict[str, Any]:
    if kind == "Point":
        position = _positions([coordinates], 3)[0]
        point: dict[str, Any] = {"x": position[0], "y": position[1]}
        if len(position) > 2:
            point["z"] = position[2]
        return point
    if kind == "MultiPoint":
        return _with_z({"points": _checked(coordinates)})
    if kind == "LineString":
        return _with_z({"paths": [_checked(coordinates)]})
    if kind == "MultiLineString":
        return _with_z({"paths": [_checked(line) for line in _list(coordinates)]})
    if kind == "Polygon":
        return _with_z({"rings": _esri_rings(_list(coordinates))})
    if kind == "MultiPolygon":
        rings = [r for polygon in _list(coordinates) for r in _esri_rings(_list(polygon))]
        return _with_z({"rings": rings})
    raise GeometryError(f"GeoJSON {kind!r} has no Esri equivalent")


def _checked(raw: object) -> list[Position]:
    return _positions(raw, 3)  # x, y and z: GeoJSON has no M


def _with_z(esri: dict[str, Any]) -> dict[str, Any]:
    """*esri* marked ``hasZ`` when a position has a third value."""
    parts = [esri["points"]] if "points" in esri else esri.get("paths") or esri.get("rings")
    if any(len(p) > 2 for part in parts or () for p in part):
        esri["hasZ"] = True
    return esri


def _esri_rings(rings: Sequence[Any]) -> list[Ring]:
    """A GeoJSON polygon's rings (exterior first) wound as Esri wants them."""
    wound = []
    for index, raw in enumerate(rings):
        ring = _checked(raw)
        if ring and ring[0] != ring[-1]:
            ring.append(ring[0])
        if len(ring) < 4:
            raise GeometryError("a polygon ring needs at least three distinct positions")
        clockwise = _signed_area(ring) < 0
        if clockwise != (index == 0):  # exterior clockwise, holes counter-clockwise
            ring.reverse()
        wound.append(ring)
    return wound
