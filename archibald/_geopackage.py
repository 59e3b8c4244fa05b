"""A GeoPackage file kept by hand with sqlite3: feature tables that can be updated in place.

GDAL (and so pyogrio) can append to a GeoPackage but not update or delete features by id
inside one transaction, which is what keeping a copy of a layer current needs; so this
module writes the few parts of the OGC GeoPackage 1.4 format (OGC 12-128r18) it uses.

Format choices. The file is a GeoPackage 1.4 (``application_id`` ``GPKG``,
``user_version`` 10400) with the core tables and the R-tree spatial index extension.
A feature table's primary key is the layer's object-id field (same name, an INTEGER
PRIMARY KEY); its geometry column is ``geom`` (unless a field has that name): POINT,
MULTIPOINT, MULTILINESTRING (polylines) or MULTIPOLYGON (polygons), with z when the
layer has z (M values are dropped); a null or empty geometry is NULL. Field types:
SmallInteger SMALLINT, Integer MEDIUMINT (32 bits), BigInteger INTEGER, Double DOUBLE,
Single FLOAT, String TEXT(length), GUID, GlobalID, XML, TimeOnly, Blob, Raster and any
other type TEXT, Date DATETIME (epoch milliseconds stored as ``YYYY-MM-DDTHH:MM:SS.SSSZ``
in UTC and read back as epoch milliseconds), DateOnly DATE (``YYYY-MM-DD`` as given);
TimestampOffset is TEXT holding the server's ISO string with its offset, as GeoPackage's
DATETIME is UTC only. Every column accepts NULL. The SRS is the layer's wkid (Esri's
102100 is EPSG:3857) with a WKT 1 definition from pyproj when it is installed (see
``_gpkg_srs``). The spatial index is the standard ``rtree_<table>_<geom>`` table kept by
the standard triggers, so GDAL and QGIS use it; the ``ST_*`` functions the triggers call are
registered on this module's connection. A write is one SQLite transaction, in WAL mode
while the file is open here (readers such as QGIS keep reading during a write), switched
back to the rollback journal at `close`, so a closed file is one file again. A process
killed mid-write leaves the file as at the last commit: GDAL reads it (even read-only) and
the next opener removes the ``-wal`` file. The small
``archibald_sync`` attributes table holds this library's own state as JSON.
"""

from __future__ import annotations

import array
import contextlib
import itertools
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _gpkg_geometry as geometry_blobs
from . import _gpkg_schema as schema
from . import _gpkg_srs
from ._geojson import GeometryError
from ._gpkg_errors import storage_error
from .exceptions import ConfigurationError, LifecycleError
from .layers._model import attribute

__all__ = ["GeoPackage"]

logger = logging.getLogger("archibald")

META_TABLE = "archibald_sync"
_APPLICATION_IDS = {0x47504B47, 0x47503130, 0x47503131}  # GPKG, GP10, GP11
_HAS_DROP_COLUMN = sqlite3.sqlite_version_info >= (3, 35, 0)
_CHUNK = 500


def _batches(values: Iterable[int]) -> Iterator[tuple[int, ...]]:
    iterator = iter(values)
    while batch := tuple(itertools.islice(iterator, _CHUNK)):
        yield batch


