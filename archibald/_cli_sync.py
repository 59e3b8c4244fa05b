"""``archibald sync``: keep a GeoPackage copy of a layer current, once or on a period."""

from __future__ import annotations

import datetime
import re
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
from ._cli_output import EXIT_USAGE, Failure
from ._client import ArchieClient
from .exceptions import ArchieError
from .sync import LayerMirror, SyncReport

__all__ = ["parse_duration", "sync"]

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``15m``, ``1h30m`` or ``1d``."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 1h30m or 1d")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a duration longer than zero, such as 30s, 15m or 1h")
    return seconds


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A click callback: the option's duration in seconds."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _say(report: SyncReport) -> None:
    click.echo(f"{_stamp()} {report.table}: {report}")
    for change in report.schema_changes:
        click.echo(f"  schema: {change} (copied again with the new schema)")
    for reason in report.fallbacks:
        click.echo(f"  not used: {reason}")


@click.command()
@click.argument("layer_url")
@click.argument("dest", type=click.Path(dir_okay=False))
@click.option("--where", default="1=1", show_default=True, help="Which features to keep (SQL).")
@click.option(
    "--every",
    callback=_duration,
    help="Keep running, syncing on this period (30s, 15m, 1h, 1d) until Ctrl-C.",
)
@click.option(
    "--strategy",
    type=click.Choice(["auto", "extractChanges", "editDate", "full"]),
    default="auto",
    show_default=True,
    help="How changes are found; one the layer cannot use falls back to the next.",
)
@click.option(
    "--safety-window",
    callback=_duration,
    default="15m",
    show_default=True,
    help="Edits read again before the newest edit date seen (the editDate strategy).",
)
@auth_options
@click.pass_context
def sync(ctx: click.Context, /, layer_url: str, dest: str, where: str, every: float | None,
         strategy: str, safety_window: float, **options: Any) -> None:  # fmt: skip
    """Copy LAYER_URL into the GeoPackage DEST, or bring DEST up to date.

    The first run copies every feature; each later run applies what changed, found by
    the layer's change tracking (extractChanges), else its edit dates, else a full copy,
    and says what it did. A sync that is stopped or fails leaves DEST as the last
    complete sync left it. With --every, it syncs on that period with one signed-in
    session (tokens are renewed in the background) until Ctrl-C; a failed sync is
    reported and the next one runs on time.
    """
    root, _ = split_layer_url(layer_url)
    sign_in = sign_in_from(ctx, options)
    if not dest.lower().endswith(".gpkg"):
        raise Failure(f"DEST must be a GeoPackage file ending in .gpkg, got {dest!r}", EXIT_USAGE)
    mirror = LayerMirror(dest, safety_window=safety_window)

    def failed(exc: ArchieError) -> None:
        click.echo(f"{_stamp()} sync failed: {type(exc).__name__}: {exc}", err=True)

    async def run() -> None:
        auth = await auth_for(sign_in, root)
        async with ArchieClient(root, auth) as client:
            layer = layer_for(client, layer_url)
            if every is None:
                _say(await mirror.sync(layer, where=where, strategy=strategy))  # type: ignore[arg-type]
                return
            await mirror.sync_every(
                layer, every, where=where, strategy=strategy,  # type: ignore[arg-type]
                on_report=_say, on_error=failed,
            )  # fmt: skip

    try:
        run_command(run)
    except Interrupted:
        if every is None:
            raise
        click.echo(f"{_stamp()} stopped; {dest} holds the last complete sync")
