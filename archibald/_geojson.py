"""Esri JSON geometries and features as GeoJSON (RFC 7946).

Esri polygons are a flat list of rings: outer rings run clockwise, holes counter-clockwise,
and nothing says which hole belongs to which outer ring. GeoJSON wants each polygon's
outer ring (counter-clockwise) followed by its holes (clockwise). So rings are classified
by the sign of their area, and each hole goes to the smallest outer ring that contains it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["esri_feature_to_geojson", "esri_geometry_to_geojson"]

Ring = Sequence[Sequence[float]]


def esri_geometry_to_geojson(geometry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Convert one Esri JSON geometry to a GeoJSON geometry (None stays None).

    Raises:
        ValueError: The geometry has none of the keys Esri geometries have.
    """
    if not geometry:
        return None
    if "x" in geometry:
        if geometry["x"] is None or geometry.get("y") is None:  # an empty point
            return None
        coords = [geometry["x"], geometry["y"]]
        if geometry.get("z") is not None:
            coords.append(geometry["z"])
        return {"type": "Point", "coordinates": coords}
    if "points" in geometry:
        return {"type": "MultiPoint", "coordinates": [list(p) for p in geometry["points"]]}
    if "paths" in geometry:
        paths = [[list(p) for p in path] for path in geometry["paths"] if path]
        if not paths:
            return None
        if len(paths) == 1:
            return {"type": "LineString", "coordinates": paths[0]}
        return {"type": "MultiLineString", "coordinates": paths}
    if "rings" in geometry:
        polygons = _polygons(geometry["rings"])
        if not polygons:
            return None
        if len(polygons) == 1:
            return {"type": "Polygon", "coordinates": polygons[0]}
        return {"type": "MultiPolygon", "coordinates": polygons}
    raise ValueError(f"not an Esri geometry: keys {sorted(geometry)}")


def esri_feature_to_geojson(
    feature: Mapping[str, Any], object_id_field: str | None = None
) -> dict[str, Any]:
    """Convert one Esri JSON feature to a GeoJSON Feature, its object id as the ``id``."""
    attributes = dict(feature.get("attributes") or {})
    result: dict[str, Any] = {"type": "Feature"}
    if object_id_field is not None and attributes.get(object_id_field) is not None:
        result["id"] = attributes[object_id_field]
    result["geometry"] = esri_geometry_to_geojson(feature.get("geometry"))
    result["properties"] = attributes
    return result


def _signed_area(ring: Ring) -> float:
    """Twice the signed area: negative for clockwise rings (x right, y up)."""
    total = 0.0
    for (x1, y1, *_), (x2, y2, *_) in itertools.pairwise(ring):
        total += x1 * y2 - x2 * y1
    return total


def _contains(ring: Ring, point: Sequence[float]) -> bool:
    """Even-odd point-in-ring test."""
    x, y = point[0], point[1]
    inside = False
    for (x1, y1, *_), (x2, y2, *_) in itertools.pairwise(ring):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _polygons(rings: Sequence[Ring]) -> list[list[list[list[float]]]]:
    closed = [_closed([list(p) for p in ring]) for ring in rings if len(ring) >= 3]
    outers = [ring for ring in closed if _signed_area(ring) < 0]
    holes = [ring for ring in closed if _signed_area(ring) >= 0]
    if not outers:  # wrongly wound data: every ring is an outer ring, already CCW
        return [[ring] for ring in holes]
    polygons: list[list[list[list[float]]]] = [[ring[::-1]] for ring in outers]  # to CCW
    for hole in holes:
        owners = [i for i, outer in enumerate(outers) if _contains(outer, hole[0])]
        if owners:
            smallest = min(owners, key=lambda i: abs(_signed_area(outers[i])))
            polygons[smallest].append(hole[::-1])  # to CW
        else:  # a counter-clockwise ring inside nothing: an outer ring wound the other way
            polygons.append([hole])
    return polygons


def _closed(ring: list[list[float]]) -> list[list[float]]:
    return ring if ring[0] == ring[-1] else [*ring, ring[0]]
