"""Where the command line writes: streaming writers per format, an output file that is
replaced only by a complete dump, and the progress display; with the failures a command
explains to the user and its exit codes."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Protocol

from ._geojson import GeoJSONConverter
from .layers import Page

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "Failure",
    "Output",
    "PageWriter",
    "Writer",
    "progress",
    "summary",
]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Failure(Exception):
    """A failure already explained to the user: print the message, exit with the code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class PageWriter(Protocol):
    """What the dump writes pages with: `Writer` (JSON) and the table formats."""

    count: int
    started: bool

    @property
    def unconvertible(self) -> int: ...

    async def prepare(self, layer: Any) -> None: ...

    def write_page(self, page: Page) -> None: ...

    def close(self) -> None: ...


class Writer:
    """Writes features as they come, so the whole layer is never in memory.

    ``close()`` always leaves a document that parses, complete up to the last feature
    written, also after an interruption.
    """

    def __init__(self, out: IO[str], fmt: str, *, written: int = 0, unconvertible: int = 0) -> None:
        """*written* features (and their *unconvertible* geometries) are already in *out*:
        a dump that continues (its head is written then)."""
        self.out = out
        self.fmt = fmt
        self.count = written
        self.started = written > 0
        self.closed = False
        self._geojson = GeoJSONConverter()
        self._geojson.unconvertible = unconvertible

    @property
    def unconvertible(self) -> int:
        """Geometries written as null because they could not be converted to GeoJSON."""
        return self._geojson.unconvertible

    async def prepare(self, layer: Any) -> None:
        """Nothing to read before the first page: JSON takes its head from the answers."""

    def write_page(self, page: Page) -> None:
        """Every feature of *page*, after the document's head if it is the first."""
        self.start(
            {
                "objectIdFieldName": page.object_id_field,
                "geometryType": page.geometry_type,
                "spatialReference": page.spatial_reference,
                "fields": list(page.fields),
            }
        )
        for feature in page.features:
            self.write(feature, page)

    def start(self, page_meta: dict[str, Any]) -> None:
        if self.started:
            return
        self.started = True
        if self.fmt == "geojson":
            self.out.write('{"type":"FeatureCollection","features":[\n')
        elif self.fmt == "esrijson":
            head = json.dumps(page_meta, separators=(",", ":"))
            self.out.write(head[:-1] + ',"features":[\n')

    def write(self, feature: dict[str, Any], page: Page) -> None:
        item = feature
        if self.fmt != "esrijson":
            item = self._geojson.feature(
                feature, page.object_id_field, has_z=page.has_z, has_m=page.has_m
            )
        if self.fmt == "ndjson":
            self.out.write(json.dumps(item) + "\n")
        else:
            self.out.write((",\n" if self.count else "") + json.dumps(item, separators=(",", ":")))
        self.count += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.fmt != "ndjson":
            if not self.started:
                self.start({})
            self.out.write("\n]}\n")
        self.out.flush()


class Output:
    """Where a dump goes: stdout, or a file that is replaced only by a complete dump.

    A regular file (or a name not taken yet) is written under a temporary name beside it
    and moved into place at the end, so a failed or interrupted dump never destroys what
    was there; a symbolic link is followed, and the file keeps its permissions. What an
    unfinished dump wrote (closed, so it parses) is kept beside it as
    ``<name>.partial<suffix>``. Anything else (a pipe, ``/dev/stdout``) is written to as
    it is.
    """

    def __init__(self, path: str | None, *, binary: bool = False, suffix: str = ".tmp") -> None:
        self.path = Path(path) if path else None
        self._temp: Path | None = None  # None: written to as it is (stdout, a pipe)
        self._mode = "wb" if binary else "w"
        if self.path is None:
            if binary:
                raise Failure("this format is binary: write it to a file, with -o", EXIT_USAGE)
            self.stream: IO[Any] = sys.stdout
            return
        if self.path.is_dir():
            raise Failure(f"cannot write {path}: it is a folder; give a file name", EXIT_USAGE)
        target = self.path.resolve() if self.path.is_symlink() else self.path
        if target.exists() and not target.is_file():  # a pipe or a device: write to it
            self.stream = self._open(target)
            return
        if not target.parent.is_dir():
            raise Failure(
                f"cannot write {path}: the folder {target.parent} does not exist", EXIT_USAGE
            )
        if target.exists() and not os.access(target, os.W_OK):
            raise Failure(f"cannot write {path}: permission denied", EXIT_USAGE)
        self.path = target
        try:
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
        except OSError as exc:
            raise Failure(
                f"cannot write in {target.parent}: {exc.strerror or type(exc).__name__}",
                EXIT_USAGE,
            ) from None
        self._temp = Path(temp)
        if target.exists():
            shutil.copymode(target, self._temp)
        else:  # as open() would have made it, not mkstemp's 0600
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(fd, 0o666 & ~umask)
        self.stream = os.fdopen(fd, self._mode, encoding=None if binary else "utf-8")

    def _open(self, path: Path) -> IO[Any]:
        try:
            if self._mode == "wb":
                return path.open("wb")
            return path.open("w", encoding="utf-8")
        except OSError as exc:
            raise Failure(
                f"cannot write {path}: {exc.strerror or type(exc).__name__}", EXIT_USAGE
            ) from None

    @property
    def file(self) -> Path | None:
        """The file being written (under its temporary name), if it is a file."""
        return self._temp

    def commit(self) -> None:
        """The dump is complete: put it in place."""
        if self.path is None:
            return
        self.stream.close()
        if self._temp is not None:
            os.replace(self._temp, self.path)
            self._temp = None

    def settle(self, count: int) -> str:
        """The dump did not finish: keep what it wrote beside the target; say where."""
        if self.path is not None:
            self.stream.close()
        if self.path is None or self._temp is None:
            return "the output holds them, closed so that it parses"
        kept = f"; {self.path} was left as it was" if self.path.exists() else ""
        if not count:
            self._temp.unlink(missing_ok=True)
            return f"nothing was written{kept}"
        partial = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        os.replace(self._temp, partial)
        return f"they are in {partial}{kept}"


def summary(writer: PageWriter, elapsed: float, *, resumed: int = 0) -> None:
    """The line a dump ends with: how many features, how fast, and what was odd."""
    unconvertible = (
        f"; {writer.unconvertible:,} geometries could not be converted and are null"
        if writer.unconvertible
        else ""
    )
    fetched = writer.count - resumed
    speed = f"{elapsed:.1f} s ({fetched / max(elapsed, 1e-9):,.0f}/s)"
    done = f"{writer.count:,} features in {speed}"
    if resumed:
        done = f"{writer.count:,} features ({resumed:,} from before, {fetched:,} in {speed})"
    print(done + unconvertible, file=sys.stderr)


def progress(enabled: bool) -> Any:
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
