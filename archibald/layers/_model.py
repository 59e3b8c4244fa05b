"""What layers and crawls hand out: a layer's metadata, pages, collected results, and
what a query answer says about its features."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .._geojson import GeoJSONConverter
from .._validate import is_whole
from ..exceptions import LayerCapabilityError

__all__ = [
    "AnswerShape",
    "LayerInfo",
    "Page",
    "QueryResult",
    "attribute",
    "schema_changes",
    "wkid_of",
]

_OID_TYPE = "esriFieldTypeOID"
_DEFAULT_MAX_RECORD_COUNT = 1000


def attribute(attributes: Mapping[str, Any], name: str) -> Any:
    """The attribute *name* of a feature, whatever the case of the server's key (it
    varies: some servers spell a field differently in answers than in the field list)."""
    if name in attributes:
        return attributes[name]
    lowered = name.lower()
    return next((v for k, v in attributes.items() if k.lower() == lowered), None)


def wkid_of(spatial_reference: Mapping[str, Any] | None, out_sr: int | None = None) -> int | None:
    """The wkid geometries come in: *out_sr* if one was asked for, else the spatial
    reference's ``latestWkid``, then its ``wkid``; None for one given as WKT alone."""
    if out_sr is not None:
        return out_sr
    sr = spatial_reference or {}
    code = sr.get("latestWkid") or sr.get("wkid")
    return code if is_whole(code, 1) else None


def schema_changes(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    others: Iterable[tuple[str, Any, Any]] = (),
) -> list[str]:
    """How a layer's schema changed, in words: the fields (name -> type) added, removed
    or of another type, and each of *others* (what, before, after) that differs."""
    changes = [f"field {n} added" for n in after if n not in before]
    changes += [f"field {n} removed" for n in before if n not in after]
    changes += [
        f"field {n} is now {after[n]}, was {before[n]}"
        for n in after
        if n in before and after[n] != before[n]
    ]
    changes += [f"{what} is now {new}, was {old}" for what, old, new in others if old != new]
    return changes


@attrs.frozen(kw_only=True)
class LayerInfo:
    """What a layer says about itself (its metadata, fetched once and cached).

    Attributes:
        name: The layer name.
        fields: Field definitions (``name``, ``type``, ``alias``, ...).
        object_id_field: The object-id field.
        geometry_type: ``esriGeometryPoint`` and so on, or None for a table.
        capabilities: Advertised operations, such as ``{"Query", "Create"}``.
        max_record_count: The most features one query returns.
        supports_pagination: Whether ``resultOffset`` paging is advertised.
        supports_statistics: Whether ``outStatistics`` is advertised.
        supports_order_by: Whether ``orderByFields`` is advertised.
        has_attachments: Whether its features may have attachments (``hasAttachments``).
        supports_query_attachments: Whether ``queryAttachments`` is advertised (it lists
            the attachments of many features in one request).
        spatial_reference: The layer's spatial reference, if any.
        extent: The layer's extent, if any.
        raw: The whole metadata document.
    """

    name: str
    fields: tuple[Mapping[str, Any], ...]
    object_id_field: str
    geometry_type: str | None
    capabilities: frozenset[str]
    max_record_count: int
    supports_pagination: bool
    supports_statistics: bool
    supports_order_by: bool = False
    has_attachments: bool = False
    supports_query_attachments: bool = False
    spatial_reference: Mapping[str, Any] | None
    extent: Mapping[str, Any] | None
    raw: Mapping[str, Any] = attrs.field(repr=False)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], url: str) -> LayerInfo:
        """Read layer metadata, including that of 10.0-era servers."""
        fields = tuple(f for f in metadata.get("fields") or () if isinstance(f, Mapping))
        oid = metadata.get("objectIdField") or next(
            (f.get("name") for f in fields if f.get("type") == _OID_TYPE), None
        )
        if not isinstance(oid, str) or not oid:
            raise LayerCapabilityError(
                f"{url} names no object-id field (objectIdField, or a field of type "
                "esriFieldTypeOID), so its features cannot be crawled exactly"
            )
        advanced = metadata.get("advancedQueryCapabilities") or {}
        capabilities = frozenset(
            c.strip() for c in str(metadata.get("capabilities") or "").split(",") if c.strip()
        )
        extent = metadata.get("extent") if isinstance(metadata.get("extent"), Mapping) else None
        max_records = metadata.get("maxRecordCount")
        if not is_whole(max_records, 1):
            max_records = _DEFAULT_MAX_RECORD_COUNT
        return cls(
            name=str(metadata.get("name") or ""),
            fields=fields,
            object_id_field=oid,
            geometry_type=metadata.get("geometryType") or None,
            capabilities=capabilities,
            max_record_count=max_records,
            supports_pagination=bool(advanced.get("supportsPagination", False)),
            supports_statistics=bool(
                advanced.get("supportsStatistics", metadata.get("supportsStatistics", False))
            ),
            supports_order_by=bool(advanced.get("supportsOrderBy", False)),
            has_attachments=metadata.get("hasAttachments") is True,
            supports_query_attachments=advanced.get("supportsQueryAttachments") is True,
            spatial_reference=metadata.get("spatialReference")
            or (extent or {}).get("spatialReference"),
            extent=extent,
            raw=metadata,
        )


