"""The ``archibald`` command line: dump, info, demo and serve-fake, on Trio.

Each command parses its options with click, then runs one async function under
``trio.run``. Errors that archibald knows (bad URL, refused credentials, missing layer,
...) print one line and exit non-zero; ``--debug`` shows the traceback instead. Progress
goes to stderr, and only when stderr is a terminal.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import click
import trio
from click.core import ParameterSource

from . import __version__
from ._cli_files import (
    BINARY_FORMATS,
    CsvWriter,
    GeoPackageWriter,
    GeoParquetWriter,
    format_of,
)
from ._cli_output import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Failure,
    Output,
    PageWriter,
    Writer,
    summary,
)
from ._cli_output import progress as progress_display
from ._client import ArchieClient
from ._resume import ResumableOutput
from ._secrets import redact_url
from ._urls import check_http_url, split_services_url
from .auth import (
    APIKey,
    AppCredentials,
    ArcGISAuth,
    NoAuth,
    RefreshingAuth,
    SignIn,
    UserCredentials,
    UserTokenAuth,
)
from .config import TokenPolicy
from .exceptions import ArchieError, InvalidServiceURL
from .layers import FeatureLayer, MapLayer, Page, PageStream
from .layers._partitions import after_clause

T = TypeVar("T")


class _Interrupted(Exception):
    """Ctrl-C: the command stopped; it settles its output, then exits with status 130."""


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run *fn* on Trio; Ctrl-C cancels it cleanly and raises `_Interrupted`.

    While *fn* runs, SIGINT cancels it (so cleanup runs, and no KeyboardInterrupt lands in
    the middle of decoding a page). A KeyboardInterrupt that arrives anyway (before the
    handler is in place, or a second Ctrl-C) counts the same, also inside an exception
    group.
    """
    try:
        return trio.run(_cancelled_by_ctrl_c, fn)
    except BaseException as exc:
        if _is_interrupt(exc):
            raise _Interrupted from None
        raise


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.split(KeyboardInterrupt)[0] is not None


