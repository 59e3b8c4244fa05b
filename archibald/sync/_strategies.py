"""How a sync reads what changed on the server: by ``extractChanges``, by edit date, or by
copying the whole layer again; and the `Target` each writes into.

Every strategy ends with the copy equal to the server's layer as it read it, and with the
bookmarks the next sync continues from: the server generation (taken before anything is
read, so an edit made during the sync is found again next time) and the newest edit date
seen. A feature read again that has not changed is compared, not counted.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from .._geopackage import GeoPackage
from .._jobs import wait_for_job
from .._validate import is_whole
from ..exceptions import ArcGISError, ServiceError
from ..layers import FeatureLayer, LayerInfo, MapLayer
from ..layers._model import attribute
from ..layers._partitions import and_clause, range_clause

__all__ = [
    "STRATEGIES",
    "Fallback",
    "Mirrored",
    "Strategy",
    "Target",
    "Tracking",
    "edit_date_field",
    "full_copy",
    "run_strategy",
    "tracking_state",
]

Strategy = Literal["extractChanges", "editDate", "full"]
STRATEGIES: tuple[Strategy, ...] = ("extractChanges", "editDate", "full")

_IDS_PER_QUERY = 500  # object ids named in one ``OID IN (...)`` clause
_RANGE_SIZE = 100_000  # features in an id range whose count is compared with the copy's
# Edit dates are compared in the zone the layer declares for them; when it is not UTC,
# the window is widened by the largest offset from UTC, so that no edit is missed.
_LARGEST_UTC_OFFSET_MS = 14 * 3600 * 1000


Layer = FeatureLayer | MapLayer


@attrs.frozen
class Fallback:
    """A strategy that could not be used, and why."""

    strategy: Strategy
    reason: str


@attrs.frozen(kw_only=True)
class Mirrored:
    """How a sync went: the strategy used, those passed over, and the new bookmarks."""

    strategy: Strategy
    fallbacks: tuple[Fallback, ...] = ()
    server_gen: int | None = None
    watermark: int | None = None
    edit_date_field: str | None = None


@attrs.frozen(kw_only=True)
class Tracking:
    """What the service says of its change tracking for the layer."""

    enabled: bool
    server_gen: int | None = None
    min_server_gen: int | None = None
    why_not: str = ""


@attrs.define(kw_only=True)
class Target:
    """The table a sync writes into, and its counts.

    During a full copy the features go into a new table and are compared with the old
    one (`compare_with`); otherwise both are the copy's table.
    """

    gpkg: GeoPackage
    table: str
    schema: Mapping[str, Any]
    info: LayerInfo
    added: int = 0
    updated: int = 0
    deleted: int = 0
    newest_edit: int | None = None
    write_to: str | None = None
    compare_with: str | None = None
    edits_until: int = 0

    def __attrs_post_init__(self) -> None:
        self.write_to = self.compare_with = self.table
        # No edit-date watermark goes past the server's last edit before this sync began
        # (else the wall clock then): an edit made during a long crawl, to a feature
        # already read, is dated before the newest date the crawl saw later on.
        editing = self.info.raw.get("editingInfo")
        last = editing.get("lastEditDate") if isinstance(editing, Mapping) else None
        now = round(datetime.datetime.now(datetime.UTC).timestamp() * 1000)
        self.edits_until = last if is_whole(last) else now

    def watermark(self, previous: Any = None) -> int | None:
        """The newest edit date seen (or *previous*), no later than `edits_until`."""
        newest = _newest(previous, self.newest_edit)
        return None if newest is None else min(newest, self.edits_until)

    def write(self, features: Sequence[Mapping[str, Any]]) -> None:
        """Write *features*, counting those new to the copy and those that changed."""
        assert self.write_to is not None
        field = edit_date_field(self.info)
        if field is not None:
            for feature in features:
                stamp = attribute(feature.get("attributes") or {}, field)
                if is_whole(stamp) and (self.newest_edit is None or stamp > self.newest_edit):
                    self.newest_edit = stamp
        if self.compare_with is None:  # the first copy: everything is new
            self.added += self.gpkg.upsert(self.write_to, features)
            return
        new, changed = self._differences(self.compare_with, features)
        self.added += len(new)
        self.updated += len(changed)
        if self.write_to == self.compare_with:
            self.gpkg.upsert(self.write_to, [*new, *changed])
        else:
            self.gpkg.upsert(self.write_to, features)

    def _differences(
        self, table: str, features: Sequence[Mapping[str, Any]]
    ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """(features *table* lacks, features that differ from its rows), compared as the
        table would hold them."""
        field = self.schema["object_id_field"]
        by_id = {attribute(f.get("attributes") or {}, field): f for f in features}
        stored = {row["attributes"][field]: row for row in self.gpkg.features(table, by_id.keys())}
        new, changed = [], []
        for oid, feature in by_id.items():
            if oid not in stored:
                new.append(feature)
            elif self.gpkg.normalized(table, feature) != stored[oid]:
                changed.append(feature)
        return new, changed

    def delete(self, object_ids: Iterable[int]) -> None:
        """Remove these features from the copy (those it does not hold are skipped)."""
        assert self.write_to is not None
        self.deleted += self.gpkg.delete(self.write_to, object_ids)


def edit_date_field(info: LayerInfo) -> str | None:
    """The layer's edit-date field (editor tracking), if it has one."""
    edit_info = info.raw.get("editFieldsInfo")
    if not isinstance(edit_info, Mapping):
        return None
    name = edit_info.get("editDateField")
    names = {f.get("name", "").lower(): f.get("name") for f in info.fields}
    found = names.get(name.lower()) if isinstance(name, str) else None
    return found if isinstance(found, str) else None


