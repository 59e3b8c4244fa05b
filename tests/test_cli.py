"""The archibald command, run for real in a subprocess against the emulator on loopback."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from archibald.testing import FakeArcGIS

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

LAYER = "arcgis/rest/services/City/Parcels/FeatureServer/0"


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    fake = FakeArcGIS()
    fake.add_user("alice", "wonderland")
    fake.add_feature_layer("City/Parcels", count=2500, max_record_count=1000, secured=True)
    fake.add_feature_layer("City/Zones", count=40, geometry="polygon")
    fake.add_user("bob", "builder")
    fake.add_feature_layer("City/Vault", count=5, secured=True)
    fake.services["City/Vault/FeatureServer"].allowed = {"alice"}
    async with fake.serve() as origin:
        yield origin


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCGIS_")}
    env.update(extra)
    return env


async def archibald(
    *args: str, stdin: bytes | None = None, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """Run the console entry point (python -m archibald) and wait for it."""
    with anyio.fail_after(60):
        return await anyio.run_process(
            [sys.executable, "-m", "archibald", *args],
            input=stdin,
            check=False,
            env=clean_env(**env),
        )


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def signed_in(origin: str) -> dict[str, str]:
    return {
        "ARCGIS_USERNAME": "alice",
        "ARCGIS_PASSWORD": "wonderland",
        "ARCGIS_PORTAL_URL": origin,
    }


async def test_dump_geojson_to_a_file(origin: str, tmp_path: Path) -> None:
    """A dump to a file is one valid FeatureCollection with every feature once."""
    out = tmp_path / "parcels.geojson"
    done = await archibald("dump", f"{origin}/{LAYER}", "-o", str(out), **signed_in(origin))
    assert 0 == done.returncode, done.stderr
    collection = json.loads(out.read_text())
    assert "FeatureCollection" == collection["type"]
    ids = [f["id"] for f in collection["features"]]
    assert list(range(1, 2501)) == ids
    point = collection["features"][0]["geometry"]
    assert "Point" == point["type"]
    assert 2 == len(point["coordinates"])
    assert b"2,500 features" in done.stderr
    assert b"\x1b" not in done.stderr  # no progress bar drawn when stderr is not a terminal


async def test_dump_ndjson_and_esrijson(origin: str) -> None:
    """ndjson: one GeoJSON Feature per line; esrijson: a FeatureSet with fields."""
    zones = f"{origin}/arcgis/rest/services/City/Zones/FeatureServer/0"
    lines = await archibald("dump", zones, "--format", "ndjson", "--where", "OBJECTID <= 15")
    esri = await archibald("dump", zones, "--format", "esrijson", "--fields", "NAME")
    assert 0 == lines.returncode, lines.stderr
    features = [json.loads(line) for line in lines.stdout.decode().splitlines()]
    assert list(range(1, 16)) == [f["id"] for f in features]
    assert "MultiPolygon" == features[14]["geometry"]["type"]
    featureset = json.loads(esri.stdout)
    assert 40 == len(featureset["features"])
    assert {"NAME", "OBJECTID"} == set(featureset["features"][0]["attributes"])
    assert "esriGeometryPolygon" == featureset["geometryType"]


async def test_info_on_a_layer_and_a_service(origin: str) -> None:
    """info summarises a layer (count, fields, paging) and a service (its layers)."""
    layer = await archibald("info", f"{origin}/{LAYER}", **signed_in(origin))
    service = await archibald("info", f"{origin}/arcgis/rest/services/City/Zones/FeatureServer")
    text = layer.stdout.decode()
    assert 0 == layer.returncode, layer.stderr
    assert "features     2,500" in text
    assert "max records  1,000 per query" in text
    assert "paging       supported" in text
    assert "POPULATION" in text
    assert "Integer" in text
    assert "layer        0 Zones esriGeometryPolygon" in service.stdout.decode()


async def test_password_from_stdin_and_the_visible_option(origin: str) -> None:
    """--password-stdin signs in quietly; --password works but warns."""
    base = ["info", f"{origin}/{LAYER}", "--username", "alice", "--portal", origin]
    quiet = await archibald(*base, "--password-stdin", stdin=b"wonderland\n")
    loud = await archibald(*base, "--password", "wonderland")
    assert 0 == quiet.returncode, quiet.stderr
    assert b"warning" not in quiet.stderr
    assert 0 == loud.returncode
    assert b"warning: a password given as an option" in loud.stderr
    assert b"wonderland" not in loud.stderr


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["dump", "ftp://example.com/x"], {}, 2, "not an ArcGIS REST URL"),
        (["dump", "http://127.0.0.1:9/arcgis/rest/services/X/FeatureServer/0"], {}, 1,
         "NetworkError"),
        (["info", "{origin}/" + LAYER], {"ARCGIS_USERNAME": "alice", "ARCGIS_PASSWORD": "nope",
                                         "ARCGIS_PORTAL_URL": "{origin}"}, 1,
         "InvalidCredentialsError"),
        (["info", "{origin}/arcgis/rest/services/City/Parcels/FeatureServer/7"],
         {"ARCGIS_USERNAME": "alice", "ARCGIS_PASSWORD": "wonderland",
          "ARCGIS_PORTAL_URL": "{origin}"}, 1, "Invalid URL"),
        (["info", "{origin}/" + LAYER], {}, 1, "TokenMissingError"),
        (["info", "{origin}/arcgis/rest/services/City/Vault/FeatureServer/0"],
         {"ARCGIS_USERNAME": "bob", "ARCGIS_PASSWORD": "builder",
          "ARCGIS_PORTAL_URL": "{origin}"}, 1, "AuthorizationError"),
        (["info", "{origin}/" + LAYER, "--username", "alice"], {}, 2, "needs a password"),
    ],
)  # fmt: skip
async def test_errors_are_one_clear_line(
    origin: str, args: list[str], env: dict[str, str], code: int, message: str
) -> None:
    """Bad URL, unreachable host, refused sign-in, missing layer, no token, no permission:
    one line each."""
    filled = [a.replace("{origin}", origin) for a in args]
    done = await archibald(*filled, **{k: v.replace("{origin}", origin) for k, v in env.items()})
    assert code == done.returncode
    lines = done.stderr.decode().strip().splitlines()
    assert 1 == len(lines), lines
    assert message in lines[0]
    assert "Traceback" not in lines[0]


async def test_debug_shows_the_traceback(origin: str) -> None:
    """--debug: the traceback of the error itself (from the client, ending in the typed
    error), for bug reports."""
    done = await archibald("--debug", "info", f"{origin}/{LAYER}")
    text = done.stderr.decode()
    assert 1 == done.returncode
    assert "Traceback (most recent call last)" in text
    assert "archibald/_client.py" in text
    assert text.rstrip().splitlines()[-1].startswith("archibald.exceptions.TokenMissingError: ")


async def test_the_demo_is_exact_and_never_waits() -> None:
    """archibald demo: every id once, renewals in the background, no request waited."""
    done = await archibald("demo", "--features", "20000", "--token-seconds", "1")
    text = done.stdout.decode()
    assert 0 == done.returncode, done.stderr
    assert "every object id exactly once: yes" in text
    assert "requests that waited on a token: 0" in text
    renewals = int(text.split("token renewals in the background: ")[1].split(";")[0])
    assert renewals >= 1
    assert "\x1b" not in text


async def interrupt_dump(
    tmp_path: Path, moment: int, *, existing: str | None = None
) -> tuple[int, list[str], Path]:
    """Dump a slow layer to a file and send SIGINT once the emulator has seen *moment*
    queries; return the exit status, the lines on stderr and the output path."""
    out = tmp_path / "part.geojson"
    if existing is not None:
        out.write_text(existing)
    fake = FakeArcGIS()
    fake.add_feature_layer("Slow", count=5000, max_record_count=500)
    fake.faults.latency["query"] = 0.3
    async with fake.serve() as slow_origin:
        url = f"{slow_origin}/arcgis/rest/services/Slow/FeatureServer/0"
        process = await anyio.open_process(
            [sys.executable, "-m", "archibald", "dump", url, "-o", str(out), "--concurrency", "1"],
            env=clean_env(),
        )
        async with process:
            with anyio.fail_after(30):
                while fake.statistics().requests.get("query", 0) < moment:  # noqa: ASYNC110
                    await anyio.sleep(0.02)  # the emulator's counters, not an event
                process.send_signal(signal.SIGINT)
                code = await process.wait()
                assert process.stderr is not None
                stderr = b""
                async for chunk in process.stderr:
                    stderr += chunk
    return code, stderr.decode().strip().splitlines(), out


async def test_interrupting_a_dump_keeps_what_it_wrote(tmp_path: Path) -> None:
    """Ctrl-C mid-dump: exit 130, one line, and a .partial file that parses, complete up to
    its last feature; the file the dump was to replace is left as it was."""
    code, lines, out = await interrupt_dump(tmp_path, 6, existing="precious")
    assert 130 == code
    assert 1 == len(lines), lines
    assert lines[0].startswith("archibald: interrupted: stopped after ")
    partial = tmp_path / "part.partial.geojson"
    assert f"they are in {partial}; {out} was left as it was" in lines[0]
    assert "precious" == out.read_text()
    ids = [f["id"] for f in json.loads(partial.read_text())["features"]]
    assert 0 < len(ids) < 5000
    assert list(range(1, len(ids) + 1)) == ids
    assert ["part.geojson", "part.partial.geojson"] == files_in(tmp_path)


async def test_interrupting_a_dump_before_its_first_page(tmp_path: Path) -> None:
    """Ctrl-C while the ids are still being listed: exit 130, one line, nothing clobbered,
    no empty or unparsable file left behind."""
    code, lines, _ = await interrupt_dump(tmp_path, 1)
    assert 130 == code
    assert ["archibald: interrupted: stopped after 0 features; nothing was written"] == lines
    assert [] == files_in(tmp_path)


def test_an_interrupt_inside_an_exception_group_is_an_interrupt() -> None:
    """A KeyboardInterrupt that lands in a task, grouped with the error it caused, still
    ends the command as interrupted (exit 130), never as an ExceptionGroup traceback."""
    from archibald import IncompleteResultError
    from archibald._cli_common import Interrupted as _Interrupted
    from archibald._cli_common import run_command as _run

    async def crawl() -> None:
        raise BaseExceptionGroup(
            "fetches", [KeyboardInterrupt(), IncompleteResultError("the crawl was closed")]
        )

    with pytest.raises(_Interrupted):
        _run(crawl)


async def test_a_failed_dump_leaves_the_existing_file_alone(origin: str, tmp_path: Path) -> None:
    """A refused password, or a where clause the server rejects: the file is untouched and
    no temporary file is left."""
    out = tmp_path / "parcels.geojson"
    out.write_text("precious")
    refused = await archibald(
        "dump", f"{origin}/{LAYER}", "-o", str(out),
        **{**signed_in(origin), "ARCGIS_PASSWORD": "nope"},
    )  # fmt: skip
    rejected = await archibald(
        "dump", f"{origin}/{LAYER}", "-o", str(out), "--where", "NOPE >>> 1", **signed_in(origin)
    )
    assert (1, 1) == (refused.returncode, rejected.returncode)
    assert b"InvalidCredentialsError" in refused.stderr
    assert b"where" in rejected.stderr
    assert "precious" == out.read_text()
    assert ["parcels.geojson"] == files_in(tmp_path)


async def test_a_complete_dump_replaces_the_file(origin: str, tmp_path: Path) -> None:
    """A dump that finishes replaces an existing file whole, with the usual permissions."""
    out = tmp_path / "parcels.geojson"
    out.write_text("old")
    done = await archibald("dump", f"{origin}/{LAYER}", "-o", str(out), **signed_in(origin))
    assert 0 == done.returncode, done.stderr
    assert 2500 == len(json.loads(out.read_text())["features"])
    assert ["parcels.geojson"] == files_in(tmp_path)
    assert out.stat().st_mode & 0o044  # readable by others, as open() would make it


async def test_an_output_in_a_missing_folder_is_one_line(origin: str, tmp_path: Path) -> None:
    """-o into a folder that does not exist: exit 2, one line naming the folder."""
    target = tmp_path / "nowhere" / "x.geojson"
    done = await archibald("dump", f"{origin}/{LAYER}", "-o", str(target))
    lines = done.stderr.decode().strip().splitlines()
    assert 2 == done.returncode
    assert [f"archibald: cannot write {target}: the folder {target.parent} does not exist"] == (
        lines
    )


@pytest.mark.parametrize("kind", ["hosted", "federated", "standalone"])
async def test_credentials_go_where_the_server_says(kind: str) -> None:
    """No --portal: the command reads the server's rest/info and signs in there (never at
    ArcGIS Online, which this machine cannot even reach)."""
    fake = FakeArcGIS(server=kind)  # type: ignore[arg-type]
    fake.add_user("alice", "wonderland")
    fake.add_feature_layer("Private/Wells", count=30, secured=True)
    async with fake.serve() as here:
        done = await archibald(
            "dump", f"{here}/arcgis/rest/services/Private/Wells/FeatureServer/0",
            "--format", "ndjson", ARCGIS_USERNAME="alice", ARCGIS_PASSWORD="wonderland",
        )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    assert 30 == len(done.stdout.splitlines())
    assert fake.statistics().tokens_issued >= 1


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--api-key", "k", "--username", "alice"], {},
         "give one way to sign in, not --username and --api-key"),
        (["--client-id", "app", "--client-secret", "s", "--api-key", "k"], {},
         "not --client-id and --api-key"),
        ([], {"ARCGIS_API_KEY": "k", "ARCGIS_USERNAME": "alice"}, "from the environment"),
    ],
)  # fmt: skip
async def test_two_ways_of_signing_in_are_a_usage_error(
    origin: str, args: list[str], env: dict[str, str], message: str
) -> None:
    """--api-key with --username (and the like): exit 2 instead of a silent choice."""
    done = await archibald("info", f"{origin}/{LAYER}", *args, **env)
    assert 2 == done.returncode
    assert message in done.stderr.decode()


async def test_a_typed_option_wins_over_the_environment(origin: str) -> None:
    """--username on the command line with ARCGIS_API_KEY in the environment: the user."""
    done = await archibald(
        "info", f"{origin}/{LAYER}", "--username", "alice", "--portal", origin,
        ARCGIS_API_KEY="stale-key", ARCGIS_PASSWORD="wonderland",
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr


async def test_a_query_string_in_the_layer_url_is_refused(origin: str) -> None:
    """?where= in the URL would be ignored: exit 2, pointing at --where."""
    done = await archibald("dump", f"{origin}/{LAYER}/query?where=OBJECTID%3C5&token=SECRET-9")
    text = done.stderr.decode()
    assert 2 == done.returncode
    assert "pass --where '...' instead" in text
    assert "SECRET-9" not in text


@pytest.mark.parametrize(
    ("command", "option", "text"),
    [
        ("demo", "--features", "How many features"),
        ("demo", "--token-seconds", "How long the emulator's tokens last"),
        ("serve-fake", "--secured", "needs a token"),
        ("serve-fake", "--username", "may sign in"),
    ],
)
async def test_every_option_has_help(command: str, option: str, text: str) -> None:
    """demo and serve-fake explain their options."""
    done = await archibald(command, "--help")
    help_text = " ".join(done.stdout.decode().split())
    assert option in help_text
    assert text in help_text


def test_a_terminal_shows_progress() -> None:
    """Under a pseudo-terminal, the demo draws its progress bar."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the demo
        os.environ.update(clean_env(COLUMNS="100", TERM="xterm"))
        os.execv(sys.executable, [sys.executable, "-m", "archibald", "demo", "--features", "5000"])
    output = b""
    try:
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert 0 == os.waitstatus_to_exitcode(status), output[-2000:]
    assert b"\x1b[" in output  # the progress bar
    assert b"demo" in output
    assert b"exactly once: yes" in output


async def test_a_dump_through_a_symlink_replaces_the_file_it_points_to(
    origin: str, tmp_path: Path
) -> None:
    """-o latest.geojson, a link to data.geojson: data.geojson gets the dump, the link
    stays a link, and the file keeps its permissions."""
    data = tmp_path / "data.geojson"
    data.write_text("old")
    data.chmod(0o640)
    link = tmp_path / "latest.geojson"
    link.symlink_to(data)
    done = await archibald("dump", f"{origin}/{LAYER}", "-o", str(link), **signed_in(origin))
    assert 0 == done.returncode, done.stderr
    assert link.is_symlink()
    assert 2500 == len(json.loads(data.read_text())["features"])
    assert 0o640 == data.stat().st_mode & 0o777


async def test_a_json_link_from_the_rest_directory_is_accepted(origin: str) -> None:
    """?f=pjson (the REST directory's JSON link) changes nothing and is not refused."""
    done = await archibald("info", f"{origin}/{LAYER}?f=pjson", **signed_in(origin))
    assert 0 == done.returncode, done.stderr
