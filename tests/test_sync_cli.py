"""``archibald sync`` for real: subprocesses against the emulator on loopback, killed with
SIGKILL at random points, stopped with Ctrl-C, and run again to an exact copy."""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pyogrio
import pytest

from archibald._cli_sync import parse_duration
from archibald._geopackage import GeoPackage
from archibald.testing import FakeArcGIS

from .test_cli import clean_env

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

COUNT = 3_000


def slow_fake() -> FakeArcGIS:
    fake = FakeArcGIS()
    fake.add_feature_layer(
        "Slow",
        count=COUNT,
        geometry="polygon",
        max_record_count=100,
        change_tracking=True,
        editor_tracking=True,
    )
    fake.faults.latency["query"] = 0.02
    return fake


def url_of(origin: str) -> str:
    return f"{origin}/arcgis/rest/services/Slow/FeatureServer/0"


def sync_args(url: str, dest: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "archibald", "sync", url, str(dest), *extra]


async def run_sync(url: str, dest: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(60):
        return await anyio.run_process(sync_args(url, dest, *extra), check=False, env=clean_env())


async def kill_sync(fake: FakeArcGIS, url: str, dest: Path, after: int, sig: int) -> int:
    """Start a sync; once the emulator has answered *after* more queries (and a random
    moment later), send *sig*. Returns the exit status."""
    start = fake.statistics().requests.get("query", 0)
    process = await anyio.open_process(sync_args(url, dest), env=clean_env())
    async with process:
        with anyio.fail_after(30):
            while fake.statistics().requests.get("query", 0) < start + after:
                if process.returncode is not None:
                    break
                await anyio.sleep(0.005)  # the emulator's counters, not an event
            await anyio.sleep(random.uniform(0, 0.05))
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            return await process.wait()


def assert_exact(fake: FakeArcGIS, dest: Path) -> None:
    """The copy holds the server's features exactly, and GDAL reads it."""
    with GeoPackage.open(dest) as gpkg:
        [table] = gpkg.tables()
        copy = {f["attributes"]["OBJECTID"]: f for f in gpkg.features(table)}
        server = {
            f["attributes"]["OBJECTID"]: gpkg.normalized(table, f)
            for f in fake.layer("Slow").features
        }
    assert server == copy
    assert pyogrio.read_info(dest, layer="Slow")["features"] == len(server)


async def test_a_sync_killed_at_random_points_ends_exact(tmp_path: Path) -> None:
    """SIGKILL during the first copy and during a later sync: each next run ends exact."""
    dest = tmp_path / "copy.gpkg"
    fake = slow_fake()
    async with fake.serve() as origin:
        url = url_of(origin)
        for _ in range(2):  # the first copy, killed twice
            code = await kill_sync(fake, url, dest, random.randint(2, 15), signal.SIGKILL)
            assert code == -signal.SIGKILL
        done = await run_sync(url, dest)
        assert done.returncode == 0, done.stderr
        assert_exact(fake, dest)
        layer = fake.layer("Slow")
        ids = layer.object_ids
        fake.edit(
            layer,
            adds=[{"attributes": {"NAME": "new"}, "geometry": layer.features[0]["geometry"]}],
            updates=[{"attributes": {"OBJECTID": ids[5], "NAME": "changed"}}],
            deletes=ids[100:140],
        )
        fake.cleanup_change_tracking("Slow")  # a later sync that crawls: time to kill it
        await kill_sync(fake, url, dest, random.randint(1, 10), signal.SIGKILL)
        done = await run_sync(url, dest)
    assert done.returncode == 0, done.stderr
    assert_exact(fake, dest)
    assert b"by editDate" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.gpkg"]  # noqa: ASYNC240


async def test_sync_says_what_it_did(tmp_path: Path) -> None:
    """The first run copies; the next says its counts and strategy."""
    dest = tmp_path / "copy.gpkg"
    fake = slow_fake()
    async with fake.serve() as origin:
        url = url_of(origin)
        first = await run_sync(url, dest)
        fake.edit(fake.layer("Slow"), deletes=[1, 2, 3])
        second = await run_sync(url, dest)
    assert first.returncode == 0, first.stderr
    assert f"added {COUNT:,}, updated 0, deleted 0 in" in first.stdout.decode()
    assert "by full" in first.stdout.decode()
    assert "added 0, updated 0, deleted 3 in" in second.stdout.decode()
    assert "by extractChanges" in second.stdout.decode()


async def test_every_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """--every syncs, then Ctrl-C between syncs ends it with status 0 and a whole copy."""
    dest = tmp_path / "copy.gpkg"
    fake = slow_fake()
    async with fake.serve() as origin:
        process = await anyio.open_process(
            sync_args(url_of(origin), dest, "--every", "1h"), env=clean_env()
        )
        async with process:
            assert process.stdout is not None
            with anyio.fail_after(30):
                line = await process.stdout.receive()  # the first sync's report
            assert b"by full" in line
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(30):
                code = await process.wait()
            rest = b"".join([chunk async for chunk in process.stdout])
    assert code == 0
    assert b"holds the last complete sync" in rest
    assert_exact(fake, dest)


async def test_a_file_that_is_not_a_geopackage_is_refused(tmp_path: Path) -> None:
    """DEST must end in .gpkg; nothing is written otherwise."""
    done = await run_sync("http://127.0.0.1:9/arcgis/rest/services/X/FeatureServer/0",
                          tmp_path / "copy.geojson")  # fmt: skip
    assert done.returncode == 2
    assert "must be a GeoPackage file ending in .gpkg" in done.stderr.decode()
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("15m", 900.0), ("1h30m", 5400.0), ("1d", 86400.0), ("0.5h", 1800.0)],
)
def test_durations(text: str, seconds: float) -> None:
    """--every takes durations in days, hours, minutes and seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "1x", "0s", "1h-5m"])
def test_bad_durations(text: str) -> None:
    """Anything else is refused with a message giving examples."""
    with pytest.raises(ValueError, match="30s, 15m"):
        parse_duration(text)
