"""The ``archibald`` command line: dump, info, demo and serve-fake, on Trio.

Each command parses its options with click, then runs one async function under
``trio.run``. Errors that archibald knows (bad URL, refused credentials, missing layer,
...) print one line and exit non-zero; ``--debug`` shows the traceback instead. Progress
goes to stderr, and only when stderr is a terminal.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import IO, Any, TypeVar

import click
import trio

from . import __version__
from ._client import ArchieClient
from ._geojson import esri_feature_to_geojson
from ._layers import FeatureLayer, MapLayer
from .auth import (
    APIKeyAuth,
    AppCredentialsAuth,
    ArcGISAuth,
    NoAuth,
    RefreshingAuth,
    UserTokenAuth,
)
from .config import TokenPolicy
from .exceptions import ArchieError, InvalidServiceURL

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Failure(Exception):
    """A failure already explained to the user: print the message, exit with the code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run *fn* on Trio; Ctrl-C ends the command with exit status 130."""
    try:
        return trio.run(fn)
    except (KeyboardInterrupt, BaseExceptionGroup) as exc:
        if isinstance(exc, BaseExceptionGroup) and exc.split(KeyboardInterrupt)[1] is not None:
            raise
        click.echo("archibald: interrupted", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None


class _Commands(click.Group):
    """Known errors become one line on stderr and an exit status (--debug: a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (_Failure, ArchieError) as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            if isinstance(exc, _Failure):
                click.echo(f"archibald: {exc}", err=True)
                ctx.exit(exc.code)
            click.echo(f"archibald: {type(exc).__name__}: {exc}", err=True)
            ctx.exit(EXIT_ERROR)


# -- authentication ------------------------------------------------------------------------


def _auth_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--username", envvar="ARCGIS_USERNAME", help="Sign in as this user [ARCGIS_USERNAME]."
        ),
        click.option(
            "--password",
            help="The user's password (visible to other users of this machine: prefer "
            "ARCGIS_PASSWORD or --password-stdin).",
        ),
        click.option(
            "--password-stdin", is_flag=True, help="Read the password from standard input."
        ),
        click.option(
            "--client-id", envvar="ARCGIS_CLIENT_ID", help="Sign in as this app [ARCGIS_CLIENT_ID]."
        ),
        click.option(
            "--client-secret",
            envvar="ARCGIS_CLIENT_SECRET",
            help="The app's secret [ARCGIS_CLIENT_SECRET].",
        ),
        click.option(
            "--api-key", envvar="ARCGIS_API_KEY", help="Use this API key [ARCGIS_API_KEY]."
        ),
        click.option(
            "--portal",
            envvar="ARCGIS_PORTAL_URL",
            default="https://www.arcgis.com",
            show_default=True,
            help="The portal that issues tokens [ARCGIS_PORTAL_URL].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _make_auth(options: dict[str, Any]) -> ArcGISAuth:
    password = options.get("password")
    if password:
        click.echo(
            "archibald: warning: a password given as an option can be seen by other users "
            "of this machine; prefer ARCGIS_PASSWORD or --password-stdin",
            err=True,
        )
    if options.get("password_stdin"):
        password = sys.stdin.readline().rstrip("\r\n")
    password = password or os.environ.get("ARCGIS_PASSWORD")
    portal = options["portal"]
    if options.get("api_key"):
        return APIKeyAuth(options["api_key"])
    if options.get("client_id"):
        if not options.get("client_secret"):
            raise _Failure(
                "--client-id needs --client-secret (or ARCGIS_CLIENT_SECRET)", EXIT_USAGE
            )
        return AppCredentialsAuth(options["client_id"], options["client_secret"], portal)
    if options.get("username"):
        if not password:
            raise _Failure(
                "--username needs a password: ARCGIS_PASSWORD, --password-stdin or --password",
                EXIT_USAGE,
            )
        return UserTokenAuth(options["username"], password, portal)
    return NoAuth()


def _split_layer_url(url: str) -> tuple[str, str]:
    """(services root, rest) of an ArcGIS REST URL."""
    clean = url.strip().split("?", 1)[0].rstrip("/")
    marker = "/rest/services"
    index = clean.find(marker)
    if index < 0 or not clean.startswith(("http://", "https://")):
        raise _Failure(
            f"{url!r} is not an ArcGIS REST URL; one looks like "
            "https://host/arcgis/rest/services/<service>/FeatureServer/0",
            EXIT_USAGE,
        )
    return clean[: index + len(marker)], clean[index + len(marker) :].strip("/")


def _layer_for(client: ArchieClient, url: str) -> FeatureLayer | MapLayer:
    try:
        if "/MapServer/" in url:
            return MapLayer.from_url(client, url)
        return FeatureLayer.from_url(client, url)
    except InvalidServiceURL as exc:
        raise _Failure(str(exc), EXIT_USAGE) from exc


# -- output --------------------------------------------------------------------------------


class _Writer:
    """Writes features as they come, so the whole layer is never in memory.

    ``close()`` always leaves a document that parses, complete up to the last feature
    written, also after an interruption.
    """

    def __init__(self, out: IO[str], fmt: str) -> None:
        self.out = out
        self.fmt = fmt
        self.count = 0
        self.started = False

    def start(self, page_meta: dict[str, Any]) -> None:
        if self.started:
            return
        self.started = True
        if self.fmt == "geojson":
            self.out.write('{"type":"FeatureCollection","features":[\n')
        elif self.fmt == "esrijson":
            head = json.dumps(page_meta, separators=(",", ":"))
            self.out.write(head[:-1] + ',"features":[\n')

    def write(self, feature: dict[str, Any], object_id_field: str) -> None:
        if self.fmt == "ndjson":
            self.out.write(json.dumps(esri_feature_to_geojson(feature, object_id_field)) + "\n")
        else:
            item = (
                feature
                if self.fmt == "esrijson"
                else esri_feature_to_geojson(feature, object_id_field)
            )
            self.out.write((",\n" if self.count else "") + json.dumps(item, separators=(",", ":")))
        self.count += 1

    def close(self) -> None:
        if self.fmt != "ndjson":
            if not self.started:
                self.start({})
            self.out.write("\n]}\n")
        self.out.flush()


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[tokens]}"),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


