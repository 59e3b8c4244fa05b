"""Handles on services and layers: metadata, counting, and the ways to crawl."""

from __future__ import annotations

import array
import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar, overload

import anyio

from .._urls import check_service_path, split_layer_url
from .._validate import is_whole
from ..exceptions import IncompleteResultError, InvalidParameterError, LayerCapabilityError
from ._attachments import AttachmentEditResult, AttachmentInfo, Attachments, Content
from ._model import AnswerShape, LayerInfo, QueryResult
from ._options import CrawlOptions, check_where
from ._partitions import Partition, cut_ranges, id_statistics, plan_ranges, size_rule
from ._plan import list_ids
from ._streams import FeatureStream, PageStream

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd
    import pyarrow as pa

    from .._client import ArchieClient
    from ..arrow import RecordBatchStream

__all__ = ["FeatureLayer", "FeatureService", "MapLayer", "MapService"]

_WGS84 = 4326


class _Layer:
    """What feature layers and map layers share: metadata, counting, crawling."""

    _kind: str = ""

    def __init__(self, client: ArchieClient, service_path: str, layer_id: int) -> None:
        if not is_whole(layer_id, 0):
            raise InvalidParameterError(f"layer_id must be a whole number >= 0, got {layer_id!r}")
        path = _with_kind(check_service_path(service_path), self._kind)
        self._client = client
        self._path = f"{path}/{layer_id}"
        self._url = client.url_for(self._path)
        self._layer_id = layer_id
        self._info: LayerInfo | None = None
        self._info_lock = anyio.Lock()

    @classmethod
    def from_url(cls, client: ArchieClient, url: str) -> Self:
        """The layer at *url* (``<services root>/<service>/<kind>/<id>``), on *client*."""
        service_path, layer_id = split_layer_url(url, client.base_url, cls._kind)
        return cls(client, service_path, layer_id)

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

    async def _query(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Send one query (a POST, so long filters and id lists fit)."""
        if params.get("returnIdsOnly") is True:  # ids read as an array, a piece at a time
            return await self._client._post_id_list(f"{self._path}/query", params)
        return await self._client.post_json(f"{self._path}/query", data=params)

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
        where = check_where(where)
        await self._queryable()
        ids: array.array[int] = await list_ids(self._query, self._url, where)
        return list(ids)

    async def partitions(
        self, where: str = "1=1", *, count: int | None = None, size: int | None = None
    ) -> list[Partition]:
        """Ranges of object ids that together hold every feature matching *where*, for
        crawls spread over tasks, processes or machines (``pages(partition=...)``).

        They are planned from the server's statistics (the count, smallest and largest
        object id of a range; a range holding too many features is cut in two at its
        middle id), so no id is listed, however big the layer. A layer that does not
        advertise statistics lists its ids instead (checked against its count) and cuts
        the list. The ranges are contiguous, from the smallest id to the largest.

        Args:
            where: The filter (SQL, as the server understands it).
            count: Make at least this many partitions (if there are that many features),
                none holding more than its share of the features.
            size: The most features in a partition. Without *count* or *size*,
                partitions hold up to 100,000 features.

        Raises:
            LayerCapabilityError: The layer does not offer Query.
        """
        where = check_where(where)
        limit = size_rule(count, size)
        info = await self._queryable()
        oid = info.object_id_field
        if info.supports_statistics:
            statistics = functools.partial(id_statistics, self._query, self._url, oid)
            id_ranges = await plan_ranges(statistics, where, oid, limit)
        else:
            ids = await list_ids(self._query, self._url, where, count=self.count)
            id_ranges = cut_ranges(ids, limit(len(ids)))
        return [
            Partition(url=self._url, where=where, id_field=oid, first_id=a, last_id=b, count=n)
            for a, b, n in id_ranges
        ]

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
        partition: Partition | None = None,
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
            partition: Crawl only this range of object ids (from `partitions`, made by
                this process or another); *where* is then the partition's.

        The iteration raises:
            IncompleteResultError: Some features could not be fetched; nothing is
                silently left out, and the crawl stops there.
            LayerCapabilityError: The layer does not offer Query.
        """
        options = CrawlOptions(
            where=where,
            out_fields=out_fields,
            return_geometry=return_geometry,
            out_sr=out_sr,
            page_size=page_size,
            max_concurrency=max_concurrency,
            ordered=ordered,
            partition=partition,
        )
        return PageStream(self, options)

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
        partition: Partition | None = None,
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
            partition=partition,
        )
        return FeatureStream(pages, geojson=format == "geojson")

    def record_batches(
        self,
        where: str = "1=1",
        *,
        out_fields: str | Iterable[str] = "*",
        return_geometry: bool = True,
        out_sr: int | None = None,
        page_size: int | None = None,
        max_concurrency: int | None = None,
        partition: Partition | None = None,
    ) -> RecordBatchStream:
        """Every feature matching *where*, exactly once, as Arrow record batches, one per
        page: ``async for batch in ...`` (see `archibald.arrow.RecordBatchStream`).

        Every batch has the one schema made from the layer's field list (see the type
        table in the Arrow guide); geometries are a WKB column, ``geometry``, with
        GeoParquet 1.1 metadata on the schema. A table has no geometry column. The
        arguments are those of `pages`. Needs the ``arrow`` extra
        (``pip install 'archibald[arrow]'``).

        The iteration raises what `pages` raises, and:
            ServiceError: A value does not fit its field's type (the message names the
                field and the object id).
        """
        from ..arrow import RecordBatchStream  # the optional extra, imported when used

        pages = self.pages(
            where,
            out_fields=out_fields,
            return_geometry=return_geometry,
            out_sr=out_sr,
            page_size=page_size,
            max_concurrency=max_concurrency,
            partition=partition,
        )
        return RecordBatchStream(
            pages,
            self._queryable,
            out_fields=out_fields,
            return_geometry=return_geometry,
            out_sr=out_sr,
            url=self._url,
        )

    async def to_arrow(
        self,
        where: str = "1=1",
        *,
        out_fields: str | Iterable[str] = "*",
        return_geometry: bool = True,
        out_sr: int | None = None,
        page_size: int | None = None,
        max_concurrency: int | None = None,
        partition: Partition | None = None,
    ) -> pa.Table:
        """Every feature matching *where*, collected in one `pyarrow.Table` (the batches
        of `record_batches`, with the same arguments and schema)."""
        batches = self.record_batches(
            where,
            out_fields=out_fields,
            return_geometry=return_geometry,
            out_sr=out_sr,
            page_size=page_size,
            max_concurrency=max_concurrency,
            partition=partition,
        )
        return await batches.read_all()

    async def to_dataframe(
        self,
        where: str = "1=1",
        *,
        out_fields: str | Iterable[str] = "*",
        return_geometry: bool = False,
        out_sr: int | None = None,
        decode_domains: bool = False,
        partition: Partition | None = None,
    ) -> pd.DataFrame:
        """Every feature matching *where*, in a pandas DataFrame with the column types of
        `to_arrow` (attributes only unless *return_geometry*: then a WKB column).

        With *decode_domains*, coded values are replaced by their names (the field's
        coded-value domain, or the one its subtype gives it). Needs the ``geo`` extra
        (``pip install 'archibald[geo]'``).
        """
        from .. import frames  # the optional extra, imported when used

        table = await self.to_arrow(
            where,
            out_fields=out_fields,
            return_geometry=return_geometry,
            out_sr=out_sr,
            partition=partition,
        )
        return frames.to_dataframe(table, await self.info(), decode=decode_domains)

    async def to_geodataframe(
        self,
        where: str = "1=1",
        *,
        out_fields: str | Iterable[str] = "*",
        out_sr: int | None = None,
        decode_domains: bool = False,
        partition: Partition | None = None,
    ) -> gpd.GeoDataFrame:
        """Every feature matching *where*, in a GeoPandas GeoDataFrame whose CRS is the
        layer's (or *out_sr*); the arguments are those of `to_dataframe`.

        Raises:
            LayerCapabilityError: The layer is a table (use `to_dataframe`).
        """
        from .. import frames  # the optional extra, imported when used

        info = await self._queryable()
        if info.geometry_type is None:
            raise LayerCapabilityError(f"{self._url} is a table: use to_dataframe()")
        table = await self.to_arrow(
            where, out_fields=out_fields, out_sr=out_sr, partition=partition
        )
        return frames.to_geodataframe(table, info, decode=decode_domains)

    async def query(
        self,
        where: str = "1=1",
        *,
        out_fields: str | Iterable[str] = "*",
        return_geometry: bool = True,
        out_sr: int | None = None,
        page_size: int | None = None,
        max_concurrency: int | None = None,
        partition: Partition | None = None,
    ) -> QueryResult:
        """Every feature matching *where*, collected in memory (use `pages` for big layers)."""
        info = await self._queryable()
        features: list[dict[str, Any]] = []
        shape = AnswerShape((), info.geometry_type, info.spatial_reference, None, None)
        pages = self.pages(
            where,
            out_fields=out_fields,
            return_geometry=return_geometry,
            out_sr=out_sr,
            page_size=page_size,
            max_concurrency=max_concurrency,
            partition=partition,
        )
        async with pages:  # fetching ahead
            async for page in pages:
                features.extend(page.features)
                shape = shape.merge(AnswerShape.of_page(page))
        return QueryResult(
            features=features,
            fields=shape.fields or info.fields,
            geometry_type=shape.geometry_type,
            spatial_reference=shape.spatial_reference,
            object_id_field=info.object_id_field,
            has_z=shape.has_z,
            has_m=shape.has_m,
        )


