"""What SQLite's errors mean for a GeoPackage a user gave: one typed error that says why
and what to do, instead of SQLite's own exception."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .exceptions import ArchieClientError

__all__ = ["storage_error"]


def storage_error(path: Path, exc: sqlite3.Error, *, writing: bool = True) -> ArchieClientError:
    """What SQLite's refusal to use *path* (to write it, or else to read it) means."""
    reason = str(exc)
    if "locked" in reason or "busy" in reason:
        hint = "another program is writing it (another sync?): wait for it, or use another file"
    elif "full" in reason:
        hint = "the disk is full: free some space and run again"
    elif writing:
        hint = "nothing of this write was kept; the file is as it was before it"
    else:
        hint = "the file may be damaged; sync or dump into a new file"
    verb = "write" if writing else "read"
    return ArchieClientError(f"could not {verb} {str(path)!r} ({reason}): {hint}")
