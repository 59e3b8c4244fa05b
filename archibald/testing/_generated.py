"""Generated features for FakeArcGIS: deterministic rows, made all at once or on demand.

`generate_features` makes a list of features from one stream of random numbers;
`LazyRows` makes each feature of a huge layer only when it is read, from a stream of its
own seeded by (seed, object id), so that a layer of millions costs no more memory than
its id range. Both give the same feature on every run and in every process.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, Literal

import attrs

from ._edits import new_global_id

__all__ = ["GENERATED_FIELDS", "GeometryKind", "LazyRows", "generate_features"]

GeometryKind = Literal["point", "polyline", "polygon"]

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
_SIDE = 0.001  # the size of a generated line or polygon, in degrees


def generate_features(
    count: int, *, geometry: GeometryKind | None = "point", seed: int = 0, first_oid: int = 1
) -> list[dict[str, Any]]:
    """Make *count* deterministic features with the fields of `GENERATED_FIELDS`.

    Every tenth polygon has a hole, every fifteenth polygon or polyline has two parts;
    some CATEGORY values are NULL.
    """
    rng = random.Random(seed)
    return [_feature(rng, oid, geometry) for oid in range(first_oid, first_oid + count)]


@attrs.frozen(kw_only=True)
class LazyRows:
    """The features of a lazily generated layer: ids as a range, rows made when read.

    A row comes from its own `random.Random`, seeded by the string ``"<seed>:<oid>"``
    (which random hashes with SHA-512, the same in every process, unlike ``hash()``), so
    it does not depend on which rows were read before. The rows differ from those
    `generate_features` makes for the same seed, which draws every row from one stream.
    """

    ids: range
    seed: int
    geometry: GeometryKind | None

    def row(self, oid: int) -> dict[str, Any]:
        """The feature *oid*, made afresh (KeyError if the layer has no such id)."""
        if oid not in self.ids:
            raise KeyError(oid)
        return _feature(random.Random(f"{self.seed}:{oid}"), oid, self.geometry)

    def bounds(self) -> tuple[float, float, float, float] | None:
        """A box around every geometry, from the box they are generated in (no scan)."""
        if self.geometry is None or not self.ids:
            return None
        # Shapes reach east and north of their generated point, by at most this much.
        widest = _make_geometry(self.geometry, 0.0, 0.0, hole=True, multipart=True)
        xs = [0.0, *(p[0] for part in _parts(widest) for p in part)]
        ys = [0.0, *(p[1] for part in _parts(widest) for p in part)]
        return _WEST, _SOUTH, round(_EAST + max(xs), 6), round(_NORTH + max(ys), 6)


def _parts(geometry: dict[str, Any]) -> list[list[list[float]]]:
    if "x" in geometry:
        return [[[geometry["x"], geometry["y"]]]]
    return list(geometry.get("paths", geometry.get("rings", [])))


def _feature(rng: random.Random, oid: int, geometry: GeometryKind | None) -> dict[str, Any]:
    """One generated feature, its values drawn from *rng* in a fixed order."""
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
    return feature


def _make_geometry(
    kind: GeometryKind, x: float, y: float, *, hole: bool, multipart: bool
) -> dict[str, Any]:
    d = _SIDE
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
