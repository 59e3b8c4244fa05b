"""Services, layers and their features, for FakeArcGIS.

A `FakeLayer` holds its features by object id, in ascending order, or, when generated
lazily, only their id range (`_generated.LazyRows` makes each feature when it is read):
it finds the ids that match a where clause, in the order asked for, and applies edits
(checked by the rules in `_edits`).
"""

from __future__ import annotations

import bisect
import random
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from .._validate import is_number
from ._attachments import AttachmentStore
from ._changes import ChangeLog, LayerTracking
from ._edits import copy_row, edit_rows
from ._generated import GeometryKind, LazyRows
from ._where import compile_where
from ._wire import operation_refused

__all__ = ["GEOMETRY_TYPES", "FakeLayer", "FakeService"]

GEOMETRY_TYPES: dict[str, str] = {
    "point": "esriGeometryPoint",
    "multipoint": "esriGeometryMultipoint",
    "polyline": "esriGeometryPolyline",
    "polygon": "esriGeometryPolygon",
}

WGS84 = {"wkid": 4326, "latestWkid": 4326}

# A lazy layer keeps the encoded features of this many pages per output shape, and match
# lists of at most this many ids in all: serving millions must not keep millions.
_LAZY_PAGES_KEPT = 4
_LAZY_MATCHED_IDS = 200_000


