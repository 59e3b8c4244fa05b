"""Esri JSON geometries as GeoPackage geometry blobs, and back (OGC 12-128r18, 2.1.3).

A blob is a small header (``GP``, version 0, flags, the srs_id, an optional envelope)
followed by ISO WKB. Writing goes through `esri_geometry_to_geojson`, the one home of the
rule for which polygon ring is a hole of which exterior; the GeoJSON-shaped result is
promoted to the table's one geometry type (a polyline is always a MULTILINESTRING, a
polygon a MULTIPOLYGON) and encoded little-endian, with an xy (or xyz) envelope except
for points, whose envelope is the point itself (as GDAL writes them).

Reading gives the Esri JSON a layer query answers with, normalized: rings closed, outer
rings clockwise and each followed by its holes (counter-clockwise), rings with no area
and M values dropped, no ``spatialReference`` or ``hasZ`` keys. The ``ST_*`` functions
that the R-tree triggers call read the envelope (or the point) and nothing else.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Mapping
from typing import Any

from ._geojson import GeometryError, _signed_area, esri_geometry_to_geojson

__all__ = [
    "GEOMETRY_TYPES",
    "decode",
    "encode",
    "envelope_functions",
]

#: ArcGIS geometry type -> the GeoPackage geometry type name of its column.
GEOMETRY_TYPES = {
    "esriGeometryPoint": "POINT",
    "esriGeometryMultipoint": "MULTIPOINT",
    "esriGeometryPolyline": "MULTILINESTRING",
    "esriGeometryPolygon": "MULTIPOLYGON",
}
_WKB_CODES = {
    "POINT": 1,
    "LINESTRING": 2,
    "POLYGON": 3,
    "MULTIPOINT": 4,
    "MULTILINESTRING": 5,
    "MULTIPOLYGON": 6,
}
_WKB_NAMES = {code: name for name, code in _WKB_CODES.items()}
_ENVELOPE_SIZES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}
_HEADER = struct.Struct("<2sBBi")
_LITTLE = 1
_EMPTY_FLAG = 0x10

Coordinates = Any  # nested lists of positions, as GeoJSON has them


def encode(
    geometry: Mapping[str, Any] | None, *, type_name: str, srs_id: int, has_z: bool
) -> bytes | None:
    """The GeoPackage blob of an Esri geometry, or None for a null or empty one.

    Positions get exactly two values, or three with *has_z* (a missing z is 0).

    Raises:
        GeometryError: The geometry cannot be converted, or is not of the column's type.
    """
    shape = esri_geometry_to_geojson(geometry, has_z=has_z)
    if shape is None:
        return None
    kind = shape["type"].upper()
    coordinates = shape["coordinates"]
    if kind != type_name:
        if type_name != "MULTI" + kind:
            raise GeometryError(f"a {kind} geometry does not fit a {type_name} column")
        coordinates = [coordinates]
    dims = 3 if has_z else 2
    depth = _DEPTHS[type_name]
    coordinates = _fit(coordinates, depth, dims)
    body = bytearray(struct.pack("<BI", _LITTLE, _WKB_CODES[type_name] + (1000 if has_z else 0)))
    _write(body, type_name, coordinates, dims)
    if type_name == "POINT":
        header = _HEADER.pack(b"GP", 0, _LITTLE, srs_id)
        return header + body
    flat = list(_positions(coordinates, depth))
    envelope = [min(p[0] for p in flat), max(p[0] for p in flat)]
    envelope += [min(p[1] for p in flat), max(p[1] for p in flat)]
    if has_z:
        envelope += [min(p[2] for p in flat), max(p[2] for p in flat)]
    flags = ((2 if has_z else 1) << 1) | _LITTLE
    header = _HEADER.pack(b"GP", 0, flags, srs_id) + struct.pack(f"<{len(envelope)}d", *envelope)
    return header + body


def decode(blob: bytes | None) -> dict[str, Any] | None:
    """The Esri JSON geometry of a GeoPackage blob (normalized as the module says).

    Raises:
        GeometryError: The blob is not a GeoPackage geometry.
    """
    if blob is None:
        return None
    try:
        kind, coordinates, has_z = _read_blob(bytes(blob))
    except (struct.error, KeyError, IndexError) as exc:
        raise GeometryError(f"not a GeoPackage geometry blob ({exc})") from exc
    if kind == "POINT":
        return _esri_point(coordinates, has_z)
    if kind in ("MULTIPOINT", "LINESTRING", "MULTILINESTRING"):
        key = "points" if kind == "MULTIPOINT" else "paths"
        parts = [coordinates] if kind == "LINESTRING" else coordinates
        parts = [part for part in parts if part]  # empty points (NaN) and empty lines
        return {key: parts} if parts else None
    polygons = [coordinates] if kind == "POLYGON" else coordinates
    rings = [ring for polygon in polygons for ring in _esri_rings(polygon)]
    return {"rings": rings} if rings else None


def _esri_point(coordinates: list[float] | None, has_z: bool) -> dict[str, Any] | None:
    if coordinates is None:
        return None
    point = {"x": coordinates[0], "y": coordinates[1]}
    if has_z:
        point["z"] = coordinates[2]
    return point


def envelope_functions() -> dict[str, Any]:
    """The ``ST_*`` SQL functions the R-tree triggers call, by name (each of one argument)."""

    def bound(index: int) -> Any:
        def function(blob: bytes | None) -> float | None:
            box = _envelope(blob)
            return None if box is None else box[index]

        return function

    return {
        "ST_IsEmpty": lambda blob: None if blob is None else int(_envelope(blob) is None),
        "ST_MinX": bound(0),
        "ST_MaxX": bound(1),
        "ST_MinY": bound(2),
        "ST_MaxY": bound(3),
    }


_DEPTHS = {
    "POINT": 0,
    "LINESTRING": 1,
    "MULTIPOINT": 1,
    "POLYGON": 2,
    "MULTILINESTRING": 2,
    "MULTIPOLYGON": 3,
}


def _fit(coordinates: Coordinates, depth: int, dims: int) -> Coordinates:
    """Every position cut or padded (z = 0) to *dims* values, as floats."""
    if depth == 0:
        position = [float(v) for v in coordinates[:dims]]
        return position + [0.0] * (dims - len(position))
    return [_fit(part, depth - 1, dims) for part in coordinates]


def _positions(coordinates: Coordinates, depth: int) -> Any:
    if depth == 1:
        yield from coordinates
    else:
        for part in coordinates:
            yield from _positions(part, depth - 1)


def _write(out: bytearray, kind: str, coordinates: Coordinates, dims: int) -> None:
    """The body of a WKB geometry whose byte order and type are already written."""
    if kind == "POINT":
        out += struct.pack(f"<{dims}d", *coordinates)
    elif kind == "LINESTRING":
        flat = [v for p in coordinates for v in p]
        out += struct.pack(f"<I{len(flat)}d", len(coordinates), *flat)
    elif kind == "POLYGON":
        out += struct.pack("<I", len(coordinates))
        for ring in coordinates:
            _write(out, "LINESTRING", ring, dims)
    else:
        part = kind.removeprefix("MULTI")
        code = _WKB_CODES[part] + (1000 if dims == 3 else 0)
        out += struct.pack("<I", len(coordinates))
        for item in coordinates:
            out += struct.pack("<BI", _LITTLE, code)
            _write(out, part, item, dims)


def _header(blob: bytes) -> tuple[str, int, int]:
    """The byte order (struct prefix), flags and the offset of the WKB in *blob*."""
    magic, version, flags, _ = _HEADER.unpack_from(blob)
    if magic != b"GP" or version != 0:
        raise KeyError("no GP magic")
    order = "<" if flags & 1 else ">"
    return order, flags, 8 + _ENVELOPE_SIZES[(flags >> 1) & 7]


def _read_blob(blob: bytes) -> tuple[str, Coordinates, bool]:
    _, _, offset = _header(blob)
    reader = _Reader(blob, offset)
    kind, coordinates, has_z = reader.geometry()
    return kind, coordinates, has_z


class _Reader:
    """ISO WKB (and the EWKB-style high bits some writers use) to nested positions."""

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = data
        self.offset = offset

    def _unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += struct.calcsize(fmt)
        return values

    def geometry(self) -> tuple[str, Coordinates, bool]:
        (order_byte,) = self._unpack("B")
        order = "<" if order_byte == 1 else ">"
        (code,) = self._unpack(order + "I")
        has_z = bool(code & 0x80000000) or (code % 10000) // 1000 in (1, 3)
        has_m = bool(code & 0x40000000) or (code % 10000) // 1000 in (2, 3)
        kind = _WKB_NAMES[(code & 0x0FFFFFFF) % 1000]
        stride = 2 + has_z + has_m
        keep = 3 if has_z else 2
        return kind, self._body(kind, order, stride, keep), has_z

    def _positions(self, order: str, stride: int, keep: int) -> list[list[float]]:
        (count,) = self._unpack(order + "I")
        flat = self._unpack(f"{order}{count * stride}d")
        return [list(flat[i : i + keep]) for i in range(0, count * stride, stride)]

    def _body(self, kind: str, order: str, stride: int, keep: int) -> Coordinates:
        if kind == "POINT":
            values = self._unpack(f"{order}{stride}d")
            return None if math.isnan(values[0]) else list(values[:keep])
        if kind == "LINESTRING":
            return self._positions(order, stride, keep)
        (count,) = self._unpack(order + "I")
        if kind == "POLYGON":
            return [self._positions(order, stride, keep) for _ in range(count)]
        return [self.geometry()[1] for _ in range(count)]


def _esri_rings(polygon: list[list[list[float]]]) -> list[list[list[float]]]:
    """A polygon's rings as Esri winds them: the outer one clockwise, holes not."""
    rings = []
    for index, ring in enumerate(polygon):
        if len(ring) < 4:
            continue
        clockwise = _signed_area(ring) < 0
        if clockwise != (index == 0):
            ring = ring[::-1]
        rings.append(ring)
    return rings


# The R-tree triggers ask ST_IsEmpty, ST_MinX, ST_MaxX, ST_MinY and ST_MaxY of each row
# in turn: the blob is read once for the five.
@functools.lru_cache(maxsize=64)
def _envelope(blob: bytes | None) -> tuple[float, float, float, float] | None:
    """(minx, maxx, miny, maxy) of a blob, or None if it is empty or not a blob."""
    if blob is None:
        return None
    try:
        order, flags, offset = _header(blob)
        if flags & _EMPTY_FLAG:
            return None
        if offset > 8:
            minx, maxx, miny, maxy = struct.unpack_from(order + "4d", blob, 8)
            return minx, maxx, miny, maxy
        kind, coordinates, _ = _read_blob(blob)
    except (struct.error, KeyError, IndexError):
        return None
    depth = _DEPTHS[kind]
    if depth == 0:
        if coordinates is None:
            return None
        return coordinates[0], coordinates[0], coordinates[1], coordinates[1]
    positions = [p for p in _positions(coordinates, depth) if p is not None]
    if not positions:
        return None
    xs = [p[0] for p in positions]
    ys = [p[1] for p in positions]
    return min(xs), max(xs), min(ys), max(ys)
