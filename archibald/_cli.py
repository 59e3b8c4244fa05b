"""The ``archibald`` command line: dump, sync, load, info, demo and serve-fake, on Trio.

Each command parses its options with click, then runs one async function under
``trio.run``. Errors that archibald knows (bad URL, refused credentials, missing layer,
...) print one line and exit non-zero; ``--debug`` shows the traceback instead. Progress
goes to stderr, and only when stderr is a terminal. The commands live in ``_cli_*``
modules (``_cli_dump``, ...) and what they share in `_cli_common`.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from typing import Any

import click
import trio

from . import __version__
from ._cli_common import (
    Commands,
    auth_for,
    auth_options,
    layer_for,
    run_command,
    sign_in_from,
    split_layer_url,
)
from ._cli_dump import dump, write_pages
from ._cli_load import load
from ._cli_output import Failure, Writer
from ._cli_sync import sync
from ._client import ArchieClient
from .auth import UserTokenAuth
from .config import TokenPolicy
from .layers import FeatureLayer, Page
from .layers._model import wkid_of

# -- commands ------------------------------------------------------------------------------


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
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


main.add_command(dump)
main.add_command(sync)
main.add_command(load)


@main.command()
@click.argument("url")
@auth_options
@click.pass_context
def info(ctx: click.Context, /, url: str, **auth_options: Any) -> None:
    """Describe a service or a layer: name, geometry, count, fields, capabilities, paging."""
    root, rest = split_layer_url(url)
    sign_in = sign_in_from(ctx, auth_options)

    async def run() -> None:
        auth = await auth_for(sign_in, root)
        async with ArchieClient(root, auth) as client:
            parts = rest.split("/")
            if parts and parts[-1].isdecimal() and len(parts) >= 3:
                layer = layer_for(client, url)
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
                click.echo(f"spatial ref  {wkid_of(meta.spatial_reference) or 'unknown'}")
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

    run_command(run)


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
                await write_pages(auth, pages, checker, label="demo")
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

    run_command(run)


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

    run_command(run)


if __name__ == "__main__":  # pragma: no cover
    main()
