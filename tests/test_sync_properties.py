"""What a sync promises, for random layers and random edits between syncs: after each
sync, by each strategy, the copy equals the server's layer (ids, attributes, geometries),
and the report counts exactly what changed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archibald import ArchieClient, FeatureLayer, LayerMirror, NoAuth
from archibald._geopackage import GeoPackage
from archibald.testing import FakeArcGIS

from .test_properties import BACKENDS, EXAMPLES, run_on

WINDOW = 900.0  # the mirror's safety window, in seconds


@attrs.frozen
class Round:
    """Edits on the server, then a sync."""

    wait: float  # seconds before the edits
    adds: int
    updates: tuple[int, ...]  # indexes into the ids present
    deletes: tuple[int, ...]
    backdate: float  # seconds the edits' dates lie in the past (a late commit)
    strategy: str


rounds = st.builds(
    Round,
    wait=st.sampled_from([0.0, 1.0, 60.0, 3600.0, 86400.0]),
    adds=st.integers(0, 4),
    updates=st.lists(st.integers(0, 10**6), max_size=4).map(tuple),
    deletes=st.lists(st.integers(0, 10**6), max_size=4).map(tuple),
    backdate=st.sampled_from([0.0, 0.0, 30.0, WINDOW / 2]),
    strategy=st.sampled_from(["auto", "extractChanges", "editDate", "full"]),
)


def _edit(fake: FakeArcGIS, step: Round, counter: int) -> tuple[int, int, int]:
    """Apply *step*'s edits; the expected (added, updated, deleted)."""
    layer = fake.layer("Parcels")
    ids = layer.object_ids
    updates = sorted({ids[i % len(ids)] for i in step.updates}) if ids else []
    deletes = sorted({ids[i % len(ids)] for i in step.deletes} - set(updates)) if ids else []
    template = layer.features[0]["geometry"] if ids else {"x": 1.0, "y": 2.0}
    adds = [
        {"attributes": {"NAME": f"new {counter}-{n}"}, "geometry": template}
        for n in range(step.adds)
    ]
    changes = [{"attributes": {"OBJECTID": oid, "NAME": f"changed {counter}"}} for oid in updates]
    if adds or changes or deletes:
        at_ms = fake.now_ms() - round(step.backdate * 1000)
        fake.edit(layer, adds=adds, updates=changes, deletes=deletes, at_ms=at_ms)
    return len(adds), len(changes), len(deletes)


def _same(fake: FakeArcGIS, path: Path) -> None:
    """The copy holds exactly the server's features, as the table would hold them."""
    server = fake.layer("Parcels").features
    with GeoPackage.open(path) as gpkg:
        [table] = gpkg.tables()
        copy = {f["attributes"]["OBJECTID"]: f for f in gpkg.features(table)}
        expected = {f["attributes"]["OBJECTID"]: gpkg.normalized(table, f) for f in server}
    assert expected == copy


async def _scenario(count: int, steps: list[Round], path: Path) -> None:
    fake = FakeArcGIS()
    fake.add_feature_layer(
        "Parcels",
        count=count,
        geometry="point",
        max_record_count=7,
        change_tracking=True,
        editor_tracking=True,
    )
    mirror = LayerMirror(path, safety_window=WINDOW)
    async with ArchieClient(fake.services_url, NoAuth(), transport=fake.transport()) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        await mirror.sync(layer)
        _same(fake, path)
        for counter, step in enumerate(steps):
            await anyio.sleep(step.wait)
            # a feature updated twice in one round is still one update: unique ids above
            expected = _edit(fake, step, counter)
            report = await mirror.sync(layer, strategy=step.strategy)  # type: ignore[arg-type]
            _same(fake, path)
            # Ids updated by an earlier round and deleted now, and so on, are exact too:
            # the copy equals the server, and the counts are those of this round's edits.
            assert (report.added, report.updated, report.deleted) == expected


@settings(max_examples=max(EXAMPLES // 2, 10))
@given(count=st.integers(0, 30), steps=st.lists(rounds, min_size=1, max_size=5))
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_copy_equals_the_layer_after_every_sync(
    backend: str, count: int, steps: list[Round]
) -> None:
    """Random edits and syncs by random strategies: after each, copy == layer, counts exact."""
    with tempfile.TemporaryDirectory() as folder:
        run_on(backend, lambda: _scenario(count, steps, Path(folder) / "copy.gpkg"))
