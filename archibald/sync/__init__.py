"""Keeping a local copy of a layer current: `LayerMirror`, a GeoPackage brought up to date
by each `LayerMirror.sync`.

How a sync finds what changed, best first (the layer's metadata says which it can use):

1. ``extractChanges``: a layer of a service with change tracking is asked for the ids
   added, updated and deleted since the server generation the mirror kept.
2. ``editDate``: a layer with editor tracking is asked for the features edited since the
   newest edit date the mirror saw (less a safety window, for clocks that differ and
   transactions that commit late), and its id list shows what was deleted.
3. ``full``: every feature is crawled again into a new table, swapped in for the old one.

Each sync is one SQLite transaction: stopped at any point (an error, Ctrl-C, ``kill -9``),
the file stays as the last complete sync left it.

The modules: `_mirror` (`LayerMirror`, `SyncReport`, the record kept in the file) and
`_strategies` (how each strategy reads the server).
"""

from ._mirror import LayerMirror, SyncReport

__all__ = ["LayerMirror", "SyncReport"]