async def _cancelled_by_ctrl_c(fn: Callable[[], Awaitable[T]]) -> T:
    interrupted = False
    failure: BaseException | None = None

    async def watch(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal interrupted
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                interrupted = True
                nursery.cancel_scope.cancel()
                return

    finished = False
    async with trio.open_nursery() as nursery:
        await nursery.start(watch)
        try:
            result = await fn()
            finished = True  # a Ctrl-C from now on comes too late to stop anything
        except trio.Cancelled:
            raise
        except BaseException as exc:  # raised outside the nursery, so not in a group
            failure = exc
        nursery.cancel_scope.cancel()
    if interrupted and not finished:
        raise KeyboardInterrupt
    if failure is not None:
        raise failure
    return result


class _Commands(click.Group):
    """Known errors become one line on stderr and an exit status (--debug: a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (_Interrupted, KeyboardInterrupt):  # KeyboardInterrupt: outside trio.run
            click.echo("archibald: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (Failure, ArchieError) as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            if isinstance(exc, Failure):
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
            help="Sign in at this portal [ARCGIS_PORTAL_URL]. By default archibald asks the "
            "server (its rest/info) where to sign in.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


_METHODS = {"username": "--username", "client_id": "--client-id", "api_key": "--api-key"}


def _sign_in(ctx: click.Context, options: dict[str, Any]) -> SignIn | None:
    """One way of signing in, from the options (the command line wins over the environment);
    None for none. Without --portal, where to sign in is asked of the server.

    Two ways on the command line, or two in the environment and none on the command line,
    are a usage error rather than a silent choice.
    """
    given = [name for name in _METHODS if options.get(name)]
    typed = [n for n in given if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE]
    chosen = typed or given
    if len(chosen) > 1:
        where = (
            ""
            if typed
            else " (from the environment: ARCGIS_USERNAME, ARCGIS_CLIENT_ID, ARCGIS_API_KEY)"
        )
        raise Failure(
            f"give one way to sign in, not {' and '.join(_METHODS[n] for n in chosen)}{where}",
            EXIT_USAGE,
        )
    portal = options.get("portal") or None
    if not chosen:
        return None
    if chosen == ["api_key"]:
        return APIKey(options["api_key"])
    if chosen == ["client_id"]:
        if not options.get("client_secret"):
            raise Failure("--client-id needs --client-secret (or ARCGIS_CLIENT_SECRET)", EXIT_USAGE)
        return AppCredentials(options["client_id"], options["client_secret"], base_url=portal)
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
    if not password:
        raise Failure(
            "--username needs a password: ARCGIS_PASSWORD, --password-stdin or --password",
            EXIT_USAGE,
        )
    return UserCredentials(options["username"], password, base_url=portal)


async def _auth_for(sign_in: SignIn | None, root: str) -> ArcGISAuth:
    """The auth for *sign_in* at the server of *root*."""
    return NoAuth() if sign_in is None else await sign_in.auth_for(root)


def _split_layer_url(url: str) -> tuple[str, str]:
    """(services root, rest) of an ArcGIS REST URL given on the command line."""
    example = "https://host/arcgis/rest/services/<service>/FeatureServer/0"
    try:
        parts = check_http_url(url, "the URL", InvalidServiceURL, extras="allow")
    except InvalidServiceURL as exc:
        raise Failure(
            f"{exc}: not an ArcGIS REST URL; one looks like {example}", EXIT_USAGE
        ) from None
    asked = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if asked - {"f"}:  # ?f=pjson, as the REST directory's links have, changes nothing
        hint = "pass --where '...' instead" if "where" in asked else "leave it out"
        if "outfields" in asked:
            hint += ", and --fields for outFields"
        raise Failure(
            f"the URL has a query string ({redact_url(url)}), which archibald does not read: "
            f"it builds every query itself; {hint}",
            EXIT_USAGE,
        )
    split = split_services_url(parts)
    if split is None:
        raise Failure(
            f"{redact_url(url)!r} is not an ArcGIS REST URL; one looks like {example}", EXIT_USAGE
        )
    return split


def _layer_for(client: ArchieClient, url: str) -> FeatureLayer | MapLayer:
    try:
        if "/MapServer/" in url:
            return MapLayer.from_url(client, url)
        return FeatureLayer.from_url(client, url)
    except InvalidServiceURL as exc:
        raise Failure(str(exc), EXIT_USAGE) from exc


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
    type=click.Choice(["geojson", "ndjson", "esrijson", "geoparquet", "gpkg", "csv"]),
    help="Default: from the -o file's extension (.parquet, .gpkg, .csv, .ndjson, ...), "
    "else geojson.",
)
@click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--out-sr", type=int, help="Spatial reference (wkid) of the output geometries.")
@click.option(
    "--resume",
    is_flag=True,
    help="Keep a record beside -o FILE, so that a dump that was stopped or killed "
    "continues where it stopped when the same command is run again.",
)
@_auth_options
@click.pass_context
def dump(ctx: click.Context, /, layer_url: str, output: str | None, where: str, fields: str,
         fmt: str | None, concurrency: int, out_sr: int | None, resume: bool,
         **auth_options: Any) -> None:  # fmt: skip
    """Write every feature of LAYER_URL, exactly once, to a file or stdout.

    A file is replaced only when the dump is complete; an interrupted or failed dump keeps
    what it wrote in <name>.partial<suffix>, closed so that it parses. With --resume, it
    keeps <name>.incomplete and <name>.resume.json instead, and the same command continues
    the dump, even after kill -9.
    """
    root, _ = _split_layer_url(layer_url)
    sign_in = _sign_in(ctx, auth_options)
    fmt = fmt or format_of(output)
    sr = out_sr if out_sr is not None else (4326 if fmt != "esrijson" else None)
    options = {"where": where, "fields": fields, "format": fmt, "out_sr": sr}
    if resume:
        if fmt not in ("geojson", "ndjson", "esrijson"):
            raise Failure("--resume works with geojson, ndjson and esrijson", EXIT_USAGE)
        _dump_resumable(layer_url, sign_in, output, options, concurrency)
        return
    # GDAL wants a GeoPackage's name to end in .gpkg, the temporary one too
    suffix = ".tmp.gpkg" if fmt == "gpkg" else ".tmp"
    output_to = Output(output, binary=fmt in BINARY_FORMATS, suffix=suffix)
    try:
        writer = _writer_for(fmt, output_to, fields, sr)
    except Failure:  # an extra not installed: nothing written, nothing left behind
        output_to.settle(0)
        raise
    started = time.perf_counter()

    async def run() -> None:
        auth = await _auth_for(sign_in, root)
        async with ArchieClient(root, auth, max_concurrent_requests=concurrency) as client:
            layer = _layer_for(client, layer_url)
            await writer.prepare(layer)
            pages = layer.pages(where, out_fields=fields, out_sr=sr, max_concurrency=concurrency)
            await _dump(auth, pages, writer)

    try:
        _run(run)
    except BaseException as exc:
        # Whatever stopped the dump, what was written is closed so that it parses.
        if writer.started or output or isinstance(exc, _Interrupted):
            writer.close()
        where_they_are = output_to.settle(writer.count)
        if isinstance(exc, _Interrupted):
            raise Failure(
                f"interrupted: stopped after {writer.count:,} features; {where_they_are}",
                EXIT_INTERRUPTED,
            ) from None
        if writer.count:
            click.echo(
                f"archibald: {writer.count:,} features were written before the failure; "
                f"{where_they_are}",
                err=True,
            )
        raise
    writer.close()
    output_to.commit()
    summary(writer, time.perf_counter() - started)


def _writer_for(fmt: str, output: Output, fields: str, sr: int | None) -> PageWriter:
    if fmt == "geoparquet":
        return GeoParquetWriter(output.stream, fields, sr)
    if fmt == "gpkg":
        if output.file is None:
            raise Failure("--format gpkg needs -o FILE (a regular file)", EXIT_USAGE)
        return GeoPackageWriter(output.file, fields, sr)
    if fmt == "csv":
        return CsvWriter(output.stream, fields)
    return Writer(output.stream, fmt)


def _dump_resumable(
    layer_url: str,
    sign_in: SignIn | None,
    output: str | None,
    options: dict[str, Any],
    concurrency: int,
) -> None:
    """A dump that records its progress after each page, and continues from the record."""
    root, _ = _split_layer_url(layer_url)
    target = ResumableOutput(output)
    started = time.perf_counter()
    done: list[Writer] = []
    resumed = 0

    async def run() -> None:
        nonlocal resumed
        auth = await _auth_for(sign_in, root)
        async with ArchieClient(root, auth, max_concurrent_requests=concurrency) as client:
            layer = _layer_for(client, layer_url)
            info = await layer.info()
            state = target.open({"url": layer.url, **options}, info)
            assert target.stream is not None
            resumed = state["count"]
            writer = Writer(
                target.stream,
                options["format"],
                written=resumed,
                unconvertible=state["unconvertible"],
            )
            where = options["where"]
            if state["last_id"] is not None:
                where = after_clause(where, info.object_id_field, state["last_id"])

            def checkpoint(page: Page) -> None:
                target.checkpoint(page.object_ids[-1], writer.count, writer.unconvertible)

            pages = layer.pages(
                where,
                out_fields=options["fields"],
                out_sr=options["out_sr"],
                max_concurrency=concurrency,
            )
            await _dump(auth, pages, writer, after_page=checkpoint, already=resumed)
            done.append(writer)

    try:
        _run(run)
    except BaseException as exc:
        kept = target.keep()
        if isinstance(exc, _Interrupted):
            raise Failure(
                f"interrupted: {kept or 'nothing was written'}", EXIT_INTERRUPTED
            ) from None
        if kept is not None:
            click.echo(f"archibald: the dump stopped; {kept}", err=True)
        raise
    [writer] = done
    writer.close()
    target.commit()
    summary(writer, time.perf_counter() - started, resumed=resumed)


async def _dump(
    auth: ArcGISAuth,
    pages: PageStream,
    writer: PageWriter,
    *,
    label: str = "dump",
    progress_enabled: bool | None = None,
    after_page: Callable[[Page], None] | None = None,
    already: int = 0,
) -> None:
    """Write the crawl *pages* with a progress display; *already* were written before."""
    enabled = sys.stderr.isatty() if progress_enabled is None else progress_enabled
    started = time.perf_counter()
    with progress_display(enabled) as progress:
        task = progress.add_task(label, total=None, rate="", tokens="")
        async with pages:  # the next pages are fetched while this one is written
            async for page in pages:
                writer.write_page(page)
                if after_page is not None and page.object_ids:
                    after_page(page)
                rate = writer.count / max(time.perf_counter() - started, 1e-9)
                fetches = auth.statistics().fetches if isinstance(auth, RefreshingAuth) else None
                progress.update(
                    task,
                    total=None if pages.total is None else pages.total + already,
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
    sign_in = _sign_in(ctx, auth_options)

    async def run() -> None:
        auth = await _auth_for(sign_in, root)
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
    "--features",
    type=click.IntRange(1000, 5_000_000),
    default=100_000,
    show_default=True,
    help="How many features the demo layer has.",
)
@click.option(
    "--token-seconds",
    type=click.FloatRange(1, 3600),
    default=2.0,
    show_default=True,
    help="How long the emulator's tokens last: short, so the crawl outlives many of them.",
)
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

            class Checker(Writer):
                def write(self, feature: dict[str, Any], page: Page) -> None:
                    nonlocal duplicates
                    oid = feature["attributes"][page.object_id_field]
                    duplicates += seen[oid]
                    seen[oid] = 1
                    self.count += 1

            checker = Checker(io.StringIO(), "ndjson")
            started = time.perf_counter()
            async with ArchieClient(f"{origin}/arcgis/rest/services", auth) as client:
                layer = FeatureLayer.from_url(client, url)
                pages = layer.pages(max_concurrency=8)
                await _dump(auth, pages, checker, label="demo")
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
                raise Failure("the crawl was not exact")

    _run(run)


@main.command("serve-fake")
@click.option(
    "--features",
    type=click.IntRange(0, 5_000_000),
    default=10_000,
    show_default=True,
    help="Features in the layer Demo/Parcels (0: no layer).",
)
@click.option("--username", default="demo", show_default=True, help="The user that may sign in.")
@click.option("--password", default="demo-password", show_default=True, help="Their password.")
@click.option(
    "--secured/--public",
    default=True,
    show_default=True,
    help="Whether the layer needs a token.",
)
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