@attrs.frozen(kw_only=True)
class Page:
    """One batch of features from a crawl, in Esri JSON.

    Attributes:
        features: The features (``{"attributes": ..., "geometry": ...}``).
        object_ids: Their object ids, in the same order.
        fields: The fields of the answer.
        geometry_type: The geometry type, or None.
        spatial_reference: The spatial reference of the geometries, or None.
        object_id_field: The object-id field.
        has_z: Whether positions carry z values (the answer's ``hasZ``), if it said.
        has_m: Whether positions carry M values (the answer's ``hasM``), if it said.
    """

    features: list[dict[str, Any]]
    object_ids: list[int]
    fields: Sequence[Mapping[str, Any]] = attrs.field(repr=False)
    geometry_type: str | None
    spatial_reference: Mapping[str, Any] | None = attrs.field(repr=False)
    object_id_field: str
    has_z: bool | None = attrs.field(default=None, repr=False)
    has_m: bool | None = attrs.field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.features)

    def to_geojson(self) -> dict[str, Any]:
        """The page as a GeoJSON FeatureCollection (coordinates as they came).

        A geometry that cannot be converted becomes null, with a warning in the log
        (see the geometry rules in the layers guide).
        """
        return feature_collection(self.features, self.object_id_field, self.has_z, self.has_m)


@attrs.frozen(kw_only=True)
class QueryResult:
    """Every feature of a query, collected (see `FeatureLayer.query`).

    Attributes:
        features: The features in Esri JSON, in object-id order.
        fields: The fields of the answer.
        geometry_type: The geometry type, or None.
        spatial_reference: The spatial reference of the geometries, or None.
        object_id_field: The object-id field.
        has_z: Whether positions carry z values, if the server said.
        has_m: Whether positions carry M values, if the server said.
    """

    features: list[dict[str, Any]]
    fields: Sequence[Mapping[str, Any]] = attrs.field(repr=False)
    geometry_type: str | None
    spatial_reference: Mapping[str, Any] | None
    object_id_field: str
    has_z: bool | None = attrs.field(default=None, repr=False)
    has_m: bool | None = attrs.field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.features)

    def to_geojson(self) -> dict[str, Any]:
        """The result as a GeoJSON FeatureCollection (coordinates as they came).

        A geometry that cannot be converted becomes null, with a warning in the log.
        """
        return feature_collection(self.features, self.object_id_field, self.has_z, self.has_m)


def feature_collection(
    features: list[dict[str, Any]],
    object_id_field: str,
    has_z: bool | None,
    has_m: bool | None,
) -> dict[str, Any]:
    convert = GeoJSONConverter().feature
    return {
        "type": "FeatureCollection",
        "features": [convert(f, object_id_field, has_z=has_z, has_m=has_m) for f in features],
    }


@attrs.frozen
class AnswerShape:
    """What a query answer says about its features, besides the features."""

    fields: Sequence[Mapping[str, Any]]
    geometry_type: str | None
    spatial_reference: Mapping[str, Any] | None
    has_z: bool | None
    has_m: bool | None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> AnswerShape:
        has_z, has_m = body.get("hasZ"), body.get("hasM")
        return cls(
            body.get("fields") or (),
            body.get("geometryType") or None,
            body.get("spatialReference") or None,
            has_z if isinstance(has_z, bool) else None,
            has_m if isinstance(has_m, bool) else None,
        )

    @classmethod
    def of_page(cls, page: Page) -> AnswerShape:
        return cls(page.fields, page.geometry_type, page.spatial_reference, page.has_z, page.has_m)

    def merge(self, later: AnswerShape) -> AnswerShape:
        """This shape, filled in from a later answer where it said nothing."""
        return AnswerShape(
            later.fields or self.fields,
            later.geometry_type or self.geometry_type,
            later.spatial_reference or self.spatial_reference,
            later.has_z if later.has_z is not None else self.has_z,
            later.has_m if later.has_m is not None else self.has_m,
        )
