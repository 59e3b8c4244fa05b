"""Services, layers and their features, for FakeArcGIS.

A `FakeLayer` holds its features by object id, in ascending order: it finds the ids that
match a where clause, in the order asked for, and applies edits (checked by the rules in
`_edits`). Generated layers are deterministic: the same seed gives the same features on
every run.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from .._validate import is_number
from ._edits import copy_row, edit_rows, new_global_id
from ._where import compile_where

__all__ = ["FakeLayer", "FakeService", "generate_features"]

GeometryKind = Literal["point", "polyline", "polygon"]

GEOMETRY_TYPES: dict[str, str] = {
    "point": "esriGeometryPoint",
    "multipoint": "esriGeometryMultipoint",
    "polyline": "esriGeometryPolyline",
    "polygon": "esriGeometryPolygon",
}

WGS84 = {"wkid": 4326, "latestWkid": 4326}

GENERATED_FIELDS: list[dict[str, Any]] = [
    {"name": "OBJECTID", "type": "esriFieldTypeOID", "alias": "OBJECTID"},
    {"name": "GlobalID", "type": "esriFieldTypeGlobalID", "alias": "GlobalID", "length": 38},
    {"name": "NAME", "type": "esriFieldTypeString", "alias": "Name", "length": 64},
    {"name": "CATEGORY", "type": "esriFieldTypeString", "alias": "Category", "length": 16},
    {"name": "POPULATION", "type": "esriFieldTypeInteger", "alias": "Population"},
    {"name": "AREA", "type": "esriFieldTypeDouble", "alias": "Area"},
    {"name": "CREATED", "type": "esriFieldTypeDate", "alias": "Created", "length": 8},
]

_CATEGORIES = ["park", "school", "library", "hospital", "museum", None]
_WORDS = ["North", "South", "East", "West", "Old", "New", "Upper", "Lower", "Green", "Stone"]
_PLACES = ["Park", "Road", "Square", "Hill", "Bridge", "Field", "Market", "Gate"]
# A box around San Francisco, in WGS84.
_WEST, _SOUTH, _EAST, _NORTH = -122.52, 37.70, -122.35, 37.83
_EPOCH_2020 = int(dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
_FIVE_YEARS_MS = 5 * 365 * 24 * 3600 * 1000


def generate_features(
    count: int, *, geometry: GeometryKind | None = "point", seed: int = 0, first_oid: int = 1
) -> list[dict[str, Any]]:
    """Make *count* deterministic features with the fields of `GENERATED_FIELDS`.

    Every tenth polygon has a hole, every fifteenth polygon or polyline has two parts;
    some CATEGORY values are NULL.
    """
    rng = random.Random(seed)
    features = []
    for oid in range(first_oid, first_oid + count):
        attributes = {
            "OBJECTID": oid,
            "GlobalID": new_global_id(rng),
            "NAME": f"{rng.choice(_WORDS)} {rng.choice(_PLACES)} {oid}",
            "CATEGORY": rng.choice(_CATEGORIES),
            "POPULATION": rng.randrange(0, 100_000),
            "AREA": round(rng.uniform(10.0, 5000.0), 3),
            "CREATED": _EPOCH_2020 + rng.randrange(0, _FIVE_YEARS_MS),
        }
        feature: dict[str, Any] = {"attributes": attributes}
        if geometry is not None:
            x = round(rng.uniform(_WEST, _EAST), 6)
            y = round(rng.uniform(_SOUTH, _NORTH), 6)
            feature["geometry"] = _make_geometry(
                geometry, x, y, hole=oid % 10 == 0, multipart=oid % 15 == 0
            )
        features.append(feature)
    return features


def _make_geometry(
    kind: GeometryKind, x: float, y: float, *, hole: bool, multipart: bool
) -> dict[str, Any]:
    d = 0.001
    if kind == "point":
        return {"x": x, "y": y}
    if kind == "polyline":
        paths = [[[x, y], [x + d, y + d], [x + 2 * d, y]]]
        if multipart:
            paths.append([[x, y + 2 * d], [x + d, y + 3 * d]])
        return {"paths": paths}
    # Esri rings: outer clockwise, holes counter-clockwise.
    outer = [[x, y], [x, y + d], [x + d, y + d], [x + d, y], [x, y]]
    rings = [outer]
    if multipart:  # a second, separate square to the east
        rings.append(
            [[x + 2 * d, y], [x + 2 * d, y + d], [x + 3 * d, y + d], [x + 3 * d, y], [x + 2 * d, y]]
        )
    if hole:
        q = d / 4
        rings.append(
            [
                [x + q, y + q],
                [x + 3 * q, y + q],
                [x + 3 * q, y + 3 * q],
                [x + q, y + 3 * q],
                [x + q, y + q],
            ]
        )
    return {"rings": rings}


@attrs.define(eq=False)
class FakeLayer:
    """One layer (or table) of a FakeArcGIS service, with its features.

    Its attributes are switches a test may flip at any time: for example
    ``layer.supports_pagination = False`` makes the layer refuse ``resultOffset`` as old
    servers do, and ``layer.max_record_count = 500`` lowers the page size.

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
        capabilities: The advertised capabilities, such as ``"Query"`` or
            ``"Create,Delete,Query,Update,Editing"``.
        spatial_reference: The layer's spatial reference.
        url: The layer's path below the site root, set when it is added.
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
    spatial_reference: dict[str, Any] = attrs.Factory(lambda: dict(WGS84))
    url: str = ""
    _rows: dict[int, dict[str, Any]] = attrs.field(factory=dict, repr=False)
    _version: int = attrs.field(default=0, repr=False)
    _matches: dict[tuple[Any, ...], list[int]] = attrs.field(factory=dict, repr=False)
    _fragments: dict[tuple[Any, ...], dict[int, bytes]] = attrs.field(factory=dict, repr=False)
    # (version, bounds): a server keeps its layer's extent, it does not scan every feature
    _bounds: tuple[int, tuple[float, float, float, float] | None] | None = attrs.field(
        default=None, repr=False
    )

    @property
    def features(self) -> list[dict[str, Any]]:
        """The layer's features in object-id order (copies: edit through apply_edits)."""
        return [copy_row(row) for row in self._rows.values()]

    @property
    def object_ids(self) -> list[int]:
        """Every object id, ascending."""
        return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def load(self, features: Iterable[Mapping[str, Any]]) -> None:
        """Add *features*; each must carry its object id among its attributes."""
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

    def field_names(self) -> dict[str, str]:
        return {f["name"]: f["name"] for f in self.fields}

    def matching_ids(
        self,
        where: str,
        object_ids: Sequence[int] | None,
        order_by: str,
        scrambled: bool = False,
    ) -> list[int]:
        """Object ids that match, in the requested order.

        Without *order_by*, the ids come in object-id order, or, when *scrambled*, in a
        fixed but scrambled order (the ``unordered`` fault).

        An object-id range at the end of the clause (``... AND OID >= a AND OID <= b``)
        is answered from the sorted ids, as a database answers it from its index; the
        rest of the clause is evaluated once and cached until the next edit.
        """
        scrambled = scrambled and not order_by
        where, bounds = _split_oid_range(where, self.object_id_field)
        key = (where, tuple(object_ids) if object_ids is not None else None, order_by, scrambled)
        candidates = self._matches.get(key)
        if candidates is None:
            if object_ids is not None:
                candidates = sorted(oid for oid in set(object_ids) if oid in self._rows)
            else:
                candidates = list(self._rows)
            if where.strip().replace(" ", "") not in ("", "1=1"):
                test = compile_where(where, self.field_names())
                candidates = [oid for oid in candidates if test(self._rows[oid]["attributes"])]
            if order_by:
                candidates = self._sorted(candidates, order_by)
            elif scrambled:
                # A fixed permutation: pages stay consistent, but not in object-id order.
                candidates = sorted(candidates, key=lambda oid: (oid * 2654435761) % 4294967296)
            if len(self._matches) > 64:
                self._matches.clear()
            self._matches[key] = candidates
        if bounds is None:
            return candidates
        lo, hi = bounds
        if not order_by and not scrambled:  # ascending object ids: a slice
            return candidates[
                bisect.bisect_left(candidates, lo) : bisect.bisect_right(candidates, hi)
            ]
        return [oid for oid in candidates if lo <= oid <= hi]

    def _sorted(self, oids: list[int], order_by: str) -> list[int]:
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
        result = list(oids)
        for name, descending in reversed(keys):  # stable sorts, last key first

            def key(oid: int, name: str = name) -> tuple[int, Any]:
                return _sort_key(self._rows[oid]["attributes"].get(name))

            try:
                result.sort(key=key, reverse=descending)
            except TypeError as exc:
                raise ValueError(f"the values of {name} cannot be ordered") from exc
        return result

    def row(self, oid: int) -> dict[str, Any]:
        return self._rows[oid]

    def next_object_id(self) -> int:
        return (max(self._rows) + 1) if self._rows else 1

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
        *rollback_on_failure*, nothing is applied.
        """
        results, rows = edit_rows(
            self,
            self._rows,
            adds,
            updates,
            deletes,
            rollback_on_failure=rollback_on_failure,
            rng=rng,
        )
        if rows is not None:
            self._rows = rows
            self._changed()
        return results

    def fragments(self, key: tuple[Any, ...]) -> dict[int, bytes]:
        """A cache of encoded features for one output shape, emptied by every edit.

        Serving a big layer page after page re-encodes the same features; keeping their
        JSON keeps the emulator from being the bottleneck of a client benchmark.
        """
        cache = self._fragments.get(key)
        if cache is None:
            if len(self._fragments) >= 8:
                self._fragments.clear()
            cache = self._fragments[key] = {}
        return cache

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
