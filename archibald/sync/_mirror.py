"""`LayerMirror`: one layer kept current in a GeoPackage, and the record of its syncs.

A mirror file holds one layer: its features in a table named after the layer, and a
record (in the GeoPackage's ``archibald_sync`` table) of the layer URL, the where clause,
the schema it was copied with, the bookmarks each strategy continues from (the server
generation, the newest edit date) and the last syncs. A sync of another layer or another
where clause into the same file is refused rather than mixing two copies.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import anyio
import attrs

from .._geopackage import META_TABLE, GeoPackage
from .._gpkg_schema import table_name_for
from .._secrets import redact_url
from .._validate import is_number
from ..exceptions import ArchieError, ConfigurationError, InvalidParameterError
from ..layers import FeatureLayer, LayerInfo, MapLayer
from ..layers._model import schema_changes, wkid_of
from ..layers._options import check_where
from ._strategies import (
    STRATEGIES,
    Mirrored,
    Strategy,
    Target,
    full_copy,
    run_strategy,
    tracking_state,
)

__all__ = ["LayerMirror", "SyncReport"]

_RECORD_KEY = "layer"
_VERSION = 1
_KEPT_SYNCS = 100  # the newest syncs listed in the record
_WGS84 = 4326


@attrs.frozen(kw_only=True)
class SyncReport:
    """What one `LayerMirror.sync` did.

    Attributes:
        url: The layer's URL.
        table: The GeoPackage table that holds the copy.
        strategy: How the changes were found: ``"extractChanges"``, ``"editDate"`` or
            ``"full"``.
        added: Features new to the copy.
        updated: Features whose attributes or geometry changed (features read again but
            unchanged are not counted).
        deleted: Features removed from the copy.
        seconds: How long the sync took.
        first: Whether this was the copy's first sync.
        fallbacks: Why better strategies were not used, one line each (empty when the
            best one the layer offers worked).
        schema_changes: How the layer's schema changed since the last sync (each one
            makes the sync a full copy with the new schema).
    """

    url: str
    table: str
    strategy: Strategy
    added: int
    updated: int
    deleted: int
    seconds: float
    first: bool = False
    fallbacks: tuple[str, ...] = ()
    schema_changes: tuple[str, ...] = ()

    def __str__(self) -> str:
        return (
            f"added {self.added:,}, updated {self.updated:,}, deleted {self.deleted:,} "
            f"in {self.seconds:.1f} s, by {self.strategy}"
        )


class LayerMirror:
    """A GeoPackage at *path* that keeps a copy of one layer current.

    ```python
    mirror = LayerMirror("parcels.gpkg")
    report = await mirror.sync(layer)  # the first sync copies the layer
    print(report)  # added 10,000, updated 0, deleted 0 in 3.2 s, by full
    ...
    report = await mirror.sync(layer)  # later ones bring the copy up to date
    ```

    Args:
        path: The GeoPackage file; created by the first sync.
        safety_window: Seconds of edits read again by the ``editDate`` strategy, before
            the newest edit date the last sync saw: an edit stamped by a server clock
            that is behind, or made in a transaction that committed after that sync,
            is still found. Features read again but unchanged are not counted.
    """

    def __init__(self, path: str | os.PathLike[str], *, safety_window: float = 900.0) -> None:
        if not is_number(safety_window) or not 0 <= safety_window:
            raise ConfigurationError(
                f"safety_window must be a number of seconds >= 0, got {safety_window!r}"
            )
        self._path = Path(path)
        self._safety_window = float(safety_window)

    @property
    def path(self) -> Path:
        """The GeoPackage file."""
        return self._path

    def __repr__(self) -> str:
        return f"LayerMirror({str(self._path)!r})"

    def record(self) -> dict[str, Any] | None:
        """The record the syncs keep in the file (layer URL, where clause, strategy,
        bookmarks, the last syncs), or None before the first sync."""
        if not self._path.exists():
            return None
        with GeoPackage.open(self._path) as gpkg:
            record = gpkg.get_meta(_RECORD_KEY)
        return dict(record) if isinstance(record, Mapping) else None

    async def sync(
        self,
        layer: FeatureLayer | MapLayer,
        *,
        where: str = "1=1",
        strategy: Strategy | Literal["auto"] = "auto",
    ) -> SyncReport:
        """Bring the copy up to date with *layer*; the first sync copies it.

        Args:
            layer: The layer to copy.
            where: Which of its features to keep (the same at every sync of a file).
            strategy: ``"auto"`` (the best the layer offers), or one of
                ``"extractChanges"``, ``"editDate"`` and ``"full"``; a strategy the
                layer cannot use falls back to the next, as under ``"auto"``.

        Returns:
            What the sync did.

        Raises:
            ConfigurationError: The file mirrors another layer or another where clause,
                or is not a GeoPackage.
            IncompleteResultError: Some features could not be fetched; the copy is left
                as the last sync made it.
        """
        where = check_where(where)
        if strategy != "auto" and strategy not in STRATEGIES:
            raise InvalidParameterError(
                f"strategy must be 'auto' or one of {', '.join(STRATEGIES)}, got {strategy!r}"
            )
        started = anyio.current_time()
        info = await layer.info(refresh=True)
        schema = _schema(info)
        with GeoPackage.open(self._path) as gpkg, gpkg.transaction():
            record = _checked_record(gpkg.get_meta(_RECORD_KEY), layer.url, where)
            changes = _schema_changes(record["schema"], schema) if record else []
            table = (
                record["table"]
                if record
                else table_name_for(info.name, [*gpkg.tables(), META_TABLE])
            )
            target = Target(gpkg=gpkg, table=table, schema=schema, info=info)
            tracking = await tracking_state(layer, info)
            if record is None or changes:
                reason = "the first sync" if record is None else "the schema changed"
                mirrored = await full_copy(layer, where, target, tracking, reason=reason)
            else:
                mirrored = await run_strategy(
                    layer,
                    where,
                    target,
                    record,
                    tracking,
                    wanted=strategy,
                    window_ms=round(self._safety_window * 1000),
                )
            gpkg.update_extent(table)
            report = SyncReport(
                url=layer.url,
                table=table,
                strategy=mirrored.strategy,
                added=target.added,
                updated=target.updated,
                deleted=target.deleted,
                seconds=anyio.current_time() - started,
                first=record is None,
                fallbacks=tuple(f.reason for f in mirrored.fallbacks),
                schema_changes=tuple(changes),
            )
            gpkg.set_meta(_RECORD_KEY, _new_record(record, report, where, schema, mirrored))
        return report

    async def sync_every(
        self,
        layer: FeatureLayer | MapLayer,
        period: float,
        *,
        where: str = "1=1",
        strategy: Strategy | Literal["auto"] = "auto",
        on_report: Callable[[SyncReport], object] | None = None,
        on_error: Callable[[ArchieError], object] | None = None,
    ) -> None:
        """Sync now, then every *period* seconds, until cancelled.

        The syncs keep to the schedule (after a sync that takes longer than *period*, the
        missed turns are skipped). Cancelling it during a sync leaves the copy as the last
        complete sync made it.

        Args:
            layer: The layer to copy.
            period: Seconds from the start of one sync to the start of the next.
            where: Which of its features to keep.
            strategy: As for `sync`.
            on_report: Called with each sync's report.
            on_error: Called with the error of a failed sync, after which the syncs go
                on (a server that is down for an hour does not end a week of syncs);
                without it, the first error is raised. A `ConfigurationError` (a file
                that mirrors another layer, ...) is always raised: it would fail again.
        """
        if not is_number(period) or not period > 0:
            raise ConfigurationError(f"period must be a number of seconds > 0, got {period!r}")
        next_at = anyio.current_time()
        while True:
            try:
                report = await self.sync(layer, where=where, strategy=strategy)
            except ArchieError as exc:
                if on_error is None or isinstance(exc, ConfigurationError | InvalidParameterError):
                    raise
                on_error(exc)
            else:
                if on_report is not None:
                    on_report(report)
            next_at += period
            now = anyio.current_time()
            if next_at < now:  # late: skip the missed turns rather than run them in a burst
                next_at += period * ((now - next_at) // period + 1)
            await anyio.sleep(next_at - now)


# -- the schema and the record -------------------------------------------------------------


def _schema(info: LayerInfo) -> dict[str, Any]:
    """What a copy's table is made from: fields, object-id field, geometry, CRS."""
    # a layer described by WKT alone is copied in WGS84
    wkid = wkid_of(info.spatial_reference) or _WGS84
    return {
        "fields": [dict(f) for f in info.fields],
        "object_id_field": info.object_id_field,
        "geometry_type": info.geometry_type,
        "wkid": wkid if info.geometry_type else None,
        # The crawl asks for 2D geometries (no returnZ): z values are not copied.
        "has_z": False,
    }


