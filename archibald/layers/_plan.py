"""The exactly-once planner: list a snapshot of ids, fetch it in batches, and make sure
each batch arrives whole (see the layers package for the algorithm)."""

from __future__ import annotations

import array
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .._tasks import together
from .._validate import whole_number
from ..exceptions import ArcGISError, ArchieError, IncompleteResultError, InvalidParameterError
from ._model import AnswerShape, LayerInfo, Page

__all__ = ["Crawl", "Query", "list_ids", "ranges"]

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
    if not isinstance(values, list):
        raise IncompleteResultError(f"{url} answered returnIdsOnly without a list of ids")
    try:
        if set(map(type, values)) <= {int}:  # the usual answer: plain integers, read at once
            ids = array.array("q", values)
        else:  # floats such as 7.0, digits in strings (some servers), or junk
            ids = array.array("q", [_whole_id(value) for value in values])
    except (OverflowError, ValueError):
        raise IncompleteResultError(
            f"{url} answered returnIdsOnly with an id that is not a 64-bit integer"
        ) from None
    if not all(a < b for a, b in itertools.pairwise(ids)):  # usually: no set, no sort
        ids = array.array("q", sorted(set(ids)))
    if ids and ids[0] < -_MAX_OID:
        raise IncompleteResultError(
            f"{url} answered returnIdsOnly with an id that is not a 64-bit integer"
        )
    return ids


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
        self._query = query
        self.url = url
        self.info = info
        self.where = where
        self.params = dict(params)
        self.page_size = page_size
        self.succeeded = False  # whether any batch has come back whole yet

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
        in_range = f"{oid} >= {batch[0]} AND {oid} <= {batch[-1]}"
        where = in_range if self.where.strip() in ("", "1=1") else f"({self.where}) AND {in_range}"
        body = await self._send({"where": where})
        found: dict[int, dict[str, Any]] = {}
        self._collect(body, wanted, found)
        shape = AnswerShape.of(body)
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
        return Page(
            features=[found[i] for i in batch],
            object_ids=list(batch),
            fields=shape.fields or self.info.fields,
            geometry_type=shape.geometry_type or self.info.geometry_type,
            spatial_reference=shape.spatial_reference or self.info.spatial_reference,
            object_id_field=oid,
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
        return await self._query({**self.params, **params})

    def _collect(
        self, body: Mapping[str, Any], wanted: set[int], found: dict[int, dict[str, Any]]
    ) -> None:
        oid = self.info.object_id_field
        features = body.get("features")
        if not isinstance(features, list):
            missing = sorted(wanted)
            raise IncompleteResultError(
                f"{self.url} answered a query without features "
                f"(object ids {ranges(missing)} were asked for)",
                missing=missing,
            )
        for feature in features:
            if not isinstance(feature, dict):
                continue
            attributes = feature.get("attributes")
            value = attributes.get(oid) if isinstance(attributes, dict) else None
            if value is None and isinstance(attributes, dict):  # case differs on some servers
                value = next((v for k, v in attributes.items() if k.lower() == oid.lower()), None)
            oid_value = whole_number(value)
            if oid_value is not None and oid_value in wanted:
                found[oid_value] = feature


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