class FeatureLayer(_Layer):
    """A layer of a FeatureServer: ``FeatureLayer(client, "Parcels", 0)``.

    ``service_path`` is the service below the client's base URL, with or without
    ``/FeatureServer``; `from_url` takes a full layer URL instead.
    """

    _kind = "FeatureServer"

    def _attachments(self) -> Attachments:
        return Attachments(self._client, self._path, self._url, self.info)

    @overload
    async def attachments(self, object_id: int) -> list[AttachmentInfo]: ...

    @overload
    async def attachments(
        self, *, object_ids: Iterable[int]
    ) -> dict[int, list[AttachmentInfo]]: ...

    async def attachments(
        self, object_id: int | None = None, *, object_ids: Iterable[int] | None = None
    ) -> list[AttachmentInfo] | dict[int, list[AttachmentInfo]]:
        """The attachments of the feature *object_id*, or of each of *object_ids* (a
        mapping of every object id given to its attachments, empty for none).

        Many features are listed in few requests (``queryAttachments``) when the layer
        advertises it, else one request per feature.

        Raises:
            LayerCapabilityError: The layer has no attachments (``hasAttachments``).
            NotFoundError: (Listing one feature at a time) a feature does not exist.
        """
        if (object_id is None) == (object_ids is None):
            raise InvalidParameterError("give object_id or object_ids=, not both")
        if object_ids is not None:
            return await self._attachments().of(object_ids)
        assert object_id is not None  # as checked above
        return (await self._attachments().of([object_id]))[object_id]

    @overload
    async def download_attachment(
        self, object_id: int, attachment_id: int, dest: None = None
    ) -> bytes: ...

    @overload
    async def download_attachment(
        self, object_id: int, attachment_id: int, dest: str | os.PathLike[str]
    ) -> Path: ...

    async def download_attachment(
        self, object_id: int, attachment_id: int, dest: str | os.PathLike[str] | None = None
    ) -> bytes | Path:
        """Download attachment *attachment_id* of feature *object_id*: its bytes, or,
        with *dest* (a file path), written there (the path is returned).

        The file is written beside *dest* and renamed once complete, so a failed
        download leaves no half file. The download is held in memory until then.

        Raises:
            LayerCapabilityError: The layer has no attachments.
            NotFoundError: No such attachment (as the server reports it).
        """
        return await self._attachments().download(object_id, attachment_id, dest)

    async def add_attachment(
        self,
        object_id: int,
        content: Content,
        *,
        name: str | None = None,
        content_type: str | None = None,
        keywords: str | None = None,
    ) -> AttachmentEditResult:
        """Upload a file as a new attachment of feature *object_id* (``addAttachment``).

        Args:
            object_id: The feature.
            content: The file's bytes, or its path (a ``str`` or `pathlib.Path`).
            name: The attachment's file name; by default the file's own (needed for
                bytes).
            content_type: Its media type; by default guessed from *name*.
            keywords: Keywords to store with it.

        Returns:
            The result, with the new attachment's id.

        Raises:
            LayerCapabilityError: The layer has no attachments.
            ServiceError: The server did not add it (the message says why; too big a
                file, a missing feature, no Create or Update capability...).
        """
        return await self._attachments().add(
            object_id, content, name=name, content_type=content_type, keywords=keywords
        )

    async def update_attachment(
        self,
        object_id: int,
        attachment_id: int,
        content: Content,
        *,
        name: str | None = None,
        content_type: str | None = None,
    ) -> AttachmentEditResult:
        """Replace the file of attachment *attachment_id* of feature *object_id*
        (``updateAttachment``); the arguments are those of `add_attachment`.

        Raises:
            LayerCapabilityError: The layer has no attachments.
            ServiceError: The server did not update it (the message says why).
        """
        return await self._attachments().update(
            object_id, attachment_id, content, name=name, content_type=content_type
        )

    async def delete_attachments(
        self, object_id: int, attachment_ids: Iterable[int]
    ) -> list[AttachmentEditResult]:
        """Delete attachments of feature *object_id* (``deleteAttachments``).

        Returns:
            One result per attachment id, in order; a failed one has ``success`` False
            and the server's error code and description.

        Raises:
            LayerCapabilityError: The layer has no attachments.
        """
        return await self._attachments().delete(object_id, attachment_ids)


class MapLayer(_Layer):
    """A layer of a MapServer: ``MapLayer(client, "Basemap", 3)``."""

    _kind = "MapServer"


LayerT = TypeVar("LayerT", bound=_Layer)


class _Service(Generic[LayerT]):
    _layer_class: type[LayerT]

    def __init__(self, client: ArchieClient, service_path: str) -> None:
        self._client = client
        self._path = _with_kind(check_service_path(service_path), self._layer_class._kind)
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


def _with_kind(path: str, kind: str) -> str:
    """*path* ending in ``/<kind>`` (``FeatureServer``), added if it does not."""
    return path if path == kind or path.endswith(f"/{kind}") else f"{path}/{kind}"
