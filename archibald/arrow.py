"""A layer's features as Arrow: one `pyarrow.RecordBatch` per page, one schema per crawl.

`FeatureLayer.record_batches` and `FeatureLayer.to_arrow` import this module when they are
called, so ``import archibald`` never imports pyarrow. The schema comes from the layer's
field list, never from the values: a page of nulls has the same schema as any other, and a
value that does not fit its field's type is an error naming the field and the object id
(`ServiceError`), never a silently changed value.

Geometries become one WKB column, ``geometry`` (ISO WKB, as GeoParquet 1.1 asks), made by
shapely from the GeoJSON that `archibald._geojson` makes of the Esri JSON: one rule for
which hole belongs to which exterior, wherever features are converted. The schema carries
GeoParquet 1.1 metadata (its ``geo`` key), so a table written with ``pyarrow.parquet`` is
a GeoParquet file.

Needs the ``arrow`` extra (``pip install 'archibald[arrow]'``); a coordinate reference
system other than WGS84 is written as PROJJSON only when pyproj is installed.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs
import orjson

from ._geojson import GeometryError, esri_geometry_to_geojson
from ._validate import is_whole
from .exceptions import ServiceError
from .layers._model import wkid_of
from .layers._options import fields_param

try:
    import pyarrow as pa
    import shapely
    import shapely.geometry
except ImportError as exc:  # one line that says what to install
    raise ImportError(
        "archibald's Arrow output needs pyarrow and shapely: pip install 'archibald[arrow]'"
    ) from exc

if TYPE_CHECKING:
    from .layers import LayerInfo, Page, PageStream

__all__ = ["GEOMETRY_COLUMN", "RecordBatchStream", "arrow_schema", "geo_metadata"]

logger = logging.getLogger("archibald")

GEOMETRY_COLUMN = "geometry"
"""The name of the WKB geometry column."""

_WGS84 = 4326
_LONG_OID = 8  # an OID field of length 8 holds 64-bit ids (11.2+)
_FLOAT32_MAX = 3.4028234663852886e38
# Esri geometry types -> the GeoJSON (and so WKB) types their conversion can give.
_WKB_TYPES = {
    "esriGeometryPoint": ("Point",),
    "esriGeometryMultipoint": ("MultiPoint",),
    "esriGeometryPolyline": ("LineString", "MultiLineString"),
    "esriGeometryPolygon": ("MultiPolygon", "Polygon"),
    "esriGeometryEnvelope": ("Polygon",),
}
# Field types a query never returns as an attribute value: left out of the schema.
_NOT_ATTRIBUTES = {"esriFieldTypeGeometry", "esriFieldTypeBlob", "esriFieldTypeRaster"}


class _Misfit(ValueError):
    """A value that does not fit its field's type (the message says why)."""


# -- values --------------------------------------------------------------------------------


