"""The arguments of a crawl, checked once: `CrawlOptions`, the ``where`` clause and the
``outFields`` parameter."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

from .._validate import is_whole
from ..exceptions import InvalidParameterError
from ._model import LayerInfo
from ._partitions import Partition

__all__ = ["CrawlOptions", "check_where", "fields_param", "sql_literal"]


def check_where(where: object) -> str:
    """A ``where`` clause: a string; blank means every feature (``1=1``)."""
    if not isinstance(where, str):
        raise InvalidParameterError(
            f"where must be an SQL string such as '1=1' or \"STATUS = 'open'\", got {where!r}"
        )
    return where.strip() or "1=1"


def sql_literal(value: object) -> str:
    """*value* as an SQL literal in a where clause: text in single quotes (a quote inside
    doubled), a finite number as it is; anything else is refused."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return repr(value)
    raise InvalidParameterError(
        f"{value!r} cannot be matched in a where clause: give text or a finite number"
    )


def _whole_or_none(name: str) -> Any:
    def check(_: object, __: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not is_whole(value, 1):
            raise InvalidParameterError(f"{name} must be a whole number >= 1, got {value!r}")

    return check


def _check_out_sr(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not is_whole(value, 1):
        raise InvalidParameterError(
            f"out_sr must be a spatial reference id (wkid) such as 4326, got {value!r}"
        )


def _check_return_geometry(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidParameterError(f"return_geometry must be True or False, got {value!r}")


def _check_partition(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Partition):
        raise InvalidParameterError(
            f"partition must be a Partition (from layer.partitions()), got {value!r}"
        )


@attrs.frozen(kw_only=True)
class CrawlOptions:
    """What a crawl asks for (the arguments of `FeatureLayer.pages`), checked when made."""

    where: str = attrs.field(default="1=1", converter=check_where)
    out_fields: str | Iterable[str] = "*"
    return_geometry: bool = attrs.field(default=True, validator=_check_return_geometry)
    out_sr: int | None = attrs.field(default=None, validator=_check_out_sr)
    page_size: int | None = attrs.field(default=None, validator=_whole_or_none("page_size"))
    max_concurrency: int | None = attrs.field(
        default=None, validator=_whole_or_none("max_concurrency")
    )
    ordered: bool = True
    partition: Partition | None = attrs.field(default=None, validator=_check_partition)

    def __attrs_post_init__(self) -> None:
        partition = self.partition
        if partition is None:
            return
        if self.where not in ("1=1", partition.where):
            raise InvalidParameterError(
                f"the partition was planned for where={partition.where!r}, not "
                f"{self.where!r}; leave where out when you pass a partition"
            )
        object.__setattr__(self, "where", partition.where)  # the partition's filter rules

    def check_partition(self, url: str, info: LayerInfo) -> None:
        """Refuse a partition of another layer (or of this one before its ids changed)."""
        partition = self.partition
        if partition is None:
            return
        if partition.url.rstrip("/").lower() != url.rstrip("/").lower():
            raise InvalidParameterError(f"the partition belongs to {partition.url}, not to {url}")
        if partition.id_field.lower() != info.object_id_field.lower():
            raise InvalidParameterError(
                f"the partition ranges over {partition.id_field}, but the object-id field "
                f"of {url} is {info.object_id_field}; plan the partitions again"
            )

    def query_params(self, info: LayerInfo, url: str) -> dict[str, Any]:
        """The parameters every query of the crawl sends (unknown fields refused here)."""
        params: dict[str, Any] = {
            "outFields": fields_param(self.out_fields, info, url),
            "returnGeometry": self.return_geometry,
        }
        if self.out_sr is not None:
            params["outSR"] = self.out_sr
        return params

    def batch_size(self, info: LayerInfo) -> int:
        """Ids per query: the layer's ``maxRecordCount``, or less if asked."""
        size = info.max_record_count
        return size if self.page_size is None else min(self.page_size, size)


def fields_param(out_fields: str | Iterable[str], info: LayerInfo, url: str) -> str:
    """The ``outFields`` parameter; names the layer does not have are refused here."""
    if isinstance(out_fields, str):
        names = [n.strip() for n in out_fields.split(",") if n.strip()]
    else:
        given = list(out_fields) if isinstance(out_fields, Iterable) else None  # read once
        if given is None or not all(isinstance(n, str) for n in given):
            raise InvalidParameterError(
                f"out_fields must be '*', a comma-separated string or a list of field names, "
                f"got {out_fields!r}"
            )
        names = [n.strip() for n in given]
    if not names or "*" in names:
        return "*"
    known = {str(f.get("name", "")).lower(): f.get("name") for f in info.fields}
    unknown = [n for n in names if known and n.lower() not in known]
    if unknown:
        listed = ", ".join(str(name) for name in known.values())
        raise InvalidParameterError(
            f"{url} has no field {', '.join(map(repr, unknown))}; its fields are: {listed}"
        )
    if info.object_id_field.lower() not in {n.lower() for n in names}:
        names.append(info.object_id_field)  # needed to check that every feature arrived
    return ",".join(names)
