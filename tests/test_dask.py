"""archibald.dask: one layer read across a real Dask cluster, every worker signing in itself.

The emulator serves on loopback in this process while the cluster's worker processes crawl
it, so these tests run on the real clock; the blocking Dask calls run in a thread while
the event loop serves.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anyio
import attrs
import cloudpickle
import pytest
from dask.distributed import Client, LocalCluster

from archibald import (
    ConfigurationError,
    InvalidParameterError,
    InvalidServiceURL,
    LifecycleError,
    TokenPolicy,
    UserTokenAuth,
)
from archibald._secrets import Secret
from archibald.dask import APIKey, AppCredentials, UserCredentials, read_layer, read_layer_async
from archibald.testing import FakeArcGIS
from archibald.testing._emulator import Request, Response

USER, PASSWORD = "alice", "wonder-land-42"
APP, APP_SECRET = "crawler-app", "app-secret-99"
KEY = "fake-api-key-1234567890"
LAYER = "arcgis/rest/services/City/Parcels/FeatureServer/0"

T = TypeVar("T")


class RecordingFake(FakeArcGIS):
    """FakeArcGIS that notes the token each request presents (None: no token)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.presented: list[str | None] = []

    async def respond(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else None
        self.presented.append(token or request.params.get("token"))
        return await super().respond(request)


def secured_fake(count: int, **kwargs: Any) -> RecordingFake:
    fake = RecordingFake(**kwargs)
    fake.add_user(USER, PASSWORD)
    fake.add_app(APP, APP_SECRET)
    fake.add_api_key(KEY)
    fake.add_feature_layer("City/Parcels", count=count, max_record_count=50, secured=True)
    return fake


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call (planning, computing) while the event loop serves the emulator."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as local,
        Client(local, set_as_default=False) as client,
    ):
        yield client


# -- on a cluster ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.real_clock
async def test_a_secured_layer_read_on_a_cluster_is_exact_and_each_worker_signs_in(
    cluster: Client, anyio_backend_name: str
) -> None:
    """4,000 features on two worker processes, with tokens of a second: every feature
    once, every task signed in itself and renewed its token, no planner token reused."""
    fake = secured_fake(4_000, max_token_minutes=1 / 60)
    fake.faults.latency["query"] = 0.1  # each task outlives its first token
    async with fake.serve() as origin:
        spec = UserCredentials(USER, PASSWORD, base_url=origin)
        bag = await in_thread(
            read_layer,
            f"{origin}/{LAYER}",
            auth=spec,
            npartitions=4,
            max_concurrency=1,
            backend=anyio_backend_name,
        )
        planner_tokens = set(fake.issued_tokens())
        planned = fake.statistics()
        fake.presented.clear()
        features = await in_thread(bag.compute, scheduler=cluster)
        crawled = fake.statistics()
    assert fake.layer("City/Parcels").object_ids == [f["id"] for f in features]
    assert 4 == bag.npartitions
    worker_pids = set(cluster.run(os.getpid).values())
    assert 2 == len(worker_pids)
    assert os.getpid() not in worker_pids
    used = {token for token in fake.presented if token}
    assert planner_tokens
    assert not used & planner_tokens  # no token travelled
    # Each task signed in (4 tokens), and renewed while it crawled (more than 4).
    assert crawled.tokens_issued - planned.tokens_issued > bag.npartitions
    assert len(used) > bag.npartitions
    assert 0 == crawled.rejected_499


# -- in this process (Dask's synchronous scheduler) ------------------------------------------


@pytest.mark.anyio
@pytest.mark.real_clock
@pytest.mark.parametrize(
    "make_spec",
    [
        pytest.param(lambda origin: UserCredentials(USER, PASSWORD), id="user-discovered"),
        pytest.param(lambda origin: UserCredentials(USER, PASSWORD, base_url=origin), id="user"),
        pytest.param(lambda origin: AppCredentials(APP, APP_SECRET), id="app-discovered"),
        pytest.param(
            lambda origin: AppCredentials(APP, APP_SECRET, base_url=origin, expiration=30),
            id="app",
        ),
        pytest.param(lambda origin: APIKey(KEY), id="key"),
    ],
)
async def test_every_kind_of_spec_signs_in_where_the_task_runs(
    make_spec: Callable[[str], Any],
) -> None:
    fake = secured_fake(300)
    async with fake.serve() as origin:
        bag = await read_layer_async(f"{origin}/{LAYER}", auth=make_spec(origin), npartitions=3)
        features = await in_thread(bag.compute, scheduler="sync")
    assert list(range(1, 301)) == [f["id"] for f in features]
    assert bag.npartitions >= 3  # at least as many as asked


@pytest.mark.anyio
@pytest.mark.real_clock
async def test_a_public_layer_in_esri_json_with_a_filter_and_fields() -> None:
    fake = FakeArcGIS()
    fake.add_feature_layer("City/Parcels", count=600, max_record_count=100)
    where = "CATEGORY = 'park'"
    async with fake.serve() as origin:
        url = f"{origin}/{LAYER}"
        bag = await read_layer_async(
            url, where=where, partition_size=40, out_fields=iter(["NAME"]), format="esrijson"
        )
        features = await in_thread(bag.compute, scheduler="sync")
        nothing = await read_layer_async(url, where="CATEGORY = 'none of these'")
        assert [] == await in_thread(nothing.compute, scheduler="sync")
    rows = [row["attributes"] for row in fake.layer("City/Parcels").features]
    parks = [row["OBJECTID"] for row in rows if row["CATEGORY"] == "park"]
    assert parks == [f["attributes"]["OBJECTID"] for f in features]
    assert {"NAME", "OBJECTID"} == set(features[0]["attributes"])
    assert "x" in features[0]["geometry"]  # Esri JSON, not GeoJSON
    assert bag.npartitions >= len(parks) // 40


