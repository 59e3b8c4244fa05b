"""The control API of FakeArcGIS for tests that change a layer between two reads.

`EditingControls` is the part of `FakeArcGIS` that edits: the one path every edit takes,
over HTTP (applyEdits) or from a test (`EditingControls.edit`), so that the rules, the
change log, the editor stamps, the edit dates and the layer's caches stay consistent;
schema changes (`add_field`, `delete_field`); and the admin's ``cleanupChangeTracking``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import anyio

from ._changes import (
    ANONYMOUS_EDITOR,
    EDITOR_FIELDS,
    ChangeKind,
    ChangeLog,
    LayerTracking,
    stamp_edits,
    tracks_changes,
)
from ._data import FakeLayer, FakeService
from ._wire import Refusal

__all__ = ["EditingControls"]

_RESULT_KINDS: tuple[tuple[str, ChangeKind], ...] = (
    ("addResults", "add"),
    ("updateResults", "update"),
    ("deleteResults", "delete"),
)


class EditingControls:
    """The wall clock, edits, schema changes and change-tracking cleanup (`FakeArcGIS`
    inherits these)."""

    services: dict[str, FakeService]
    clock_skew_ms: int
    _rng: random.Random
    _epoch_ms: int
    _last_gen: int

    # -- the wall clock ----------------------------------------------------------------

    def now_ms(self) -> int:
        """The emulator's wall clock in epoch milliseconds, skew included: *epoch* plus
        anyio's clock (virtual time under Trio's MockClock or `AutojumpEventLoop`, so
        days pass at once) plus `clock_skew_ms`. Outside an event loop, *epoch*."""
        return self._true_ms() + self.clock_skew_ms

    def _true_ms(self) -> int:
        try:
            elapsed = anyio.current_time()
        except anyio.NoEventLoopError:
            elapsed = 0.0
        return self._epoch_ms + int(elapsed * 1000)

    def _next_gen(self) -> int:
        """A new change-tracking generation: the true wall clock in ms, always increasing."""
        self._last_gen = max(self._true_ms(), self._last_gen + 1)
        return self._last_gen

    # -- for tests ---------------------------------------------------------------------

    def edit(
        self,
        layer: FakeLayer | str,
        *,
        adds: Sequence[Mapping[str, Any]] = (),
        updates: Sequence[Mapping[str, Any]] = (),
        deletes: Sequence[int] = (),
        at_ms: int | None = None,
        user: str | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """Edit *layer* as applyEdits does (rules, change log, editor stamps and all).

        All or nothing, as applyEdits with ``rollbackOnFailure=true``; the layer's
        capabilities are not checked (this is the owner's door, not the public one).

        Args:
            layer: The layer (as `add_feature_layer` returned it) or its URL or path
                (``.../FeatureServer/0``).
            adds: Esri JSON features to add (their object ids are assigned).
            updates: Esri JSON features to update, each with its object id.
            deletes: Object ids to delete.
            at_ms: The edit date editor tracking records (epoch ms); by default
                `now_ms`. An earlier one models a long transaction whose edits become
                visible after later-dated ones: the change-tracking generation is
                still the commit's.
            user: The editor recorded; by default ``esri_anonymous``.

        Returns:
            The applyEdits results: ``addResults``, ``updateResults``, ``deleteResults``.

        Raises:
            ValueError: An item was refused (nothing was applied), or the layer cannot
                be edited.
        """
        target = self._find_layer(layer)
        try:
            results = self._apply_tracked_edits(
                target,
                list(adds),
                list(updates),
                list(deletes),
                rollback_on_failure=True,
                user=ANONYMOUS_EDITOR if user is None else user,
                at_ms=at_ms,
            )
        except Refusal as refusal:
            raise ValueError("; ".join(refusal.details) or refusal.message) from None
        failures = [
            f"{key}: {item.get('objectId')}: {item['error']['description']}"
            for key, items in results.items()
            for item in items
            if not item["success"]
        ]
        if failures:
            raise ValueError(f"FakeArcGIS refused the edit of {target.url}: {'; '.join(failures)}")
        return results

    def add_field(self, layer: FakeLayer | str, field: Mapping[str, Any]) -> None:
        """Add a field (an Esri field definition, ``name`` and ``type`` at least) to
        *layer*, null in every feature, as an owner's ``addToDefinition`` does; its
        ``schemaLastEditDate`` moves to `now_ms`."""
        target = self._find_layer(layer)
        name = field.get("name")
        if not isinstance(name, str) or not name or not isinstance(field.get("type"), str):
            raise ValueError(f"a field needs a name and a type, got {dict(field)!r}")
        if name.lower() in {f["name"].lower() for f in target.fields}:
            raise ValueError(f"{target.url} already has a field {name!r}")
        target.fields.append({"alias": name, "nullable": True, "editable": True, **field})
        self._schema_changed(target)

    def delete_field(self, layer: FakeLayer | str, name: str) -> None:
        """Delete the field *name* from *layer* and its features, as an owner's
        ``deleteFromDefinition`` does; its ``schemaLastEditDate`` moves to `now_ms`."""
        target = self._find_layer(layer)
        found = next((f for f in target.fields if f["name"].lower() == name.lower()), None)
        if found is None:
            raise ValueError(f"{target.url} has no field {name!r}")
        protected = {target.object_id_field, *(target.tracking.edit_fields or {}).values()}
        if found["name"] in protected or found["type"] == "esriFieldTypeGlobalID":
            raise ValueError(f"{found['name']!r} is a system field of {target.url}: kept")
        if target.lazy:
            raise ValueError("a lazily generated layer's fields cannot change")
        target.fields.remove(found)
        for oid in target.object_ids:
            target.row(oid)["attributes"].pop(found["name"], None)
        self._schema_changed(target)

    def cleanup_change_tracking(self, service: str, min_server_gen: int | None = None) -> None:
        """Forget *service*'s tracked changes up to *min_server_gen* (default: all, up
        to each layer's current generation), as the admin ``cleanupChangeTracking``:
        extracting from an older generation is then refused."""
        found = self.services.get(f"{service.strip('/')}/FeatureServer")
        if found is None:
            raise ValueError(f"no FeatureServer named {service!r}")
        for layer in found.layers.values():
            layer.tracking.changes.cleanup(min_server_gen)

    # -- what the emulator uses ---------------------------------------------------------

    def _start_tracking(self, layer: FakeLayer) -> None:
        """Start a new layer's change log and edit dates now."""
        gen, now = self._next_gen(), self.now_ms()
        layer.tracking.changes = ChangeLog(min_server_gen=gen, server_gen=gen)
        layer.tracking.data_last_edit_date = layer.tracking.schema_last_edit_date = now

    def _track_editors(self, layer: FakeLayer) -> None:
        """Give *layer* the editor-tracking fields, stamping its features as created now."""
        names = {role: spec["name"] for role, spec in EDITOR_FIELDS.items()}
        existing = {f["name"] for f in layer.fields}
        for spec in EDITOR_FIELDS.values():
            if spec["name"] not in existing:
                layer.fields.append({**spec, "alias": spec["name"], "editable": False})
        layer.tracking.edit_fields = names
        if layer.lazy:
            return
        now = self.now_ms()
        for oid in layer.object_ids:
            attributes = layer.row(oid)["attributes"]
            for role, value in _creation(names, now):
                attributes.setdefault(names[role], value)
        layer.changed()

    def _refuse_untracked(self, service: FakeService) -> None:
        """Refuse extractChanges on a service without ``ChangeTracking``."""
        if not tracks_changes(list(service.layers.values())):
            raise Refusal(
                400,
                "Requested operation is not supported by this service.",
                ["The service does not have the ChangeTracking capability."],
            )

    def _apply_tracked_edits(
        self,
        layer: FakeLayer,
        adds: Sequence[Any],
        updates: Sequence[Any],
        deletes: Sequence[Any],
        *,
        rollback_on_failure: bool,
        user: str,
        at_ms: int | None,
    ) -> dict[str, list[dict[str, Any]]]:
        """The one path of every edit: stamp, apply, log the applied changes."""
        stamp_at = self.now_ms() if at_ms is None else at_ms
        adds, updates = stamp_edits(layer.tracking, adds, updates, user=user, at_ms=stamp_at)
        results = layer.apply_edits(
            adds, updates, deletes, rollback_on_failure=rollback_on_failure, rng=self._rng
        )
        applied = [
            (item["objectId"], kind)
            for key, kind in _RESULT_KINDS
            for item in results[key]
            if item["success"]
        ]
        if applied:
            tracking: LayerTracking = layer.tracking
            tracking.changes.record(self._next_gen(), applied)
            tracking.data_last_edit_date = max(tracking.data_last_edit_date, stamp_at)
        return results

    def _schema_changed(self, layer: FakeLayer) -> None:
        layer.tracking.schema_last_edit_date = self.now_ms()
        layer.changed()

    def _find_layer(self, layer: FakeLayer | str) -> FakeLayer:
        """The layer itself, or the one its URL or path names."""
        if isinstance(layer, FakeLayer):
            return layer
        for candidate in self._layers():
            if layer.rstrip("/").endswith(candidate.url):
                return candidate
        raise ValueError(f"no layer at {layer!r}; pass the FakeLayer or its URL")

    def _layers(self) -> Iterator[FakeLayer]:
        for service in self.services.values():
            yield from service.layers.values()


def _creation(names: Mapping[str, str], now: int) -> Iterable[tuple[str, Any]]:
    yield from (
        ("creatorField", ANONYMOUS_EDITOR),
        ("creationDateField", now),
        ("editorField", ANONYMOUS_EDITOR),
        ("editDateField", now),
    )
