"""The SQL of the GeoPackage parts this library writes, and how ArcGIS values are stored.

The DDL of the core tables (OGC 12-128r18, Annex C), the R-tree triggers of the spatial
index extension (Annex F.3, 1.4: the retired update1 and update3 are not written), the
column type of each ArcGIS field type, and dates: ArcGIS epoch milliseconds as
GeoPackage DATETIME text (``YYYY-MM-DDTHH:MM:SS.SSSZ``, UTC) and back.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ._gpkg_geometry import decode
from .layers._model import attribute

# Table names GeoPackage and SQLite keep for themselves.
RESERVED_PREFIXES = ("gpkg_", "rtree_", "sqlite_")


def table_name_for(layer_name: str, taken: Sequence[str]) -> str:
    """A table name for a layer: its own name, unless blank, reserved (``gpkg_...``, which
    becomes ``layer_gpkg_...``) or taken (a number is added)."""
    name = layer_name.strip() or "features"
    if name.lower().startswith(RESERVED_PREFIXES):
        name = f"layer_{name}"
    lowered = {t.lower() for t in taken}
    candidate, n = name, 1
    while candidate.lower() in lowered:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


__all__ = [
    "RESERVED_PREFIXES",
    "table_name_for",
    "CORE_DDL",
    "RTREE_URL",
    "Table",
    "TRIGGERS",
    "column_type",
    "date_text",
    "epoch_ms",
    "feature_of",
    "now_iso",
    "quote",
    "stored_values",
]

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MS = datetime.timedelta(milliseconds=1)
_FIELD_TYPES = {
    "esriFieldTypeSmallInteger": "SMALLINT",
    "esriFieldTypeInteger": "MEDIUMINT",
    "esriFieldTypeBigInteger": "INTEGER",
    "esriFieldTypeOID": "INTEGER",
    "esriFieldTypeDouble": "DOUBLE",
    "esriFieldTypeSingle": "FLOAT",
    "esriFieldTypeDate": "DATETIME",
    "esriFieldTypeDateOnly": "DATE",
}
RTREE_URL = "http://www.geopackage.org/spec120/#extension_rtree"

#: The core tables, one statement each.
CORE_DDL = (
    """CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (srs_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT)""",
    """CREATE TABLE IF NOT EXISTS gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY,
  data_type TEXT NOT NULL, identifier TEXT UNIQUE, description TEXT DEFAULT '',
  last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))""",
    """CREATE TABLE IF NOT EXISTS gpkg_geometry_columns (table_name TEXT NOT NULL,
  column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL,
  z TINYINT NOT NULL, m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT uk_gc_table_name UNIQUE (table_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id))""",
    """CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT,
  extension_name TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL,
  CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))""",
)

# The R-tree triggers of the specification (Annex F.3, 1.4: update1/update3 retired).
TRIGGERS = {
    "insert": """AFTER INSERT ON {t} WHEN (new.{c} NOT NULL AND NOT ST_IsEmpty(NEW.{c}))
BEGIN INSERT OR REPLACE INTO {r} VALUES (NEW.{i}, ST_MinX(NEW.{c}), ST_MaxX(NEW.{c}),
ST_MinY(NEW.{c}), ST_MaxY(NEW.{c})); END""",
    "update2": """AFTER UPDATE OF {c} ON {t} WHEN OLD.{i} = NEW.{i} AND
(NEW.{c} ISNULL OR ST_IsEmpty(NEW.{c})) BEGIN DELETE FROM {r} WHERE id = OLD.{i}; END""",
    "update4": """AFTER UPDATE ON {t} WHEN OLD.{i} != NEW.{i} AND
(NEW.{c} ISNULL OR ST_IsEmpty(NEW.{c}))
BEGIN DELETE FROM {r} WHERE id IN (OLD.{i}, NEW.{i}); END""",
    "update5": """AFTER UPDATE ON {t} WHEN OLD.{i} != NEW.{i} AND
