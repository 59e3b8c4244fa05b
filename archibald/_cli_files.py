"""The dump's table formats: GeoParquet (with the ``arrow`` extra), GeoPackage and CSV,
and which format a file name asks for.

They take whole pages (`write_page`), as the JSON `Writer` does, and read the layer's
field list first (`prepare`), so that their columns are the layer's, not guessed from the
first rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import IO, Any

from ._cli_output import EXIT_USAGE, Failure
from ._geojson import GeoJSONConverter
from ._geopackage import GeoPackage
from ._gpkg_schema import table_name_for
from .layers import FeatureLayer, LayerInfo, MapLayer, Page
from .layers._model import attribute, wkid_of
from .layers._options import fields_param

__all__ = ["BINARY_FORMATS", "CsvWriter", "GeoPackageWriter", "GeoParquetWriter", "format_of"]

BINARY_FORMATS = frozenset({"geoparquet", "gpkg"})

_SUFFIXES = {
    ".geojson": "geojson",
    ".json": "geojson",
    ".ndjson": "ndjson",
    ".geojsonl": "ndjson",
    ".jsonl": "ndjson",
    ".parquet": "geoparquet",
    ".geoparquet": "geoparquet",
    ".csv": "csv",
    ".gpkg": "gpkg",
}


def format_of(output: str | None) -> str:
    """The format a file name asks for by its extension; GeoJSON for stdout or others."""
    if output is None:
        return "geojson"
    return _SUFFIXES.get(PurePath(output).suffix.lower(), "geojson")


class _ArrowWriter:
    """What the Arrow-based formats share: the layer's schema, read by `prepare`, and the
    pages turned into record batches with it."""

    def __init__(self, out_fields: str, out_sr: int | None) -> None:
        self._settings = (out_fields, out_sr)
        self._batcher: Any = None
        self.count = 0
        self.started = False
        self.closed = False

    @property
    def unconvertible(self) -> int:
        """Geometries written as null because they could not be converted."""
        geometries = None if self._batcher is None else self._batcher.geometries
        return 0 if geometries is None else int(geometries.unconvertible)

    async def _schema(self, layer: FeatureLayer | MapLayer) -> tuple[LayerInfo, Any]:
        """The layer's metadata and the schema of its batches (read once, before a page)."""
        from .arrow import _Batcher

        out_fields, out_sr = self._settings
        info = await layer.info()
        self._batcher = _Batcher(
            info, out_fields, return_geometry=True, out_sr=out_sr, url=layer.url
        )
        return info, self._batcher.schema

    def _batch(self, page: Page) -> Any:
        assert self._batcher is not None, "prepare() first"
        return self._batcher.batch(page)


class GeoParquetWriter(_ArrowWriter):
    """GeoParquet 1.1: a row group per page, written as pages arrive (bounded memory),
    with the schema of `archibald.arrow` (the layer's fields, a WKB ``geometry``)."""

    def __init__(self, out: IO[bytes], out_fields: str, out_sr: int | None) -> None:
        try:
            import pyarrow.parquet
        except ImportError:
            raise Failure(
                "--format geoparquet needs pyarrow: pip install 'archibald[arrow]'", EXIT_USAGE
            ) from None
        super().__init__(out_fields, out_sr)
        self._parquet = pyarrow.parquet
        self._out = out
        self._writer: Any = None

    async def prepare(self, layer: FeatureLayer | MapLayer) -> None:
        _, schema = await self._schema(layer)
        self._writer = self._parquet.ParquetWriter(self._out, schema)
        self.started = True

    def write_page(self, page: Page) -> None:
        self._writer.write_batch(self._batch(page))
        self.count += len(page)

    def close(self) -> None:
        """The footer, so that what was written is a Parquet file that reads."""
        if self.closed:
            return
        self.closed = True
        if self._writer is not None:
            self._writer.close()
        self._out.flush()


