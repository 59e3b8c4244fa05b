"""The streams a crawl hands out: `PageStream` and `FeatureStream`.

A `PageStream` is a front over a fetcher, `_Ahead`, made at its first step, which fetches
ahead of the consumer: a credit per page (there are ``max_concurrency``) is taken when a
fetch starts and given back when the consumer takes the page, so fetching overlaps the
consumer and memory stays bounded. Errors of a fetch are handed to the consumer in order,
never raised in a task group (which would cancel the consumer's own code).

Inside ``async with`` the fetches run in the stream's own task group, and leaving the
block stops them. Without it they run in the client's task group, and stop when the stream
is closed, exhausted or dropped (a loop that breaks out drops it), or when the client
closes: no task outlives the client, and none is left behind by a ``break``.
"""

from __future__ import annotations

import array
import collections
import contextlib
import math
import weakref
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from .._geojson import GeoJSONConverter
from .._tasks import same_error
from ..exceptions import IncompleteResultError, LifecycleError
from ._model import Page
from ._options import CrawlOptions
from ._plan import Crawl, IdSource, Strategy, snapshot

if TYPE_CHECKING:
    from ._reading import LayerBase

__all__ = ["FeatureStream", "PageStream"]


class PageStream:
    """The pages of a crawl (see `FeatureLayer.pages`): an async iterator.

    Up to ``max_concurrency`` pages are fetched ahead while the consumer works. Opened
    with ``async with``, the fetches run in the stream's own task group and leaving the
    block cancels what is still running; without it, they run in the client's task group
    and stop when the loop ends, breaks out (the stream is dropped), or the client closes.
    It is a plain object, not an async generator, so Trio does not warn on an early
    ``break``.
    """

    def __init__(self, layer: LayerBase, options: CrawlOptions) -> None:
        self._layer = layer
        self._options = options
        self._concurrency = options.max_concurrency or layer._client.max_concurrent_requests
        self._source: IdSource | None = None
        self._fetcher: _Ahead | None = None
        self._failed: BaseException | None = None
        self._closed = False
        self._delivered = 0
        # Inside `async with`: the task group that fetches ahead of the consumer.
        self._stack: AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None

    @property
    def total(self) -> int | None:
        """How many features the crawl will deliver, once it has planned its work: the
        length of the id list, or the server's count over the id ranges."""
        return None if self._source is None else self._source.total

    @property
    def strategy(self) -> Strategy | None:
        """How the crawl found its ids, once it has: ``"ids"`` (one listing of every id)
        or ``"ranges"`` (object-id ranges, each listed in turn: a partition, or a layer
        that would not list every id at once)."""
        return None if self._source is None else self._source.strategy

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
            fetcher = self._fetcher or await self._begin()
            page = await fetcher.next()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            self._failed = exc
            raise
        self._delivered += len(page)
        return page

    async def _begin(self) -> _Ahead:
        """List the ids (the snapshot) and start fetching ahead, on the first step.

        Inside ``async with`` the fetches run in the stream's own task group; without it,
        in the client's, and they stop when the stream is closed, exhausted or dropped, or
        when the client closes.
        """
        layer, options = self._layer, self._options
        info = await layer._queryable()
        options.check_partition(layer.url, info)
        params = options.query_params(info, layer.url)  # unknown fields: refused before a query
        crawl = Crawl(
            layer._query, layer.url, info, options.where, params, options.batch_size(info)
        )
        source = await snapshot(crawl, layer.count, options.partition)
        if self._closed:  # closed by another task while the ids were listed
            raise self._closed_error()
        self._source = source
        tasks = self._task_group or layer._client._background()
        # The fetcher must not keep the stream alive: a loop that breaks out drops the
        # stream, and dropping it stops the fetches (the finalizer below).
        stream = weakref.ref(self)
        url = layer.url

        def closed() -> IncompleteResultError:
            alive = stream()
            if alive is None:
                return IncompleteResultError(f"the crawl of {url} was closed")
            return alive._closed_error()

        fetcher = _Ahead(crawl, source, self._concurrency, ordered=options.ordered, closed=closed)
        fetcher.start(tasks)
        if self._task_group is None:
            weakref.finalize(self, fetcher.close)
        self._fetcher = fetcher
        return fetcher

    async def aclose(self) -> None:
        """Drop what is buffered and end the crawl, stopping any fetch still running."""
        self._closed = True
        if self._fetcher is not None:
            self._fetcher.close()

    async def __aenter__(self) -> PageStream:
        if self._stack is not None:
            raise LifecycleError("this stream is already open")
        if self._fetcher is not None or self._closed:
            raise LifecycleError("open the stream with `async with` before iterating it")
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
            if (
                exc is None
                or len(group.exceptions) != 1
                or not same_error(group.exceptions[0], exc)
            ):
                raise
        return False


