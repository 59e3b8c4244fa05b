"""The where-clause subset of FakeArcGIS, against SQL's rules."""

from __future__ import annotations

import pytest

from archibald.testing._where import WhereError, compile_where

FIELDS = {name: name for name in ("OBJECTID", "NAME", "POP", "CREATED", "CATEGORY")}
ROWS = [
    {"OBJECTID": 1, "NAME": "San Jose", "POP": 1000, "CREATED": 1577836800000, "CATEGORY": "a"},
    {"OBJECTID": 2, "NAME": "Oakland", "POP": 500, "CREATED": 1609459200000, "CATEGORY": None},
    {"OBJECTID": 3, "NAME": "O'Brien", "POP": None, "CREATED": None, "CATEGORY": "b"},
]


def matching(where: str) -> list[int]:
    test = compile_where(where, FIELDS)
    return [row["OBJECTID"] for row in ROWS if test(row)]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("1=1", [1, 2, 3]),
        ("", [1, 2, 3]),
        ("POP > 600", [1]),
        ("pop >= 500 and objectid <> 1", [2]),
        ("POP < 600 OR NAME = 'San Jose'", [1, 2]),
        ("NOT POP > 600", [2]),  # NULL stays unknown under NOT
        ("OBJECTID IN (1, 3)", [1, 3]),
        ("OBJECTID NOT IN (1, 3)", [2]),
        ("POP BETWEEN 400 AND 1000", [1, 2]),
        ("POP NOT BETWEEN 400 AND 900", [1]),
        ("NAME LIKE 'San%'", [1]),
        ("NAME LIKE '_akland'", [2]),
        ("NAME NOT LIKE '%a%'", [3]),
        ("NAME = 'O''Brien'", [3]),
        ("CATEGORY IS NULL", [2]),
        ("CATEGORY IS NOT NULL", [1, 3]),
        ("UPPER(NAME) = 'OAKLAND'", [2]),
        ("CREATED >= DATE '2020-06-01'", [2]),
        ("CREATED < TIMESTAMP '2020-01-01 00:00:01'", [1]),
        ("(POP > 600 OR POP < 600) AND NOT (OBJECTID = 2)", [1]),
        ("POP = NULL", []),  # never true in SQL
    ],
)
def test_where_subset(where: str, expected: list[int]) -> None:
    """Each construct of the documented subset selects the rows SQL would."""
    assert expected == matching(where)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("NOPE = 1", "no field named 'NOPE'"),
        ("POP >", "ends too early"),
        ("POP > 1 1", "unexpected '1'"),
        ("POP ~ 1", "cannot read"),
        ("CREATED > DATE 'yesterday'", "cannot read the date"),
        ("(POP > 1", r"expected \) but found the end"),
    ],
)
def test_where_errors_say_what_is_wrong(where: str, message: str) -> None:
    """A clause outside the subset raises WhereError saying what is wrong."""
    with pytest.raises(WhereError, match=message):
        compile_where(where, FIELDS)


def test_geojson_rings_wound_the_wrong_way_stay_valid() -> None:
    """All rings counter-clockwise (wrongly wound Esri data): exteriors stay CCW."""
    from archibald._geojson import esri_geometry_to_geojson

    ccw = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]
    geometry = esri_geometry_to_geojson({"rings": [ccw]})
    assert {"type": "Polygon", "coordinates": [ccw]} == geometry
    assert esri_geometry_to_geojson({"rings": []}) is None
    assert esri_geometry_to_geojson({"paths": []}) is None