async def tracking_state(layer: Layer, info: LayerInfo) -> Tracking:
    """Whether the layer's service tracks changes, and its generations for the layer."""
    if not isinstance(layer, FeatureLayer):
        return Tracking(enabled=False, why_not="only feature services track changes")
    service_url = layer.url.rsplit("/", 1)[0]
    body = await layer.client.get_json(url=service_url, params={"returnUpdates": True})
    capabilities = {c.strip().lower() for c in str(body.get("capabilities", "")).split(",")}
    if "changetracking" not in capabilities:
        return Tracking(enabled=False, why_not="the service does not track changes")
    gens = (body.get("changeTrackingInfo") or {}).get("layerServerGens") or []
    for entry in gens if isinstance(gens, list) else []:
        if isinstance(entry, Mapping) and entry.get("id") == layer.layer_id:
            gen, low = entry.get("serverGen"), entry.get("minServerGen")
            if is_whole(gen):
                return Tracking(
                    enabled=True, server_gen=gen, min_server_gen=low if is_whole(low) else None
                )
    return Tracking(enabled=False, why_not="the service gave no server generation for the layer")


async def run_strategy(
    layer: Layer,
    where: str,
    target: Target,
    record: Mapping[str, Any],
    tracking: Tracking,
    *,
    wanted: Strategy | Literal["auto"],
    window_ms: int,
) -> Mirrored:
    """Bring the copy up to date with the best strategy that works, from *wanted* on."""
    fallbacks: list[Fallback] = []
    start = 0 if wanted == "auto" else STRATEGIES.index(wanted)
    for strategy in STRATEGIES[start:]:
        if strategy == "extractChanges":
            outcome = await _by_extract_changes(layer, where, target, record, tracking)
        elif strategy == "editDate":
            outcome = await _by_edit_date(layer, where, target, record, tracking, window_ms)
        else:
            reason = "; ".join(f"{f.strategy}: {f.reason}" for f in fallbacks) or "asked for"
            outcome = await full_copy(layer, where, target, tracking, reason=reason)
        if isinstance(outcome, Mirrored):
            return attrs.evolve(outcome, fallbacks=tuple(fallbacks))
        fallbacks.append(Fallback(strategy, outcome))
    raise AssertionError("the full copy always works")  # pragma: no cover


# -- the strategies ------------------------------------------------------------------------