@attrs.define(eq=False)
class FakeLayer:
    """One layer (or table) of a FakeArcGIS service, with its features.

    Its attributes are switches a test may flip at any time: for example
    ``layer.supports_pagination = False`` makes the layer refuse ``resultOffset`` as old
    servers do, and ``layer.max_record_count = 500`` lowers the page size.

    A layer added with ``lazy=True`` holds no features: it makes each one when a query
    reads it, so that a layer of millions costs a few megabytes. Its queries stay fast
    when they ask for every feature (``1=1``), name them (``objectIds``), or end their
    where clause in an object-id range (``(where) AND OBJECTID >= a AND OBJECTID <= b``,
    or the range alone: only the range's features are tested); any other where clause,
    or ``orderByFields`` on a field other than the object id, reads every feature, made
    one by one (and the ``unordered`` fault lists every matching id). It cannot be
    edited: applyEdits answers an error.

    Attributes:
        id: The layer id in its service.
        name: The layer name.
        fields: Esri field definitions (``name``, ``type``, ``alias``...).
        object_id_field: The name of the object-id field.
        geometry_type: ``esriGeometryPoint`` and so on, or None for a table.
        max_record_count: The most features one query returns.
        supports_pagination: Whether ``resultOffset``/``resultRecordCount`` work.
        supports_statistics: Whether ``outStatistics`` works.
        supports_order_by: Whether ``orderByFields`` works.
        subtype_field: The field whose value is a feature's subtype code, if any.
        subtypes: The subtypes (``{"code", "name", "domains": {field: domain}}``), served
            as ``subtypes`` with ``subtypeField`` (and as the older ``types`` with
            ``typeIdField``).
        capabilities: The advertised capabilities, such as ``"Query"`` or
            ``"Create,Delete,Query,Update,Editing"``.
        spatial_reference: The layer's spatial reference.
        has_attachments: Whether its features may have attachments (``hasAttachments``);
            without it, every attachment operation is refused.
        supports_query_attachments: Whether ``queryAttachments`` works (10.5+ servers),
            when the layer has attachments.
        max_upload_bytes: The largest attachment upload accepted, in bytes; None (the
            default) for no limit (ArcGIS Server's default is 2 GB).
        attachments: The features' attachments (see `AttachmentStore`).
        url: The layer's path below the site root, set when it is added.
        id_list_limit: The most ids a ``returnIdsOnly`` query may match; None (the
            default) for no limit. Counts, statistics and features are not limited.
        supports_async_apply_edits: Whether applyEdits takes ``async=true`` (advertised
            as ``advancedEditingCapabilities.supportsAsyncApplyEdits``, as 10.9.1+
            servers do): it then answers a ``statusUrl`` to poll.
        id_list_failure: What a ``returnIdsOnly`` query that matches more ids than
            *id_list_limit* gets, as a server overwhelmed by a huge id list answers:
            ``"error"`` (the default), HTTP 200 with error 500 ``Error performing query
            operation``, as ArcGIS Server answers a query its database failed;
            ``"timeout"``, HTTP 504 with an HTML page, as a web adaptor or proxy in front
            of it answers when it gives up waiting; ``"truncate"``, the lowest
            *id_list_limit* ids with ``"exceededTransferLimit": true``. Each counts in
            `FakeStatistics.faults_injected`.
        tracking: Its change log, editor-tracking fields and edit dates (change the
            layer through `FakeArcGIS.edit` and `FakeArcGIS.add_field` to keep it true).
    """

    id: int
    name: str
    fields: list[dict[str, Any]]
    object_id_field: str
    geometry_type: str | None
    max_record_count: int = 1000
    supports_pagination: bool = True
    supports_statistics: bool = True
    supports_order_by: bool = True
    capabilities: str = "Query"
    supports_async_apply_edits: bool = False
    subtype_field: str | None = None
    subtypes: list[dict[str, Any]] = attrs.Factory(list)
    spatial_reference: dict[str, Any] = attrs.Factory(lambda: dict(WGS84))
    url: str = ""
    has_attachments: bool = False
    supports_query_attachments: bool = True
    max_upload_bytes: int | None = None
    attachments: AttachmentStore = attrs.field(factory=AttachmentStore, repr=False)
    id_list_limit: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            [attrs.validators.instance_of(int), attrs.validators.ge(0)]
        ),
    )
    id_list_failure: Literal["error", "timeout", "truncate"] = attrs.field(
        default="error", validator=attrs.validators.in_(("error", "timeout", "truncate"))
    )
    tracking: LayerTracking = attrs.field(
        factory=lambda: LayerTracking(changes=ChangeLog(min_server_gen=0, server_gen=0)),
        repr=False,
    )
    _rows: dict[int, dict[str, Any]] = attrs.field(factory=dict, repr=False)
    _lazy: LazyRows | None = attrs.field(default=None, repr=False, init=False)
    _version: int = attrs.field(default=0, repr=False)
    # The highest object id ever given: a deleted feature's id is never given again.
    _matches: dict[tuple[Any, ...], Sequence[int]] = attrs.field(factory=dict, repr=False)
    _fragments: dict[tuple[Any, ...], dict[int, bytes]] = attrs.field(factory=dict, repr=False)
    # (version, bounds): a server keeps its layer's extent, it does not scan every feature
    _bounds: tuple[int, tuple[float, float, float, float] | None] | None = attrs.field(
        default=None, repr=False
    )

    @property
    def features(self) -> list[dict[str, Any]]:
        """The layer's features in object-id order (copies: edit through apply_edits).

        On a lazy layer this makes every feature: slow and big for millions.
        """
        if self._lazy is not None:
            return [self._lazy.row(oid) for oid in self._lazy.ids]
        return [copy_row(row) for row in self._rows.values()]

    @property
    def object_ids(self) -> list[int]:
        """Every object id, ascending (on a lazy layer, a list as long as the layer)."""
        return list(self._lazy.ids if self._lazy is not None else self._rows)

    @property
    def lazy(self) -> bool:
        """Whether the features are made when read (``add_feature_layer(lazy=True)``)."""
        return self._lazy is not None

    def __len__(self) -> int:
        return len(self._lazy.ids if self._lazy is not None else self._rows)

    def load(self, features: Iterable[Mapping[str, Any]]) -> None:
        """Add *features*; each must carry its object id among its attributes."""
        if self._lazy is not None:
            raise ValueError("a lazily generated layer cannot load features")
        for feature in features:
            attributes = dict(feature.get("attributes") or {})
            oid = attributes.get(self.object_id_field)
            if not isinstance(oid, int) or isinstance(oid, bool):
                raise ValueError(f"feature without an integer {self.object_id_field}: {feature!r}")
            row: dict[str, Any] = {"attributes": attributes}
            if feature.get("geometry") is not None:
                row["geometry"] = feature["geometry"]
            self._rows[oid] = row
        self._rows = dict(sorted(self._rows.items()))
        self._changed()

    def generate_lazily(
        self, count: int, *, seed: int, geometry: GeometryKind | None, first_oid: int = 1
    ) -> None:
        """Hold *count* generated features, made when read, with ids from *first_oid*."""
        if self._rows:
            raise ValueError("a layer with loaded features cannot be generated lazily")
        if count < 0:
            raise ValueError(f"count must be at least 0, got {count}")
        ids = range(first_oid, first_oid + count)
        self._lazy = LazyRows(ids=ids, seed=seed, geometry=geometry)
        self._changed()

    def field_names(self) -> dict[str, str]:
        return {f["name"]: f["name"] for f in self.fields}

    def matching_ids(
        self,
        where: str,
        object_ids: Sequence[int] | None,
        order_by: str,
        scrambled: bool = False,
    ) -> Sequence[int]:
        """Object ids that match, in the requested order.

        Without *order_by*, the ids come in object-id order, or, when *scrambled*, in a
        fixed but scrambled order (the ``unordered`` fault).

        An object-id range at the end of the clause (``... AND OID >= a AND OID <= b``)
        is answered from the sorted ids, as a database answers it from its index; the
        rest of the clause is evaluated once and cached until the next edit. A lazy
        layer narrows to the range first, and answers ``1=1`` with a `range`.
        """
        scrambled = scrambled and not order_by
        where, bounds = _split_oid_range(where, self.object_id_field)
        # A lazy layer cannot afford to test millions of made-up rows: range first.
        narrowed = bounds if self._lazy is not None else None
        listed = tuple(object_ids) if object_ids is not None else None
        key = (where, listed, order_by, scrambled, narrowed)
        candidates = self._matches.get(key)
        if candidates is None:
            candidates = self._select(where, object_ids, order_by, scrambled, narrowed)
            self._remember(key, candidates)
        if bounds is None or narrowed is not None:
            return candidates
        lo, hi = bounds
        if not order_by and not scrambled:  # ascending object ids: a slice
            return _between(candidates, lo, hi)
        return [oid for oid in candidates if lo <= oid <= hi]

    def _select(
        self,
        where: str,
        object_ids: Sequence[int] | None,
        order_by: str,
        scrambled: bool,
        bounds: tuple[int, int] | None,
    ) -> Sequence[int]:
        """The ids that match, computed: those of the layer (or *object_ids*) within
        *bounds*, tested against *where*, then ordered."""
        pool: Collection[int] = self._rows.keys()
        if self._lazy is not None:
            pool = self._lazy.ids if bounds is None else _between(self._lazy.ids, *bounds)
        candidates: Sequence[int]
        if object_ids is not None:
            candidates = sorted(oid for oid in set(object_ids) if oid in pool)
        else:
            candidates = pool if isinstance(pool, range) else list(pool)
        if where.strip().replace(" ", "") not in ("", "1=1"):
            test = compile_where(where, self.field_names())
            candidates = [oid for oid in candidates if test(self.row(oid)["attributes"])]
        if order_by:
            candidates = self._sorted(candidates, order_by)
        elif scrambled:
            # A fixed permutation: pages stay consistent, but not in object-id order.
            candidates = sorted(candidates, key=lambda oid: (oid * 2654435761) % 4294967296)
        return candidates

    def _remember(self, key: tuple[Any, ...], candidates: Sequence[int]) -> None:
        """Cache a match; a lazy layer keeps no ranges (free to make) and few ids."""
        if self._lazy is not None:
            if isinstance(candidates, range) or len(candidates) > _LAZY_MATCHED_IDS:
                return
            if sum(map(len, self._matches.values())) + len(candidates) > _LAZY_MATCHED_IDS:
                self._matches.clear()
        if len(self._matches) > 64:
            self._matches.clear()
        self._matches[key] = candidates

    def _sorted(self, oids: Sequence[int], order_by: str) -> Sequence[int]:
        """The ascending *oids* in the order of *order_by*."""
        names = {f["name"].upper(): f["name"] for f in self.fields}
        keys = []
        for part in order_by.split(","):
            words = part.split()
            if not words:
                continue
            name = names.get(words[0].upper())
            if name is None:
                raise ValueError(f"orderByFields names an unknown field {words[0]!r}")
            descending = len(words) > 1 and words[1].upper() == "DESC"
            keys.append((name, descending))
        if [name for name, _ in keys] == [self.object_id_field]:  # no row need be read
            return oids[::-1] if keys[0][1] else oids
        result = list(oids)
        for name, descending in reversed(keys):  # stable sorts, last key first

            def key(oid: int, name: str = name) -> tuple[int, Any]:
                return _sort_key(self.row(oid)["attributes"].get(name))

            try:
                result.sort(key=key, reverse=descending)
            except TypeError as exc:
                raise ValueError(f"the values of {name} cannot be ordered") from exc
        return result

    def row(self, oid: int) -> dict[str, Any]:
        if self._lazy is not None:
            return self._lazy.row(oid)
        return self._rows[oid]

    def next_object_id(self) -> int:
        """The id the next added feature gets: never one given before, even if deleted."""
        if self._lazy is not None:
            return self._lazy.ids.stop
        highest = max(self._rows, default=0)
        return max(highest, self.tracking.high_water_oid) + 1

    def apply_edits(
        self,
        adds: Sequence[Any],
        updates: Sequence[Any],
        deletes: Sequence[Any],
        *,
        rollback_on_failure: bool,
        rng: random.Random,
    ) -> dict[str, list[dict[str, Any]]]:
        """Apply edits as applyEdits does; return the per-item results.

        Each feature is checked: attributes against the fields and their types, geometry
        against the layer's geometry type. A bad item fails alone (code 1000), or, with
        *rollback_on_failure*, the whole request is refused (a `Refusal`, as servers
        answer) and nothing is applied. A lazy layer refuses every edit.
        """
        if self._lazy is not None:
            raise operation_refused(
                "FakeArcGIS cannot edit a lazily generated layer; add the layer without "
                "lazy=True (or with features=) to edit it."
            )
        next_oid = self.next_object_id()
        results, rows = edit_rows(
            self,
            self._rows,
            adds,
            updates,
            deletes,
            rollback_on_failure=rollback_on_failure,
            rng=rng,
            next_oid=next_oid,
        )
        self.tracking.high_water_oid = max(max(rows, default=0), self.next_object_id() - 1)
        self._rows = rows
        self.attachments.keep_only(rows)  # a deleted feature's attachments go with it
        self._changed()
        return results

    def fragments(self, key: tuple[Any, ...]) -> dict[int, bytes]:
        """A cache of encoded features for one output shape, emptied by every edit.

        Serving a big layer page after page re-encodes the same features; keeping their
        JSON keeps the emulator from being the bottleneck of a client benchmark. A lazy
        layer's cache is emptied whenever it holds four pages' worth, so that serving
        millions of features keeps few of them.
        """
        cache = self._fragments.get(key)
        if cache is None:
            if len(self._fragments) >= 8:
                self._fragments.clear()
            cache = self._fragments[key] = {}
        elif self._lazy is not None and len(cache) >= _LAZY_PAGES_KEPT * self.max_record_count:
            cache.clear()
        return cache

    def changed(self) -> None:
        """Forget cached matches and encodings (after a change of fields or rows)."""
        self._changed()

    def _changed(self) -> None:
        self._version += 1
        self._matches.clear()
        self._fragments.clear()

    def extent(self) -> dict[str, Any]:
        if self._bounds is None or self._bounds[0] != self._version:
            self._bounds = (self._version, self._measure())
        bounds = self._bounds[1]
        xmin, ymin, xmax, ymax = bounds if bounds is not None else (None, None, None, None)
        return {
            "xmin": xmin,
            "ymin": ymin,
            "xmax": xmax,
            "ymax": ymax,
            "spatialReference": self.spatial_reference,
        }

    def _measure(self) -> tuple[float, float, float, float] | None:
        if self._lazy is not None:
            return self._lazy.bounds()
        xs: list[float] = []
        ys: list[float] = []
        for row in self._rows.values():
            for x, y in _coordinates(row.get("geometry")):
                if is_number(x) and is_number(y):  # "NaN" or worse: no part of the extent
                    xs.append(x)
                    ys.append(y)
        if not xs:
            return None
        return min(xs), min(ys), max(xs), max(ys)


