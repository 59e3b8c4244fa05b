"""Rows of ``gpkg_spatial_ref_sys``: which srs_id an ArcGIS wkid gets, and its definition.

The srs_id is the wkid itself (Esri's 102100, 102113 and 900913 are EPSG:3857, their
``latestWkid``). The definition is WKT 1, as the core table wants: from pyproj when it is
installed (an EPSG code first, then an ESRI one), built in for 4326 and 3857 otherwise.
Without pyproj any other wkid gets organization ``EPSG`` and the definition
``undefined``; GDAL then resolves it from its own EPSG database by the organization's code
(an Esri code only in recent GDAL: 3.6 does not, so one is logged as a warning). A wkid
pyproj does not know either is logged too: GDAL reads that table without a CRS and warns
on every open.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

__all__ = ["UNDEFINED_CARTESIAN", "UNDEFINED_GEOGRAPHIC", "SrsRow", "srs_id_of", "srs_row"]

logger = logging.getLogger("archibald")

UNDEFINED_CARTESIAN = -1
UNDEFINED_GEOGRAPHIC = 0
_LAST_EPSG_CODE = 32767  # EPSG's CRS codes end here; Esri's own start above (37001, 102001...)
_WEB_MERCATOR_ALIASES = {102100, 102113, 900913}

_WGS84 = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,'
    'AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,'
    'AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
    'AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)
_WEB_MERCATOR = (
    'PROJCS["WGS 84 / Pseudo-Mercator",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",'
    '6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],'
    'PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,'
    'AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4326"]],PROJECTION["Mercator_1SP"],'
    'PARAMETER["central_meridian",0],PARAMETER["scale_factor",1],'
    'PARAMETER["false_easting",0],PARAMETER["false_northing",0],'
    'UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH],'
    'EXTENSION["PROJ4","+proj=merc +a=6378137 +b=6378137 +lat_ts=0 +lon_0=0 +x_0=0 +y_0=0 '
    '+k=1 +units=m +nadgrids=@null +wktext +no_defs"],AUTHORITY["EPSG","3857"]]'
)


class SrsRow(NamedTuple):
    """One row of ``gpkg_spatial_ref_sys``."""

    srs_name: str
    srs_id: int
    organization: str
    organization_coordsys_id: int
    definition: str
    description: str


#: The rows every GeoPackage has (Requirements 11 to 13 of the specification).
REQUIRED_ROWS = (
    SrsRow("WGS 84 geodetic", 4326, "EPSG", 4326, _WGS84, "longitude/latitude in WGS 84"),
    SrsRow("Undefined Cartesian SRS", -1, "NONE", -1, "undefined", "undefined Cartesian"),
    SrsRow("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic"),
)


def srs_id_of(wkid: int | None) -> int:
    """The srs_id a layer's wkid is stored under (-1, undefined Cartesian, for none)."""
    if wkid is None:
        return UNDEFINED_CARTESIAN
    return 3857 if wkid in _WEB_MERCATOR_ALIASES else wkid


def srs_row(srs_id: int) -> SrsRow:
    """The row for *srs_id* (as `srs_id_of` gives it)."""
    for row in REQUIRED_ROWS:
        if row.srs_id == srs_id:
            return row
    try:
        from pyproj import CRS
        from pyproj.exceptions import CRSError
    except ImportError:
        if srs_id == 3857:
            return SrsRow("WGS 84 / Pseudo-Mercator", 3857, "EPSG", 3857, _WEB_MERCATOR, "")
        if srs_id > _LAST_EPSG_CODE:
            _warn_undefined(srs_id, "install pyproj (archibald[geo]) and sync into a new file")
        return SrsRow(f"EPSG:{srs_id}", srs_id, "EPSG", srs_id, "undefined", "")
    for organization in ("EPSG", "ESRI"):
        try:
            crs = CRS.from_authority(organization, srs_id)
        except CRSError:
            continue
        definition = crs.to_wkt("WKT1_GDAL") or "undefined"
        return SrsRow(crs.name, srs_id, organization, srs_id, definition, "")
    _warn_undefined(srs_id, "PROJ does not know it either: set the CRS in your GIS")
    return SrsRow(f"wkid {srs_id}", srs_id, "EPSG", srs_id, "undefined", "")


def _warn_undefined(srs_id: int, fix: str) -> None:
    logger.warning(
        "the spatial reference wkid %s is written without a definition: GDAL may read "
        "the table without a CRS and warn 'Unable to parse srs_id'; %s",
        srs_id,
        fix,
    )
