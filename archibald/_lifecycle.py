"""Where an object that owns background work or connections is in its life."""

from __future__ import annotations

import enum

__all__ = ["Lifecycle"]


class Lifecycle(enum.Enum):
    """The life of an auth or a client: made, inside its ``async with``, left it.

    Only an active object does its work; using one that is idle or closed raises
    `LifecycleError` saying which. A closed one may be entered again.
    """

    IDLE = "idle"
    ACTIVE = "active"
    CLOSED = "closed"