@attrs.define(eq=False)
class _Slot:
    """One batch fetched ahead: its page or its error, once ``done`` is set."""

    batch: array.array[int]
    done: anyio.Event = attrs.Factory(anyio.Event)
    page: Page | None = None
    error: Exception | None = None


class _Ahead:
    """Inside ``async with``: fetching ahead in a task group, ``concurrency`` pages at most."""

    def __init__(
        self,
        crawl: Crawl,
        source: IdSource,
        concurrency: int,
        *,
        ordered: bool,
        closed: Callable[[], Exception],
    ) -> None:
        self._crawl = crawl
        self._source = source
        self._ordered = ordered
        self._closed_error = closed
        self._credits = anyio.Semaphore(concurrency)
        self._send, self._slots = anyio.create_memory_object_stream[_Slot](math.inf)
        self._producer = anyio.CancelScope()
        self._head: _Slot | None = None
        self._scheduled_all = False
        self._closed = False
        self._done = False  # the producer has ended

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        task_group.start_soon(self._produce)

    async def next(self) -> Page:
        if self._head is None:
            try:
                self._head = await self._slots.receive()
            except anyio.EndOfStream:
                if self._closed or not self._scheduled_all:
                    raise self._closed_error() from None
                self._slots.close()  # every page was taken
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
            self._producer.cancel()  # the crawl stops here: nothing more is fetched
            raise slot.error
        assert slot.page is not None
        return slot.page

    def close(self) -> None:
        self._head = None
        self._closed = True
        self._slots.close()
        if not self._done:  # the producer is still running (and its event loop with it)
            self._producer.cancel()

    async def _produce(self) -> None:
        """Start one fetch per batch as credits allow: a credit comes back when the
        consumer takes a page, so fetched and in-flight pages never exceed the limit."""
        failed = anyio.Event()
        send = self._send
        try:
            with self._producer, send:
                async with anyio.create_task_group() as fetches:
                    while True:
                        await self._credits.acquire()
                        if failed.is_set() or self._closed:
                            break  # the consumer stops at the failure; fetch nothing more
                        slot = await self._next_slot()
                        if slot is None:
                            # Only now may the end of the slots mean the end of the crawl.
                            self._scheduled_all = True
                            break
                        if slot.error is not None:  # the next ids could not be listed
                            _hand_over(send, slot)
                            break
                        if self._ordered:
                            _hand_over(send, slot)
                        fetches.start_soon(self._fetch, slot, failed)
        finally:
            self._done = True

    async def _next_slot(self) -> _Slot | None:
        """A slot for the next batch of ids (None at the end), or for the error that
        listing them raised, handed to the consumer in its turn."""
        try:
            batch = await self._source.take(self._crawl.page_size)
        except Exception as exc:
            slot = _Slot(array.array("q"), error=exc)
            slot.done.set()
            return slot
        return _Slot(batch) if batch else None

    async def _fetch(self, slot: _Slot, failed: anyio.Event) -> None:
        try:
            slot.page = await self._crawl.fetch_batch(slot.batch)
        except Exception as exc:
            # Handed to the consumer, never raised here: a task group error would cancel
            # the consumer's own code inside `async with`.
            slot.error = self._crawl.failure(exc, slot.batch)
            failed.set()
        finally:
            if slot.page is None and slot.error is None:  # cancelled: the crawl was closed
                slot.error = self._closed_error()
            slot.done.set()  # never leave a consumer waiting
        if not self._ordered:
            _hand_over(self._send, slot)


def _hand_over(send: MemoryObjectSendStream[_Slot], slot: _Slot) -> None:
    """Queue *slot* for the consumer, unless it has left (the stream was closed)."""
    with contextlib.suppress(anyio.BrokenResourceError):
        send.send_nowait(slot)


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
