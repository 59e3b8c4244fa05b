"""Services, layers, and queries that return every matching feature exactly once.

How a crawl stays complete and exact (`FeatureLayer.pages`):

1. List the matching object ids first (``returnIdsOnly``; the server puts no limit on it).
   That list is the snapshot the crawl must deliver, no more, no less.
2. Cut it into batches of at most ``page_size`` ids, and fetch each batch as an id range
   (``(<where>) AND OID >= first AND OID <= last``), which servers answer faster than
   long ``objectIds`` lists.
3. Check every answer against its batch: ids outside the batch are dropped (they started
   matching after the snapshot), ids missing from it (a server that caps pages below its
   ``maxRecordCount``, or drops rows) are asked for again by ``objectIds``, in smaller
   pieces, and the page size shrinks to what the server really returns.
4. A batch that cannot be completed (the request fails after the client's retries, or the
   server will not return some ids at all) raises `IncompleteResultError` naming the ids,
   never a short result.

Inside ``async with``, the stream fetches ahead in a task group: a credit per page (there
are ``max_concurrency``) is taken when a fetch starts and given back when the consumer takes
the page, so fetching overlaps the consumer and memory stays bounded. Errors of a fetch are
handed to the consumer in order, never raised in the task group (which would cancel the
consumer's own code). Without ``async with``, fetches run in windows of
``max_concurrency`` batches; a window is fetched completely before its pages are yielded,
so nothing runs while the consumer holds a page and breaking out leaves nothing behind.
"""

from __future__ import annotations

import array
import collections
import contextlib
import itertools
import math
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._envelope import whole_number
from ._geojson import GeoJSONConverter
from ._urls import check_service_path
from ._validate import is_whole
from .exceptions import (
    ArcGISError,
    ArchieError,
    IncompleteResultError,
    InvalidParameterError,
    InvalidServiceURL,
    LayerCapabilityError,
)

if TYPE_CHECKING:
    from ._client import ArchieClient

__all__ = [
    "FeatureLayer",
    "FeatureStream",
    "FeatureService",
    "LayerInfo",
    "MapLayer",
    "MapService",
    "Page",
    "PageStream",
    "QueryResult",
]

_OID_TYPE = "esriFieldTypeOID"
_DEFAULT_MAX_RECORD_COUNT = 1000
_WGS84 = 4326


@attrs.frozen(kw_only=True)
class LayerInfo:
    """What a layer says about itself (its metadata, fetched once and cached).

    Attributes:
        name: The layer name.
        fields: Field definitions (``name``, ``type``, ``alias``, ...).
        object_id_field: The object-id field.
        geometry_type: ``esriGeometryPoint`` and so on, or None for a table.
        capabilities: Advertised operations, such as ``{"Query", "Create"}``.
        max_record_count: The most features one query returns.
        supports_pagination: Whether ``resultOffset`` paging is advertised.
        supports_statistics: Whether ``outStatistics`` is advertised.
        spatial_reference: The layer's spatial reference, if any.
        extent: The layer's extent, if any.
        raw: The whole metadata document.
    """

    name: str
    fields: tuple[Mapping[str, Any], ...]
    object_id_field: str
    geometry_type: str | None
    capabilities: frozenset[str]
    max_record_count: int
    supports_pagination: bool
    supports_statistics: bool
    spatial_reference: Mapping[str, Any] | None
    extent: Mapping[str, Any] | None
    raw: Mapping[str, Any] = attrs.field(repr=False)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], url: str) -> LayerInfo:
        """Read layer metadata, including that of 10.0-era servers."""
        fields = tuple(f for f in metadata.get("fields") or () if isinstance(f, Mapping))
        oid = metadata.get("objectIdField") or next(
            (f.get("name") for f in fields if f.get("type") == _OID_TYPE), None
        )
        if not isinstance(oid, str) or not oid:
            raise LayerCapabilityError(
                f"{url} names no object-id field (objectIdField, or a field of type "
                "esriFieldTypeOID), so its features cannot be crawled exactly"
            )
        advanced = metadata.get("advancedQueryCapabilities") or {}
        capabilities = frozenset(
            c.strip() for c in str(metadata.get("capabilities") or "").split(",") if c.strip()
        )
        extent = metadata.get("extent") if isinstance(metadata.get("extent"), Mapping) else None
        max_records = metadata.get("maxRecordCount")
        if not isinstance(max_records, int) or isinstance(max_records, bool) or max_records < 1:
            max_records = _DEFAULT_MAX_RECORD_COUNT
        return cls(
            name=str(metadata.get("name") or ""),
            fields=fields,
            object_id_field=oid,
            geometry_type=metadata.get("geometryType") or None,
            capabilities=capabilities,
            max_record_count=max_records,
            supports_pagination=bool(advanced.get("supportsPagination", False)),
            supports_statistics=bool(
                advanced.get("supportsStatistics", metadata.get("supportsStatistics", False))
            ),
            spatial_reference=metadata.get("spatialReference")
            or (extent or {}).get("spatialReference"),
            extent=extent,
            raw=metadata,
        )


