"""Handles on services and layers: `FeatureLayer` (reading, editing, attachments),
`MapLayer`, and their services."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from .._urls import check_service_path
from ..exceptions import EditOutcomeUnknownError, InvalidParameterError
from ._attachments import AttachmentEditResult, AttachmentInfo, Attachments, Content
from ._edit_results import EditResults
from ._edits import EditOptions, Editor, check_capabilities, plan_upsert

if TYPE_CHECKING:
    from .._client import ArchieClient
from ._reading import LayerBase, with_kind

__all__ = ["FeatureLayer", "FeatureService", "MapLayer", "MapService"]


class FeatureLayer(LayerBase):
    """A layer of a FeatureServer: ``FeatureLayer(client, "Parcels", 0)``.

    ``service_path`` is the service below the client's base URL, with or without
    ``/FeatureServer``; `from_url` takes a full layer URL instead.
    """

    _kind = "FeatureServer"

    def _attachments(self) -> Attachments:
        return Attachments(self._client, self._path, self._url, self.info)

    @overload
    async def attachments(self, object_id: int) -> list[AttachmentInfo]: ...

    @overload
    async def attachments(
        self, *, object_ids: Iterable[int]
    ) -> dict[int, list[AttachmentInfo]]: ...

    async def attachments(
        self, object_id: int | None = None, *, object_ids: Iterable[int] | None = None
    ) -> list[AttachmentInfo] | dict[int, list[AttachmentInfo]]:
        """The attachments of the feature *object_id*, or of each of *object_ids* (a
        mapping of every object id given to its attachments, empty for none).

        Many features are listed in few requests (``queryAttachments``) when the layer
        advertises it, else one request per feature.

        Raises:
            LayerCapabilityError: The layer has no attachments (``hasAttachments``).
            NotFoundError: (Listing one feature at a time) a feature does not exist.
        """
        if (object_id is None) == (object_ids is None):
            raise InvalidParameterError("give object_id or object_ids=, not both")
        if object_ids is not None:
            return await self._attachments().of(object_ids)
        assert object_id is not None  # as checked above
        return (await self._attachments().of([object_id]))[object_id]

    @overload
    async def download_attachment(
        self, object_id: int, attachment_id: int, dest: None = None
    ) -> bytes: ...

    @overload
    async def download_attachment(
        self, object_id: int, attachment_id: int, dest: str | os.PathLike[str]
    ) -> Path: ...

    async def download_attachment(
        self, object_id: int, attachment_id: int, dest: str | os.PathLike[str] | None = None
    ) -> bytes | Path:
        """Download attachment *attachment_id* of feature *object_id*: its bytes, or,
        with *dest* (a file path), written there (the path is returned).

        The file is written beside *dest* and renamed once complete, so a failed
        download leaves no half file. The download is held in memory until then.

        Raises:
            LayerCapabilityError: The layer has no attachments.
            NotFoundError: No such attachment (as the server reports it).
        """
        return await self._attachments().download(object_id, attachment_id, dest)

    async def add_attachment(
        self,
        object_id: int,
        content: Content,
        *,
        name: str | None = None,
        content_type: str | None = None,
        keywords: str | None = None,
    ) -> AttachmentEditResult:
        """Upload a file as a new attachment of feature *object_id* (``addAttachment``).

        Args:
            object_id: The feature.
            content: The file's bytes, or its path (a ``str`` or `pathlib.Path`).
            name: The attachment's file name; by default the file's own (needed for
                bytes).
            content_type: Its media type; by default guessed from *name*.
            keywords: Keywords to store with it.

        Returns:
            The result, with the new attachment's id.

        Raises:
            LayerCapabilityError: The layer has no attachments.
            ServiceError: The server did not add it (the message says why; too big a
                file, a missing feature, no Create or Update capability...).
        """
        return await self._attachments().add(
            object_id, content, name=name, content_type=content_type, keywords=keywords
        )

    async def update_attachment(
        self,
        object_id: int,
        attachment_id: int,
        content: Content,
        *,
        name: str | None = None,
        content_type: str | None = None,
    ) -> AttachmentEditResult:
        """Replace the file of attachment *attachment_id* of feature *object_id*
        (``updateAttachment``); the arguments are those of `add_attachment`.

        Raises:
            LayerCapabilityError: The layer has no attachments.
            ServiceError: The server did not update it (the message says why).
        """
        return await self._attachments().update(
            object_id, attachment_id, content, name=name, content_type=content_type
        )

    async def delete_attachments(
        self, object_id: int, attachment_ids: Iterable[int]
    ) -> list[AttachmentEditResult]:
        """Delete attachments of feature *object_id* (``deleteAttachments``).

        Returns:
            One result per attachment id, in order; a failed one has ``success`` False
            and the server's error code and description.

        Raises:
            LayerCapabilityError: The layer has no attachments.
        """
        return await self._attachments().delete(object_id, attachment_ids)

    async def apply_edits(
        self,
        adds: Iterable[Mapping[str, Any]] = (),
        updates: Iterable[Mapping[str, Any]] = (),
        deletes: Iterable[int | str] = (),
        *,
        rollback_on_failure: bool = True,
        use_global_ids: bool = False,
        batch_size: int = 1000,
        max_batch_bytes: int = 1_800_000,
        spatial_reference: Mapping[str, Any] | None = None,
        background: bool = False,
    ) -> EditResults:
        """Add, update and delete features (applyEdits), in batches; one result per edit.

        Features are Esri JSON (``{"attributes", "geometry"}``) or GeoJSON Features
        (``properties`` become attributes; geometries are converted, polygon rings wound
        as Esri wants them). See the Editing guide for what each failure means.

        Args:
            adds: Features to add.
            updates: Features to update, each with its object id (an Esri attribute,
                or a GeoJSON property or ``id``).
            deletes: Object ids to delete (global ids with *use_global_ids*).
            rollback_on_failure: Ask the server to undo a batch in which an edit
                fails. Batches are then sent one after another, stopping at the first
                that fails (earlier batches stay applied; the rest are ``not_sent``);
                without it, batches go concurrently, up to the client's limit.
            use_global_ids: Identify features by global id instead of object id.
            batch_size: The most edits per request.
            max_batch_bytes: The largest request body; a bigger batch is cut (a server
                answering HTTP 413 gets its batch cut in two as well).
            spatial_reference: The spatial reference of the geometries, such as
                ``{"wkid": 2193}``, when it is not the layer's (GeoJSON: WGS84 unless
                given).
            background: Use the server's asynchronous applyEdits (polled until done)
                if the layer advertises ``supportsAsyncApplyEdits``.

        Raises:
            EditOutcomeUnknownError: Some edits were sent and no answer came back;
                they were not sent again (the error holds them, and every result).
            LayerCapabilityError: The layer does not offer Create, Update or Delete
                as asked; nothing was sent.
            InvalidParameterError: An edit cannot be sent (not a feature, a geometry
                that cannot be converted, an update without its object id).
            ArcGISError: The server refused a request (permission, parameters) before
                any edit was applied; after, the refused batch's edits are ``failed``.
        """
        options = EditOptions(
            rollback_on_failure=rollback_on_failure,
            use_global_ids=use_global_ids,
            batch_size=batch_size,
            max_batch_bytes=max_batch_bytes,
            background=background,
            spatial_reference=spatial_reference,
        )
        info = await self.info()
        editor = Editor(self._client, self._path, self._url, info, options)
        return await editor.apply(list(adds), list(updates), list(deletes))

    async def add_features(
        self, features: Iterable[Mapping[str, Any]], **options: Any
    ) -> EditResults:
        """Add *features*; the keywords are those of `apply_edits`."""
        return await self.apply_edits(adds=features, **options)

    async def update_features(
        self, features: Iterable[Mapping[str, Any]], **options: Any
    ) -> EditResults:
        """Update *features* (each with its object id); keywords as `apply_edits`."""
        return await self.apply_edits(updates=features, **options)

    async def delete_features(
        self,
        *,
        where: str | None = None,
        object_ids: Iterable[int] | None = None,
        **options: Any,
    ) -> EditResults:
        """Delete the features matching *where*, or those of *object_ids*.

        With *where*, the matching ids are listed first (a query), then deleted by id
        in batches, so that each feature gets its own result; a feature added after
        the listing is not deleted. The keywords are those of `apply_edits`.
        """
        if (where is None) == (object_ids is None):
            raise InvalidParameterError("give where= or object_ids=, not both and not neither")
        if where is not None:
            check_capabilities(await self.info(), self._url, deletes=[where])
            object_ids = await self.object_ids(where)
        return await self.apply_edits(deletes=list(object_ids or ()), **options)

    async def upsert(
        self,
        features: Sequence[Mapping[str, Any]],
        key: str,
        **options: Any,
    ) -> EditResults:
        """Update the features whose *key* value exists on the layer, add the others.

        The layer is queried for the keys first (``KEY IN (...)``, in chunks); then
        one `apply_edits` pass sends the adds and the updates (which get the object id
        found). Each result's ``index`` is the feature's position in *features*. The
        keywords are those of `apply_edits`.

        Raises:
            InvalidParameterError: *key* is not a field, a feature has no value for it,
                two features share a value, or the layer has two rows with one value
                (checked before anything is sent).
            EditOutcomeUnknownError: Some edits were sent and no answer came back; the
                error holds the features as given, and results indexed as above.
        """
        info = await self.info()
        check_capabilities(info, self._url, adds=features, updates=features)

        async def lookup(where: str, fields: list[str]) -> list[Mapping[str, Any]]:
            found = await self.query(where, out_fields=fields, return_geometry=False)
            return [feature.get("attributes") or {} for feature in found.features]

        plan = await plan_upsert(
            features, key, info, self._url, lookup, options.get("spatial_reference")
        )
        try:
            results = await self.apply_edits(adds=plan.adds, updates=plan.updates, **options)
        except EditOutcomeUnknownError as exc:
            raise plan.unknown(exc, features) from None
        return plan.renumber(results)


class MapLayer(LayerBase):
    """A layer of a MapServer: ``MapLayer(client, "Basemap", 3)``."""

    _kind = "MapServer"


LayerT = TypeVar("LayerT", bound=LayerBase)


class _Service(Generic[LayerT]):
    _layer_class: type[LayerT]

    def __init__(self, client: ArchieClient, service_path: str) -> None:
        self._client = client
        self._path = with_kind(check_service_path(service_path), self._layer_class._kind)
        self._metadata: Mapping[str, Any] | None = None

    @property
    def url(self) -> str:
        """The service's URL."""
        return self._client.url_for(self._path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    async def info(self) -> Mapping[str, Any]:
        """The service's metadata, fetched on first use and cached."""
        if self._metadata is None:
            self._metadata = await self._client.get_json(self._path)
        return self._metadata

    def layer(self, layer_id: int) -> LayerT:
        """The layer *layer_id* of this service (no request is made)."""
        return self._layer_class(self._client, self._path, layer_id)

    async def layers(self) -> list[LayerT]:
        """Every layer and table the service lists."""
        metadata = await self.info()
        entries = [*(metadata.get("layers") or ()), *(metadata.get("tables") or ())]
        ids = sorted(
            {e["id"] for e in entries if isinstance(e, Mapping) and isinstance(e.get("id"), int)}
        )
        return [self.layer(i) for i in ids]


class FeatureService(_Service[FeatureLayer]):
    """A FeatureServer: ``FeatureService(client, "Parcels")``."""

    _layer_class = FeatureLayer


class MapService(_Service[MapLayer]):
    """A MapServer: ``MapService(client, "Basemap")``."""

    _layer_class = MapLayer
