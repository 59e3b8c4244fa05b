"""One layer read across a Dask cluster: `read_layer` returns a `dask.bag.Bag` with one
Dask partition per object-id range (`archibald.Partition`).

The calling process plans the ranges from the layer's statistics (no id is listed) and
ships each task its range and a sign-in spec, never a token: each task signs in itself,
with a client of its own, and its auth renews the token in the background for as long as
the task runs. Each range is crawled exactly once, as `FeatureLayer.features` crawls it.

Needs the ``dask`` extra (``pip install 'archibald[dask]'``); ``import archibald`` never
imports Dask.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal

import anyio
import attrs
import trio

from ._client import ArchieClient
from ._secrets import redact_url
from ._urls import check_http_url, split_layer_url, split_services_url
from .auth import APIKey, AppCredentials, ArcGISAuth, NoAuth, SignIn, UserCredentials
from .exceptions import (
    ConfigurationError,
    InvalidParameterError,
    InvalidServiceURL,
    LifecycleError,
)
from .layers import FeatureLayer, MapLayer, Partition
from .layers._options import CrawlOptions, fields_param

try:
    import dask.bag
    from dask.delayed import delayed
except ImportError as exc:  # one line that says what to install
    raise ImportError("archibald.dask needs Dask: pip install 'archibald[dask]'") from exc

__all__ = [
    "APIKey",
    "AppCredentials",
    "SignIn",
    "UserCredentials",
    "read_layer",
    "read_layer_async",
]

Format = Literal["geojson", "esrijson"]
Backend = Literal["trio", "asyncio"]
_SPECS = (UserCredentials, AppCredentials, APIKey)
_EXAMPLE = "https://host/arcgis/rest/services/<service>/FeatureServer/0"


def read_layer(
    url: str,
    *,
    auth: SignIn | None = None,
    where: str = "1=1",
    npartitions: int | None = None,
    partition_size: int | None = None,
    out_fields: str | Iterable[str] = "*",
    out_sr: int | None = None,
    format: Format = "geojson",
    max_concurrency: int | None = None,
    backend: Backend = "trio",
) -> dask.bag.Bag:
    """Every feature of the layer at *url* matching *where*, as a Dask bag of features.

    ```python
    from dask.distributed import Client
    from archibald.dask import UserCredentials, read_layer

    client = Client("tcp://scheduler:8786")
    spec = UserCredentials("alice", password)  # a spec, not a live auth
    parcels = read_layer(url, auth=spec, npartitions=64)
    big = parcels.filter(lambda f: f["properties"]["AREA"] > 1e4).count().compute()
    ```

    The partitions are planned here, now (a short-lived client on *backend*, signed in
    with *auth*); nothing is crawled until the bag is computed. Each Dask partition is
    then one object-id range, crawled exactly once by one task, which signs in with
    *auth* itself: no token leaves this process, and each task's auth renews its own
    token for as long as the task runs. A range delivers the features that match when
    its task runs, checked against the server's count at that time.

    Call it from plain (synchronous) code; in a coroutine, ``await read_layer_async(...)``.

    Args:
        url: The layer: ``https://host/arcgis/rest/services/<service>/FeatureServer/0``
            (or a MapServer layer).
        auth: How every process signs in: `UserCredentials`, `AppCredentials` or
            `APIKey`; None for a public layer. Not a live auth (`UserTokenAuth`, ...):
            its token and background task cannot travel to other processes.
        where: The filter (SQL, as the server understands it).
        npartitions: Make at least this many partitions (when there are that many
            features), none holding more than its share of the features.
        partition_size: The most features in a partition. Without *npartitions* or
            *partition_size*, partitions hold up to 100,000 features.
        out_fields: ``"*"``, or the fields to return (checked against the layer now).
        out_sr: The spatial reference (wkid) of the geometries; GeoJSON is in WGS84
            (4326) unless you ask for another.
        format: ``"geojson"``: GeoJSON Feature dicts; ``"esrijson"``: Esri JSON features
            (``{"attributes": ..., "geometry": ...}``).
        max_concurrency: Requests in flight at once in each task (by default the client's
            limit, 20); the server sees up to that many times the tasks running at once.
        backend: The event loop each crawl runs on (``"trio"`` or ``"asyncio"``).

    Returns:
        A `dask.bag.Bag` with one partition per object-id range, in object-id order.

    Raises:
        ConfigurationError: *auth* is a live auth or not a spec, or an argument is invalid.
        LifecycleError: Called inside a running event loop (use `read_layer_async`).
        InvalidServiceURL: *url* is not a layer URL.
        InvalidParameterError: *where*, *out_fields* or a partition setting is invalid.
        LayerCapabilityError: The layer offers no Query, or no statistics to plan with.
        TokenRefreshError: Signing in failed (`InvalidCredentialsError`: refused).
    """
    running = _running_loop()
    if running is not None:
        raise LifecycleError(
            f"read_layer() was called inside a running {running} event loop, which it would "
            "block while it plans the partitions; use `await read_layer_async(...)` there"
        )
    job = _Job.checked(url, auth, out_fields, out_sr, format, max_concurrency, backend)
    plan = _Plan(where, npartitions, partition_size)
    return _bag(job, anyio.run(_plan_partitions, job, plan, backend=backend))


async def read_layer_async(
    url: str,
    *,
    auth: SignIn | None = None,
    where: str = "1=1",
    npartitions: int | None = None,
    partition_size: int | None = None,
    out_fields: str | Iterable[str] = "*",
    out_sr: int | None = None,
    format: Format = "geojson",
    max_concurrency: int | None = None,
    backend: Backend = "trio",
) -> dask.bag.Bag:
    """`read_layer` for async code: the partitions are planned on the running event loop.

    The arguments are those of `read_layer`; *backend* is the event loop of the tasks
    that crawl, in the workers. Computing the bag blocks, so do it outside the event loop
    (``await anyio.to_thread.run_sync(bag.compute)``, or with an asynchronous
    ``dask.distributed.Client``).
    """
    job = _Job.checked(url, auth, out_fields, out_sr, format, max_concurrency, backend)
    plan = _Plan(where, npartitions, partition_size)
    return _bag(job, await _plan_partitions(job, plan))


def _running_loop() -> str | None:
    """The event loop running in this thread, if any."""
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop()
        return "asyncio"
    with contextlib.suppress(RuntimeError):
        trio.lowlevel.current_task()
        return "trio"
    return None


@attrs.frozen
class _Plan:
    where: str
    count: int | None
    size: int | None


@attrs.frozen(kw_only=True)
class _Job:
    """What every task of one `read_layer` needs, checked in the calling process: it
    travels to the workers with each task (a spec, never a token)."""

    url: str
    root: str
    auth: SignIn | None
    out_fields: str | tuple[str, ...]
    out_sr: int | None
    format: Format
    max_concurrency: int | None
    backend: Backend

    @classmethod
    def checked(
        cls,
        url: str,
        auth: SignIn | None,
        out_fields: str | Iterable[str],
        out_sr: int | None,
        format: Format,
        max_concurrency: int | None,
        backend: Backend,
    ) -> _Job:
        """The job, or the error an argument deserves (also from untyped callers)."""
        _check_auth(auth)
        if format not in ("geojson", "esrijson"):
            raise InvalidParameterError(f"format must be 'geojson' or 'esrijson', got {format!r}")
        if backend not in ("trio", "asyncio"):
            raise ConfigurationError(f"backend must be 'trio' or 'asyncio', got {backend!r}")
        if not isinstance(out_fields, str) and isinstance(out_fields, Iterable):
            out_fields = tuple(out_fields)  # read once, and picklable
        CrawlOptions(out_fields=out_fields, out_sr=out_sr, max_concurrency=max_concurrency)
        url, root = _layer_url(url)
        return cls(
            url=url,
            root=root,
            auth=auth,
            out_fields=out_fields,
            out_sr=out_sr,
            format=format,
            max_concurrency=max_concurrency,
            backend=backend,
        )


def _check_auth(auth: object) -> None:
    if auth is None or isinstance(auth, _SPECS):
        return
    if isinstance(auth, ArcGISAuth):
        raise ConfigurationError(
            f"auth must be a sign-in spec, not a live {type(auth).__name__}: an auth holds "
            "a token and a task that renews it, which cannot travel to the workers. Pass "
            "UserCredentials(username, password), AppCredentials(client_id, client_secret) "
            "or APIKey(api_key) from archibald.dask instead; each worker signs in with it itself"
        )
    raise ConfigurationError(
        "auth must be UserCredentials, AppCredentials or APIKey (from archibald.dask), or "
        f"None for a public layer; got {type(auth).__name__}"
    )


def _layer_url(url: object) -> tuple[str, str]:
    """The layer URL, and its services root; refused unless it is a layer's URL."""
    parts = check_http_url(url, "url", InvalidServiceURL)
    split = split_services_url(parts)
    if split is None:
        raise InvalidServiceURL(
            f"{redact_url(url)!r} is not an ArcGIS layer URL; one looks like {_EXAMPLE}"
        )
    layer_url = parts.geturl().rstrip("/")
    split_layer_url(layer_url, split[0], _layer_class(layer_url)._kind)
    return layer_url, split[0]


