"""Dumps that continue after being killed (``archibald dump -o FILE --resume``), run for
real in subprocesses against the emulator on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from archibald.testing import FakeArcGIS

from .test_cli import clean_env

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

COUNT = 6_000


def slow_fake() -> FakeArcGIS:
    fake = FakeArcGIS()
    fake.add_feature_layer("Slow", count=COUNT, max_record_count=250)
    fake.faults.latency["query"] = 0.02
    return fake


def url_of(origin: str) -> str:
    return f"{origin}/arcgis/rest/services/Slow/FeatureServer/0"


def dump_args(url: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "archibald", "dump", url, "-o", str(out), "--resume", *extra]


async def run_dump(url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(60):
        return await anyio.run_process(dump_args(url, out, *extra), check=False, env=clean_env())


async def kill_dump(
    fake: FakeArcGIS,
    url: str,
    out: Path,
    after: int,
    sig: int = signal.SIGKILL,
    fmt: str = "ndjson",
) -> tuple[int, str]:
    """Start the dump; once the emulator has answered *after* more queries (and a random
    moment later), send *sig*. Returns the exit status and stderr."""
    start = fake.statistics().requests.get("query", 0)
    process = await anyio.open_process(
        dump_args(url, out, "--concurrency", "2", "--format", fmt), env=clean_env()
    )
    async with process:
        with anyio.fail_after(30):
            while fake.statistics().requests.get("query", 0) < start + after:
                if process.returncode is not None:
                    break  # it ended before (an error, shown by the caller's checks)
                await anyio.sleep(0.005)  # the emulator's counters, not an event
            await anyio.sleep(random.uniform(0, 0.05))
            with contextlib.suppress(ProcessLookupError):  # it may have just ended
                process.send_signal(sig)
            code = await process.wait()
        assert process.stderr is not None
        stderr = b"".join([chunk async for chunk in process.stderr])
    return code, stderr.decode()


def ids_in(out: Path, fmt: str) -> list[int]:
    text = out.read_text()
    if fmt == "ndjson":
        return [json.loads(line)["id"] for line in text.splitlines()]
    return [feature["id"] for feature in json.loads(text)["features"]]


@pytest.mark.parametrize("fmt", ["ndjson", "geojson"])
async def test_a_dump_killed_at_random_moments_ends_exact(tmp_path: Path, fmt: str) -> None:
    """kill -9 three times at random points, then run to the end: every feature exactly
    once, in order, and nothing left beside the file."""
    out = tmp_path / f"layer.{fmt}"
    fake = slow_fake()
    async with fake.serve() as origin:
        url = url_of(origin)
        record: dict[str, int] = {"count": 0}
        kills = 0
        # Three kills at random moments, and more until one came after a page was recorded
        # (on a loaded machine the first ones may all come before it).
        while kills < 3 or (record["count"] == 0 and kills < 8):
            code, stderr = await kill_dump(fake, url, out, after=random.randint(2, 8), fmt=fmt)
            kills += 1
            assert code == -signal.SIGKILL, stderr
            assert not out.exists()
            record = json.loads((tmp_path / f"layer.{fmt}.resume.json").read_text())
        assert 0 < record["count"] < COUNT  # it had got somewhere, and not to the end
        done = await run_dump(url, out, "--format", fmt)
    assert done.returncode == 0, done.stderr
    assert ids_in(out, fmt) == list(range(1, COUNT + 1))
    assert sorted(os.listdir(tmp_path)) == [out.name]
    assert f"{COUNT:,} features ({record['count']:,} from before" in done.stderr.decode()


async def test_ctrl_c_keeps_the_dump_to_continue(tmp_path: Path) -> None:
    out = tmp_path / "layer.ndjson"
    fake = slow_fake()
    async with fake.serve() as origin:
        code, stderr = await kill_dump(fake, url_of(origin), out, after=4, sig=signal.SIGINT)
        assert code == 130
        assert "run the same command again to continue" in stderr
        assert (tmp_path / "layer.ndjson.incomplete").exists()
        done = await run_dump(url_of(origin), out, "--format", "ndjson")
    assert done.returncode == 0, done.stderr
    assert ids_in(out, "ndjson") == list(range(1, COUNT + 1))


async def test_a_different_dump_or_a_changed_layer_is_not_continued(tmp_path: Path) -> None:
    out = tmp_path / "layer.ndjson"
    fake = slow_fake()
    async with fake.serve() as origin:
        url = url_of(origin)
        await kill_dump(fake, url, out, after=4)
        kept = (tmp_path / "layer.ndjson.incomplete").read_bytes()
        other = await run_dump(url, out, "--format", "ndjson", "--where", "POPULATION > 10")
        assert other.returncode == 2
        assert "has --where '1=1', not 'POPULATION > 10'" in other.stderr.decode()
        assert (tmp_path / "layer.ndjson.incomplete").read_bytes() == kept  # untouched
        fake.layer("Slow").fields.append(
            {"name": "EXTRA", "type": "esriFieldTypeString", "alias": "EXTRA"}
        )
        changed = await run_dump(url, out, "--format", "ndjson")
        assert changed.returncode == 1
        assert "the layer changed since the dump began (field EXTRA added)" in (
            changed.stderr.decode()
        )
        assert (tmp_path / "layer.ndjson.incomplete").read_bytes() == kept
        (tmp_path / "layer.ndjson.resume.json").unlink()  # the way to start over
        again = await run_dump(url, out, "--format", "ndjson")
    assert again.returncode == 0, again.stderr
    assert ids_in(out, "ndjson") == list(range(1, COUNT + 1))


async def test_resume_needs_a_file(tmp_path: Path) -> None:
    done = await anyio.run_process(
        [sys.executable, "-m", "archibald", "dump", "http://127.0.0.1:9/arcgis/rest/services/"
         "X/FeatureServer/0", "--resume"],
        check=False,
        env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 2
    assert "--resume needs -o FILE" in done.stderr.decode()
