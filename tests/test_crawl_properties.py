"""What a crawl promises while features change under it, for random layers and edits.

Each example builds a FakeArcGIS layer (ids with gaps, a random page size and cap, rows
out of order or not), crawls it by one id list, by the range fallback or by partitions,
and edits the layer from the consumer's loop between pages: deletions, insertions into
the gaps between ids, updates. The promises checked are those of "Features changing
during a crawl" in docs/layers.md.
"""

from __future__ import annotations

import random
from contextlib import nullcontext
from typing import Any, Literal

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from archibald import ArchieClient, FeatureLayer, IncompleteResultError, PageStream
from archibald.testing import FakeArcGIS, FakeLayer

from .test_properties import BACKENDS, EXAMPLES, run_on

FIELDS = [
    {"name": "OBJECTID", "type": "esriFieldTypeOID", "alias": "OBJECTID"},
    {"name": "VALUE", "type": "esriFieldTypeInteger", "alias": "VALUE"},
]
Source = Literal["ids", "fallback", "partitions"]


@attrs.frozen
class Edit:
    """Edits made once the consumer has taken *after* pages."""

    after: int
    deletes: tuple[int, ...]  # indexes into the ids present at the time
    inserts: tuple[int, ...]  # ids, used if free and never used before
    updates: tuple[int, ...]  # indexes into the ids present at the time


@attrs.frozen
class Scenario:
    ids: tuple[int, ...]
    max_record_count: int
    page_cap: int | None
    unordered: bool
    ignore_result_offset: bool
    supports_pagination: bool
    supports_order_by: bool
    page_size: int | None
    concurrency: int
    ordered: bool
    ahead: bool
    source: Source
    id_list_limit: int
    id_list_failure: Literal["error", "timeout", "truncate"]
    partition_size: int
    edits: tuple[Edit, ...]


@st.composite
def scenarios(
    draw: st.DrawFn, sources: tuple[Source, ...] = ("ids", "fallback", "partitions")
) -> Scenario:
    mrc = draw(st.integers(1, 30))
    edits = st.builds(
        Edit,
        after=st.integers(0, 12),
        deletes=st.lists(st.integers(0, 10**6), max_size=6).map(tuple),
        inserts=st.lists(st.integers(1, 300), max_size=4).map(tuple),
        updates=st.lists(st.integers(0, 10**6), max_size=3).map(tuple),
    )
    return Scenario(
        ids=tuple(sorted(draw(st.sets(st.integers(1, 250), max_size=80)))),
        max_record_count=mrc,
        page_cap=draw(st.none() | st.integers(1, mrc)),
        unordered=draw(st.booleans()),
        ignore_result_offset=draw(st.booleans()),
        supports_pagination=draw(st.booleans()),
        supports_order_by=draw(st.booleans()),
        page_size=draw(st.none() | st.integers(1, mrc)),
        concurrency=draw(st.integers(1, 4)),
        ordered=draw(st.booleans()),
        ahead=draw(st.booleans()),
        source=draw(st.sampled_from(sources)),
        id_list_limit=draw(st.integers(1, 25)),
        id_list_failure=draw(st.sampled_from(["error", "timeout", "truncate"])),
        partition_size=draw(st.integers(1, 40)),
        edits=tuple(draw(st.lists(edits, max_size=4))),
    )


@attrs.define
class Outcome:
    """What happened to the layer and what the crawl delivered."""

    snapshot: set[int]
    delivered: list[int] = attrs.Factory(list)
    values: dict[int, int] = attrs.Factory(dict)
    deleted: set[int] = attrs.Factory(set)
    inserted: set[int] = attrs.Factory(set)
    updated: set[int] = attrs.Factory(set)
    error: IncompleteResultError | None = None
    strategies: set[str | None] = attrs.Factory(set)


def build(scenario: Scenario) -> tuple[FakeArcGIS, FakeLayer]:
    fake = FakeArcGIS()
    layer = fake.add_feature_layer(
        "Parcels",
        features=[{"attributes": {"OBJECTID": i, "VALUE": 0}} for i in scenario.ids],
        fields=FIELDS,
        geometry=None,
        max_record_count=scenario.max_record_count,
    )
    layer.supports_pagination = scenario.supports_pagination
    layer.supports_order_by = scenario.supports_order_by
    if scenario.source == "fallback":
        layer.id_list_limit = scenario.id_list_limit
        layer.id_list_failure = scenario.id_list_failure
    faults = fake.faults
    faults.page_cap = scenario.page_cap
    faults.unordered = scenario.unordered
    faults.ignore_result_offset = scenario.ignore_result_offset
    return fake, layer