@attrs.define(eq=False)
class FakeService:
    """A FeatureServer or MapServer of FakeArcGIS.

    Attributes:
        name: The service name, with its folder if any (``"Folder/Name"``).
        kind: ``"FeatureServer"`` or ``"MapServer"``.
        secured: Whether requests need a token (499 without one).
        layers: The service's layers by id.
        allowed: Who may use a secured service (usernames, app client ids); None lets
            every signed-in user in. Anyone else gets 403.
    """

    name: str
    kind: Literal["FeatureServer", "MapServer"]
    secured: bool = False
    layers: dict[int, FakeLayer] = attrs.Factory(dict)
    allowed: set[str] | None = None


_RANGE = re.compile(
    r"^\s*(?:\((?P<base>.*)\)\s+AND\s+)?(?P<field>\w+)\s*>=\s*(?P<lo>-?\d+)\s+AND\s+"
    r"(?P=field)\s*<=\s*(?P<hi>-?\d+)\s*$",
    re.IGNORECASE | re.DOTALL,
)


def _split_oid_range(where: str, oid_field: str) -> tuple[str, tuple[int, int] | None]:
    """``("(base)", (lo, hi))`` for ``(base) AND OID >= lo AND OID <= hi``; else no range."""
    match = _RANGE.match(where)
    if match is None or match.group("field").lower() != oid_field.lower():
        return where, None
    base = match.group("base") or "1=1"
    depth = 0
    for char in base:  # "(a) AND (b)" must not be read as the group "a) AND (b"
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return where, None
    return base, (int(match.group("lo")), int(match.group("hi")))


def _between(ids: Sequence[int], lo: int, hi: int) -> Sequence[int]:
    """The ids from *lo* to *hi* of the ascending *ids* (a range stays a range)."""
    return ids[bisect.bisect_left(ids, lo) : bisect.bisect_right(ids, hi)]


def _sort_key(value: Any) -> tuple[int, Any]:
    # NULLs first, as most databases sort them ascending.
    return (0, 0) if value is None else (1, value)


def _coordinates(geometry: Mapping[str, Any] | None) -> Iterable[tuple[float, float]]:
    if not geometry:
        return
    if "x" in geometry and geometry["x"] is not None:
        yield geometry["x"], geometry["y"]
    for key in ("points",):
        for point in geometry.get(key, ()):
            yield point[0], point[1]
    for key in ("paths", "rings"):
        for part in geometry.get(key, ()):
            for point in part:
                yield point[0], point[1]
