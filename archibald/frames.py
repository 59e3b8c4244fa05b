"""A layer's features as a pandas DataFrame or a GeoPandas GeoDataFrame.

`FeatureLayer.to_dataframe` and `FeatureLayer.to_geodataframe` import this module when
they are called. Both collect `FeatureLayer.to_arrow` (so the column types are the layer's
own, see the Arrow guide) and, with ``decode_domains=True``, put the names of coded-value
domains in place of their codes: the field's domain, or the one its subtype gives it.

Needs the ``geo`` extra (``pip install 'archibald[geo]'``: geopandas, which brings pandas,
and pyogrio) on top of the ``arrow`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

try:
    import geopandas
    import pandas
    import shapely
except ImportError as exc:  # one line that says what to install
    raise ImportError(
        "archibald's data frames need geopandas: pip install 'archibald[geo]'"
    ) from exc

from .arrow import GEOMETRY_COLUMN

if TYPE_CHECKING:
    import pyarrow as pa

    from .layers import LayerInfo

__all__ = ["decode_domains", "to_dataframe", "to_geodataframe"]

_CRS84 = "OGC:CRS84"


def to_dataframe(table: pa.Table, info: LayerInfo, *, decode: bool) -> pandas.DataFrame:
    """*table* (from `to_arrow`) as a DataFrame; a geometry column stays WKB bytes."""
    frame = table.to_pandas()
    return decode_domains(frame, info) if decode else frame


def to_geodataframe(table: pa.Table, info: LayerInfo, *, decode: bool) -> geopandas.GeoDataFrame:
    """*table* (from `to_arrow`, with geometries) as a GeoDataFrame with its CRS."""
    if GEOMETRY_COLUMN not in table.column_names:
        raise ValueError(f"{info.name!r} has no geometry: use to_dataframe()")
    shapes = shapely.from_wkb(table.column(GEOMETRY_COLUMN).to_numpy(zero_copy_only=False))
    frame = to_dataframe(table.drop_columns([GEOMETRY_COLUMN]), info, decode=decode)
    return geopandas.GeoDataFrame(frame, geometry=shapes, crs=_crs_of(table))


def _crs_of(table: pa.Table) -> Any:
    """The CRS the GeoParquet metadata names: absent means OGC:CRS84, null unknown."""
    metadata = table.schema.metadata or {}
    geo = json.loads(metadata.get(b"geo", b"{}"))
    column = (geo.get("columns") or {}).get(GEOMETRY_COLUMN) or {}
    if "crs" not in column:
        return _CRS84
    return column["crs"]  # PROJJSON, or None: unknown


def decode_domains(frame: pandas.DataFrame, info: LayerInfo) -> pandas.DataFrame:
    """*frame* with coded values replaced by their names: each field's coded-value
    domain, or the one its row's subtype gives it; codes no domain names are kept."""
    subtype_field, by_subtype = _subtype_domains(info)
    for field in info.fields:
        name = str(field.get("name"))
        if name not in frame.columns or name == subtype_field:
            continue
        own = _names(field.get("domain"))
        per_subtype = {
            code: domains[name] for code, domains in by_subtype.items() if name in domains
        }
        if per_subtype and subtype_field in frame.columns:
            codes = frame[subtype_field].tolist()
            frame[name] = [
                _decoded(value, per_subtype.get(code, own))
                for code, value in zip(codes, frame[name].tolist(), strict=True)
            ]
        elif own:
            frame[name] = [_decoded(value, own) for value in frame[name].tolist()]
    if subtype_field in frame.columns:  # last: the rows' codes chose the domains above
        names = {code: str(subtype.get("name")) for code, subtype in _subtypes(info).items()}
        frame[subtype_field] = [_decoded(value, names) for value in frame[subtype_field].tolist()]
    return frame


def _decoded(value: Any, names: Mapping[Any, str] | None) -> Any:
    if value is None or not names:
        return value
    try:
        return names.get(value, value)
    except TypeError:  # a value that cannot be a key (NaN is one and is kept)
        return value


def _names(domain: Any) -> dict[Any, str] | None:
    """Code -> name of a coded-value domain; None for a range or inherited one."""
    if not isinstance(domain, Mapping) or domain.get("type") != "codedValue":
        return None
    values = domain.get("codedValues") or []
    return {v.get("code"): str(v.get("name")) for v in values if isinstance(v, Mapping)}


def _subtypes(info: LayerInfo) -> dict[Any, Mapping[str, Any]]:
    """The layer's subtypes (``subtypes``, or the older ``types``) by code."""
    raw = info.raw.get("subtypes") or info.raw.get("types") or []
    found = {}
    for subtype in raw:
        if isinstance(subtype, Mapping):
            found[subtype.get("code", subtype.get("id"))] = subtype
    return found


def _subtype_domains(info: LayerInfo) -> tuple[str | None, dict[Any, dict[str, dict[Any, str]]]]:
    """The subtype field, and for each subtype code the coded-value domains it gives."""
    field = info.raw.get("subtypeField") or info.raw.get("typeIdField") or None
    by_code: dict[Any, dict[str, dict[Any, str]]] = {}
    for code, subtype in _subtypes(info).items():
        domains = subtype.get("domains") or {}
        named = {name: _names(domain) for name, domain in domains.items()}
        by_code[code] = {name: names for name, names in named.items() if names}
    return (str(field) if field else None), by_code