(NEW.{c} NOTNULL AND NOT ST_IsEmpty(NEW.{c})) BEGIN DELETE FROM {r} WHERE id = OLD.{i};
INSERT OR REPLACE INTO {r} VALUES (NEW.{i}, ST_MinX(NEW.{c}), ST_MaxX(NEW.{c}),
ST_MinY(NEW.{c}), ST_MaxY(NEW.{c})); END""",
    "update6": """AFTER UPDATE OF {c} ON {t} WHEN OLD.{i} = NEW.{i} AND
(NEW.{c} NOTNULL AND NOT ST_IsEmpty(NEW.{c})) AND (OLD.{c} NOTNULL AND NOT ST_IsEmpty(OLD.{c}))
BEGIN UPDATE {r} SET minx = ST_MinX(NEW.{c}), maxx = ST_MaxX(NEW.{c}),
miny = ST_MinY(NEW.{c}), maxy = ST_MaxY(NEW.{c}) WHERE id = NEW.{i}; END""",
    "update7": """AFTER UPDATE OF {c} ON {t} WHEN OLD.{i} = NEW.{i} AND
(NEW.{c} NOTNULL AND NOT ST_IsEmpty(NEW.{c})) AND (OLD.{c} ISNULL OR ST_IsEmpty(OLD.{c}))
BEGIN INSERT INTO {r} VALUES (NEW.{i}, ST_MinX(NEW.{c}), ST_MaxX(NEW.{c}),
ST_MinY(NEW.{c}), ST_MaxY(NEW.{c})); END""",
    "delete": """AFTER DELETE ON {t} WHEN old.{c} NOT NULL
BEGIN DELETE FROM {r} WHERE id = OLD.{i}; END""",
}


def quote(name: str) -> str:
    """An SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def now_iso() -> str:
    """The current UTC time as GeoPackage writes it: ``YYYY-MM-DDTHH:MM:SS.SSSZ``."""
    return _iso(datetime.datetime.now(datetime.UTC))


def _iso(moment: datetime.datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def date_text(value: Any) -> Any:
    """Epoch milliseconds as DATETIME text; a value that is not one is kept as it is."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return _iso(_EPOCH + value * _MS)
        except OverflowError:
            return value
    return value


def epoch_ms(value: Any) -> Any:
    """DATETIME text as epoch milliseconds; text that is not a date is kept as it is."""
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return (moment - _EPOCH) // _MS


def column_type(field: Mapping[str, Any]) -> str:
    """The GeoPackage column type of an ArcGIS field."""
    esri_type = field.get("type")
    if esri_type in _FIELD_TYPES:
        return _FIELD_TYPES[esri_type]
    length = field.get("length")
    if esri_type == "esriFieldTypeString" and isinstance(length, int) and length > 0:
        return f"TEXT({length})"
    return "TEXT"


class Table(NamedTuple):
    """What writing and reading a table needs to know about it."""

    name: str
    oid: str
    geometry: str | None
    type_name: str | None
    srs_id: int
    has_z: bool
    attributes: tuple[tuple[str, str], ...]  # (name, declared type), oid and geometry aside

    @property
    def rtree(self) -> str:
        """The name of the table's R-tree."""
        return f"rtree_{self.name}_{self.geometry}"

    @property
    def names(self) -> list[str]:
        """The columns in the order rows hold them: object id, geometry, attributes."""
        head = [self.oid] if self.geometry is None else [self.oid, self.geometry]
        return head + [name for name, _ in self.attributes]


def stored_values(table: Table, attributes: Mapping[str, Any]) -> list[Any]:
    """A feature's attributes as the table's columns store them (found in any case)."""
    values = []
    for name, kind in table.attributes:
        value = attribute(attributes, name)
        if kind == "DATETIME":
            value = date_text(value)
        elif isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        values.append(value)
    return values


def feature_of(table: Table, row: Sequence[Any]) -> dict[str, Any]:
    """A row (columns as `Table.names` orders them) as an Esri JSON feature."""
    values = iter(row)
    attributes = {table.oid: next(values)}
    shape = None if table.geometry is None else decode(next(values))
    for (name, kind), value in zip(table.attributes, values, strict=True):
        attributes[name] = epoch_ms(value) if kind == "DATETIME" else value
    if table.geometry is None:
        return {"attributes": attributes}
    return {"attributes": attributes, "geometry": shape}