async def full_copy(
    layer: Layer, where: str, target: Target, tracking: Tracking, *, reason: str
) -> Mirrored:
    """Copy every feature into a new table, compared with the old one, and swap it in."""
    del reason  # the caller reports it
    gpkg, schema = target.gpkg, target.schema
    old = target.table if target.table in gpkg.tables() else None
    new = f"{target.table}__sync"
    if new in gpkg.tables():
        gpkg.drop_table(new)
    gpkg.create_feature_table(
        new,
        fields=schema["fields"],
        object_id_field=schema["object_id_field"],
        geometry_type=schema["geometry_type"],
        wkid=schema["wkid"],
        has_z=schema["has_z"],
    )
    target.write_to, target.compare_with = new, old
    await _crawl(layer, where, target)
    if old is not None:
        target.deleted += len(set(gpkg.object_ids(old)) - set(gpkg.object_ids(new)))
        gpkg.drop_table(old)
    gpkg.rename_table(new, target.table)
    target.write_to = target.compare_with = target.table
    return Mirrored(
        strategy="full",
        server_gen=tracking.server_gen,
        watermark=target.watermark(),
        edit_date_field=edit_date_field(target.info),
    )


async def _by_extract_changes(
    layer: Layer, where: str, target: Target, record: Mapping[str, Any], tracking: Tracking
) -> Mirrored | str:
    if not tracking.enabled:
        return tracking.why_not
    gen = record.get("server_gen")
    if not is_whole(gen):
        return "the copy has no server generation to continue from"
    if tracking.min_server_gen is not None and gen < tracking.min_server_gen:
        return (
            f"the changes since generation {gen} were purged by the server (it keeps "
            f"them from {tracking.min_server_gen} on)"
        )
    assert isinstance(layer, FeatureLayer)  # tracking is enabled for feature layers only
    service_url = layer.url.rsplit("/", 1)[0]
    try:
        body = await layer.client.post_json(
            url=f"{service_url}/extractChanges",
            data={
                "layers": json.dumps([layer.layer_id]),
                "layerServerGens": json.dumps([{"id": layer.layer_id, "serverGen": gen}]),
                "returnInserts": True,
                "returnUpdates": True,
                "returnDeletes": True,
                "returnIdsOnly": True,
                "dataFormat": "json",
            },
        )
        status_url = body.get("statusUrl")
        if isinstance(status_url, str):  # answered as a job, as ArcGIS Online may
            result_url = await wait_for_job(layer.client, status_url, "extractChanges")
            body = await layer.client.get_json(url=result_url)
        changed, deleted, new_gen = _read_changes(
            body, layer.layer_id, target.schema["object_id_field"], service_url
        )
    except ArcGISError as exc:
        return f"extractChanges failed ({exc})"
    seen = await _fetch(layer, where, target, changed)
    target.delete(deleted | (changed - seen))
    return Mirrored(
        strategy="extractChanges",
        server_gen=new_gen,
        watermark=target.watermark(record.get("watermark")),
        edit_date_field=edit_date_field(target.info),
    )


def _read_changes(
    body: Mapping[str, Any], layer_id: int, oid_field: str, url: str
) -> tuple[set[int], set[int], int]:
    """(ids added or updated, ids deleted, the new server generation) of an answer."""

    def ids(value: Any) -> set[int]:
        if value is None:
            return set()
        if not isinstance(value, list) or not all(is_whole(v) for v in value):
            raise ServiceError(None, "extractChanges answered object ids that are not", url=url)
        return set(value)

    gens = [g for g in body.get("layerServerGens") or [] if isinstance(g, Mapping)]
    new_gen = next((g.get("serverGen") for g in gens if g.get("id") == layer_id), None)
    if not is_whole(new_gen):
        raise ServiceError(None, "extractChanges answered no server generation", url=url)
    edits = [e for e in body.get("edits") or [] if isinstance(e, Mapping)]
    edit = next((e for e in edits if e.get("id") == layer_id), {})
    if "objectIds" in edit:
        found = edit["objectIds"] or {}
        changed = ids(found.get("adds")) | ids(found.get("updates"))
        return changed, ids(found.get("deletes")), new_gen
    features = edit.get("features") or {}  # a server that sent whole features anyway
    changed = set()
    for key in ("adds", "updates"):
        for feature in features.get(key) or []:
            oid = attribute((feature or {}).get("attributes") or {}, oid_field)
            changed |= ids([oid])
    return changed, ids(features.get("deleteIds")), new_gen