def _whole(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not is_whole(value):
        raise _Misfit("not a whole number")
    return int(value)


def _integer(bits: int) -> Callable[[Any], int]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def convert(value: Any) -> int:
        number = _whole(value)
        if not low <= number <= high:
            raise _Misfit(f"outside the range of a {bits}-bit integer")
        return number

    return convert


def _double(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Misfit("not a number")
    return float(value)


def _single(value: Any) -> float:
    number = _double(value)
    if abs(number) > _FLOAT32_MAX and abs(number) != float("inf"):
        raise _Misfit("outside the range of a 32-bit float")
    return number


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Misfit("not a string")
    return value


def _epoch_ms(value: Any) -> int:
    return _integer(64)(value)


def _iso(parse: Callable[[str], Any], what: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        try:
            return parse(_string(value))
        except ValueError as exc:
            raise _Misfit(f"not an ISO 8601 {what}") from exc

    return convert


def _with_offset(value: Any) -> dict[str, Any]:
    moment = _iso(datetime.datetime.fromisoformat, "timestamp with offset")(value)
    offset = moment.utcoffset()
    if offset is None:
        raise _Misfit("a timestamp without a UTC offset")
    return {"utc": moment, "offset_minutes": int(offset.total_seconds() // 60)}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


_OFFSET_TYPE = pa.struct(
    [
        pa.field("utc", pa.timestamp("us", tz="UTC")),
        pa.field("offset_minutes", pa.int16()),
    ]
)
# Esri field type -> (Arrow type, converter of one non-null value).
_TYPES: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "esriFieldTypeOID": (pa.int32(), _integer(32)),
    "esriFieldTypeSmallInteger": (pa.int16(), _integer(16)),
    "esriFieldTypeInteger": (pa.int32(), _integer(32)),
    "esriFieldTypeBigInteger": (pa.int64(), _integer(64)),
    "esriFieldTypeDouble": (pa.float64(), _double),
    "esriFieldTypeSingle": (pa.float32(), _single),
    "esriFieldTypeString": (pa.string(), _string),
    "esriFieldTypeGUID": (pa.string(), _string),
    "esriFieldTypeGlobalID": (pa.string(), _string),
    "esriFieldTypeXML": (pa.string(), _string),
    "esriFieldTypeDate": (pa.timestamp("ms", tz="UTC"), _epoch_ms),
    "esriFieldTypeDateOnly": (pa.date32(), _iso(datetime.date.fromisoformat, "date")),
    "esriFieldTypeTimeOnly": (pa.time64("us"), _iso(datetime.time.fromisoformat, "time")),
    "esriFieldTypeTimestampOffset": (_OFFSET_TYPE, _with_offset),
}
_UNKNOWN = (pa.string(), _text)  # a type this table does not know: its values as text


@attrs.frozen
class _Column:
    name: str
    esri_type: str
    arrow_type: Any
    convert: Callable[[Any], Any]


def _column(field: Mapping[str, Any]) -> _Column:
    name, esri_type = str(field.get("name")), str(field.get("type"))
    arrow_type, convert = _TYPES.get(esri_type, _UNKNOWN)
    if esri_type == "esriFieldTypeOID" and field.get("length") == _LONG_OID:
        arrow_type, convert = pa.int64(), _integer(64)
    return _Column(name, esri_type, arrow_type, convert)


def _columns(info: LayerInfo, out_fields: str | Iterable[str], url: str) -> list[_Column]:
    asked = fields_param(out_fields, info, url)
    wanted = None if asked == "*" else {n.lower() for n in asked.split(",")}
    return [
        _column(field)
        for field in info.fields
        if field.get("type") not in _NOT_ATTRIBUTES
        and (wanted is None or str(field.get("name", "")).lower() in wanted)
    ]


# -- geometry -------------------------------------------------------------------------------


def _projjson(wkid: int | None, wkt: str | None) -> dict[str, Any] | None:
    """The PROJJSON of a coordinate reference system (pyproj's), or None: unknown."""
    try:
        import pyproj  # optional: without it, only WGS84 is written exactly
    except ImportError:
        logger.warning(
            "the GeoParquet metadata says the coordinate reference system (wkid %s) is "
            "unknown: install pyproj to write it as PROJJSON",
            wkid,
        )
        return None
    candidates = [("EPSG", wkid), ("ESRI", wkid)] if wkid is not None else []
    for authority, code in candidates:
        try:
            return dict(pyproj.CRS.from_authority(authority, str(code)).to_json_dict())
        except pyproj.exceptions.CRSError:
            continue
    if wkt:
        try:
            return dict(pyproj.CRS.from_wkt(wkt).to_json_dict())
        except pyproj.exceptions.CRSError:
            pass
    return None


def geo_metadata(info: LayerInfo, out_sr: int | None) -> dict[str, Any]:
    """The GeoParquet 1.1 ``geo`` metadata of a crawl of *info*'s layer.

    ``geometry_types`` are those the layer's geometry type can give (with their ``Z``
    forms when the layer says ``hasZ``); ``orientation`` is ``counterclockwise`` for
    polygons; ``crs`` is left out for WGS84 (which GeoParquet reads as OGC:CRS84), is
    PROJJSON from pyproj for another spatial reference (``EPSG:``, then ``ESRI:``, then
    the ``wkt``), and ``null`` (unknown) when pyproj is missing or does not know it.

    Args:
        info: The layer's metadata (``await layer.info()``).
        out_sr: The wkid asked for, if any; otherwise the layer's spatial reference
            (``latestWkid``, then ``wkid``) is the geometries'.
    """
    has_z = info.raw.get("hasZ") is True
    types = list(_WKB_TYPES.get(info.geometry_type or "", ()))
    if has_z:  # a position without z stays 2D: both are listed
        types = sorted([*types, *(f"{t} Z" for t in types)])
    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": types}
    wkid = wkid_of(info.spatial_reference, out_sr)
    if wkid != _WGS84:  # absent means OGC:CRS84: Esri's 4326 in x (longitude), y order
        wkt = (info.spatial_reference or {}).get("wkt") if out_sr is None else None
        column["crs"] = _projjson(wkid, wkt if isinstance(wkt, str) else None)
    if info.geometry_type in ("esriGeometryPolygon", "esriGeometryEnvelope"):
        column["orientation"] = "counterclockwise"  # see _Geometries.wkb
    return {
        "version": "1.1.0",
        "primary_column": GEOMETRY_COLUMN,
        "columns": {GEOMETRY_COLUMN: column},
    }


class _Geometries:
    """Esri JSON geometries to ISO WKB, through GeoJSON and shapely."""

    def __init__(self, info: LayerInfo) -> None:
        self._has_z = info.raw.get("hasZ") is True
        self._has_m = info.raw.get("hasM") is True
        self.unconvertible = 0

    def _shape(self, geometry: Any, oid: int) -> Any:
        try:
            geojson = esri_geometry_to_geojson(geometry, has_z=self._has_z, has_m=self._has_m)
            return None if geojson is None else shapely.geometry.shape(geojson)
        except (GeometryError, ValueError, shapely.errors.ShapelyError) as exc:
            self.unconvertible += 1
            if self.unconvertible == 1:
                logger.warning(
                    "a geometry could not be converted and is written as null (object id %s): %s",
                    oid,
                    exc,
                )
            return None

    def wkb(self, page: Page) -> Any:
        shapes = [
            self._shape(f.get("geometry"), oid)
            for f, oid in zip(page.features, page.object_ids, strict=True)
        ]
        # GeoJSON's winding already (exteriors counter-clockwise, holes clockwise); made
        # certain here, so the metadata may say so.
        shapes = shapely.orient_polygons(shapes, exterior_cw=False)
        dimension = 3 if self._has_z else 2
        wkb = shapely.to_wkb(shapes, output_dimension=dimension, flavor="iso")
        return pa.array(wkb.tolist(), type=pa.binary())


# -- the schema and the batches -------------------------------------------------------------


def arrow_schema(
    info: LayerInfo,
    out_fields: str | Iterable[str] = "*",
    *,
    return_geometry: bool = True,
    out_sr: int | None = None,
) -> pa.Schema:
    """The schema of the record batches of a crawl of the layer *info* describes.

    Args:
        info: The layer's metadata (``await layer.info()``).
        out_fields: As for `FeatureLayer.record_batches`.
        return_geometry: Whether there is a ``geometry`` column (never on a table).
        out_sr: The wkid asked for, if any (it sets the GeoParquet ``crs``).
    """
    return _Batcher(info, out_fields, return_geometry=return_geometry, out_sr=out_sr).schema


class _Batcher:
    """Pages to record batches, for one crawl."""

    def __init__(
        self,
        info: LayerInfo,
        out_fields: str | Iterable[str],
        *,
        return_geometry: bool,
        out_sr: int | None,
        url: str = "",
    ) -> None:
        self._url = url
        self._columns = _columns(info, out_fields, url or f"layer {info.name!r}")
        fields = [
            pa.field(c.name, c.arrow_type, nullable=c.name != info.object_id_field)
            for c in self._columns
        ]
        self.geometries = _Geometries(info) if return_geometry and info.geometry_type else None
        metadata = None
        if self.geometries is not None:
            fields.append(pa.field(GEOMETRY_COLUMN, pa.binary()))
            metadata = {b"geo": orjson.dumps(geo_metadata(info, out_sr))}
        self.schema = pa.schema(fields, metadata=metadata)

    def batch(self, page: Page) -> pa.RecordBatch:
        attributes = [f.get("attributes") or {} for f in page.features]
        arrays = [self._array(c, attributes, page.object_ids) for c in self._columns]
        if self.geometries is not None:
            arrays.append(self.geometries.wkb(page))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _array(
        self, column: _Column, rows: Sequence[Mapping[str, Any]], oids: Sequence[int]
    ) -> Any:
        raw = [row.get(column.name) for row in rows]
        convert = column.convert
        try:
            values = [None if v is None else convert(v) for v in raw]
        except _Misfit:
            for value, oid in zip(raw, oids, strict=True):
                try:
                    None if value is None else convert(value)
                except _Misfit as exc:
                    raise self._misfit(column, oid, value, str(exc)) from exc
            raise  # pragma: no cover (the loop finds the value that failed above)
        try:
            return pa.array(values, type=column.arrow_type)
        except (pa.ArrowException, OverflowError) as exc:
            raise self._misfit(column, None, None, str(exc)) from exc

    def _misfit(self, column: _Column, oid: int | None, value: Any, why: str) -> ServiceError:
        where = f"object id {oid}" if oid is not None else "a page"
        text = f"{value!r}: {why}" if oid is not None else why
        return ServiceError(
            None,
            f"field {column.name!r} ({column.esri_type}, {column.arrow_type}) of {where} "
            f"does not fit its type: {text}; the layer's field list and its data disagree",
            url=self._url or None,
        )


class RecordBatchStream:
    """The record batches of a crawl (see `FeatureLayer.record_batches`): an async
    iterator of `pyarrow.RecordBatch`, one per page, all with the one `schema`.

    Use it as ``async with stream: async for batch in stream`` (fetching ahead in the
    block's own tasks) or as a plain ``async for``, as `PageStream`, which it wraps.
    """

    def __init__(
        self,
        pages: PageStream,
        info: Callable[[], Awaitable[LayerInfo]],
        *,
        out_fields: str | Iterable[str],
        return_geometry: bool,
        out_sr: int | None,
        url: str,
    ) -> None:
        self._pages = pages
        self._info = info
        self._settings = (out_fields, return_geometry, out_sr)
        self._url = url
        self._batcher: _Batcher | None = None

    @property
    def pages(self) -> PageStream:
        """The page stream underneath (its `total`, `delivered` and `strategy`)."""
        return self._pages

    @property
    def schema(self) -> pa.Schema | None:
        """The schema of every batch, once the first step has read the layer's fields."""
        return None if self._batcher is None else self._batcher.schema

    @property
    def unconvertible_geometries(self) -> int:
        """Geometries written as null because they could not be converted."""
        geometries = None if self._batcher is None else self._batcher.geometries
        return 0 if geometries is None else geometries.unconvertible

    async def _ready(self) -> _Batcher:
        if self._batcher is None:
            out_fields, return_geometry, out_sr = self._settings
            self._batcher = _Batcher(
                await self._info(),
                out_fields,
                return_geometry=return_geometry,
                out_sr=out_sr,
                url=self._url,
            )
        return self._batcher

    def __aiter__(self) -> RecordBatchStream:
        return self

    async def __anext__(self) -> pa.RecordBatch:
        batcher = await self._ready()
        page = await self._pages.__anext__()
        return batcher.batch(page)

    async def read_all(self) -> pa.Table:
        """Every batch, as one `pyarrow.Table` (fetching ahead meanwhile): call it on a
        fresh stream, instead of iterating it."""
        async with self:
            batches = [batch async for batch in self]
            return pa.Table.from_batches(batches, schema=(await self._ready()).schema)

    async def aclose(self) -> None:
        """End the crawl, stopping any fetch still running."""
        await self._pages.aclose()

    async def __aenter__(self) -> RecordBatchStream:
        await self._pages.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._pages.__aexit__(exc_type, exc, tb)