class GeoPackageWriter:
    """GeoPackage, written with the standard library as `archibald sync` writes it
    (`archibald._geopackage`): a table named after the layer with the fields asked for,
    the object id as its primary key (GDAL's feature id), the output's CRS and a spatial
    index; each page is committed as it arrives (bounded memory, no GDAL needed)."""

    def __init__(self, path: Path, out_fields: str, out_sr: int | None) -> None:
        self._path = path
        self._settings = (out_fields, out_sr)
        self._gpkg: GeoPackage | None = None
        self._table = ""
        self.count = 0
        self.started = False
        self.closed = False

    @property
    def unconvertible(self) -> int:
        """Geometries written as null because they could not be converted."""
        return 0 if self._gpkg is None else self._gpkg.unconvertible_geometries

    async def prepare(self, layer: FeatureLayer | MapLayer) -> None:
        out_fields, out_sr = self._settings
        info = await layer.info()
        names = fields_param(out_fields, info, layer.url)
        chosen = {n.lower() for n in names.split(",")}
        fields = [f for f in info.fields if names == "*" or f["name"].lower() in chosen]
        self._gpkg = GeoPackage.open(self._path)
        self._table = table_name_for(info.name, self._gpkg.tables())
        self._gpkg.create_feature_table(
            self._table,
            fields=fields,
            object_id_field=info.object_id_field,
            geometry_type=info.geometry_type,
            wkid=wkid_of(info.spatial_reference, out_sr),
        )
        self.started = True

    def write_page(self, page: Page) -> None:
        assert self._gpkg is not None, "prepare() first"
        with self._gpkg.transaction():
            self._gpkg.upsert(self._table, page.features)
        self.count += len(page)

    def close(self) -> None:
        """The table's extent, then the file closed (one file again, no ``-wal``), even
        when the extent cannot be written; a table never created gets none."""
        if self._gpkg is None or self.closed:
            self.closed = True
            return
        self.closed = True
        try:
            if self.started:
                self._gpkg.update_extent(self._table)
        finally:
            self._gpkg.close()


class CsvWriter:
    """CSV: a header of the layer's fields (those asked for), then a row per feature,
    with the geometry as WKT in a last ``geometry`` column (GeoJSON's axis order)."""

    def __init__(self, out: IO[str], out_fields: str) -> None:
        self._out = out
        self._rows = csv.writer(out)
        self._out_fields = out_fields
        self._names: list[str] = []
        self._geometry = False
        self._geojson = GeoJSONConverter()
        self.count = 0
        self.started = False
        self.closed = False

    @property
    def unconvertible(self) -> int:
        """Geometries written empty because they could not be converted."""
        return self._geojson.unconvertible

    async def prepare(self, layer: FeatureLayer | MapLayer) -> None:
        info = await layer.info()
        asked = fields_param(self._out_fields, info, layer.url)  # with the object id
        wanted = None if asked == "*" else {n.lower() for n in asked.split(",")}
        self._names = [
            str(f["name"])
            for f in info.fields
            if f.get("type") != "esriFieldTypeGeometry"
            and (wanted is None or str(f["name"]).lower() in wanted)
        ]
        self._geometry = info.geometry_type is not None
        self._rows.writerow([*self._names, *(["geometry"] if self._geometry else [])])
        self.started = True

    def write_page(self, page: Page) -> None:
        for feature in page.features:
            attributes = feature.get("attributes") or {}
            row = [_cell(attribute(attributes, name)) for name in self._names]
            if self._geometry:
                geometry = self._geojson.feature(
                    feature, page.object_id_field, has_z=page.has_z, has_m=page.has_m
                )["geometry"]
                row.append(wkt(geometry))
            self._rows.writerow(row)
        self.count += len(page)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._out.flush()


def _cell(value: Any) -> Any:
    return "" if value is None else value


def wkt(geometry: Mapping[str, Any] | None) -> str:
    """Well-known text of a GeoJSON geometry; empty for a null one."""
    if not geometry:
        return ""
    kind, coordinates = geometry["type"], geometry["coordinates"]
    if kind == "Point":
        return f"POINT ({_position(coordinates)})"
    if kind == "MultiPoint":
        body = _join(f"({_position(p)})" for p in coordinates)
    elif kind == "LineString":
        body = _line(coordinates)
    elif kind == "MultiLineString":
        body = _join(f"({_line(line)})" for line in coordinates)
    elif kind == "Polygon":
        body = _rings(coordinates)
    else:  # MultiPolygon: what the converter makes is one of these six
        body = _join(f"({_rings(polygon)})" for polygon in coordinates)
    return f"{kind.upper()} ({body})"


def _position(position: Sequence[float]) -> str:
    return " ".join(repr(float(value)) for value in position)


def _line(positions: Iterable[Sequence[float]]) -> str:
    return _join(_position(p) for p in positions)


def _rings(rings: Iterable[Iterable[Sequence[float]]]) -> str:
    return _join(f"({_line(ring)})" for ring in rings)


def _join(parts: Iterable[str]) -> str:
    return ", ".join(parts)
