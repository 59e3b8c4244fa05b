"""``archibald load``, run for real in a subprocess against the emulator on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from archibald.testing import FakeArcGIS

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

PATH = "arcgis/rest/services/City/Places/FeatureServer/0"


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeArcGIS, str]]:
    fake = FakeArcGIS()
    fake.add_user("alice", "wonderland")
    fake.add_user("viewer", "wonderland", can_edit=False)
    fake.add_feature_layer("City/Places", count=5, secured=True)
    async with fake.serve() as origin:
        yield fake, origin


async def archibald(
    *args: str, user: str = "alice", origin: str
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCGIS_")}
    env.update(ARCGIS_USERNAME=user, ARCGIS_PASSWORD="wonderland", ARCGIS_PORTAL_URL=origin)
    with anyio.fail_after(60):
        return await anyio.run_process(
            [sys.executable, "-m", "archibald", *args], check=False, env=env
        )


def feature(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"NAME": name, **extra},
        "geometry": {"type": "Point", "coordinates": [1.0, 2.0]},
    }


async def test_load_ndjson_reports_failures_in_a_file_that_reloads(
    served: tuple[FakeArcGIS, str], tmp_path: Path
) -> None:
    """Good features are added; the bad one goes to FILE.failed.ndjson with its error,
    and once fixed, that file loads."""
    fake, origin = served
    source = tmp_path / "places.ndjson"
    lines = [feature("A"), feature("B", POPULATION="many"), feature("C")]
    source.write_text("".join(json.dumps(f) + "\n" for f in lines))
    done = await archibald(
        "load", str(source), f"{origin}/{PATH}", "--batch-size", "2", origin=origin
    )
    assert 1 == done.returncode
    assert "added 2, updated 0, failed 1" in done.stderr.decode()
    failed_path = tmp_path / "places.ndjson.failed.ndjson"
    (record,) = [json.loads(line) for line in failed_path.read_text().splitlines()]
    assert "failed" == record["archibald_error"]["status"]
    assert "POPULATION" in record["archibald_error"]["description"]
    assert 7 == len(fake.layer("City/Places"))
    record["properties"]["POPULATION"] = 12
    failed_path.write_text(json.dumps(record) + "\n")
    again = await archibald("load", str(failed_path), f"{origin}/{PATH}", origin=origin)
    assert 0 == again.returncode, again.stderr.decode()
    assert 8 == len(fake.layer("City/Places"))


async def test_load_a_feature_collection_with_upsert(
    served: tuple[FakeArcGIS, str], tmp_path: Path
) -> None:
    """--upsert-key updates the features whose key exists and adds the others."""
    fake, origin = served
    existing = fake.layer("City/Places").row(2)["attributes"]["NAME"]
    source = tmp_path / "places.geojson"
    collection = {
        "type": "FeatureCollection",
        "features": [feature(existing, POPULATION=7), feature("New")],
    }
    source.write_text(json.dumps(collection))
    done = await archibald(
        "load", str(source), f"{origin}/{PATH}", "--upsert-key", "NAME", origin=origin
    )
    assert 0 == done.returncode, done.stderr.decode()
    assert "added 1, updated 1, failed 0" in done.stderr.decode()
    assert 7 == fake.layer("City/Places").row(2)["attributes"]["POPULATION"]
    assert not (tmp_path / "places.geojson.failed.ndjson").exists()


async def test_load_without_permission_keeps_every_feature(
    served: tuple[FakeArcGIS, str], tmp_path: Path
) -> None:
    """A user who may not edit: the load stops, and every feature is in the failures file."""
    fake, origin = served
    source = tmp_path / "places.ndjson"
    source.write_text("".join(json.dumps(feature(f"N{i}")) + "\n" for i in range(5)))
    done = await archibald(
        "load", str(source), f"{origin}/{PATH}", "--batch-size", "1", user="viewer", origin=origin
    )
    assert 1 == done.returncode
    assert "AuthorizationError" in done.stderr.decode()
    failed = (tmp_path / "places.ndjson.failed.ndjson").read_text().splitlines()
    assert 5 == len(failed)
    assert 5 == len(fake.layer("City/Places"))


async def test_a_clean_load_removes_an_earlier_runs_failures(
    served: tuple[FakeArcGIS, str], tmp_path: Path
) -> None:
    """A load with no failures leaves no FILE.failed.ndjson: an earlier run's would be
    reloaded by mistake, adding its features again."""
    fake, origin = served
    source = tmp_path / "places.ndjson"
    source.write_text(json.dumps(feature("A")) + "\n")
    stale = tmp_path / "places.ndjson.failed.ndjson"
    stale.write_text(json.dumps(feature("Old")) + "\n")
    done = await archibald("load", str(source), f"{origin}/{PATH}", origin=origin)
    assert 0 == done.returncode, done.stderr.decode()
    assert not stale.exists()
    assert 6 == len(fake.layer("City/Places"))


async def test_ctrl_c_mid_load_keeps_the_unsent_and_the_unknown(
    served: tuple[FakeArcGIS, str], tmp_path: Path
) -> None:
    """Ctrl-C while a chunk is being sent: the failures file holds that chunk as unknown
    and every feature not read yet as not sent, so nothing is lost for a reload."""
    fake, origin = served
    fake.faults.latency["applyEdits"] = 20.0
    source = tmp_path / "places.ndjson"
    source.write_text("".join(json.dumps(feature(f"N{i}")) + "\n" for i in range(10)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCGIS_")}
    env.update(ARCGIS_USERNAME="alice", ARCGIS_PASSWORD="wonderland", ARCGIS_PORTAL_URL=origin)
    args = ["load", str(source), f"{origin}/{PATH}", "--batch-size", "1"]
    process = await anyio.open_process([sys.executable, "-m", "archibald", *args], env=env)
    async with process:
        with anyio.fail_after(30):
            while fake.statistics().requests.get("applyEdits", 0) < 1:  # noqa: ASYNC110
                await anyio.sleep(0.02)  # the emulator's counters, not an event
            process.send_signal(signal.SIGINT)
            code = await process.wait()
            assert process.stderr is not None
            stderr = b"".join([chunk async for chunk in process.stderr]).decode()
    assert 130 == code
    assert "interrupted: added 0, updated 0, failed 10 (see " in stderr
    failed = (tmp_path / "places.ndjson.failed.ndjson").read_text().splitlines()
    records = [json.loads(line) for line in failed]
    assert [f"N{i}" for i in range(10)] == [r["properties"]["NAME"] for r in records]
    statuses = [r["archibald_error"]["status"] for r in records]
    assert ["unknown"] * 4 + ["not_sent"] * 6 == statuses
