"""Object-id ranges: `Partition`, and planning them from statistics without listing ids.

A layer of millions of features may refuse, cut short or time out the one request that
lists every object id. Its ids can still be split into ranges: the server answers the
minimum, maximum and count of the object-id field for any filter (``outStatistics``), so
a range holding too many features is cut in two at its middle id, and each half asked
again, until every range is small enough. Each range is then crawled like a small layer
(its ids listed and checked against its count), so a partition is as exact as a crawl.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from .._tasks import gather
from .._validate import is_whole, whole_number
from ..exceptions import IncompleteResultError, InvalidParameterError

__all__ = [
    "IdRange",
    "after_clause",
    "and_clause",
    "Partition",
    "Statistics",
    "id_statistics",
    "cut_ranges",
    "plan_ranges",
    "range_clause",
    "size_rule",
]

IdRange = tuple[int, int, int]
"""``(first id, last id, features counted in it)``."""

Statistics = Callable[[str], Awaitable[IdRange | None]]
"""The count, smallest and largest object id matching a where clause (None: no match)."""

DEFAULT_PARTITION_SIZE = 100_000
"""Features per partition unless asked otherwise: an id list of about a megabyte."""

_COUNT, _MIN, _MAX = "archibald_count", "archibald_min", "archibald_max"


def _check_text(name: str) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(_: object, __: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str) or not value.strip():
            raise InvalidParameterError(f"a partition's {name} must be a non-empty string")

    return check


def _check_id(name: str, minimum: int | None = None) -> Any:
    def check(_: object, __: attrs.Attribute[Any], value: object) -> None:
        if not is_whole(value, minimum):
            floor = "" if minimum is None else f" >= {minimum}"
            raise InvalidParameterError(
                f"a partition's {name} must be a whole number{floor}, got {value!r}"
            )

    return check


@attrs.frozen(kw_only=True)
class Partition:
    """A range of a layer's object ids: a piece of a crawl that can be handed around.

    Made by `FeatureLayer.partitions`; crawled by passing it as ``partition=`` to
    `FeatureLayer.pages`, `FeatureLayer.features` or `FeatureLayer.query`, by this
    process or by any other (it pickles, and `as_dict` / `from_dict` turn it into JSON
    and back). It holds no token or other secret: whoever crawls it signs in with their
    own client.

    Attributes:
        url: The layer's URL.
        where: The filter of the crawl it belongs to.
        id_field: The layer's object-id field.
        first_id: The first object id of the range (inclusive).
        last_id: The last object id of the range (inclusive).
        count: How many features the server counted in the range when it was planned;
            a crawl of the partition delivers what matches when it runs, checked against
            the server's count at that time.
    """

    url: str = attrs.field(validator=_check_text("url"))
    where: str = attrs.field(validator=_check_text("where"))
    id_field: str = attrs.field(validator=_check_text("id_field"))
    first_id: int = attrs.field(validator=_check_id("first_id"))
    last_id: int = attrs.field(validator=_check_id("last_id"))
    count: int = attrs.field(validator=_check_id("count", 0))

    def __attrs_post_init__(self) -> None:
        if self.first_id > self.last_id:
            raise InvalidParameterError(
                f"a partition's first_id ({self.first_id}) is above its last_id ({self.last_id})"
            )

    @property
    def clause(self) -> str:
        """The where clause that selects the partition's features."""
        return range_clause(self.where, self.id_field, self.first_id, self.last_id)

    def as_dict(self) -> dict[str, Any]:
        """The partition as plain JSON values (`from_dict` reads it back)."""
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Partition:
        """A partition from `as_dict`'s output, checked as if it were made here."""
        if not isinstance(data, Mapping):
            raise InvalidParameterError(f"a partition must be a mapping, got {data!r}")
        names = [field.name for field in attrs.fields(cls)]
        missing = [name for name in names if name not in data]
        if missing:
            raise InvalidParameterError(f"a partition needs {', '.join(missing)}")
        return cls(**{name: data[name] for name in names})


def and_clause(where: str, clause: str) -> str:
    """``(where) AND clause``; just *clause* when *where* matches everything."""
    return clause if where.strip() in ("", "1=1") else f"({where}) AND {clause}"


def range_clause(where: str, id_field: str, first: int, last: int) -> str:
    """``(where) AND OID >= first AND OID <= last``; just the range for ``1=1``."""
    return and_clause(where, f"{id_field} >= {first} AND {id_field} <= {last}")


def after_clause(where: str, id_field: str, last: int) -> str:
    """``(where) AND OID > last``: what is left of a crawl that delivered up to *last*."""
    return and_clause(where, f"{id_field} > {last}")


