"""applyEdits: edits sent in batches, each answer read into one result per edit, and
writes never sent twice.

Which failure means what (the rule itself is `archibald._responses.may_have_applied`):

- ArcGIS answered an error whose details say the operation was rolled back (or per-item
  codes 1003, 1012, 2000): the batch's edits are ``rolled_back``, not an exception.
- ArcGIS answered any other error (permission, invalid parameters): raised, typed;
  but once some edits of the call were applied, that batch's edits are ``failed``.
- A web server refused the body's size (HTTP 413): nothing was applied, so the batch
  is cut in two and each half sent (down to one edit, which then ``failed``).
- The connection broke after sending, the client's timeout passed, a gateway gave up
  (502, 504, another 5xx without an envelope): the batch's outcome is ``unknown``. It
  is not sent again; `EditOutcomeUnknownError` hands its edits back to the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .._jobs import JobFailed, wait_for_job
from .._responses import may_have_applied
from .._validate import is_whole
from ..exceptions import (
    ArcGISError,
    ArchieError,
    EditOutcomeUnknownError,
    InvalidParameterError,
    LayerCapabilityError,
    ServiceError,
)
from ._edit_batches import Batch, cut, esri_feature, prepare, read_items, whole_batch
from ._edit_results import EditKind, EditResult, EditResults
from ._model import LayerInfo, attribute
from ._options import sql_literal

if TYPE_CHECKING:
    from .._client import ArchieClient

__all__ = ["EditOptions", "Editor", "plan_upsert"]

_UPSERT_CHUNK = 200  # keys per lookup query


def _positive(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_whole(value, 1):
        raise InvalidParameterError(f"{attribute.name} must be a whole number >= 1: {value!r}")


@attrs.frozen(kw_only=True)
class EditOptions:
    """The settings of one apply_edits call, checked once."""

    rollback_on_failure: bool = True
    use_global_ids: bool = False
    batch_size: int = attrs.field(default=1000, validator=_positive)
    max_batch_bytes: int = attrs.field(default=1_800_000, validator=_positive)
    background: bool = False
    spatial_reference: Mapping[str, Any] | None = None


class Editor:
    """Sends one call's edits to a layer (see the module's docstring)."""

    def __init__(
        self, client: ArchieClient, path: str, url: str, info: LayerInfo, options: EditOptions
    ) -> None:
        self._client = client
        self._path = path
        self._url = url
        self._info = info
        self._options = options
        advanced = info.raw.get("advancedEditingCapabilities")
        self._background = options.background and bool(
            isinstance(advanced, Mapping) and advanced.get("supportsAsyncApplyEdits")
        )

    async def apply(
        self, adds: Sequence[Any], updates: Sequence[Any], deletes: Sequence[Any]
    ) -> EditResults:
        """Send every edit; the results in input order.

        Raises:
            EditOutcomeUnknownError: Some batches' outcomes are unknown.
            LayerCapabilityError: The layer does not offer an edit asked for.
        """
        check_capabilities(self._info, self._url, adds=adds, updates=updates, deletes=deletes)
        options = self._options
        items = prepare(
            adds,
            updates,
            deletes,
            object_id_field=self._info.object_id_field,
            spatial_reference=options.spatial_reference,
            use_global_ids=options.use_global_ids,
        )
        batches, too_big = cut(items, count=options.batch_size, max_bytes=options.max_batch_bytes)
        found: list[EditResult] = []
        for item in too_big:
            found += whole_batch(
                [item],
                "not_sent",
                f"too big to send: {item.size:,} bytes encoded, over max_batch_bytes "
                f"({options.max_batch_bytes:,})",
            )
        if options.rollback_on_failure:
            found += await self._one_by_one(batches)
        else:
            found += await self._concurrently(batches)
        results = _in_order(found)
        unknown = [r for r in results if r.status == "unknown"]
        if unknown:
            sources = {"add": adds, "update": updates, "delete": deletes}
            picked = {k: [sources[k][r.index] for r in unknown if r.kind == k] for k in sources}
            raise EditOutcomeUnknownError(
                f"{len(unknown):,} edits were sent to {self._url} but no answer came back "
                f"({unknown[0].error_description}): they may or may not have been applied, "
                "and were not sent again. Check the layer for them (the error's adds, "
                "updates and deletes) and send again what is missing.",
                adds=picked["add"],
                updates=picked["update"],
                deletes=picked["delete"],
                results=results,
            )
        return results

    async def _one_by_one(self, batches: Sequence[Batch]) -> list[EditResult]:
        """Batches in turn, stopping at the first that was not wholly applied: with
        rollback, the server undoes a failed batch, but not the batches before it."""
        found: list[EditResult] = []
        for position, batch in enumerate(batches):
            try:
                results = await self._send(batch)
            except ArchieError as exc:
                if not _settled(found):
                    raise
                results = whole_batch(batch, "failed", str(exc), _code(exc))
            found += results
            trouble = next((r for r in results if not r.success), None)
            if trouble is not None:
                reason = "its outcome is unknown" if trouble.status == "unknown" else "it failed"
                for rest in batches[position + 1 :]:
                    found += whole_batch(
                        rest, "not_sent", f"not sent: an earlier batch stopped the edits ({reason})"
                    )
                break
        return found

    async def _concurrently(self, batches: Sequence[Batch]) -> list[EditResult]:
        """Every batch, up to the client's limit at once; none is cancelled because
        another failed (a cancelled write's outcome would be unknown)."""
        found: list[EditResult] = []
        errors: list[ArchieError] = []
        limiter = anyio.CapacityLimiter(self._client.max_concurrent_requests)

        async def run(batch: Batch) -> None:
            async with limiter:
                try:
                    found.extend(await self._send(batch))
                except ArchieError as exc:
                    errors.append(exc)
                    found.extend(whole_batch(batch, "failed", str(exc), _code(exc)))

        async with anyio.create_task_group() as tg:
            for batch in batches:
                tg.start_soon(run, batch)
        if errors and not _settled(found):
            raise errors[0]
        return found  # a refused batch's edits are failed: the results say what was applied

    async def _send(self, batch: Batch) -> list[EditResult]:
        """Send one batch; its results (a request-level refusal is raised)."""
        options = self._options
        form = batch.form(
            rollback_on_failure=options.rollback_on_failure, use_global_ids=options.use_global_ids
        )
        if self._background:
            form["async"] = True
        submitted = False
        try:
            body = await self._client.post_json(f"{self._path}/applyEdits", data=form)
            submitted = True
            status_url = body.get("statusUrl")
            if self._background and isinstance(status_url, str):
                body = await self._wait_for_job(status_url)
        except _JobFailed as exc:
            raise exc.error from None
        except ArchieError as exc:
            if isinstance(exc, ArcGISError) and _rolled_back(exc):
                return whole_batch(batch, "rolled_back", _cause(exc), exc.code)
            # A job that was accepted and then could not be followed may have run.
            if may_have_applied(exc) or submitted:
                return whole_batch(batch, "unknown", str(exc))
            if isinstance(exc, ServiceError) and exc.code == 413:  # body too large
                if len(batch.items) > 1:
                    return await self._halves(batch)
                return whole_batch(batch, "failed", f"the server refused its size: {exc}", 413)
            raise
        return read_items(batch, body)

    async def _halves(self, batch: Batch) -> list[EditResult]:
        """*batch* sent in two halves, as two batches in turn are: with rollback, the
        second is not sent once the first was not wholly applied; a refused second half
        is reported beside an applied first, not raised."""
        first, second = batch.halves()
        done = await self._send(first)
        if self._options.rollback_on_failure and not all(r.success for r in done):
            reason = "not sent: the other half of its batch was not wholly applied"
            return [*done, *whole_batch(second, "not_sent", reason)]
        try:
            rest = await self._send(second)
        except ArchieError as exc:
            if not _settled(done):
                raise
            rest = whole_batch(second, "failed", str(exc), _code(exc))
        return [*done, *rest]

    async def _wait_for_job(self, status_url: str) -> dict[str, Any]:
        """Poll a background applyEdits job until it ends; its result's body."""
        try:
            result_url = await wait_for_job(self._client, status_url, "background applyEdits")
        except JobFailed as exc:
            raise _JobFailed(exc) from exc
        try:
            return await self._client.get_json(url=result_url)
        except ArcGISError as exc:  # the job's answer: a refusal, or a rollback
            if _rolled_back(exc):
                raise
            raise _JobFailed(exc) from exc


class _JobFailed(Exception):
    """A background job that said it failed, or whose result is an error (other than a
    rollback): its error is raised to the caller."""

    def __init__(self, error: ArcGISError) -> None:
        super().__init__(str(error))
        self.error = error


def check_capabilities(
    info: LayerInfo,
    url: str,
    *,
    adds: Sequence[Any] = (),
    updates: Sequence[Any] = (),
    deletes: Sequence[Any] = (),
) -> None:
    """Refuse edits the layer does not advertise (a 10.0 server's ``Editing`` alone
    allows all three)."""
    have = {c.lower() for c in info.capabilities}
    if "editing" in have and not have & {"create", "update", "delete"}:
        return
    for items, capability in ((adds, "Create"), (updates, "Update"), (deletes, "Delete")):
        if items and capability.lower() not in have:
            raise LayerCapabilityError(
                f"{url} does not offer {capability} (its capabilities: "
                f"{', '.join(sorted(info.capabilities)) or 'none'}); nothing was sent"
            )


def _settled(results: Iterable[EditResult]) -> bool:
    """Whether some of *results* were applied, or may have been: then a refused batch is
    reported among them rather than raised, which would hide them."""
    return any(r.success or r.status == "unknown" for r in results)


def _code(error: ArchieError) -> int | None:
    code = getattr(error, "code", None)
    return code if is_whole(code) else None


def _rolled_back(error: ArcGISError) -> bool:
    return any("rolled back" in text.lower() for text in (error.message, *error.details))


def _cause(error: ArcGISError) -> str:
    causes = [d for d in error.details if "rolled back" not in d.lower()]
    return f"{'; '.join(causes) or error.message} (the whole batch was rolled back)"


def _in_order(results: Iterable[EditResult]) -> EditResults:
    by_kind: dict[EditKind, list[EditResult]] = {"add": [], "update": [], "delete": []}
    for result in results:
        by_kind[result.kind].append(result)
    ordered = {k: tuple(sorted(v, key=lambda r: r.index)) for k, v in by_kind.items()}
    return EditResults(adds=ordered["add"], updates=ordered["update"], deletes=ordered["delete"])


# -- upsert --------------------------------------------------------------------------------

Lookup = Callable[[str, list[str]], Awaitable[list[Mapping[str, Any]]]]


@attrs.frozen(kw_only=True)
class UpsertPlan:
    """Which of the caller's features are adds and which updates (with their ids)."""

    adds: list[dict[str, Any]]
    add_positions: list[int]
    updates: list[dict[str, Any]]
    update_positions: list[int]

    def renumber(self, results: EditResults) -> EditResults:
        """*results* with each index the feature's position in the caller's list."""
        return EditResults(
            adds=tuple(attrs.evolve(r, index=self.add_positions[r.index]) for r in results.adds),
            updates=tuple(
                attrs.evolve(r, index=self.update_positions[r.index]) for r in results.updates
            ),
        )

    def unknown(
        self, error: EditOutcomeUnknownError, features: Sequence[Any]
    ) -> EditOutcomeUnknownError:
        """*error* as the caller sees it: the caller's own features (not the plan's
        converted ones), the results indexed by position in the caller's list."""
        results = self.renumber(error.results)
        return EditOutcomeUnknownError(
            str(error),
            adds=[features[r.index] for r in results.adds if r.status == "unknown"],
            updates=[features[r.index] for r in results.updates if r.status == "unknown"],
            results=results,
        )


async def _existing_rows(
    values: Sequence[Any], key: str, oid: str, url: str, lookup: Lookup
) -> dict[Any, int]:
    """The object id of each row whose *key* is one of *values*, by its key value."""
    existing: dict[Any, int] = {}
    for start in range(0, len(values), _UPSERT_CHUNK):
        chunk = values[start : start + _UPSERT_CHUNK]
        where = f"{key} IN ({', '.join(sql_literal(v) for v in chunk)})"
        for row in await lookup(where, [key, oid]):
            value, object_id = attribute(row, key), attribute(row, oid)
            if value in existing and existing[value] != object_id:
                raise InvalidParameterError(
                    f"{url} has more than one row with {key} = {value!r}: the key must be "
                    "unique on the layer; nothing was sent"
                )
            existing[value] = object_id
    return existing


def _matching_key(value: Any, existing: Mapping[Any, int]) -> Any:
    """The key of *existing* that *value* names: itself, else, for text, the one key the
    server returned that differs only in case (a server that compares text without
    regard to case, as SQL Server does by default, found it by *value*)."""
    if value in existing:
        return value
    if isinstance(value, str):
        folded = [k for k in existing if isinstance(k, str) and k.casefold() == value.casefold()]
        if len(folded) == 1:
            return folded[0]
    return None


async def plan_upsert(
    features: Sequence[Any],
    key: str,
    info: LayerInfo,
    url: str,
    lookup: Lookup,
    spatial_reference: Mapping[str, Any] | None,
) -> UpsertPlan:
    """Find which *features* exist on the layer (by *key*), before anything is sent.

    Raises:
        InvalidParameterError: The key is not a field, a feature lacks it, or two
            features (or two rows of the layer) share a key value.
    """
    field = next((f for f in info.fields if str(f.get("name", "")).lower() == key.lower()), None)
    if field is None:
        raise InvalidParameterError(f"{url} has no field {key!r} to match features by")
    key = str(field["name"])
    oid = info.object_id_field
    esri = []
    positions: dict[Any, int] = {}
    for index, feature in enumerate(features):
        converted = esri_feature(
            feature,
            kind="feature",
            index=index,
            object_id_field=oid,
            spatial_reference=spatial_reference,
            need_object_id=False,
        )
        value = attribute(converted["attributes"], key)
        if value is None:
            raise InvalidParameterError(f"feature {index} has no value for the key {key!r}")
        sql_literal(value)  # text or a number, refused otherwise
        if value in positions:
            raise InvalidParameterError(
                f"features {positions[value]} and {index} share the key {key} = {value!r}"
            )
        positions[value] = index
        esri.append(converted)
    existing = await _existing_rows(list(positions), key, oid, url, lookup)
    plan = UpsertPlan(adds=[], add_positions=[], updates=[], update_positions=[])
    claimed: dict[Any, int] = {}  # object id -> the feature that updates it
    for value, index in positions.items():
        feature = esri[index]
        match = _matching_key(value, existing)
        if match is not None:
            object_id = existing[match]
            if object_id in claimed:
                raise InvalidParameterError(
                    f"features {claimed[object_id]} and {index} both match the row with "
                    f"{key} = {match!r} (the server compares text without regard to case); "
                    "nothing was sent"
                )
            claimed[object_id] = index
            feature["attributes"] = {
                k: v for k, v in feature["attributes"].items() if k.lower() != oid.lower()
            }
            feature["attributes"][oid] = object_id
            plan.updates.append(feature)
            plan.update_positions.append(index)
        else:
            plan.adds.append(feature)
            plan.add_positions.append(index)
    return plan
