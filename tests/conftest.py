"""Every async test runs on asyncio and on trio, both on a virtual clock.

Trio gets its autojump `MockClock`; asyncio gets `archibald.testing.AutojumpEventLoop`,
which also jumps to the next timer whenever every task is blocked. Hours of token life pass in
milliseconds, and no test sleeps for real.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from hypothesis import settings
from trio.testing import MockClock

from archibald.testing import AutojumpEventLoop

# Property tests (tests/test_properties.py): the same examples on every run, so CI is
# reproducible and a failure found once is found again; few enough to add seconds, not
# minutes. `HYPOTHESIS_PROFILE=deep pytest tests/test_properties.py` searches harder.
settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True, database=None)
settings.register_profile("deep", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """The backend and its virtual clock; a fresh clock for every test.

    Tests marked ``real_clock`` (those that talk over real sockets or to subprocesses)
    get the real clock: a virtual one would jump past HTTP timeouts while a socket waits.
    """
    if request.node.get_closest_marker("real_clock"):
        return request.param, {}
    if request.param == "trio":
        return "trio", {"clock": MockClock(autojump_threshold=0)}
    return "asyncio", {"loop_factory": AutojumpEventLoop}


# A test that deadlocks fails instead of hanging: on the virtual clock this deadline comes
# at once when nothing else can happen, and it lies beyond the longest simulated scenario.
VIRTUAL_DEADLINE = 3 * 24 * 3600.0


def _with_deadline(test: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(test)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with anyio.fail_after(VIRTUAL_DEADLINE):
            return await test(*args, **kwargs)

    return wrapper


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _with_deadline(item.obj)