@attrs.frozen(kw_only=True)
class Page:
    """One batch of features from a crawl, in Esri JSON.

    Attributes:
        features: The features (``{"attributes": ..., "geometry": ...}``).
        object_ids: Their object ids, in the same order.
        fields: The fields of the answer.
        geometry_type: The geometry type, or None.
        spatial_reference: The spatial reference of the geometries, or None.
        object_id_field: The object-id field.
        has_z: Whether positions carry z values (the answer's ``hasZ``), if it said.
        has_m: Whether positions carry M values (the answer's ``hasM``), if it said.
    """

    features: list[dict[str, Any]]
    object_ids: list[int]
    fields: Sequence[Mapping[str, Any]] = attrs.field(repr=False)
    geometry_type: str | None
    spatial_reference: Mapping[str, Any] | None = attrs.field(repr=False)
    object_id_field: str
    has_z: bool | None = attrs.field(default=None, repr=False)
    has_m: bool | None = attrs.field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.features)

    def to_geojson(self) -> dict[str, Any]:
        """The page as a GeoJSON FeatureCollection (coordinates as they came).

        A geometry that cannot be converted becomes null, with a warning in the log
        (see the geometry rules in the layers guide).
        """
        return _feature_collection(self.features, self.object_id_field, self.has_z, self.has_m)


@attrs.frozen(kw_only=True)
class QueryResult:
    """Every feature of a query, collected (see `FeatureLayer.query`).

    Attributes:
        features: The features in Esri JSON, in object-id order.
        fields: The fields of the answer.
        geometry_type: The geometry type, or None.
        spatial_reference: The spatial reference of the geometries, or None.
        object_id_field: The object-id field.
        has_z: Whether positions carry z values, if the server said.
        has_m: Whether positions carry M values, if the server said.
    """

    features: list[dict[str, Any]]
    fields: Sequence[Mapping[str, Any]] = attrs.field(repr=False)
    geometry_type: str | None
    spatial_reference: Mapping[str, Any] | None
    object_id_field: str
    has_z: bool | None = attrs.field(default=None, repr=False)
    has_m: bool | None = attrs.field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.features)

    def to_geojson(self) -> dict[str, Any]:
        """The result as a GeoJSON FeatureCollection (coordinates as they came).

        A geometry that cannot be converted becomes null, with a warning in the log.
        """
        return _feature_collection(self.features, self.object_id_field, self.has_z, self.has_m)


def _feature_collection(
    features: list[dict[str, Any]],
    object_id_field: str,
    has_z: bool | None,
    has_m: bool | None,
) -> dict[str, Any]:
    convert = GeoJSONConverter().feature
    return {
        "type": "FeatureCollection",
        "features": [convert(f, object_id_field, has_z=has_z, has_m=has_m) for f in features],
    }