# -- commands ------------------------------------------------------------------------------


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archibald")
@click.option("--debug", is_flag=True, help="Show tracebacks and log requests.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """archibald: a Trio-first client for ArcGIS REST services."""
    ctx.obj = {"debug": debug}
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    else:
        warnings.simplefilter("ignore", ResourceWarning)


@main.command()
@click.argument("layer_url")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Write here instead of stdout.",
)
@click.option("--where", default="1=1", show_default=True, help="Which features (SQL).")
@click.option("--fields", default="*", show_default=True, help="Comma-separated fields, or *.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["geojson", "ndjson", "esrijson"]),
    default="geojson",
    show_default=True,
)
@click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--out-sr", type=int, help="Spatial reference (wkid) of the output geometries.")
@_auth_options
@click.pass_context
def dump(ctx: click.Context, /, layer_url: str, output: str | None, where: str, fields: str,
         fmt: str, concurrency: int, out_sr: int | None, **auth_options: Any) -> None:  # fmt: skip
    """Write every feature of LAYER_URL, exactly once, to a file or stdout."""
    root, _ = _split_layer_url(layer_url)
    auth = _make_auth(auth_options)
    sr = out_sr if out_sr is not None else (4326 if fmt != "esrijson" else None)
    out: IO[str] = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    writer = _Writer(out, fmt)
    started = time.perf_counter()

    async def run() -> None:
        async with ArchieClient(root, auth, max_concurrent_requests=concurrency) as client:
            layer = _layer_for(client, layer_url)
            await _dump(client, auth, layer, writer, where, fields, sr, concurrency)

    finished = False
    try:
        _run(run)
        finished = True
    except SystemExit as exit_:
        if exit_.code == EXIT_INTERRUPTED:
            click.echo(
                f"stopped after {writer.count:,} features; the output holds them all", err=True
            )
        raise
    finally:
        if finished or writer.started:  # a partial document still parses
            writer.close()
        if output:
            out.close()
    elapsed = time.perf_counter() - started
    click.echo(
        f"{writer.count:,} features in {elapsed:.1f} s "
        f"({writer.count / max(elapsed, 1e-9):,.0f}/s)",
        err=True,
    )


async def _dump(
    client: ArchieClient,
    auth: ArcGISAuth,
    layer: FeatureLayer | MapLayer,
    writer: _Writer,
    where: str,
    fields: str,
    out_sr: int | None,
    concurrency: int,
    *,
    label: str = "dump",
    progress_enabled: bool | None = None,
) -> None:
    enabled = sys.stderr.isatty() if progress_enabled is None else progress_enabled
    pages = layer.pages(where, out_fields=fields, out_sr=out_sr, max_concurrency=concurrency)
    started = time.perf_counter()
    with _progress(enabled) as progress:
        task = progress.add_task(label, total=None, rate="", tokens="")
        async with pages:  # the next pages are fetched while this one is written
            async for page in pages:
                writer.start(
                    {
                        "objectIdFieldName": page.object_id_field,
                        "geometryType": page.geometry_type,
                        "spatialReference": page.spatial_reference,
                        "fields": list(page.fields),
                    }
                )
                for feature in page.features:
                    writer.write(feature, page.object_id_field)
                rate = writer.count / max(time.perf_counter() - started, 1e-9)
                fetches = auth.statistics().fetches if isinstance(auth, RefreshingAuth) else None
                progress.update(
                    task,
                    total=pages.total,
                    completed=writer.count,
                    rate=f"{rate:,.0f}/s",
                    tokens="" if fetches is None else f"tokens: {fetches}",
                )


@main.command()
@click.argument("url")
@_auth_options
@click.pass_context
def info(ctx: click.Context, /, url: str, **auth_options: Any) -> None:
    """Describe a service or a layer: name, geometry, count, fields, capabilities, paging."""
    root, rest = _split_layer_url(url)
    auth = _make_auth(auth_options)

    async def run() -> None:
        async with ArchieClient(root, auth) as client:
            parts = rest.split("/")
            if parts and parts[-1].isdecimal() and len(parts) >= 3:
                layer = _layer_for(client, url)
                meta = await layer.info()
                count = await layer.count()
                click.echo(f"layer        {meta.name} ({layer.url})")
                click.echo(f"geometry     {meta.geometry_type or 'none (a table)'}")
                click.echo(f"features     {count:,}")
                click.echo(f"object ids   {meta.object_id_field}")
                click.echo(f"capabilities {', '.join(sorted(meta.capabilities)) or 'none listed'}")
                click.echo(f"max records  {meta.max_record_count:,} per query")
                click.echo(
                    f"paging       {'supported' if meta.supports_pagination else 'not supported'}"
                )
                sr = meta.spatial_reference or {}
                click.echo(f"spatial ref  {sr.get('latestWkid') or sr.get('wkid') or 'unknown'}")
                click.echo("fields")
                for field in meta.fields:
                    kind = str(field.get("type", "")).removeprefix("esriFieldType")
                    click.echo(f"  {field.get('name', '?'):<24} {kind}")
            else:
                body = await client.get_json(rest)
                name = body.get("mapName") or body.get("serviceDescription") or rest or "services"
                click.echo(f"service      {name} ({client.url_for(rest)})")
                if "capabilities" in body:
                    click.echo(f"capabilities {body['capabilities']}")
                if "maxRecordCount" in body:
                    click.echo(f"max records  {body['maxRecordCount']:,} per query")
                for key in ("folders", "services", "layers", "tables"):
                    for item in body.get(key) or []:
                        if isinstance(item, dict):
                            kind = item.get("type") or item.get("geometryType") or ""
                            label = f"{item.get('id', '')} {item.get('name', '')} {kind}"
                        else:
                            label = str(item)
                        click.echo(f"{key[:-1]:<12} {label.strip()}")

    _run(run)


@main.command()
@click.option(
    "--features", type=click.IntRange(1000, 5_000_000), default=100_000, show_default=True
)
@click.option("--token-seconds", type=click.FloatRange(1, 3600), default=2.0, show_default=True)
@click.pass_context
def demo(ctx: click.Context, features: int, token_seconds: float) -> None:
    """Crawl a secured layer on a local emulator with tokens that last seconds, offline."""
    from .testing import FakeArcGIS

    fake = FakeArcGIS(max_token_minutes=token_seconds / 60)
    fake.add_user("demo", "demo-password")
    click.echo(f"building a secured layer of {features:,} features on a local ArcGIS emulator")
    fake.add_feature_layer("Demo/Parcels", count=features, max_record_count=2000, secured=True)
    fake.faults.latency["query"] = 0.15  # a server that takes its time: the crawl outlives tokens
    fake.faults.latency["generateToken"] = 0.2  # a slow token server: nobody should wait on it

    async def run() -> None:
        async with fake.serve() as origin:
            policy = TokenPolicy(min_renew_interval=0.5, retry_initial=0.1)
            auth = UserTokenAuth("demo", "demo-password", origin, policy=policy)
            url = f"{origin}/arcgis/rest/services/Demo/Parcels/FeatureServer/0"
            click.echo(f"emulator at {origin}; its tokens last {token_seconds:g} s")
            seen = bytearray(features + 1)
            duplicates = 0

            class Checker(_Writer):
                def write(self, feature: dict[str, Any], object_id_field: str) -> None:
                    nonlocal duplicates
                    oid = feature["attributes"][object_id_field]
                    duplicates += seen[oid]
                    seen[oid] = 1
                    self.count += 1

            checker = Checker(io.StringIO(), "ndjson")
            started = time.perf_counter()
            async with ArchieClient(f"{origin}/arcgis/rest/services", auth) as client:
                layer = FeatureLayer.from_url(client, url)
                await _dump(client, auth, layer, checker, "1=1", "*", None, 8, label="demo")
                stats = client.statistics()
                renewals = auth.statistics().fetches - 1
            elapsed = time.perf_counter() - started
            missing = features - sum(seen)
            click.echo(
                f"{checker.count:,} features in {elapsed:.1f} s "
                f"({checker.count / elapsed:,.0f}/s); every object id exactly once: "
                f"{'yes' if not missing and not duplicates else 'NO'} "
                f"(missing {missing}, duplicated {duplicates})"
            )
            click.echo(
                f"token renewals in the background: {renewals}; requests that waited on a "
                f"token: {stats.token_waits}; tokens rejected: {stats.token_rejections}; "
                f"requests: {stats.requests:,}"
            )
            if missing or duplicates:
                raise _Failure("the crawl was not exact")

    _run(run)


@main.command("serve-fake")
@click.option("--features", type=click.IntRange(0, 5_000_000), default=10_000, show_default=True)
@click.option("--username", default="demo", show_default=True)
@click.option("--password", default="demo-password", show_default=True)
@click.option("--secured/--public", default=True, show_default=True)
@click.pass_context
def serve_fake(
    ctx: click.Context, features: int, username: str, password: str, secured: bool
) -> None:
    """Serve the ArcGIS emulator on loopback until Ctrl-C, for your own experiments."""
    from .testing import FakeArcGIS

    fake = FakeArcGIS()
    fake.add_user(username, password)
    if features:
        fake.add_feature_layer("Demo/Parcels", count=features, secured=secured)

    async def run() -> None:
        async with fake.serve() as origin:
            click.echo(f"serving on {origin} (Ctrl-C to stop)")
            click.echo(f"  services: {origin}/arcgis/rest/services")
            click.echo(f"  portal:   {origin} (user {username!r})")
            if features:
                click.echo(
                    f"  layer:    {origin}/arcgis/rest/services/Demo/Parcels/FeatureServer/0"
                )
            await trio.sleep_forever()

    _run(run)


if __name__ == "__main__":  # pragma: no cover
    main()
