"""What every ``archibald`` command shares: running on Trio with Ctrl-C as a clean stop,
known errors as one line, the sign-in options, and reading a layer URL given on the
command line."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import click
import trio
from click.core import ParameterSource

from ._cli_output import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, Failure
from ._client import ArchieClient
from ._secrets import redact_url
from ._urls import check_http_url, split_services_url
from .auth import APIKey, AppCredentials, ArcGISAuth, NoAuth, SignIn, UserCredentials
from .exceptions import ArchieError, InvalidServiceURL
from .layers import FeatureLayer, MapLayer

T = TypeVar("T")


class Interrupted(Exception):
    """Ctrl-C: the command stopped; it settles its output, then exits with status 130."""


def run_command(fn: Callable[[], Awaitable[T]]) -> T:
    """Run *fn* on Trio; Ctrl-C cancels it cleanly and raises `Interrupted`.

    While *fn* runs, SIGINT cancels it (so cleanup runs, and no KeyboardInterrupt lands in
    the middle of decoding a page). A KeyboardInterrupt that arrives anyway (before the
    handler is in place, or a second Ctrl-C) counts the same, also inside an exception
    group.
    """
    try:
        return trio.run(_cancelled_by_ctrl_c, fn)
    except BaseException as exc:
        if _is_interrupt(exc):
            raise Interrupted from None
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


class Commands(click.Group):
    """Known errors become one line on stderr and an exit status (--debug: a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (Interrupted, KeyboardInterrupt):  # KeyboardInterrupt: outside trio.run
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


def auth_options(fn: Callable[..., Any]) -> Callable[..., Any]:
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


def sign_in_from(ctx: click.Context, options: dict[str, Any]) -> SignIn | None:
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


async def auth_for(sign_in: SignIn | None, root: str) -> ArcGISAuth:
    """The auth for *sign_in* at the server of *root*."""
    return NoAuth() if sign_in is None else await sign_in.auth_for(root)


def split_layer_url(url: str) -> tuple[str, str]:
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


def layer_for(client: ArchieClient, url: str) -> FeatureLayer | MapLayer:
    try:
        if "/MapServer/" in url:
            return MapLayer.from_url(client, url)
        return FeatureLayer.from_url(client, url)
    except InvalidServiceURL as exc:
        raise Failure(str(exc), EXIT_USAGE) from exc