class GeoPackage:
    """A GeoPackage file opened with sqlite3 for reading and writing.

    Not for use by two threads at once (one thread at a time, any thread, is fine: a
    caller may hand each call to a worker thread). Writes outside `transaction` are each
    their own transaction.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._connection = connection
        self._path = path
        self._in_transaction = False
        self._closed = False
        self._tables: dict[str, schema.Table] = {}
        #: Geometries written as NULL because they could not be converted.
        self.unconvertible_geometries = 0
        for name, function in geometry_blobs.envelope_functions().items():
            connection.create_function(name, 1, function, deterministic=True)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> GeoPackage:
        """Open the GeoPackage at *path*, creating it (and its core tables) if it is new.

        Raises:
            ConfigurationError: The file exists and is not a GeoPackage.
        """
        path = Path(path)
        new = not path.exists() or path.stat().st_size == 0
        try:
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open {str(path)!r} as a GeoPackage: {exc}") from exc
        gpkg = cls(connection, path)
        try:
            if new:
                gpkg._create()
            else:
                gpkg._check()
            # WAL: readers never see a half-written file, not even a read-only GDAL after a
            # crash (a rollback journal left hot would need a writer to roll it back first).
            connection.execute("PRAGMA journal_mode = WAL")
        except BaseException as exc:
            connection.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise storage_error(path, exc, writing=new) from exc
            raise
        return gpkg

    def _create(self) -> None:
        with self.transaction():
            self._connection.execute(f"PRAGMA application_id = {0x47504B47}")
            self._connection.execute("PRAGMA user_version = 10400")
            self._create_core_tables()
            for row in _gpkg_srs.REQUIRED_ROWS:
                self._connection.execute(
                    "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", row
                )

    def _check(self) -> None:
        fix = "use a new file name, or the path of a GeoPackage (.gpkg) this library wrote"
        try:
            (app_id,) = self._connection.execute("PRAGMA application_id").fetchone()
            names = {row[0] for row in self._connection.execute("SELECT name FROM sqlite_master")}
        except sqlite3.OperationalError as exc:  # locked, busy: the file may be fine
            raise storage_error(self._path, exc, writing=False) from exc
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(
                f"{str(self._path)!r} is not a GeoPackage (not an SQLite database: {exc}); {fix}"
            ) from exc
        if not {"gpkg_contents", "gpkg_spatial_ref_sys"} <= names:
            what = "another SQLite database" if app_id not in _APPLICATION_IDS else "damaged"
            raise ConfigurationError(
                f"{str(self._path)!r} is not a GeoPackage ({what}: it has no gpkg_contents "
                f"or gpkg_spatial_ref_sys table); {fix}"
            )
        if not {"gpkg_geometry_columns", "gpkg_extensions"} <= names:
            with self.transaction():
                self._create_core_tables()

    def _create_core_tables(self) -> None:
        for statement in schema.CORE_DDL:
            self._connection.execute(statement)

    def close(self) -> None:
        """Close the file; an unfinished transaction is rolled back."""
        if not self._closed:
            self._closed = True
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            with contextlib.suppress(sqlite3.Error):  # another reader holds the file: WAL stays
                self._connection.execute("PRAGMA journal_mode = DELETE")
            self._connection.close()

    def __enter__(self) -> GeoPackage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The file's path."""
        return self._path

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything in the block is written at once at its end, or not at all.

        Raises:
            LifecycleError: A transaction is already open, or the file is closed.
        """
        self._check_open()
        if self._in_transaction:
            raise LifecycleError(
                f"a transaction on {str(self._path)!r} is already open: "
                "transactions do not nest; do all the writes in the outer one"
            )
        try:
            self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise storage_error(self._path, exc) from exc
        self._in_transaction = True
        try:
            yield
            self._connection.execute("COMMIT")
        except BaseException as exc:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            self._tables.clear()  # the rolled-back DDL too
            if isinstance(exc, sqlite3.Error):
                raise storage_error(self._path, exc) from exc
            raise
        finally:
            self._in_transaction = False

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if self._in_transaction else self.transaction()

    def _check_open(self) -> None:
        if self._closed:
            raise LifecycleError(f"the GeoPackage {str(self._path)!r} is closed")

    def _execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        self._check_open()
        return self._connection.execute(sql, parameters)

    def _has_table(self, name: str) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE lower(name) = lower(?)"
        return self._execute(sql, (name,)).fetchone() is not None

    def tables(self) -> list[str]:
        """The feature and attribute tables in ``gpkg_contents`` (not this library's own)."""
        rows = self._execute(
            "SELECT table_name FROM gpkg_contents WHERE data_type IN ('features', "
            "'attributes') AND table_name != ? ORDER BY table_name",
            (META_TABLE,),
        )
        return [name for (name,) in rows]

    def _table(self, table: str) -> schema.Table:
        if table in self._tables:
            return self._tables[table]
        columns = self._execute(f"PRAGMA table_info({schema.quote(table)})").fetchall()
        if not columns or table not in self.tables():
            raise ConfigurationError(
                f"{str(self._path)!r} has no feature table {table!r}; its tables: {self.tables()}"
            )
        oid = next(name for _, name, kind, _, _, pk in columns if pk == 1)
        row = self._execute(
            "SELECT column_name, geometry_type_name, srs_id, z FROM gpkg_geometry_columns "
            "WHERE table_name = ?",
            (table,),
        ).fetchone()
        geometry, type_name, srs_id, z = row or (None, None, _gpkg_srs.UNDEFINED_CARTESIAN, 0)
        attributes = tuple(
            (name, kind.upper()) for _, name, kind, *_ in columns if name not in (oid, geometry)
        )
        info = schema.Table(table, oid, geometry, type_name, srs_id, bool(z), attributes)
        self._tables[table] = info
        return info

    def columns(self, table: str) -> list[tuple[str, str]]:
        """The table's columns as (name, GeoPackage type), the object id and geometry first."""
        info = self._table(table)
        head = [(info.oid, "INTEGER")]
        if info.geometry is not None and info.type_name is not None:
            head.append((info.geometry, info.type_name))
        return [*head, *info.attributes]

    def _ensure_srs(self, srs_id: int) -> None:
        found = self._execute("SELECT 1 FROM gpkg_spatial_ref_sys WHERE srs_id = ?", (srs_id,))
        if found.fetchone() is None:
            row = _gpkg_srs.srs_row(srs_id)
            self._execute("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", row)

    def create_feature_table(
        self,
        table: str,
        *,
        fields: Sequence[Mapping[str, Any]],
        object_id_field: str,
        geometry_type: str | None,
        wkid: int | None,
        has_z: bool = False,
        identifier: str | None = None,
        description: str = "",
    ) -> None:
        """Create a table for an ArcGIS layer (or, without *geometry_type*, a table).

        Args:
            table: The table's name.
            fields: The layer's ArcGIS fields (``name``, ``type``, ``length``, ...).
            object_id_field: The object-id field: the table's INTEGER PRIMARY KEY.
            geometry_type: ``esriGeometryPoint``, ``esriGeometryMultipoint``,
                ``esriGeometryPolyline``, ``esriGeometryPolygon``, or None for no geometry.
            wkid: The layer's spatial reference wkid (None: undefined).
            has_z: Whether geometries keep z.
            identifier: ``gpkg_contents.identifier`` (unique in the file; default the name).
            description: ``gpkg_contents.description``.

        Raises:
            ConfigurationError: The name is taken or reserved, or a type or field is unknown.
        """
        self._check_name(table)
        if geometry_type is not None and geometry_type not in geometry_blobs.GEOMETRY_TYPES:
            raise ConfigurationError(
                f"cannot store geometry type {geometry_type!r} in {table!r}: a GeoPackage table "
                f"holds one of {sorted(geometry_blobs.GEOMETRY_TYPES)}"
            )
        names = [object_id_field]
        definitions = [f"{schema.quote(object_id_field)} INTEGER PRIMARY KEY NOT NULL"]
        for field in fields:
            name = field["name"]
            if name.lower() == object_id_field.lower() or field.get("type") == (
                "esriFieldTypeGeometry"
            ):
                continue
            if name.lower() in (n.lower() for n in names):
                raise ConfigurationError(f"{table!r} has two fields named {name!r}")
            names.append(name)
            definitions.append(f"{schema.quote(name)} {schema.column_type(field)}")
        lowered = {n.lower() for n in names}
        column = next(
            c
            for c in itertools.chain(["geom", "geometry"], (f"geom_{n}" for n in itertools.count()))
            if c not in lowered
        )
        srs_id = _gpkg_srs.srs_id_of(wkid)
        with self._writing():
            if geometry_type is not None:
                type_name = geometry_blobs.GEOMETRY_TYPES[geometry_type]
                definitions.insert(1, f"{schema.quote(column)} {type_name}")
            self._execute(f"CREATE TABLE {schema.quote(table)} ({', '.join(definitions)})")
            self._ensure_srs(srs_id)
            self._execute(
                "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, "
                "last_change, srs_id) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    table,
                    "attributes" if geometry_type is None else "features",
                    identifier or table,
                    description,
                    schema.now_iso(),
                    None if geometry_type is None else srs_id,
                ),
            )
            if geometry_type is not None:
                self._execute(
                    "INSERT INTO gpkg_geometry_columns VALUES (?, ?, ?, ?, ?, 0)",
                    (table, column, type_name, srs_id, int(has_z)),
                )
                self._execute(
                    "INSERT INTO gpkg_extensions VALUES (?, ?, 'gpkg_rtree_index', ?, "
                    "'write-only')",
                    (table, column, schema.RTREE_URL),
                )
                info = self._table(table)
                rtree = schema.quote(info.rtree)
                self._execute(
                    f"CREATE VIRTUAL TABLE {rtree} USING rtree(id, minx, maxx, miny, maxy)"
                )
                self._create_triggers(info)

    def _check_name(self, table: str) -> None:
        if not table or table.lower().startswith(schema.RESERVED_PREFIXES):
            raise ConfigurationError(
                f"cannot name a table {table!r}: names starting with "
                f"{', '.join(schema.RESERVED_PREFIXES)} are reserved; choose another"
            )
        if self._has_table(table):
            raise ConfigurationError(f"{str(self._path)!r} already has a table named {table!r}")

    def _create_triggers(self, info: schema.Table) -> None:
        assert info.geometry is not None
        for suffix, body in schema.TRIGGERS.items():
            sql = body.format(
                t=schema.quote(info.name),
                c=schema.quote(info.geometry),
                i=schema.quote(info.oid),
                r=schema.quote(info.rtree),
            )
            self._execute(f"CREATE TRIGGER {schema.quote(f'{info.rtree}_{suffix}')} {sql}")

    def _drop_triggers(self, info: schema.Table) -> None:
        for suffix in schema.TRIGGERS:
            self._execute(f"DROP TRIGGER IF EXISTS {schema.quote(f'{info.rtree}_{suffix}')}")

    def drop_table(self, table: str) -> None:
        """Drop a table with its spatial index and its rows in the GeoPackage's own tables."""
        info = self._table(table)
        with self._writing():
            self._execute(f"DROP TABLE {schema.quote(table)}")
            if info.geometry is not None:
                self._execute(f"DROP TABLE IF EXISTS {schema.quote(info.rtree)}")
            for meta in ("gpkg_extensions", "gpkg_geometry_columns", "gpkg_contents"):
                self._execute(f"DELETE FROM {meta} WHERE table_name = ?", (table,))
            if self._has_table("gpkg_ogr_contents"):
                self._execute("DELETE FROM gpkg_ogr_contents WHERE table_name = ?", (table,))
        self._tables.pop(table, None)

    def rename_table(self, old: str, new: str) -> None:
        """Rename a table; its index, triggers and rows in the GeoPackage's tables follow."""
        info = self._table(old)
        self._check_name(new)
        with self._writing():
            if info.geometry is not None:
                self._drop_triggers(info)
            self._execute(f"ALTER TABLE {schema.quote(old)} RENAME TO {schema.quote(new)}")
            renamed = info._replace(name=new)
            if info.geometry is not None:
                rtree = schema.quote(info.rtree)
                self._execute(f"ALTER TABLE {rtree} RENAME TO {schema.quote(renamed.rtree)}")
                self._create_triggers(renamed)
            self._execute(
                "UPDATE gpkg_contents SET table_name = ?, identifier = CASE identifier "
                "WHEN ? THEN ? ELSE identifier END WHERE table_name = ?",
                (new, old, new, old),
            )
            for meta in ("gpkg_geometry_columns", "gpkg_extensions"):
                self._execute(f"UPDATE {meta} SET table_name = ? WHERE table_name = ?", (new, old))
            if self._has_table("gpkg_ogr_contents"):
                self._execute(
                    "UPDATE gpkg_ogr_contents SET table_name = ?, feature_count = NULL "
                    "WHERE table_name = ?",
                    (new, old),
                )
        self._tables.pop(old, None)

    def _geometry_blob(self, info: schema.Table, feature: Mapping[str, Any]) -> bytes | None:
        assert info.type_name is not None
        try:
            return geometry_blobs.encode(
                feature.get("geometry"),
                type_name=info.type_name,
                srs_id=info.srs_id,
                has_z=info.has_z,
            )
        except GeometryError as exc:
            self.unconvertible_geometries += 1
            if self.unconvertible_geometries == 1:
                logger.warning(
                    "a geometry in %s could not be converted and is stored as null "
                    "(object id %s): %s",
                    info.name,
                    attribute(feature.get("attributes") or {}, info.oid),
                    exc,
                )
            return None

    def _row(self, info: schema.Table, feature: Mapping[str, Any]) -> list[Any]:
        attributes = feature.get("attributes") or {}
        oid = attribute(attributes, info.oid)
        if isinstance(oid, float) and oid.is_integer():
            oid = int(oid)
        if not isinstance(oid, int) or isinstance(oid, bool):
            raise ConfigurationError(
                f"a feature for {info.name!r} has no whole-number object id in "
                f"{info.oid!r} (got {oid!r}); ask the layer for its object-id field"
            )
        head = [oid] if info.geometry is None else [oid, self._geometry_blob(info, feature)]
        return head + schema.stored_values(info, attributes)

    def upsert(self, table: str, features: Iterable[Mapping[str, Any]]) -> int:
        """Write Esri JSON features, each replacing any row with its object id.

        A feature's attributes are found whatever their case; a field the feature lacks is
        written as NULL, and a geometry that cannot be converted too (counted in
        `unconvertible_geometries`, logged once).

        Returns:
            The number of features written.

        Raises:
            ConfigurationError: No such table, or a feature without an object id.
        """
        info = self._table(table)
        names = [schema.quote(name) for name in info.names]
        updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
        sql = (
            f"INSERT INTO {schema.quote(table)} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' * len(names))}) ON CONFLICT ({names[0]}) DO "
            + (f"UPDATE SET {updates}" if updates else "NOTHING")
        )
        written = 0
        with self._writing():
            rows = (self._row(info, feature) for feature in features)
            while batch := list(itertools.islice(rows, _CHUNK)):
                self._connection.executemany(sql, batch)
                written += len(batch)
            self._forget_count(table)
        return written

    def delete(self, table: str, object_ids: Iterable[int]) -> int:
        """Delete the features with these object ids; returns how many there were."""
        info = self._table(table)
        deleted = 0
        with self._writing():
            for chunk in _batches(object_ids):
                marks = ", ".join("?" * len(chunk))
                deleted += self._execute(
                    f"DELETE FROM {schema.quote(table)} WHERE {schema.quote(info.oid)} "
                    f"IN ({marks})",
                    chunk,
                ).rowcount
            self._forget_count(table)
        return deleted

    def object_ids(
        self, table: str, first: int | None = None, last: int | None = None
    ) -> array.array[int]:
        """The table's object ids (from *first* to *last*, if given), ascending."""
        oid = schema.quote(self._table(table).oid)
        low = -(2**63) if first is None else first
        high = 2**63 - 1 if last is None else last
        rows = self._execute(
            f"SELECT {oid} FROM {schema.quote(table)} WHERE {oid} BETWEEN ? AND ? ORDER BY {oid}",
            (low, high),
        )
        return array.array("q", (value for (value,) in rows))

    def features(
        self, table: str, object_ids: Iterable[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The table's features (or those with *object_ids*) by ascending object id.

        Each is as a layer query answers (``attributes``, and ``geometry`` in a table with
        one): dates as epoch milliseconds, geometries normalized as `_gpkg_geometry` says.
        `normalized` gives the same for a feature not (yet) written.
        """
        info = self._table(table)
        columns = ", ".join(schema.quote(name) for name in info.names)
        oid = schema.quote(info.oid)
        select = f"SELECT {columns} FROM {schema.quote(table)}"
        if object_ids is None:
            for row in self._execute(f"{select} ORDER BY {oid}"):
                yield schema.feature_of(info, row)
            return
        for chunk in _batches(sorted(set(object_ids))):
            where = f"WHERE {oid} IN ({', '.join('?' * len(chunk))}) ORDER BY {oid}"
            for row in self._execute(f"{select} {where}", chunk).fetchall():
                yield schema.feature_of(info, row)

    def normalized(self, table: str, feature: Mapping[str, Any]) -> dict[str, Any]:
        """*feature* as `features` would give it back once `upsert` wrote it.

        For comparing a server's features with the table's: fields the table lacks are
        left out, ones the feature lacks are None, dates and geometries are normalized.
        """
        info = self._table(table)
        return schema.feature_of(info, self._row(info, feature))

    def add_column(self, table: str, field: Mapping[str, Any]) -> None:
        """Add a column for an ArcGIS field (NULL in every existing row)."""
        info = self._table(table)
        if field["name"].lower() in (name.lower() for name in info.names):
            raise ConfigurationError(f"{table!r} already has a column named {field['name']!r}")
        with self._writing():
            self._execute(
                f"ALTER TABLE {schema.quote(table)} ADD COLUMN "
                f"{schema.quote(field['name'])} {schema.column_type(field)}"
            )
        self._tables.pop(table, None)

    def drop_column(self, table: str, name: str) -> None:
        """Drop an attribute column (not the object id or the geometry)."""
        info = self._table(table)
        kept = [(n, kind) for n, kind in info.attributes if n != name]
        if len(kept) == len(info.attributes):
            raise ConfigurationError(
                f"{table!r} has no attribute column {name!r} to drop; its columns: "
                f"{[n for n, _ in info.attributes]}"
            )
        with self._writing():
            if _HAS_DROP_COLUMN:
                self._execute(f"ALTER TABLE {schema.quote(table)} DROP COLUMN {schema.quote(name)}")
            else:
                self._rebuild_without(info, name)
        self._tables.pop(table, None)

    def _rebuild_without(self, info: schema.Table, name: str) -> None:
        """DROP COLUMN for SQLite before 3.35: a copy of the table without the column."""
        columns = [c for c in info.names if c != name]
        definitions = [
            f"{schema.quote(column)} {kind}" + (" PRIMARY KEY NOT NULL" if primary else "")
            for _, column, kind, _, _, primary in self._execute(
                f"PRAGMA table_info({schema.quote(info.name)})"
            )
            if column != name
        ]
        temporary = f"{info.name}__rebuild"
        quoted = ", ".join(schema.quote(c) for c in columns)
        self._execute(f"CREATE TABLE {schema.quote(temporary)} ({', '.join(definitions)})")
        self._execute(
            f"INSERT INTO {schema.quote(temporary)} ({quoted}) "
            f"SELECT {quoted} FROM {schema.quote(info.name)}"
        )
        self._execute(f"DROP TABLE {schema.quote(info.name)}")  # its triggers go with it
        self._execute(f"ALTER TABLE {schema.quote(temporary)} RENAME TO {schema.quote(info.name)}")
        if info.geometry is not None:
            self._create_triggers(info)

    def _forget_count(self, table: str) -> None:
        """GDAL's cached feature count, if GDAL made one, is stale: let GDAL count again."""
        if self._has_table("gpkg_ogr_contents"):
            self._execute(
                "UPDATE gpkg_ogr_contents SET feature_count = NULL WHERE table_name = ?", (table,)
            )

    def update_extent(self, table: str) -> None:
        """Set the table's extent in ``gpkg_contents`` from its index, and its last change.

        The extent is the R-tree's, whose 32-bit bounds SQLite rounds outward (by at most
        a few millionths), so it may be a hair larger than the geometries' own.
        """
        info = self._table(table)
        extent: Sequence[Any] = (None, None, None, None)
        if info.geometry is not None:
            extent = self._execute(
                f"SELECT min(minx), min(miny), max(maxx), max(maxy) FROM {schema.quote(info.rtree)}"
            ).fetchone()
        with self._writing():
            self._execute(
                "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?, "
                "last_change = ? WHERE table_name = ?",
                (*extent, schema.now_iso(), table),
            )

    def get_meta(self, key: str) -> Any | None:
        """The JSON value stored under *key* by `set_meta`, or None."""
        if not self._has_table(META_TABLE):
            return None
        row = self._execute(f"SELECT value FROM {META_TABLE} WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under *key* (in this library's ``archibald_sync`` table)."""
        text = json.dumps(value, ensure_ascii=False)
        with self._writing():
            if not self._has_table(META_TABLE):
                self.create_feature_table(
                    META_TABLE,
                    fields=[
                        {"name": "key", "type": "esriFieldTypeString"},
                        {"name": "value", "type": "esriFieldTypeString"},
                    ],
                    object_id_field="id",
                    geometry_type=None,
                    wkid=None,
                    description="archibald's own state (JSON values by key)",
                )
                self._execute(f"CREATE UNIQUE INDEX {META_TABLE}_key ON {META_TABLE} (key)")
            self._execute(
                f"INSERT INTO {META_TABLE} (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, text),
            )