async def id_statistics(
    query: Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]],
    url: str,
    id_field: str,
    where: str,
) -> IdRange | None:
    """How many features match *where*, and their smallest and largest object id."""
    wanted = [
        {"statisticType": kind, "onStatisticField": id_field, "outStatisticFieldName": name}
        for kind, name in (("count", _COUNT), ("min", _MIN), ("max", _MAX))
    ]
    body = await query({"where": where, "outStatistics": json.dumps(wanted)})
    features = body.get("features")
    if features == []:  # some servers answer no row, rather than a count of 0
        return None
    row = features[0] if isinstance(features, list) and features else None
    attributes = row.get("attributes") if isinstance(row, Mapping) else None
    if not isinstance(attributes, Mapping):
        raise IncompleteResultError(f"{url} answered object-id statistics without a result")
    values = {str(key).lower(): value for key, value in attributes.items()}  # case varies
    count = whole_number(values.get(_COUNT))
    first, last = whole_number(values.get(_MIN)), whole_number(values.get(_MAX))
    if count == 0 or (count is None and first is None and last is None):
        return None  # no feature matches (some servers leave out the count of nothing)
    if count is None or first is None or last is None or count < 0 or first > last:
        raise IncompleteResultError(
            f"{url} answered object-id statistics that do not make sense: count {count!r}, "
            f"min {values.get(_MIN)!r}, max {values.get(_MAX)!r}"
        )
    return first, last, count


async def plan_ranges(
    statistics: Statistics, where: str, id_field: str, limit: Callable[[int], int]
) -> list[IdRange]:
    """Contiguous id ranges covering every feature matching *where*, each of at most
    ``limit(total)`` features as the server counts them, found without listing an id."""
    whole = await statistics(where)
    if whole is None:
        return []
    size = limit(whole[2])
    done: list[IdRange] = []
    pending = [whole]
    while pending:
        done.extend(r for r in pending if not _too_many(r, size))
        halves = [half for r in pending if _too_many(r, size) for half in _halves(r)]
        counted = await gather(
            [statistics(range_clause(where, id_field, first, last)) for first, last in halves]
        )
        for (first, last), found in zip(halves, counted, strict=True):
            if found is not None and not first <= found[0] <= found[1] <= last:
                raise IncompleteResultError(
                    f"statistics for the object ids {first}-{last} reported ids "
                    f"{found[0]}-{found[1]}: the server does not apply the range, so the "
                    "layer cannot be planned by ranges"
                )
        pending = [r for r in counted if r is not None]
    return _contiguous(_merged(sorted(done), size), whole)


def cut_ranges(ids: Sequence[int], size: int) -> list[IdRange]:
    """Contiguous ranges of at most *size* of the ascending *ids* each."""
    cuts = [
        (ids[i], ids[min(i + size, len(ids)) - 1], min(size, len(ids) - i))
        for i in range(0, len(ids), size)
    ]
    return _contiguous(cuts, cuts[0]) if cuts else []


def _too_many(id_range: IdRange, size: int) -> bool:
    first, last, count = id_range
    return count > size and first < last


def _halves(id_range: IdRange) -> list[tuple[int, int]]:
    first, last, _ = id_range
    middle = (first + last) // 2
    return [(first, middle), (middle + 1, last)]


def _merged(ranges: list[IdRange], size: int) -> list[IdRange]:
    """Neighbours joined while together they hold no more than *size* features."""
    merged: list[IdRange] = []
    for first, last, count in ranges:
        if merged and merged[-1][2] + count <= size:
            merged[-1] = (merged[-1][0], last, merged[-1][2] + count)
        else:
            merged.append((first, last, count))
    return merged


def _contiguous(ranges: list[IdRange], whole: IdRange) -> list[IdRange]:
    """Each range widened down to the one before it, so no id between two is left out
    (an id added there after planning still belongs to a partition)."""
    starts = [whole[0]] + [last + 1 for _, last, _ in ranges[:-1]]
    return [(start, last, count) for start, (_, last, count) in zip(starts, ranges, strict=True)]


def size_rule(count: int | None, size: int | None) -> Callable[[int], int]:
    """The most features per partition, given the layer's total: at most *size*, and few
    enough to make at least *count* partitions (checked now, before any request)."""
    for name, value in (("count", count), ("size", size)):
        if value is not None and not is_whole(value, 1):
            raise InvalidParameterError(f"{name} must be a whole number >= 1, got {value!r}")
    if size is None and count is None:
        size = DEFAULT_PARTITION_SIZE

    def limit(total: int) -> int:
        shares = total if count is None else total // count  # so at least *count* fit
        return max(1, min(shares, size) if size is not None else shares)

    return limit