def _layer_class(url: str) -> type[FeatureLayer | MapLayer]:
    return MapLayer if "/MapServer/" in url else FeatureLayer


@contextlib.asynccontextmanager
async def _open_layer(job: _Job) -> AsyncIterator[FeatureLayer | MapLayer]:
    """The layer, on a client of this process's own, signed in with the job's spec."""
    auth = NoAuth() if job.auth is None else await job.auth.auth_for(job.url)
    limit: dict[str, Any] = {}  # the client's own default, unless asked
    if job.max_concurrency is not None:
        limit["max_concurrent_requests"] = job.max_concurrency
    async with ArchieClient(job.root, auth, **limit) as client:
        yield _layer_class(job.url).from_url(client, job.url)


async def _plan_partitions(job: _Job, plan: _Plan) -> list[Partition]:
    async with _open_layer(job) as layer:
        fields_param(job.out_fields, await layer.info(), layer.url)  # here, not in each task
        return await layer.partitions(plan.where, count=plan.count, size=plan.size)


def _bag(job: _Job, partitions: list[Partition]) -> dask.bag.Bag:
    """One Dask partition per range. The keys are named here, so Dask never hashes the
    arguments (the spec's secret among them) into a key; each call's are new, as a crawl
    reads what the server holds when it runs."""
    # Dask's bag constructors have no type hints; what they return is a Bag.
    bag: dask.bag.Bag
    if not partitions:
        bag = dask.bag.from_sequence([], npartitions=1)  # type: ignore[no-untyped-call]
        return bag
    name = f"archibald-crawl-{uuid.uuid4().hex}"
    crawl = delayed(_crawl_partition, pure=False)
    tasks = [crawl(job, part, dask_key_name=f"{name}-{i}") for i, part in enumerate(partitions)]
    bag = dask.bag.from_delayed(tasks)  # type: ignore[no-untyped-call]
    return bag


def _crawl_partition(job: _Job, partition: Partition) -> list[dict[str, Any]]:
    """A task: sign in, crawl one range, sign out (in the worker, on its own event loop)."""
    return anyio.run(_crawl, job, partition, backend=job.backend)


async def _crawl(job: _Job, partition: Partition) -> list[dict[str, Any]]:
    async with _open_layer(job) as layer:
        features = layer.features(
            partition=partition,
            out_fields=job.out_fields,
            out_sr=job.out_sr,
            format=job.format,
            max_concurrency=job.max_concurrency,
        )
        async with features:
            return [feature async for feature in features]
