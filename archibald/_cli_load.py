"""``archibald load``: GeoJSON features from a file into a layer, in batches, with the
ones that were not applied written to a file that can be fixed and loaded again.

The input is a FeatureCollection (read whole) or ndjson, one GeoJSON Feature per line
(read a chunk at a time, so a file of any size loads in bounded memory). Every feature
that was not applied goes to ``<FILE>.failed.ndjson`` as it was given, with what
happened in an ``archibald_error`` member that a reload ignores.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import click

from ._cli_common import (
    Interrupted,
    auth_for,
    auth_options,
    run_command,
    sign_in_from,
    split_layer_url,
)
from ._cli_output import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, Failure
from ._cli_output import progress as progress_display
from ._client import ArchieClient
from .exceptions import (
    ArchieError,
    AuthorizationError,
    EditOutcomeUnknownError,
    InvalidParameterError,
    InvalidServiceURL,
    LayerCapabilityError,
    TokenRefreshError,
)
from .layers import EditResults, FeatureLayer
from .layers._edit_batches import esri_feature

__all__ = ["load"]

# Errors after which no other chunk can succeed: the load stops there.
_FATAL = (AuthorizationError, LayerCapabilityError, TokenRefreshError)
_ERROR_MEMBER = "archibald_error"


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.argument("layer_url")
@click.option("--upsert-key", help="Update the features whose FIELD value exists; add the others.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@click.option(
    "--rollback",
    is_flag=True,
    help="Ask the server to undo a batch in which a feature fails (batches then go one "
    "at a time); by default good features are applied and bad ones reported.",
)
@auth_options
@click.pass_context
def load(ctx: click.Context, /, file: str, layer_url: str, upsert_key: str | None,
         batch_size: int, rollback: bool, **auth_options: Any) -> None:  # fmt: skip
    """Load the GeoJSON features of FILE (a FeatureCollection, or ndjson: one Feature a
    line) into LAYER_URL.

    Features that were not applied are written to FILE.failed.ndjson, each with its error
    in an "archibald_error" member: fix them and load that file. The exit status is
    non-zero when any feature was not applied.
    """
    root, _ = split_layer_url(layer_url)
    sign_in = sign_in_from(ctx, auth_options)
    failed_path = Path(f"{file}.failed.ndjson")
    tally = _Tally()
    started = time.perf_counter()

    async def run() -> None:
        auth = await auth_for(sign_in, root)
        async with ArchieClient(root, auth) as client:
            try:
                layer = FeatureLayer.from_url(client, layer_url)
            except InvalidServiceURL as exc:
                raise Failure(f"{exc} (load needs a FeatureServer layer)", EXIT_USAGE) from exc
            info = await layer.info()
            features = _read(Path(file))
            with _Failures(failed_path) as failures, progress_display(_tty()) as progress:
                task = progress.add_task("load", total=None, rate="", tokens="")
                while True:
                    chunk = await anyio.to_thread.run_sync(_take, features, batch_size * 4)
                    if not chunk:
                        break
                    sendable = _sendable(chunk, info.object_id_field, failures, tally)
                    try:
                        fatal = await _send(
                            layer, sendable, upsert_key, batch_size, rollback, failures, tally
                        )
                    except anyio.get_cancelled_exc_class():  # Ctrl-C: keep what is left
                        with anyio.CancelScope(shield=True):
                            await _interrupted(sendable, features, failures, tally)
                        raise
                    progress.update(task, completed=tally.seen)
                    if fatal is not None:  # the rest of the input is not sent, but kept
                        await _keep_rest(features, failures, tally, f"not sent: {fatal}")
                        raise Failure(f"{fatal}; {tally.line(failed_path)}", EXIT_ERROR)

    try:
        run_command(run)
    except Interrupted:
        raise Failure(f"interrupted: {tally.line(failed_path)}", EXIT_INTERRUPTED) from None
    elapsed = time.perf_counter() - started
    click.echo(f"{tally.line(failed_path)} in {elapsed:.1f} s", err=True)
    if tally.failed:
        ctx.exit(EXIT_ERROR)


class _Tally:
    """How many features were added, updated and not applied."""

    def __init__(self) -> None:
        self.added = self.updated = self.failed = 0

    @property
    def seen(self) -> int:
        return self.added + self.updated + self.failed

    def count(self, results: EditResults) -> None:
        self.added += sum(1 for r in results.adds if r.success)
        self.updated += sum(1 for r in results.updates if r.success)
        self.failed += len(results.failures)

    def line(self, failed_path: Path) -> str:
        failed = f"failed {self.failed:,} (see {failed_path})" if self.failed else "failed 0"
        return f"added {self.added:,}, updated {self.updated:,}, {failed}"


class _Failures:
    """``<FILE>.failed.ndjson``, opened at the first failure (an earlier run's is
    replaced then, and removed by a run without failures: reloaded, it would send its
    features again)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def __enter__(self) -> _Failures:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
        else:
            self.path.unlink(missing_ok=True)

    def write(self, feature: Any, status: str, code: int | None, description: str) -> None:
        if self._file is None:
            self._file = self.path.open("w", encoding="utf-8")
        error = {"status": status, "code": code, "description": description}
        record = dict(feature) if isinstance(feature, dict) else {"text": feature}
        record[_ERROR_MEMBER] = error
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")