@pytest.mark.anyio
@pytest.mark.real_clock
async def test_no_password_or_token_reaches_a_log_a_repr_or_the_task_graph(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = secured_fake(200)
    spec = UserCredentials(USER, PASSWORD, policy=TokenPolicy(renew_before=10))
    with caplog.at_level(logging.DEBUG):
        async with fake.serve() as origin:
            bag = await read_layer_async(f"{origin}/{LAYER}", auth=spec, npartitions=2)
            features = await in_thread(bag.compute, scheduler="sync")
    assert 200 == len(features)
    graph = repr(dict(bag.__dask_graph__()))
    shown = "\n".join([caplog.text, repr(spec), str(spec), graph, repr(bag)])
    assert PASSWORD not in shown
    assert not [token for token in fake.issued_tokens() if token in shown]
    assert "archibald" in caplog.text  # the crawl did log


# -- arguments, refused in the calling process ------------------------------------------------


def test_a_live_auth_is_refused_with_the_spec_to_pass_instead() -> None:
    url = f"https://gis.example.com/{LAYER}"
    with pytest.raises(ConfigurationError, match=r"not a live UserTokenAuth.*UserCredentials"):
        read_layer(url, auth=UserTokenAuth(USER, PASSWORD))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="got str"):
        read_layer(url, auth=PASSWORD)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "kwargs", "error", "message"),
    [
        ("https://h/arcgis/rest/services/P/FeatureServer", {}, InvalidServiceURL, "layer URL"),
        ("https://h/arcgis/P/FeatureServer/0", {}, InvalidServiceURL, "not an ArcGIS layer"),
        (f"https://h/{LAYER}", {"format": "csv"}, InvalidParameterError, "format must be"),
        (f"https://h/{LAYER}", {"out_sr": "4326"}, InvalidParameterError, "out_sr must be"),
        (f"https://h/{LAYER}", {"max_concurrency": 0}, InvalidParameterError, "whole number"),
        (f"https://h/{LAYER}", {"backend": "curio"}, ConfigurationError, "backend must be"),
    ],
)
def test_arguments_are_checked_before_any_request(
    url: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        read_layer(url, **kwargs)


@pytest.mark.anyio
async def test_read_layer_inside_an_event_loop_points_to_the_async_variant() -> None:
    with pytest.raises(LifecycleError, match=r"running .* event loop.*await read_layer_async"):
        read_layer(f"https://gis.example.com/{LAYER}")


@pytest.mark.anyio
@pytest.mark.real_clock
async def test_unknown_fields_are_refused_in_the_caller() -> None:
    fake = FakeArcGIS()
    fake.add_feature_layer("City/Parcels", count=10)
    async with fake.serve() as origin:
        with pytest.raises(InvalidParameterError, match="has no field 'NOPE'"):
            await read_layer_async(f"{origin}/{LAYER}", out_fields=["NOPE"])


# -- the specs ---------------------------------------------------------------------------------


SPECS = [
    UserCredentials(USER, PASSWORD, base_url="https://gis.example.com/portal", expiration=30),
    AppCredentials(APP, PASSWORD),
    APIKey(PASSWORD),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: type(spec).__name__)
def test_a_spec_hides_its_secret_but_pickles_with_it(spec: Any) -> None:
    assert PASSWORD not in repr(spec)
    assert PASSWORD not in str(spec)
    assert "********" in repr(spec)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        copy = pickle.loads(dumps(spec))
        assert spec == copy
        [secret] = [
            value for value in attrs.astuple(copy, recurse=False) if isinstance(value, Secret)
        ]
        assert PASSWORD == secret.reveal()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: UserCredentials(USER, ""), "the password must not be empty"),
        (lambda: UserCredentials("", PASSWORD), "username must be a non-empty string"),
        (lambda: UserCredentials(USER, 42), "a secret must be a string, got int"),
        (lambda: UserCredentials(USER, PASSWORD, base_url="http://gis.example.com"), "https"),
        (lambda: UserCredentials(USER, PASSWORD, expiration=0), "at least 1"),
        (lambda: AppCredentials(APP, PASSWORD, policy={}), "policy must be a TokenPolicy"),
        (lambda: AppCredentials(APP, "  "), "client_secret must not be empty"),
        (lambda: APIKey(PASSWORD + "\n1"), "line break"),
    ],
)
def test_a_spec_is_checked_when_made_without_showing_the_secret(
    build: Callable[[], Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        build()
    assert PASSWORD not in str(caught.value)


# -- the optional dependency -------------------------------------------------------------------


def test_without_dask_the_import_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("dask", "dask.bag", "dask.delayed"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "archibald.dask")
    with pytest.raises(ImportError) as caught:
        importlib.import_module("archibald.dask")
    assert "archibald.dask needs Dask: pip install 'archibald[dask]'" == str(caught.value)


def test_importing_archibald_does_not_import_dask() -> None:
    code = (
        "import sys, archibald, archibald.testing, archibald._cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "[]" == done.stdout.strip()
