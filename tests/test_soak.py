"""A simulated week of a long-lived crawler under random faults (see soak/week.py), on
Trio and on asyncio, each on its virtual clock: nothing lost, nothing duplicated, every
error typed and expected, no token fetched beyond need, no task or object left over."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from archibald.testing import AutojumpEventLoop
from soak.week import Figures, report, simulate

OPTIONS: dict[str, dict[str, Any]] = {
    "trio": {"clock": MockClock(autojump_threshold=0)},
    "asyncio": {"loop_factory": AutojumpEventLoop},
}


# Sync tests that run their own event loop: a week is longer than the suite's deadline.
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize(("days", "token_minutes"), [(7.0, 60.0), (2.0, 2.0)])
def test_a_week_of_crawls_loses_nothing(
    backend: str, days: float, token_minutes: float, caplog: pytest.LogCaptureFixture
) -> None:
    # A week of DEBUG records kept by pytest's log capture would read as a leak.
    caplog.set_level(logging.ERROR)  # httpx's, archibald's, every logger's
    caplog.set_level(logging.ERROR, logger="archibald")
    options = dict(OPTIONS[backend])
    if backend == "trio":
        options["clock"] = MockClock(autojump_threshold=0)  # a fresh clock for each run
    figures: Figures = anyio.run(
        simulate, days, token_minutes, backend=backend, backend_options=options
    )
    table = report([(backend, figures)])
    assert figures.crawls >= days * 96 * 0.99, table  # every quarter of an hour, or nearly
    assert figures.lost == 0, table
    assert figures.duplicated == 0, table
    assert figures.unexpected == [], table
    # Crawls fail only while the token endpoint is down longer than a token lives.
    assert figures.completed >= figures.crawls * 0.6, table
    assert set(figures.errors) <= {"TokenRefreshError", "IncompleteResultError"}, table
    assert figures.tokens <= figures.tokens_needed, table
    assert figures.tasks_after == figures.tasks_before, table
    assert figures.objects_after <= figures.objects_before * 1.02, table
    assert sum(figures.faults.values()) >= figures.crawls * 0.5, table  # it was a rough week
