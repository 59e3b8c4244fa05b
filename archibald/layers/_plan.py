"""The exactly-once planner: list a snapshot of ids, fetch it in batches, and make sure
each batch arrives whole (see the layers package for the algorithm)."""

from __future__ import annotations

import array
import bisect
import collections
import functools
import itertools
import logging
import operator
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from .._tasks import together
from .._validate import whole_number
from ..exceptions import (
    ArcGISError,
    ArchieError,
    AuthorizationError,
    IncompleteResultError,
    InvalidParameterError,
    NetworkError,
    NotFoundError,
    TokenExpiredError,
    TokenMissingError,
)
from ._model import AnswerShape, LayerInfo, Page, attribute
from ._partitions import (
    Partition,
    id_statistics,
    plan_ranges,
    range_clause,
    size_rule,
)

__all__ = [
    "Crawl",
    "IdSource",
    "ListedIds",
    "Query",
    "RangedIds",
    "list_ids",
    "ranges",
    "snapshot",
]

logger = logging.getLogger("archibald")

Query = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]
"""Sends one query to the layer (the parameters of its ``query`` operation)."""

_MAX_OID = 2**63 - 1


async def list_ids(
    query: Query,
    url: str,
    where: str,
    count: Callable[[str], Awaitable[int]] | None = None,
) -> array.array[int]:
    """The ids matching *where*, ascending; with *count*, checked against the server's count.

    A snapshot that a proxy or server cut short would make a crawl short without a word;
    so a crawl compares the list with ``returnCountOnly`` and lists again once if they
    disagree (the layer may have been edited in between).
    """
    for attempt in (1, 2):
        listing = query({"where": where, "returnIdsOnly": True})
        if count is not None:  # the list and the count are asked for at once
            body, expected = await together(listing, count(where))
        else:
            body, expected = await listing, None
        ids = _id_array(body.get("objectIds"), url)
        if body.get("exceededTransferLimit"):
            raise IncompleteResultError(
                f"{url} cut its list of object ids short (exceededTransferLimit); "
                "the crawl cannot know what to fetch"
            )
        if expected is None or expected == len(ids):
            return ids
        if attempt == 2:
            raise IncompleteResultError(
                f"{url} lists {len(ids):,} object ids for {where!r} but counts "
                f"{expected:,} features, twice; the crawl cannot know what to fetch"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _id_array(values: object, url: str) -> array.array[int]:
    """Ids from a returnIdsOnly answer: ascending, unique, in 8 bytes each."""
    if values is None:
        return array.array("q")
    if isinstance(values, array.array):  # the usual answer, decoded as an array already
        ids = values
    elif not isinstance(values, list):
        raise IncompleteResultError(f"{url} answered returnIdsOnly without a list of ids")
    else:
        ids = _listed_ids(values, url)
    if not all(map(operator.lt, ids, itertools.islice(ids, 1, None))):  # usually ascending
        ids = array.array("q", sorted(set(ids)))
    if ids and ids[0] < -_MAX_OID:
        raise IncompleteResultError(
            f"{url} answered returnIdsOnly with an id that is not a 64-bit integer"
        )
    return ids


def _listed_ids(values: list[Any], url: str) -> array.array[int]:
    """Ids decoded as a list (floats, strings of digits): whole 64-bit numbers, or refused."""
    try:
        if set(map(type, values)) <= {int}:  # plain integers, read at once
            ids = array.array("q", values)
        else:  # floats such as 7.0, digits in strings (some servers), or junk
            ids = array.array("q", [_whole_id(value) for value in values])
    except (OverflowError, ValueError):
        raise IncompleteResultError(
            f"{url} answered returnIdsOnly with an id that is not a 64-bit integer"
        ) from None
    return ids


Strategy = Literal["ids", "ranges"]


class IdSource(Protocol):
    """Where a crawl takes its batches of ids from, in ascending order."""

    strategy: Strategy
    total: int
    """How many features the crawl will deliver (counted by the server for ranges)."""

    async def take(self, limit: int) -> array.array[int]:
        """The next ids, at most *limit*; none when every id has been taken."""
        ...


class ListedIds:
    """The ids of one listing (``returnIdsOnly``), taken in order."""

    strategy: Strategy = "ids"

    def __init__(self, ids: array.array[int], first: int = 0) -> None:
        self._ids = ids
        self._position = 0
        self._first = first  # the first batch's size, if the crawl already holds its answer
        self.total = len(ids)

    async def take(self, limit: int) -> array.array[int]:
        if self._position == 0 and self._first:
            limit = self._first
        batch = self._ids[self._position : self._position + limit]
        self._position += len(batch)
        return batch


class RangedIds:
    """The ids of object-id ranges, each listed (and checked against its count) only when
    the crawl reaches it; a range whose listing fails the way big listings fail (cut
    short, refused, timed out) is cut in two and each half listed instead."""

    strategy: Strategy = "ranges"

    def __init__(
        self,
        query: Query,
        url: str,
        where: str,
        id_field: str,
        id_ranges: Sequence[tuple[int, int, int]],
        count: Callable[[str], Awaitable[int]],
    ) -> None:
        self._list = functools.partial(list_ids, query, url, count=count)
        self._url = url
        self._where = where
        self._id_field = id_field
        self._pending = collections.deque((first, last) for first, last, _ in id_ranges)
        self._current = ListedIds(array.array("q"))
        self.total = sum(n for _, _, n in id_ranges)
        self.splits = 0  # listings refused and cut in two

    async def take(self, limit: int) -> array.array[int]:
        while True:
            batch = await self._current.take(limit)
            if batch or not self._pending:
                return batch
            self._current = ListedIds(await self._list_next())

    async def _list_next(self) -> array.array[int]:
        first, last = self._pending.popleft()
        try:
            return await self._list(range_clause(self._where, self._id_field, first, last))
        except ArchieError as exc:
            if first >= last or not listing_too_big(exc):
                raise
            middle = (first + last) // 2
            self._pending.extendleft([(middle + 1, last), (first, middle)])
            self.splits += 1
            logger.info(
                "%s could not list the ids %d-%d (%s); listing each half instead",
                self._url,
                first,
                last,
                exc,
            )
            return array.array("q")


def listing_too_big(error: Exception) -> bool:
    """Whether a listing failed as listings of too many ids fail: cut short, timed out,
    or refused by a server error; not for a bad filter, a missing layer or a token."""
    if isinstance(error, IncompleteResultError | NetworkError):
        return True
    refused = (AuthorizationError, NotFoundError, TokenExpiredError, TokenMissingError)
    return (
        isinstance(error, ArcGISError)
        and not isinstance(error, refused)
        and not _refuses_the_request(error)
    )


async def snapshot(
    crawl: Crawl, count: Callable[[str], Awaitable[int]], partition: Partition | None
) -> IdSource:
    """What *crawl* will fetch: the ids of *partition*, or of every feature matching its
    filter, listed at once (while its first page is asked for), or range by range when
    the one listing fails."""
    query, url, where, info = crawl.query, crawl.url, crawl.where, crawl.info
    id_field = info.object_id_field
    if partition is not None:
        whole = [(partition.first_id, partition.last_id, partition.count)]
        return RangedIds(query, url, where, id_field, whole, count)
    try:
        ids, early = await together(list_ids(query, url, where, count=count), crawl.ask_first())
        return ListedIds(ids, first=crawl.adopt_first(early, ids))
    except ArchieError as exc:
        if not listing_too_big(exc) or not info.supports_statistics:
            raise
        listing_failed = exc
    logger.warning(
        "%s could not list every object id (%s); crawling by object-id ranges instead",
        url,
        listing_failed,
    )
    statistics = functools.partial(id_statistics, query, url, id_field)
    try:
        id_ranges = await plan_ranges(statistics, where, id_field, size_rule(None, None))
    except ArchieError as exc:
        listing_failed.add_note(f"Crawling by object-id ranges failed too: {exc}")
        raise listing_failed from listing_failed.__cause__
    return RangedIds(query, url, where, id_field, id_ranges, count)


def _whole_id(value: object) -> int:
    oid = whole_number(value)
    if oid is None:
        raise ValueError(value)
    return oid


class Crawl:
    """Fetching batches of a snapshot of ids, and making sure each arrives whole.

    Args:
        query: Sends one query to the layer.
        url: The layer's URL, for messages.
        info: The layer's metadata.
        where: The crawl's filter.
        params: What every query sends besides its filter (``outFields`` and so on).
        page_size: Ids per batch at first; it shrinks to what the server really returns.
    """

    def __init__(
        self,
        query: Query,
        url: str,
        info: LayerInfo,
        where: str,
        params: Mapping[str, Any],
        page_size: int,
    ) -> None:
        self.query = query
        self.url = url
        self.info = info
        self.where = where
        self.params = dict(params)
        self.page_size = page_size
        self.succeeded = False  # whether any batch has come back whole yet
        self._early: tuple[int, int, dict[str, Any]] | None = None  # first, last id, answer

    async def ask_first(self) -> dict[str, Any] | None:
        """The crawl's first page, asked for (ordered by object id) before its ids are
        known; None where the layer cannot order or size it. Never raises: the first
        batch is then fetched as any other, and reports the error."""
        info, size = self.info, self.page_size
        if not info.supports_order_by or (
            size < info.max_record_count and not info.supports_pagination
        ):
            return None
        params: dict[str, Any] = {
            "where": self.where,
            "orderByFields": f"{info.object_id_field} ASC",
        }
        if size < info.max_record_count:
            params["resultRecordCount"] = size
        try:
            return await self._send(params)
        except ArchieError:
            return None

    def adopt_first(self, answer: Mapping[str, Any] | None, ids: Sequence[int]) -> int:
        """How many of the first *ids* the early *answer* holds (then it answers them as
        their batch): those up to its highest id, if it holds as many features, as an
        answer ordered by id does; else none (a server that does not order, say)."""
        features = answer.get("features") if answer is not None else None
        if not ids or not isinstance(features, list):
            return 0
        found = [oid for oid in map(self._oid_of, features) if oid is not None]
        if not found:
            return 0
        covered = bisect.bisect_right(ids, max(found))
        if covered == 0 or covered > len(found):
            return 0
        assert answer is not None
        self._early = (ids[0], ids[covered - 1], dict(answer))
        return covered

    def _early_answer(self, batch: array.array[int]) -> dict[str, Any] | None:
        early, self._early = self._early, None
        if early is not None and (early[0], early[1]) == (batch[0], batch[-1]):
            return early[2]
        return None

    def failure(self, error: Exception, batch: array.array[int]) -> Exception:
        """What the consumer gets when *batch* could not be fetched because of *error*."""
        if isinstance(error, IncompleteResultError) or not isinstance(error, ArchieError):
            return error
        if isinstance(error, ArcGISError) and _refuses_the_request(error) and not self.succeeded:
            # The server refused the query itself (a field or spatial reference it does
            # not know): a mistake in the request, not features that went missing.
            rejected = InvalidParameterError(
                f"{self.url} rejected the query ({_describe_params(self.params)}): "
                f"{error.message}{_details(error)}"
            )
            rejected.__cause__ = error
            return rejected
        missing = list(batch)
        incomplete = IncompleteResultError(
            f"{len(missing)} features of {self.url} could not be fetched "
            f"(object ids {ranges(missing)}), so the crawl stopped: {error}",
            missing=missing,
        )
        incomplete.__cause__ = error
        return incomplete

    async def fetch_batch(self, batch: array.array[int]) -> Page:
        """One batch, complete: a range query, then any missing ids by ``objectIds``."""
        oid = self.info.object_id_field
        wanted = set(batch)
        body = self._early_answer(batch) or await self._send(
            {"where": range_clause(self.where, oid, batch[0], batch[-1])}
        )
        shape = AnswerShape.of(body)
        exact = self._exactly(body, batch)
        if exact is not None:  # the usual answer: the batch, in order
            self.succeeded = True
            return self._page(exact, batch, shape)
        found: dict[int, dict[str, Any]] = {}
        self._collect(body, wanted, found)
        if 0 < len(found) < len(wanted) and body.get("exceededTransferLimit"):
            self._shrink(len(found))  # the server caps pages below what it advertises
        missing = sorted(wanted - found.keys())
        while missing:
            before = len(found)
            shape = await self._fetch_by_id(missing, found, shape)
            missing = sorted(wanted - found.keys())
            if missing and len(found) == before:
                raise IncompleteResultError(
                    f"{len(missing)} features of {self.url} listed by returnIdsOnly "
                    f"were not returned when asked for by id (object ids {ranges(missing)}): "
                    "deleted since the crawl began, or withheld by the server",
                    missing=missing,
                )
        self.succeeded = True
        return self._page([found[i] for i in batch], batch, shape)

    def _exactly(self, body: Mapping[str, Any], batch: array.array[int]) -> list[Any] | None:
        """The answer's features if they are exactly *batch*'s, in its order (read in
        one pass, without a dictionary); else None, for the general check."""
        features = body.get("features")
        if not isinstance(features, list) or len(features) != len(batch):
            return None
        oid = self.info.object_id_field
        try:
            ids = [feature["attributes"][oid] for feature in features]
        except (KeyError, TypeError, IndexError):
            return None
        if set(map(type, ids)) != {int} or ids != batch.tolist():
            return None
        return features

    def _page(self, features: list[Any], batch: array.array[int], shape: AnswerShape) -> Page:
        return Page(
            features=features,
            object_ids=batch.tolist(),
            fields=shape.fields or self.info.fields,
            geometry_type=shape.geometry_type or self.info.geometry_type,
            spatial_reference=shape.spatial_reference or self.info.spatial_reference,
            object_id_field=self.info.object_id_field,
            has_z=shape.has_z,
            has_m=shape.has_m,
        )

    async def _fetch_by_id(
        self, missing: list[int], found: dict[int, dict[str, Any]], shape: AnswerShape
    ) -> AnswerShape:
        """Ask for *missing* by ``objectIds``, in pieces the server returns whole."""
        step = min(self.page_size, len(missing))
        for start in range(0, len(missing), step):
            chunk = missing[start : start + step]
            got_before = len(found)
            body = await self._send({"objectIds": chunk})
            self._collect(body, set(chunk), found)
            shape = shape.merge(AnswerShape.of(body))
            got = len(found) - got_before
            if 0 < got < len(chunk):
                self._shrink(got)
        return shape

    def _shrink(self, returned: int) -> None:
        """Ask for no more than the server was seen to return in one answer."""
        self.page_size = max(1, min(self.page_size, returned))

    async def _send(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return await self.query({**self.params, **params})

    def _collect(
        self, body: Mapping[str, Any], wanted: set[int], found: dict[int, dict[str, Any]]
    ) -> None:
        features = body.get("features")
        if not isinstance(features, list):
            missing = sorted(wanted)
            raise IncompleteResultError(
                f"{self.url} answered a query without features "
                f"(object ids {ranges(missing)} were asked for)",
                missing=missing,
            )
        for feature in features:
            oid_value = self._oid_of(feature)
            if oid_value is not None and oid_value in wanted:
                found[oid_value] = feature

    def _oid_of(self, feature: object) -> int | None:
        """A feature's object id, or None if it has none."""
        if not isinstance(feature, dict):
            return None
        attributes = feature.get("attributes")
        if not isinstance(attributes, dict):
            return None
        return whole_number(attribute(attributes, self.info.object_id_field))


# Words with which servers refuse a query's parameters (a field, a spatial reference),
# as opposed to a 400 "Unable to complete operation." for a database that failed.
_PARAMETER_WORDS = ("invalid", "parameter", "field", "outsr", "spatial reference", "project")


def _refuses_the_request(error: ArcGISError) -> bool:
    text = " ".join([error.message, *error.details]).lower()
    return error.code == 400 and any(word in text for word in _PARAMETER_WORDS)


def _describe_params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items())


def _details(error: ArcGISError) -> str:
    extra = [d for d in error.details if d and d != error.message]
    return f" ({'; '.join(extra)})" if extra else ""


def ranges(ids: Sequence[int], limit: int = 5) -> str:
    """``1-3, 7, 9-12, ...`` for messages."""
    spans: list[str] = []
    for _, group in itertools.groupby(enumerate(sorted(ids)), key=lambda p: p[1] - p[0]):
        if len(spans) == limit:  # a run beyond the ones shown
            return ", ".join(spans) + ", ..."
        run = [v for _, v in group]
        spans.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(spans)
