"""``archibald dump``: every feature of a layer, exactly once, to a file or stdout, in
any of the output formats, resumable after any stop."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click

from ._cli_common import (
    Interrupted,
    auth_for,
    auth_options,
    layer_for,
    run_command,
    sign_in_from,
    split_layer_url,
)
from ._cli_files import BINARY_FORMATS, CsvWriter, GeoPackageWriter, GeoParquetWriter, format_of
from ._cli_output import EXIT_INTERRUPTED, EXIT_USAGE, Failure, Output, PageWriter, Writer, summary
from ._cli_output import progress as progress_display
from ._client import ArchieClient
from ._resume import ResumableOutput
from .auth import ArcGISAuth, RefreshingAuth, SignIn
from .layers import Page, PageStream
from .layers._partitions import after_clause


@click.command()
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
@auth_options
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
    root, _ = split_layer_url(layer_url)
    sign_in = sign_in_from(ctx, auth_options)
    fmt = fmt or format_of(output)
    sr = out_sr if out_sr is not None else (4326 if fmt != "esrijson" else None)
    options = {"where": where, "fields": fields, "format": fmt, "out_sr": sr}
    if resume:
        if fmt not in ("geojson", "ndjson", "esrijson"):
            raise Failure("--resume works with geojson, ndjson and esrijson", EXIT_USAGE)
        _dump_resumable(layer_url, sign_in, output, options, concurrency)
        return
    # a GeoPackage's temporary name ends in .gpkg too, so GIS tools recognise a partial one
    suffix = ".tmp.gpkg" if fmt == "gpkg" else ".tmp"
    output_to = Output(output, binary=fmt in BINARY_FORMATS, suffix=suffix)
    try:
        writer = _writer_for(fmt, output_to, fields, sr)
    except Failure:  # an extra not installed: nothing written, nothing left behind
        output_to.settle(0)
        raise
    started = time.perf_counter()

    async def run() -> None:
        auth = await auth_for(sign_in, root)
        async with ArchieClient(root, auth, max_concurrent_requests=concurrency) as client:
            layer = layer_for(client, layer_url)
            await writer.prepare(layer)
            pages = layer.pages(where, out_fields=fields, out_sr=sr, max_concurrency=concurrency)
            await write_pages(auth, pages, writer)

    try:
        run_command(run)
    except BaseException as exc:
        # Whatever stopped the dump, what was written is closed so that it parses.
        if writer.started or output or isinstance(exc, Interrupted):
            try:
                writer.close()
            except Exception as closing:  # what stopped the dump is the error to report
                click.echo(f"archibald: the output could not be finished: {closing}", err=True)
        where_they_are = output_to.settle(writer.count)
        if isinstance(exc, Interrupted):
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
    root, _ = split_layer_url(layer_url)
    target = ResumableOutput(output)
    started = time.perf_counter()
    done: list[Writer] = []
    resumed = 0

    async def run() -> None:
        nonlocal resumed
        auth = await auth_for(sign_in, root)
        async with ArchieClient(root, auth, max_concurrent_requests=concurrency) as client:
            layer = layer_for(client, layer_url)
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
            await write_pages(auth, pages, writer, after_page=checkpoint, already=resumed)
            done.append(writer)

    try:
        run_command(run)
    except BaseException as exc:
        kept = target.keep()
        if isinstance(exc, Interrupted):
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


async def write_pages(
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
