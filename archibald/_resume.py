"""Dumps that survive being killed: ``archibald dump URL -o FILE --resume``.

The features are written, in object-id order, to ``FILE.incomplete``; after each page the
dump records in ``FILE.resume.json`` how many bytes of it are whole and the last object id
they hold. Killed at any moment (``kill -9``, a lost machine), the same command cuts the
data back to the last record and crawls on from the next id: features up to that id came
from the first crawl, the rest from the next, so each is in the file once. At the end the
data is moved into place and the record removed.

A record belongs to one dump: the same layer, filter, fields, format and spatial reference,
and a layer whose fields or geometry changed since cannot be continued (the file would mix
two shapes); both are refused with a message saying what differs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ._cli_output import EXIT_USAGE, Failure
from .layers import LayerInfo
from .layers._model import schema_changes

__all__ = ["ResumableOutput"]

_VERSION = 1
_SYNC_EVERY = 5.0  # seconds between fsyncs: a checkpoint survives a crash of the machine


class ResumableOutput:
    """The data file and its record, for a dump to *path* that can be continued."""

    def __init__(self, path: str | None) -> None:
        if path is None or path == "-":
            raise Failure("--resume needs -o FILE: stdout cannot be continued", EXIT_USAGE)
        target = Path(path)
        target = target.resolve() if target.is_symlink() else target
        if target.is_dir() or (target.exists() and not target.is_file()):
            raise Failure(f"--resume needs a regular file; {path} is not one", EXIT_USAGE)
        if not target.parent.is_dir():
            raise Failure(
                f"cannot write {path}: the folder {target.parent} does not exist", EXIT_USAGE
            )
        self.path = target
        self.data = target.with_name(target.name + ".incomplete")
        self.record = target.with_name(target.name + ".resume.json")
        self.stream: IO[str] | None = None
        self._state: dict[str, Any] = {}
        self._synced = time.monotonic()

    def open(self, dump: Mapping[str, Any], info: LayerInfo) -> dict[str, Any]:
        """Open the data for writing: continued where the record says, if there is one for
        this *dump*, else from nothing. Returns the state (``last_id``, ``count``, ...)."""
        shape = {
            "id_field": info.object_id_field,
            "geometry_type": info.geometry_type,
            "schema": [[f.get("name"), f.get("type")] for f in info.fields],
        }
        state = self._read()
        if state is None:
            self._state = {"archibald_dump": _VERSION, **dump, **shape}
            self._state.update(last_id=None, count=0, bytes=0, unconvertible=0)
            self.stream = self.data.open("w", encoding="utf-8")
            self._write_record()
            return self._state
        _check_same(state, dump, shape, self.record)
        if not self.data.exists() and self.path.exists():  # stopped as it finished
            raise Failure(
                f"{self.path} looks complete (the dump stopped after moving it into place): "
                f"remove {self.record} to dump again"
            )
        size = self.data.stat().st_size if self.data.exists() else -1
        if size < state["bytes"]:
            raise Failure(
                f"cannot continue: {self.data} holds {max(size, 0):,} bytes but "
                f"{state['bytes']:,} were recorded; remove {self.record} to start over",
            )
        self._state = state
        stream = self.data.open("r+", encoding="utf-8")
        stream.truncate(state["bytes"])  # what was written after the last record goes
        stream.seek(state["bytes"])
        self.stream = stream
        return state

    def _read(self) -> dict[str, Any] | None:
        try:
            text = self.record.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Failure(f"cannot read {self.record}: {exc.strerror}") from None
        try:
            state = json.loads(text)
        except ValueError:
            state = None
        if not isinstance(state, dict) or state.get("archibald_dump") != _VERSION:
            raise Failure(
                f"{self.record} is not a record of an archibald dump this version can "
                "continue; remove it to start over"
            )
        return state

    def checkpoint(self, last_id: int, count: int, unconvertible: int) -> None:
        """Everything up to *last_id* is written: record it (the data first)."""
        assert self.stream is not None
        self.stream.flush()  # the bytes reach the system before the record that counts them
        sync = time.monotonic() - self._synced >= _SYNC_EVERY
        if sync:
            os.fsync(self.stream.fileno())
            self._synced = time.monotonic()
        self._state.update(
            last_id=last_id, count=count, bytes=self.stream.tell(), unconvertible=unconvertible
        )
        self._write_record(sync=sync)

    def _write_record(self, *, sync: bool = True) -> None:
        temp = self.record.with_name(self.record.name + ".tmp")
        with temp.open("w", encoding="utf-8") as out:
            json.dump(self._state, out)
            if sync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temp, self.record)  # the record is old or new, never half-written

    def commit(self) -> None:
        """The dump is complete: the data takes the file's place; the record goes."""
        assert self.stream is not None
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        os.replace(self.data, self.path)
        self.record.unlink(missing_ok=True)

    def keep(self) -> str | None:
        """The dump stopped: keep the data and its record; say how to go on (None: it
        had not begun)."""
        if self.stream is None:
            return None
        self.stream.close()
        return (
            f"{self._state.get('count', 0):,} of them are kept in {self.data}; run the same "
            "command again to continue"
        )


def _check_same(
    state: Mapping[str, Any], dump: Mapping[str, Any], shape: Mapping[str, Any], record: Path
) -> None:
    """Refuse to continue a different dump, or a layer whose shape changed."""
    options = {"url": "the layer", "where": "--where", "fields": "--fields"}
    options |= {"format": "--format", "out_sr": "--out-sr"}
    for key, option in options.items():
        if state.get(key) != dump.get(key):
            raise Failure(
                f"cannot continue: the dump in progress ({record}) has {option} "
                f"{state.get(key)!r}, not {dump.get(key)!r}; run the same command, or remove "
                f"{record} to start over",
                EXIT_USAGE,
            )
    changes = _shape_changes(state, shape)
    if changes:
        raise Failure(
            f"cannot continue: the layer changed since the dump began ({changes}); "
            f"remove {record} to start over"
        )


def _shape_changes(state: Mapping[str, Any], shape: Mapping[str, Any]) -> str:
    others = [
        ("object-id field", state.get("id_field"), shape["id_field"]),
        ("geometry type", state.get("geometry_type"), shape["geometry_type"]),
    ]
    return "; ".join(schema_changes(dict(state.get("schema") or []), dict(shape["schema"]), others))
