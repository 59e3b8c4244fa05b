"""What every layer handle can do: metadata, counting, and the ways to crawl
(`LayerBase`, which `FeatureLayer` and `MapLayer` extend)."""

from __future__ import annotations

import array
import functools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio

from .._urls import check_service_path, split_layer_url
from .._validate import is_whole
from ..exceptions import IncompleteResultError, InvalidParameterError, LayerCapabilityError
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

__all__ = ["LayerBase", "with_kind"]

_WGS84 = 4326


class LayerBase:
    """What feature layers and map layers share: metadata, counting, crawling."""

    _kind: str = ""

    def __init__(self, client: ArchieClient, service_path: str, layer_id: int) -> None:
        if not is_whole(layer_id, 0):
            raise InvalidParameterError(f"layer_id must be a whole number >= 0, got {layer_id!r}")
        path = with_kind(check_service_path(service_path), self._kind)
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
    def client(self) -> ArchieClient:
        """The client the layer sends its requests with."""
        return self._client

    @property
    def layer_id(self) -> int:
        """The layer id."""
        return self._layer_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r})"

    async def info(self, *, refresh: bool = False) -> LayerInfo:
        """The layer's metadata, fetched on first use and cached; *refresh* fetches it
        again (a long-lived program that must see a changed schema)."""
        async with self._info_lock:
            if self._info is None or refresh:
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


def with_kind(path: str, kind: str) -> str:
    """*path* ending in ``/<kind>`` (``FeatureServer``), added if it does not."""
    return path if path == kind or path.endswith(f"/{kind}") else f"{path}/{kind}"
