"""What an edit hands back: one result per feature, in the caller's order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import attrs

__all__ = ["EditKind", "EditResult", "EditResults", "EditStatus"]

EditKind = Literal["add", "update", "delete"]
EditStatus = Literal["applied", "failed", "rolled_back", "not_sent", "unknown"]


@attrs.frozen(kw_only=True)
class EditResult:
    """The outcome of one edit (one feature added, updated or deleted).

    Attributes:
        kind: ``"add"``, ``"update"`` or ``"delete"``.
        index: The edit's position in the caller's list of adds, updates or deletes.
        status: ``"applied"``; ``"failed"`` (the server refused this edit);
            ``"rolled_back"`` (it was sent in a batch that the server undid because
            some edit of it failed: this one may be fine); ``"not_sent"`` (an earlier
            batch was rolled back, or it is too big to send); ``"unknown"`` (the
            connection was lost after sending: check the layer).
        object_id: The feature's object id, when the server gave one.
        global_id: The feature's global id, when the server gave one.
        error_code: The server's error code, if it gave one.
        error_description: What went wrong, if anything did.
    """

    kind: EditKind
    index: int
    status: EditStatus
    object_id: int | None = None
    global_id: str | None = None
    error_code: int | None = None
    error_description: str | None = None

    @property
    def success(self) -> bool:
        """Whether the edit was applied."""
        return self.status == "applied"


@attrs.frozen(kw_only=True)
class EditResults:
    """The outcome of every edit of a call, each list in the order of the caller's input.

    Attributes:
        adds: The results of the adds.
        updates: The results of the updates.
        deletes: The results of the deletes.
    """

    adds: tuple[EditResult, ...] = ()
    updates: tuple[EditResult, ...] = ()
    deletes: tuple[EditResult, ...] = ()

    def __iter__(self) -> Iterator[EditResult]:
        """Every result: the adds, then the updates, then the deletes."""
        yield from self.adds
        yield from self.updates
        yield from self.deletes

    def __len__(self) -> int:
        return len(self.adds) + len(self.updates) + len(self.deletes)

    @property
    def ok(self) -> bool:
        """Whether every edit was applied."""
        return all(result.success for result in self)

    @property
    def failures(self) -> list[EditResult]:
        """The edits that were not applied (or may not have been), in order."""
        return [result for result in self if not result.success]

    def count(self, status: EditStatus, kind: EditKind | None = None) -> int:
        """How many edits (of *kind*, or of any kind) ended with *status*."""
        return sum(1 for r in self if r.status == status and kind in (None, r.kind))