async def _send(
    layer: FeatureLayer,
    features: list[Any],
    upsert_key: str | None,
    batch_size: int,
    rollback: bool,
    failures: _Failures,
    tally: _Tally,
) -> str | None:
    """Send one chunk; record its outcome. A reason to stop, or None."""
    if not features:
        return None
    options: dict[str, Any] = {"batch_size": batch_size, "rollback_on_failure": rollback}
    try:
        if upsert_key:
            results = await layer.upsert(features, key=upsert_key, **options)
        else:
            results = await layer.add_features(features, **options)
    except EditOutcomeUnknownError as exc:
        results = exc.results
    except InvalidParameterError as exc:  # the chunk as a whole (a repeated upsert key)
        for feature in features:
            failures.write(feature, "failed", None, str(exc))
        tally.failed += len(features)
        return None
    except ArchieError as exc:
        for feature in features:
            failures.write(feature, "failed", getattr(exc, "code", None), str(exc))
        tally.failed += len(features)
        return f"{type(exc).__name__}: {exc}" if isinstance(exc, _FATAL) else None
    tally.count(results)
    for result in results.failures:  # an upsert's indexes are positions in the chunk too
        feature = features[result.index]
        failures.write(feature, result.status, result.error_code, result.error_description or "")
    return None


async def _interrupted(
    in_flight: list[Any], features: Iterator[Any], failures: _Failures, tally: _Tally
) -> None:
    """Record a load cut short while *in_flight* was being sent: those features as of
    unknown outcome (some batches may have been applied), the rest as not sent."""
    for feature in in_flight:
        failures.write(
            feature,
            "unknown",
            None,
            "the load was interrupted while this feature was being sent: it may have been "
            "applied; check the layer, or reload with --upsert-key",
        )
    tally.failed += len(in_flight)
    await _keep_rest(features, failures, tally, "not sent: the load was interrupted")


async def _keep_rest(
    features: Iterator[Any], failures: _Failures, tally: _Tally, description: str
) -> None:
    """Write the features not read yet as not sent, a chunk at a time as they are read
    (the rest may be gigabytes)."""
    while rest := await anyio.to_thread.run_sync(_take, features, 10_000):
        for feature in rest:
            failures.write(feature, "not_sent", None, description)
        tally.failed += len(rest)


def _sendable(
    chunk: list[Any], object_id_field: str, failures: _Failures, tally: _Tally
) -> list[Any]:
    """The features of *chunk* that can be sent; the others are recorded as invalid."""
    sendable = []
    for feature in chunk:
        problem = _problem(feature, object_id_field)
        if problem is None:
            sendable.append(feature)
        else:
            failures.write(feature, "invalid", None, problem)
            tally.failed += 1
    return sendable


def _problem(feature: Any, object_id_field: str) -> str | None:
    """Why *feature* cannot be sent (checked alone, so one bad line fails alone)."""
    if isinstance(feature, str):  # a line that is not JSON, described
        return feature
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return "not a GeoJSON Feature"
    try:
        esri_feature(
            feature,
            kind="feature",
            index=0,
            object_id_field=object_id_field,
            spatial_reference=None,
            need_object_id=False,
        )
    except InvalidParameterError as exc:
        return str(exc).removeprefix("feature 0: ")
    return None


def _read(path: Path) -> Iterator[Any]:
    """The features of *path*: ndjson a line at a time, a FeatureCollection whole."""
    with path.open(encoding="utf-8") as stream:
        first = stream.readline()
        try:
            head = json.loads(first) if first.strip() else None
        except ValueError:
            head = None
        if isinstance(head, dict) and head.get("type") == "Feature":
            yield head
            for number, line in enumerate(stream, start=2):
                if line.strip():
                    yield _line(line, number)
            return
        try:
            collection = json.loads(first + stream.read())
        except ValueError as exc:
            raise Failure(
                f"{path} is neither a GeoJSON FeatureCollection nor ndjson ({exc})", EXIT_USAGE
            ) from None
    if not isinstance(collection, dict) or not isinstance(collection.get("features"), list):
        raise Failure(f"{path} is not a GeoJSON FeatureCollection", EXIT_USAGE)
    yield from collection["features"]


def _line(line: str, number: int) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        return f"line {number} is not JSON ({exc}): {line.strip()[:200]}"


def _take(features: Iterator[Any], count: int) -> list[Any]:
    chunk = []
    for feature in features:
        chunk.append(feature)
        if len(chunk) >= count:
            break
    return chunk


def _tty() -> bool:
    return sys.stderr.isatty()