def apply(edit: Edit, layer: FakeLayer, outcome: Outcome, used: set[int]) -> None:
    """Make *edit* on the layer, as another user of the service would between pages."""
    present = layer.object_ids
    deletes = sorted({present[i % len(present)] for i in edit.deletes}) if present else []
    if deletes:
        layer.apply_edits([], [], deletes, rollback_on_failure=True, rng=random.Random(0))
        outcome.deleted.update(deletes)
    inserts = sorted(set(edit.inserts) - used)
    if inserts:
        layer.load({"attributes": {"OBJECTID": i, "VALUE": 2}} for i in inserts)
        outcome.inserted.update(inserts)
        used.update(inserts)
    present = layer.object_ids
    updates = sorted({present[i % len(present)] for i in edit.updates}) if present else []
    if updates:
        rows = [{"attributes": {"OBJECTID": i, "VALUE": 1}} for i in updates]
        layer.apply_edits([], rows, [], rollback_on_failure=True, rng=random.Random(0))
        outcome.updated.update(updates)


async def crawl(scenario: Scenario) -> Outcome:
    """Crawl the scenario's layer, editing it between pages; what came of it."""
    fake, data = build(scenario)
    outcome = Outcome(snapshot=set(scenario.ids))
    used = set(scenario.ids)
    taken = 0

    def after_page() -> None:
        nonlocal taken
        for edit in scenario.edits:
            if edit.after == taken:
                apply(edit, data, outcome, used)
        taken += 1

    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        options: dict[str, Any] = {
            "page_size": scenario.page_size,
            "max_concurrency": scenario.concurrency,
            "ordered": scenario.ordered,
        }
        if scenario.source == "partitions":
            parts = await layer.partitions(size=scenario.partition_size)
            streams = [layer.pages(partition=part, **options) for part in parts]
        else:
            streams = [layer.pages(**options)]
        try:
            for stream in streams:
                await read(stream, scenario.ahead, outcome, after_page)
        except IncompleteResultError as exc:
            outcome.error = exc
    return outcome


async def read(stream: PageStream, ahead: bool, outcome: Outcome, after_page: Any) -> None:
    async with stream if ahead else nullcontext(stream):
        try:
            async for page in stream:
                ids = [f["attributes"]["OBJECTID"] for f in page.features]
                assert ids == page.object_ids
                outcome.delivered.extend(ids)
                outcome.values.update(
                    (f["attributes"]["OBJECTID"], f["attributes"]["VALUE"]) for f in page.features
                )
                after_page()
        finally:
            outcome.strategies.add(stream.strategy)


def check(scenario: Scenario, outcome: Outcome) -> None:
    """The promises of docs/layers.md, "Features changing during a crawl"."""
    delivered = set(outcome.delivered)
    assert len(delivered) == len(outcome.delivered), "a feature was delivered twice"
    if scenario.ordered:
        assert sorted(outcome.delivered) == outcome.delivered
    for oid, value in outcome.values.items():  # the version its batch found
        assert value == (2 if oid in outcome.inserted else 0) or oid in outcome.updated
    kept = outcome.snapshot - outcome.deleted  # there from the start to the end
    by_ids = outcome.strategies == {"ids"}
    if by_ids:  # one snapshot, taken before any edit: nothing added is delivered
        assert delivered <= outcome.snapshot
    else:  # each range is listed when the crawl reaches it
        assert delivered <= outcome.snapshot | outcome.inserted
    if scenario.ordered and delivered:  # no gap: the pages delivered are complete
        top = max(delivered)
        assert {oid for oid in kept if oid <= top} <= delivered
        if by_ids:
            assert sorted(outcome.snapshot)[: len(delivered)] == outcome.delivered
    error = outcome.error
    if error is None:
        assert kept <= delivered
        if by_ids:  # and every deleted feature was fetched before its deletion
            assert outcome.snapshot == delivered
        return
    missing = set(error.missing)
    assert missing, f"an incomplete crawl names what is missing: {error}"
    assert missing <= outcome.deleted, "only deleted features go missing"
    assert not missing & delivered
    if scenario.ordered and delivered:  # the crawl stopped at the first incomplete page
        assert min(missing) > max(delivered)


@settings(max_examples=2 * EXAMPLES)
@given(scenario=scenarios())
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_crawl_keeps_its_promises_while_features_change(backend: str, scenario: Scenario) -> None:
    """Random layers, servers and edits: each promise of a changing crawl holds."""
    outcome = run_on(backend, lambda: crawl(scenario))
    event(f"strategy {'/'.join(sorted(map(str, outcome.strategies)))}")
    event("incomplete" if outcome.error else "complete")
    if set(outcome.delivered) & outcome.inserted:
        event("an insertion was delivered")
    check(scenario, outcome)
