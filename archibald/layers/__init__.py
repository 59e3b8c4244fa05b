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

The modules, in the order data flows through them:

- `_handles`: `FeatureLayer`, `MapLayer` and their services; the public calls, over
  `_reading`'s `LayerBase` (what every layer reads: metadata, counts, crawls).
- `_options`: `CrawlOptions`, the crawl's arguments checked once.
- `_plan`: the exactly-once planner (the id snapshot, batches, completing each batch).
- `_streams`: `PageStream` and `FeatureStream`, fronts over a fetcher per mode (fetching
  ahead inside ``async with``, window by window without it).
- `_attachments`: the files features carry (listed, downloaded, uploaded, deleted).
- `_model`: what they hand out (`LayerInfo`, `Page`, `QueryResult`).

Editing (`FeatureLayer.apply_edits` and its conveniences): `_edit_batches` prepares the
edits (GeoJSON converted, each encoded once) and cuts them into batches, `_edits` sends
them and reads the answers, `_edit_results` holds what the caller gets.
"""

from ._attachments import AttachmentEditResult, AttachmentInfo
from ._edit_results import EditResult, EditResults
from ._handles import FeatureLayer, FeatureService, MapLayer, MapService
from ._model import LayerInfo, Page, QueryResult
from ._partitions import Partition
from ._streams import FeatureStream, PageStream

__all__ = [
    "AttachmentEditResult",
    "AttachmentInfo",
    "EditResult",
    "EditResults",
    "FeatureLayer",
    "FeatureService",
    "FeatureStream",
    "LayerInfo",
    "MapLayer",
    "MapService",
    "Page",
    "PageStream",
    "Partition",
    "QueryResult",
]