def _schema_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """How the layer's schema changed, in words; empty when it did not."""
    others = [
        (what, old.get(key), new.get(key))
        for key, what in (
            ("object_id_field", "object-id field"),
            ("geometry_type", "geometry type"),
            ("wkid", "spatial reference"),
            ("has_z", "z values"),
        )
    ]
    return schema_changes(
        {f["name"]: f.get("type") for f in old["fields"]},
        {f["name"]: f.get("type") for f in new["fields"]},
        others,
    )


def _checked_record(record: Any, url: str, where: str) -> dict[str, Any] | None:
    """The file's record, if it is one for this layer and where clause."""
    if record is None:
        return None
    if not isinstance(record, Mapping) or record.get("version") != _VERSION:
        raise ConfigurationError(
            "the GeoPackage holds a sync record archibald cannot read; sync into a new file"
        )
    if record["url"] != url:
        raise ConfigurationError(
            f"the GeoPackage mirrors {redact_url(record['url'])}, not {redact_url(url)}: "
            "sync each layer into its own file"
        )
    if record["where"] != where:
        raise ConfigurationError(
            f"the GeoPackage mirrors the features where {record['where']!r}, not "
            f"{where!r}: sync into a new file, or give the same where clause"
        )
    return dict(record)


def _new_record(
    old: Mapping[str, Any] | None,
    report: SyncReport,
    where: str,
    schema: Mapping[str, Any],
    mirrored: Mirrored,
) -> dict[str, Any]:
    at = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    entry = {
        "at": at,
        "strategy": report.strategy,
        "added": report.added,
        "updated": report.updated,
        "deleted": report.deleted,
        "seconds": round(report.seconds, 3),
        "fallbacks": list(report.fallbacks),
        "schema_changes": list(report.schema_changes),
    }
    syncs = [*(old or {}).get("syncs", []), entry][-_KEPT_SYNCS:]
    return {
        "version": _VERSION,
        "url": report.url,
        "where": where,
        "table": report.table,
        "schema": dict(schema),
        "strategy": report.strategy,
        "server_gen": mirrored.server_gen,
        "watermark": mirrored.watermark,
        "edit_date_field": mirrored.edit_date_field,
        "synced_at": at,
        "syncs": syncs,
    }