async def _by_edit_date(
    layer: Layer,
    where: str,
    target: Target,
    record: Mapping[str, Any],
    tracking: Tracking,
    window_ms: int,
) -> Mirrored | str:
    field = edit_date_field(target.info)
    if field is None:
        return "the layer has no edit-date field (editor tracking is off)"
    watermark = record.get("watermark")
    if record.get("edit_date_field") != field or not is_whole(watermark):
        return "the copy has no edit date to continue from"
    since = watermark - window_ms
    zone = (target.info.raw.get("editFieldsInfo") or {}).get("dateFieldsTimeReference")
    if isinstance(zone, Mapping) and str(zone.get("timeZone", "UTC")).upper() not in ("UTC", ""):
        since -= _LARGEST_UTC_OFFSET_MS
    await _crawl(layer, and_clause(where, f"{field} >= {_timestamp(since)}"), target)
    await _reconcile(layer, where, target)
    return Mirrored(
        strategy="editDate",
        server_gen=tracking.server_gen,
        watermark=target.watermark(watermark),
        edit_date_field=field,
    )


async def _reconcile(layer: Layer, where: str, target: Target) -> None:
    """Remove what the server deleted, range by range of object ids.

    Deletions leave no edit date. Once the edited features are copied, the copy holds
    every feature the server has (each was there at the last sync or was edited since),
    so an id range that holds as many features on the server (its statistics) as in the
    copy is whole; only the other ranges are listed and compared, so a layer of millions
    is never listed in one request. The ranges cover the smallest id to the largest: the
    copy's ids outside them are gone from the server.
    """
    gpkg, table, field = target.gpkg, target.table, target.schema["object_id_field"]
    parts = await layer.partitions(where, size=_RANGE_SIZE)
    first = parts[0].first_id if parts else 1
    last = parts[-1].last_id if parts else 0
    target.delete(
        [*gpkg.object_ids(table, last=first - 1), *gpkg.object_ids(table, first=last + 1)]
    )
    for part in parts:
        local = set(gpkg.object_ids(table, part.first_id, part.last_id))
        if len(local) == part.count:
            continue
        in_range = range_clause(where, field, part.first_id, part.last_id)
        server = set(await layer.object_ids(in_range))
        target.delete(local - server)
        # A feature that matched the filter without a new edit date, to be complete.
        await _fetch(layer, where, target, server - local)


# -- reading features ------------------------------------------------------------------------


async def _crawl(layer: Layer, where: str, target: Target) -> set[int]:
    """Every feature matching *where*, exactly once, into *target*; their ids."""
    has_geometry = target.schema["geometry_type"] is not None
    pages = layer.pages(
        where, out_sr=target.schema["wkid"] if has_geometry else None,
        return_geometry=has_geometry,
    )  # fmt: skip
    seen: set[int] = set()
    async with pages:
        async for page in pages:
            target.write(page.features)
            seen.update(page.object_ids)
    return seen


async def _fetch(layer: Layer, where: str, target: Target, object_ids: set[int]) -> set[int]:
    """The features with these ids that match *where*, into *target*; their ids."""
    field = target.schema["object_id_field"]
    seen: set[int] = set()
    ordered = sorted(object_ids)
    for start in range(0, len(ordered), _IDS_PER_QUERY):
        chunk = ordered[start : start + _IDS_PER_QUERY]
        seen |= await _crawl(
            layer, and_clause(where, f"{field} IN ({','.join(map(str, chunk))})"), target
        )
    return seen


def _timestamp(epoch_ms: int) -> str:
    """A standard SQL timestamp literal for an epoch-ms instant, in UTC."""
    instant = datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.UTC)
    return f"TIMESTAMP '{instant:%Y-%m-%d %H:%M:%S}'"


def _newest(a: Any, b: int | None) -> int | None:
    values = [v for v in (a, b) if is_whole(v)]
    return max(values) if values else None