class _Layer:
    """What feature layers and map layers share: metadata, counting, crawling."""

    _kind: str = ""

    def __init__(self, client: ArchieClient, service_path: str, layer_id: int) -> None:
        if not is_whole(layer_id, 0):
            raise InvalidParameterError(f"layer_id must be a whole number >= 0, got {layer_id!r}")
        path = check_service_path(service_path)
        if not path.endswith(f"/{self._kind}") and path != self._kind:
            path = f"{path}/{self._kind}"
        self._client = client
        self._path = f"{path}/{layer_id}"
        self._url = client.url_for(self._path)
        self._layer_id = layer_id
        self._info: LayerInfo | None = None
        self._info_lock = anyio.Lock()

    @classmethod
    def from_url(cls, client: ArchieClient, url: str) -> Self:
        """The layer at *url* (``<services root>/<service>/<kind>/<id>``), on *client*."""
        root = client.base_url
        clean = url.strip().split("?", 1)[0].rstrip("/")
        if not clean.startswith(root + "/"):
            raise InvalidServiceURL(
                f"{url!r} is not below the client's services root {root!r}; make an "
                "ArchieClient for its own root"
            )
        parts = clean[len(root) + 1 :].split("/")
        if len(parts) < 3 or parts[-2] != cls._kind or not parts[-1].isdecimal():
            raise InvalidServiceURL(
                f"{url!r} is not a {cls._kind} layer URL; one looks like "
                f"{root}/<service>/{cls._kind}/0"
            )
        return cls(client, "/".join(parts[:-1]), int(parts[-1]))

    @property
    def url(self) -> str:
        """The layer's URL."""
        return self._url

    @property
    def layer_id(self) -> int:
        """The layer id."""
        return self._layer_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r})"

    async def info(self) -> LayerInfo:
        """The layer's metadata, fetched on first use and cached."""
        async with self._info_lock:
            if self._info is None:
                metadata = await self._client.get_json(self._path)
                self._info = LayerInfo.from_metadata(metadata, self._url)
        return self._info

    async def _queryable(self) -> LayerInfo:
        info = await self.info()
        if info.capabilities and "Query" not in info.capabilities:
            raise LayerCapabilityError(
                f"{self._url} does not offer Query (its capabilities: "
                f"{', '.join(sorted(info.capabilities))})"
            )
        return info

    async def count(self, where: str = "1=1") -> int:
        """How many features match *where*."""
        where = check_where(where)
        await self._queryable()
        body = await self._client.get_json(
            f"{self._path}/query", params={"where": where, "returnCountOnly": True}
        )
        count = body.get("count")
        if not isinstance(count, int):
            raise IncompleteResultError(f"{self._url} answered a count without a count")
        return count

    async def object_ids(self, where: str = "1=1") -> list[int]:
        """The object ids of the features that match *where*, ascending."""
        return list(await self._object_ids(check_where(where)))

    async def _object_ids(self, where: str, *, verify: bool = False) -> array.array[int]:
        """The matching ids, ascending; with *verify*, checked against the server's count.

        A snapshot that a proxy or server cut short would make a crawl short without a
        word; so a crawl compares the list with ``returnCountOnly`` and lists again once
        if they disagree (the layer may have been edited in between).
        """
        await self._queryable()
        for attempt in (1, 2):
            listing = self._client.post_json(
                f"{self._path}/query", data={"where": where, "returnIdsOnly": True}
            )
            if verify:  # the list and the count are asked for at once
                body, count = await _together(listing, self.count(where))
            else:
                body, count = await listing, None
            ids = _id_array(body.get("objectIds"), self._url)
            if body.get("exceededTransferLimit"):
                raise IncompleteResultError(
                    f"{self._url} cut its list of object ids short (exceededTransferLimit); "
                    "the crawl cannot know what to fetch"
                )
            if count is None or count == len(ids):
                return ids
            if attempt == 2:
                raise IncompleteResultError(
                    f"{self._url} lists {len(ids):,} object ids for {where!r} but counts "
                    f"{count:,} features, twice; the crawl cannot know what to fetch"
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def pages(
        self,
        where: str = "1=1",
        *,
        out_fields: str | Iterable[str] = "*",
        return_geometry: bool = True,
        out_sr: int | None = None,
        page_size: int | None = None,
        max_concurrency: int | None = None,
        ordered: bool = True,
    ) -> PageStream:
        """Every feature matching *where*, exactly once, in pages: ``async for page in ...``.

        Args:
            where: The filter (SQL, as the server understands it).
            out_fields: ``"*"``, or the fields to return (the object-id field is always
                added).
            return_geometry: Whether to return geometries.
            out_sr: The spatial reference (wkid) of the returned geometries.
            page_size: Features per request; by default, and at most, the layer's
                ``maxRecordCount``.
            max_concurrency: Requests in flight at once; by default the client's limit.
            ordered: Pages in object-id order (default), or as they arrive within each
                window of concurrent requests.

        The iteration raises:
            IncompleteResultError: Some features could not be fetched; nothing is
                silently left out, and the crawl stops there.
            LayerCapabilityError: The layer does not offer Query.
        """
        return PageStream(
            self,
            where,
            out_fields=out_fields,
            return_geometry=return_geometry,
            out_sr=out_sr,
            page_size=page_size,
            max_concurrency=max_concurrency,
            ordered=ordered,
        )

    def features(
        self,
        where: str = "1=1",
        *,
        out_fields: str | Iterable[str] = "*",
        return_geometry: bool = True,
        out_sr: int | None = None,
        page_size: int | None = None,
        max_concurrency: int | None = None,
        ordered: bool = True,
        format: Literal["esrijson", "geojson"] = "esrijson",
    ) -> FeatureStream:
        """Every feature matching *where*, exactly once, one at a time.

        The arguments are those of `pages`, plus *format*: ``"esrijson"`` (default) or
        ``"geojson"`` (GeoJSON Features; geometries are asked for in WGS84 unless you
        pass *out_sr*).
        """
        if format not in ("esrijson", "geojson"):
            raise InvalidParameterError(f"format must be 'esrijson' or 'geojson', got {format!r}")
        if format == "geojson" and out_sr is None:
            out_sr = _WGS84
        pages = self.pages(
            where,
            out_fields=out_fields,
            return_geometry=return_geometry,
            out_sr=out_sr,
            page_size=page_size,
            max_concurrency=max_concurrency,
            ordered=ordered,
        )
        return FeatureStream(pages, geojson=format == "geojson")

    async def query(
        self,
        where: str = "1=1",
        *,
        out_fields: str | Iterable[str] = "*",
        return_geometry: bool = True,
        out_sr: int | None = None,
        page_size: int | None = None,
        max_concurrency: int | None = None,
    ) -> QueryResult:
        """Every feature matching *where*, collected in memory (use `pages` for big layers)."""
        info = await self._queryable()
        features: list[dict[str, Any]] = []
        fields: Sequence[Mapping[str, Any]] = ()
        geometry_type, spatial_reference = info.geometry_type, info.spatial_reference
        has_z = has_m = None
        pages = self.pages(
            where,
            out_fields=out_fields,
            return_geometry=return_geometry,
            out_sr=out_sr,
            page_size=page_size,
            max_concurrency=max_concurrency,
        )
        async with pages:  # fetching ahead
            async for page in pages:
                features.extend(page.features)
                fields = page.fields or fields
                geometry_type = page.geometry_type or geometry_type
                spatial_reference = page.spatial_reference or spatial_reference
                has_z = page.has_z if page.has_z is not None else has_z
                has_m = page.has_m if page.has_m is not None else has_m
        return QueryResult(
            features=features,
            fields=fields or info.fields,
            geometry_type=geometry_type,
            spatial_reference=spatial_reference,
            object_id_field=info.object_id_field,
            has_z=has_z,
            has_m=has_m,
        )


class FeatureLayer(_Layer):
    """A layer of a FeatureServer: ``FeatureLayer(client, "Parcels", 0)``.

    ``service_path`` is the service below the client's base URL, with or without
    ``/FeatureServer``; `from_url` takes a full layer URL instead.
    """

    _kind = "FeatureServer"


class MapLayer(_Layer):
    """A layer of a MapServer: ``MapLayer(client, "Basemap", 3)``."""

    _kind = "MapServer"


LayerT = TypeVar("LayerT", bound=_Layer)
A = TypeVar("A")
B = TypeVar("B")


class _Service(Generic[LayerT]):
    _layer_class: type[LayerT]

    def __init__(self, client: ArchieClient, service_path: str) -> None:
        kind = self._layer_class._kind
        path = check_service_path(service_path)
        if not path.endswith(f"/{kind}") and path != kind:
            path = f"{path}/{kind}"
        self._client = client
        self._path = path
        self._metadata: Mapping[str, Any] | None = None

    @property
    def url(self) -> str:
        """The service's URL."""
        return self._client.url_for(self._path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    async def info(self) -> Mapping[str, Any]:
        """The service's metadata, fetched on first use and cached."""
        if self._metadata is None:
            self._metadata = await self._client.get_json(self._path)
        return self._metadata

    def layer(self, layer_id: int) -> LayerT:
        """The layer *layer_id* of this service (no request is made)."""
        return self._layer_class(self._client, self._path, layer_id)

    async def layers(self) -> list[LayerT]:
        """Every layer and table the service lists."""
        metadata = await self.info()
        entries = [*(metadata.get("layers") or ()), *(metadata.get("tables") or ())]
        ids = sorted(
            {e["id"] for e in entries if isinstance(e, Mapping) and isinstance(e.get("id"), int)}
        )
        return [self.layer(i) for i in ids]


class FeatureService(_Service[FeatureLayer]):
    """A FeatureServer: ``FeatureService(client, "Parcels")``."""

    _layer_class = FeatureLayer


class MapService(_Service[MapLayer]):
    """A MapServer: ``MapService(client, "Basemap")``."""

    _layer_class = MapLayer


class PageStream:
    """The pages of a crawl (see `FeatureLayer.pages`): an async iterator.

    Open it with ``async with`` to fetch ahead: up to ``max_concurrency`` pages are
    fetched while the consumer works, and leaving the block cancels what is still running.
    Without ``async with``, each step fetches a whole window of pages and returns, so
    nothing runs between steps and a loop that stops early needs no clean-up. It is a
    plain object, not an async generator, so Trio does not warn on an early ``break``.
    """

    def __init__(
        self,
        layer: _Layer,
        where: str,
        *,
        out_fields: str | Iterable[str],
        return_geometry: bool,
        out_sr: int | None,
        page_size: int | None,
        max_concurrency: int | None,
        ordered: bool,
    ) -> None:
        for name, value in (("page_size", page_size), ("max_concurrency", max_concurrency)):
            if value is not None and not is_whole(value, 1):
                raise InvalidParameterError(f"{name} must be a whole number >= 1, got {value!r}")
        if out_sr is not None and not is_whole(out_sr, 1):
            raise InvalidParameterError(
                f"out_sr must be a spatial reference id (wkid) such as 4326, got {out_sr!r}"
            )
        if not isinstance(return_geometry, bool):
            raise InvalidParameterError(
                f"return_geometry must be True or False, got {return_geometry!r}"
            )
        self._layer = layer
        self._where = check_where(where)
        self._out_fields = out_fields
        self._return_geometry = return_geometry
        self._out_sr = out_sr
        self._page_size = page_size
        self._concurrency = max_concurrency or layer._client.max_concurrent_requests
        self._ordered = ordered
        self._crawl: _Crawl | None = None
        self._ids: array.array[int] | None = None
        self._position = 0
        self._ready: collections.deque[Page] = collections.deque()
        self._failed: BaseException | None = None
        self._closed = False
        self._delivered = 0
        # Inside `async with`: a task group that fetches ahead of the consumer.
        self._stack: AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._producer: anyio.CancelScope | None = None
        self._slots: MemoryObjectReceiveStream[_Slot] | None = None
        self._head: _Slot | None = None
        self._credits: anyio.Semaphore | None = None
        self._scheduled_all = False

    @property
    def total(self) -> int | None:
        """How many features the crawl will deliver, once it has listed them."""
        return None if self._ids is None else len(self._ids)

    @property
    def delivered(self) -> int:
        """How many features the crawl has handed out so far."""
        return self._delivered

    def __aiter__(self) -> PageStream:
        return self

    def _closed_error(self) -> IncompleteResultError:
        return IncompleteResultError(
            f"the crawl of {self._layer.url} was closed after {self._delivered} features"
        )

    async def __anext__(self) -> Page:
        if self._closed:  # closed by its consumer: ends, as a closed async generator does
            raise StopAsyncIteration
        if self._failed is not None:
            raise IncompleteResultError(
                f"the crawl of {self._layer.url} already failed after {self._delivered} "
                "features; start a new one"
            ) from self._failed
        try:
            if self._task_group is not None:
                page = await self._next_fetched_ahead(self._task_group)
            else:
                page = await self._next_in_windows()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            self._failed = exc
            raise
        self._delivered += len(page)
        return page

    async def _begin(self) -> tuple[_Crawl, array.array[int]]:
        """List the ids (the snapshot) and prepare the crawl, on the first step."""
        if self._crawl is None or self._ids is None:
            info = await self._layer._queryable()
            size = info.max_record_count
            if self._page_size is not None:
                size = min(self._page_size, size)
            out_fields = _fields_param(self._out_fields, info, self._layer.url)  # before any query
            self._ids = await self._layer._object_ids(self._where, verify=True)
            self._crawl = _Crawl(
                self._layer,
                info,
                self._where,
                out_fields,
                self._return_geometry,
                self._out_sr,
                size,
            )
        return self._crawl, self._ids

    # -- without `async with`: one window per step, nothing running between steps ---------

    async def _next_in_windows(self) -> Page:
        if not self._ready:
            crawl, ids = await self._begin()
            window: list[array.array[int]] = []
            end = self._position
            while len(window) < self._concurrency and end < len(ids):
                step = crawl.page_size
                window.append(ids[end : end + step])
                end += step
            if window:
                pages = await crawl.fetch_window(window, ordered=self._ordered)
                # Only now: a step cancelled mid-window fetches the same window again.
                self._position = end
                self._ready.extend(pages)
        if not self._ready:
            raise StopAsyncIteration
        return self._ready.popleft()

    # -- inside `async with`: fetching ahead, max_concurrency pages at most ----------------

    async def _next_fetched_ahead(self, task_group: anyio.abc.TaskGroup) -> Page:
        if self._slots is None:
            crawl, ids = await self._begin()
            self._credits = anyio.Semaphore(self._concurrency)
            send, self._slots = anyio.create_memory_object_stream[_Slot](math.inf)
            self._producer = anyio.CancelScope()
            task_group.start_soon(self._produce, crawl, ids, send, self._producer)
        assert self._credits is not None
        if self._head is None:
            try:
                self._head = await self._slots.receive()
            except anyio.EndOfStream:
                if self._closed or not self._scheduled_all:
                    raise self._closed_error() from None
                raise StopAsyncIteration from None
            except anyio.ClosedResourceError:  # closed by aclose() while waiting
                raise self._closed_error() from None
        slot = self._head
        await slot.done.wait()  # a step cancelled here keeps its slot for the next one
        if self._closed:
            raise self._closed_error()
        self._head = None
        self._credits.release()
        if slot.error is not None:
            if self._producer is not None:
                self._producer.cancel()  # the crawl stops here: nothing more is fetched
            raise slot.error
        assert slot.page is not None
        return slot.page

    async def _produce(
        self,
        crawl: _Crawl,
        ids: array.array[int],
        send: MemoryObjectSendStream[_Slot],
        scope: anyio.CancelScope,
    ) -> None:
        """Start one fetch per batch as credits allow: a credit comes back when the
        consumer takes a page, so fetched and in-flight pages never exceed the limit."""
        assert self._credits is not None
        failed = anyio.Event()
        with scope, send:
            async with anyio.create_task_group() as fetches:
                position = 0
                while position < len(ids):
                    await self._credits.acquire()
                    if failed.is_set() or self._closed:
                        break  # the consumer stops at the failure; fetch nothing more
                    slot = _Slot(ids[position : position + crawl.page_size])
                    position += len(slot.batch)
                    if self._ordered:
                        _hand_over(send, slot)
                    fetches.start_soon(self._fetch, crawl, slot, send, failed)
                else:
                    # Only now may the end of the slots mean the end of the crawl.
                    self._scheduled_all = True

    async def _fetch(
        self,
        crawl: _Crawl,
        slot: _Slot,
        send: MemoryObjectSendStream[_Slot],
        failed: anyio.Event,
    ) -> None:
        try:
            slot.page = await crawl.fetch_batch(slot.batch)
        except Exception as exc:
            # Handed to the consumer, never raised here: a task group error would cancel
            # the consumer's own code inside `async with`.
            slot.error = crawl.failure(exc, slot.batch)
            failed.set()
        finally:
            if slot.page is None and slot.error is None:  # cancelled: the crawl was closed
                slot.error = self._closed_error()
            slot.done.set()  # never leave a consumer waiting
        if not self._ordered:
            _hand_over(send, slot)

    async def aclose(self) -> None:
        """Drop what is buffered and end the crawl, stopping any fetch still running."""
        self._ready.clear()
        self._head = None
        self._closed = True
        if self._producer is not None:
            self._producer.cancel()
        if self._slots is not None:
            self._slots.close()

    async def __aenter__(self) -> PageStream:
        if self._stack is not None:
            raise RuntimeError("this stream is already open")
        if self._crawl is not None or self._closed:
            raise RuntimeError("open the stream with `async with` before iterating it")
        stack = AsyncExitStack()
        self._task_group = await stack.enter_async_context(anyio.create_task_group())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        stack, self._stack, self._task_group = self._stack, None, None
        if stack is None:
            return None
        try:
            return await stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The task group wraps an error of the block's own code (an error of the crawl,
            # say) in an exception group; let it out as it was raised instead.
            if exc is None or len(group.exceptions) != 1 or not _same(group.exceptions[0], exc):
                raise
        return False


def _hand_over(send: MemoryObjectSendStream[_Slot], slot: _Slot) -> None:
    """Queue *slot* for the consumer, unless it has left (the stream was closed)."""
    with contextlib.suppress(anyio.BrokenResourceError):
        send.send_nowait(slot)


@attrs.define(eq=False)
class _Slot:
    """One batch fetched ahead: its page or its error, once ``done`` is set."""

    batch: array.array[int]
    done: anyio.Event = attrs.Factory(anyio.Event)
    page: Page | None = None
    error: Exception | None = None


class FeatureStream:
    """The features of a crawl, one at a time (see `FeatureLayer.features`)."""

    def __init__(self, pages: PageStream, *, geojson: bool) -> None:
        self._pages = pages
        self._geojson = geojson
        self._current: collections.deque[dict[str, Any]] = collections.deque()
        self._dropped = 0  # features taken from pages but never handed out
        self._page: Page | None = None  # the page the current features came from
        self._converter = GeoJSONConverter()

    @property
    def pages(self) -> PageStream:
        """The page stream underneath."""
        return self._pages

    @property
    def total(self) -> int | None:
        """How many features the crawl will deliver, once it has listed them."""
        return self._pages.total

    @property
    def delivered(self) -> int:
        """How many features have been handed out so far."""
        return self._pages.delivered - len(self._current) - self._dropped

    @property
    def unconvertible_geometries(self) -> int:
        """With ``format="geojson"``: features handed out with a null geometry because
        theirs could not be converted (see the geometry rules in the layers guide)."""
        return self._converter.unconvertible

    def __aiter__(self) -> FeatureStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._current:
            page = self._page = await self._pages.__anext__()
            self._current.extend(page.features)
        feature = self._current.popleft()
        if self._geojson:
            source = self._page
            assert source is not None
            return self._converter.feature(
                feature, source.object_id_field, has_z=source.has_z, has_m=source.has_m
            )
        return feature

    def _drop(self) -> None:
        self._dropped += len(self._current)
        self._current.clear()

    async def aclose(self) -> None:
        """Drop what is buffered and end the crawl."""
        self._drop()
        await self._pages.aclose()

    async def __aenter__(self) -> FeatureStream:
        await self._pages.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._drop()
        return await self._pages.__aexit__(exc_type, exc, tb)


# -- the crawl ----------------------------------------------------------------------------


class _Crawl:
    """Fetching batches of a snapshot of ids, and making sure each arrives whole."""

    def __init__(
        self,
        layer: _Layer,
        info: LayerInfo,
        where: str,
        out_fields: str,
        return_geometry: bool,
        out_sr: int | None,
        page_size: int,
    ) -> None:
        self.layer = layer
        self.info = info
        self.where = where
        self.params: dict[str, Any] = {
            "outFields": out_fields,
            "returnGeometry": return_geometry,
        }
        if out_sr is not None:
            self.params["outSR"] = out_sr
        self.page_size = page_size
        self.succeeded = False  # whether any batch has come back whole yet

    async def fetch_window(self, batches: list[array.array[int]], *, ordered: bool) -> list[Page]:
        """Fetch *batches* concurrently; every one complete, or one error for all."""
        results: list[Page | None] = [None] * len(batches)
        arrival: list[int] = []
        failure: list[Exception] = []
        failed: list[array.array[int]] = []

        async def fetch(index: int, batch: array.array[int]) -> None:
            try:
                results[index] = await self.fetch_batch(batch)
            except Exception as exc:
                failure.append(exc)
                failed.append(batch)
                tg.cancel_scope.cancel()  # one failure ends the window; it is reported alone
                return
            arrival.append(index)

        try:
            async with anyio.create_task_group() as tg:
                for index, batch in enumerate(batches):
                    tg.start_soon(fetch, index, batch)
        except BaseExceptionGroup as group:
            # Only what no fetch could catch gets here (Ctrl-C, say): raise it as it is.
            leaves = _leaves(group)
            if len(leaves) == 1:
                raise leaves[0] from None
            raise
        if failure:
            raise self.failure(failure[0], failed[0])
        order = range(len(batches)) if ordered else arrival
        pages = [results[i] for i in order]
        return [p for p in pages if p is not None]

    def failure(self, error: Exception, batch: array.array[int]) -> Exception:
        """What the consumer gets when *batch* could not be fetched because of *error*."""
        if isinstance(error, IncompleteResultError) or not isinstance(error, ArchieError):
            return error
        if isinstance(error, ArcGISError) and _refuses_the_request(error) and not self.succeeded:
            # The server refused the query itself (a field or spatial reference it does
            # not know): a mistake in the request, not features that went missing.
            rejected = InvalidParameterError(
                f"{self.layer.url} rejected the query ({_describe_params(self.params)}): "
                f"{error.message}{_details(error)}"
            )
            rejected.__cause__ = error
            return rejected
        missing = list(batch)
        incomplete = IncompleteResultError(
            f"{len(missing)} features of {self.layer.url} could not be fetched "
            f"(object ids {_ranges(missing)}), so the crawl stopped: {error}",
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
        body = await self._query({"where": where})
        found: dict[int, dict[str, Any]] = {}
        self._collect(body, wanted, found)
        shape = _Shape.of(body)
        if 0 < len(found) < len(wanted) and body.get("exceededTransferLimit"):
            self._shrink(len(found))  # the server caps pages below what it advertises
        missing = sorted(wanted - found.keys())
        while missing:
            before = len(found)
            step = min(self.page_size, len(missing))
            for start in range(0, len(missing), step):
                chunk = missing[start : start + step]
                got_before = len(found)
                body = await self._query({"objectIds": chunk})
                self._collect(body, set(chunk), found)
                shape = shape.merge(_Shape.of(body))
                got = len(found) - got_before
                if 0 < got < len(chunk):
                    self._shrink(got)
            missing = sorted(wanted - found.keys())
            if missing and len(found) == before:
                raise IncompleteResultError(
                    f"{len(missing)} features of {self.layer.url} listed by returnIdsOnly "
                    f"were not returned when asked for by id (object ids {_ranges(missing)}): "
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

    def _shrink(self, returned: int) -> None:
        """Ask for no more than the server was seen to return in one answer."""
        self.page_size = max(1, min(self.page_size, returned))

    async def _query(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return await self.layer._client.post_json(
            f"{self.layer._path}/query", data={**self.params, **params}
        )

    def _collect(
        self, body: Mapping[str, Any], wanted: set[int], found: dict[int, dict[str, Any]]
    ) -> None:
        oid = self.info.object_id_field
        features = body.get("features")
        if not isinstance(features, list):
            missing = sorted(wanted)
            raise IncompleteResultError(
                f"{self.layer.url} answered a query without features "
                f"(object ids {_ranges(missing)} were asked for)",
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


_MAX_OID = 2**63 - 1


def _id_array(values: object, url: str) -> array.array[int]:
    """Ids from a returnIdsOnly answer: ascending, unique, in 8 bytes each."""
    if values is None:
        return array.array("q")
    if not isinstance(values, list):
        raise IncompleteResultError(f"{url} answered returnIdsOnly without a list of ids")
    ids: list[int] = []
    for value in values:
        oid = whole_number(value)
        if oid is None or not -_MAX_OID <= oid <= _MAX_OID:
            raise IncompleteResultError(
                f"{url} answered returnIdsOnly with an id that is not a 64-bit integer"
            )
        ids.append(oid)
    if all(a < b for a, b in itertools.pairwise(ids)):  # the usual case: no set, no sort
        return array.array("q", ids)
    return array.array("q", sorted(set(ids)))


async def _together(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await both at once; an error of either is raised as it is (not in a group)."""
    results: list[Any] = [None, None]
    errors: list[Exception] = []

    async def run(index: int, awaitable: Awaitable[Any]) -> None:
        try:
            results[index] = await awaitable
        except Exception as exc:
            errors.append(exc)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, first)
        tg.start_soon(run, 1, second)
    if errors:
        raise errors[0]
    return results[0], results[1]


def _same(raised: BaseException, original: BaseException) -> bool:
    """Whether *raised* is *original*, or a copy of the group *original* (Trio's nursery
    splits groups, which copies them but keeps their leaves)."""
    if raised is original:
        return True
    return (
        isinstance(raised, BaseExceptionGroup)
        and isinstance(original, BaseExceptionGroup)
        and _leaves(raised) == _leaves(original)
    )


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


@attrs.frozen
class _Shape:
    """What a query answer says about its features, besides the features."""

    fields: Sequence[Mapping[str, Any]]
    geometry_type: str | None
    spatial_reference: Mapping[str, Any] | None
    has_z: bool | None
    has_m: bool | None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> _Shape:
        has_z, has_m = body.get("hasZ"), body.get("hasM")
        return cls(
            body.get("fields") or (),
            body.get("geometryType") or None,
            body.get("spatialReference") or None,
            has_z if isinstance(has_z, bool) else None,
            has_m if isinstance(has_m, bool) else None,
        )

    def merge(self, later: _Shape) -> _Shape:
        """This shape, filled in from a later answer where it said nothing."""
        return _Shape(
            later.fields or self.fields,
            later.geometry_type or self.geometry_type,
            later.spatial_reference or self.spatial_reference,
            later.has_z if later.has_z is not None else self.has_z,
            later.has_m if later.has_m is not None else self.has_m,
        )


def _fields_param(out_fields: str | Iterable[str], info: LayerInfo, url: str) -> str:
    """The ``outFields`` parameter; names the layer does not have are refused here."""
    if isinstance(out_fields, str):
        names = [n.strip() for n in out_fields.split(",") if n.strip()]
    else:
        given = list(out_fields) if isinstance(out_fields, Iterable) else None  # read once
        if given is None or not all(isinstance(n, str) for n in given):
            raise InvalidParameterError(
                f"out_fields must be '*', a comma-separated string or a list of field names, "
                f"got {out_fields!r}"
            )
        names = [n.strip() for n in given]
    if not names or "*" in names:
        return "*"
    known = {str(f.get("name", "")).lower(): f.get("name") for f in info.fields}
    unknown = [n for n in names if known and n.lower() not in known]
    if unknown:
        listed = ", ".join(str(name) for name in known.values())
        raise InvalidParameterError(
            f"{url} has no field {', '.join(map(repr, unknown))}; its fields are: {listed}"
        )
    if info.object_id_field.lower() not in {n.lower() for n in names}:
        names.append(info.object_id_field)  # needed to check that every feature arrived
    return ",".join(names)


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


def check_where(where: object) -> str:
    """A ``where`` clause: a string; blank means every feature (``1=1``)."""
    if not isinstance(where, str):
        raise InvalidParameterError(
            f"where must be an SQL string such as '1=1' or \"STATUS = 'open'\", got {where!r}"
        )
    return where.strip() or "1=1"


def _ranges(ids: Sequence[int], limit: int = 5) -> str:
    """``1-3, 7, 9-12, ...`` for messages."""
    spans: list[str] = []
    for _, group in itertools.groupby(enumerate(sorted(ids)), key=lambda p: p[1] - p[0]):
        if len(spans) == limit:  # a run beyond the ones shown
            return ", ".join(spans) + ", ..."
        run = [v for _, v in group]
        spans.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(spans)
