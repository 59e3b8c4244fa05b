"""Esri JSON to GeoJSON: ring rules, empty points, z and M, and geometries that cannot be
converted (which become null and are counted, never an exception mid-crawl)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from archibald import ArchieClient, FeatureLayer
from archibald._geojson import (
    GeoJSONConverter,
    GeometryError,
    esri_feature_to_geojson,
    esri_geometry_to_geojson,
    geojson_geometry_to_esri,
)
from archibald.testing import FakeArcGIS

SQUARE = [[0, 0], [0, 10], [10, 10], [10, 0], [0, 0]]  # clockwise: an Esri outer ring
A_B_A = [[3, 3], [4, 4], [3, 3]]  # closes on itself after three positions: no area


def square(low: float, high: float, *, clockwise: bool) -> list[list[float]]:
    ring = [[low, low], [low, high], [high, high], [high, low], [low, low]]
    return ring if clockwise else ring[::-1]


def area(ring: list[list[float]]) -> float:
    return sum(x1 * y2 - x2 * y1 for (x1, y1, *_), (x2, y2, *_) in itertools.pairwise(ring))


def test_a_ring_that_closes_after_three_positions_is_dropped() -> None:
    """An A-B-A ring is not emitted, neither as a polygon nor as a hole (RFC 7946: >= 4)."""
    assert esri_geometry_to_geojson({"rings": [A_B_A]}) is None
    geometry = esri_geometry_to_geojson({"rings": [SQUARE, A_B_A]})
    assert geometry is not None
    assert "Polygon" == geometry["type"]
    assert [SQUARE[::-1]] == geometry["coordinates"]


def test_lines_of_one_position_are_dropped() -> None:
    """A path needs two positions; a polyline with none left is null."""
    assert esri_geometry_to_geojson({"paths": [[[1, 1]]]}) is None
    geometry = esri_geometry_to_geojson({"paths": [[[1, 1]], [[0, 0], [1, 2]]]})
    assert {"type": "LineString", "coordinates": [[0, 0], [1, 2]]} == geometry


@pytest.mark.parametrize(
    "point",
    [
        {"x": "NaN", "y": "NaN"},
        {"x": "NaN", "y": "NaN", "spatialReference": {"wkid": 4326}},
        {"x": None, "y": None},
        {"x": float("nan"), "y": float("nan")},
    ],
)
def test_an_empty_point_is_null(point: dict[str, Any]) -> None:
    """Esri's empty point ({"x": "NaN"}) becomes a null geometry, not string coordinates."""
    assert esri_geometry_to_geojson(point) is None
    assert esri_feature_to_geojson({"attributes": {"ID": 1}, "geometry": point})["geometry"] is None


def test_m_without_z_is_not_an_altitude() -> None:
    """With hasM and no hasZ, the third value of a position is M and is left out."""
    line = {"paths": [[[0, 0, 5], [1, 1, 6]]]}
    expected = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    assert expected == esri_geometry_to_geojson(line, has_m=True)
    assert expected == esri_geometry_to_geojson({**line, "hasM": True})
    point = esri_geometry_to_geojson({"x": 1, "y": 2, "m": 3}, has_m=True)
    assert {"type": "Point", "coordinates": [1, 2]} == point


def test_z_is_kept_and_m_dropped_when_both_are_present() -> None:
    """hasZ and hasM: positions [x, y, z, m] become [x, y, z]."""
    ring = [[0, 0, 7, 100], [0, 10, 7, 101], [10, 10, 7, 102], [10, 0, 7, 103], [0, 0, 7, 100]]
    geometry = esri_geometry_to_geojson({"rings": [ring]}, has_z=True, has_m=True)
    assert geometry is not None
    assert [[p[:3] for p in ring[::-1]]] == geometry["coordinates"]
    point = esri_geometry_to_geojson({"x": 1, "y": 2, "z": 9, "m": 3}, has_z=True, has_m=True)
    assert {"type": "Point", "coordinates": [1, 2, 9]} == point


@pytest.mark.parametrize(
    "geometry",
    [
        {"rings": "oops"},
        {"rings": [[["a", "b"], ["c", "d"], ["e", "f"], ["a", "b"]]]},
        {"paths": [[["a", "b"], [1, 2]]]},
        {"paths": [[[0, 0], [float("inf"), 1]]]},
        {"x": "abc", "y": 1},
        {"x": 1, "y": True},
        {"points": [[1]]},
        {"curveRings": [[[0, 0], {"c": [[1, 1], [0.5, 0.5]]}]]},
        {"foo": 1},
    ],
)
def test_a_geometry_that_cannot_be_converted_raises_one_error(geometry: dict[str, Any]) -> None:
    """Strings for numbers, infinities, unknown shapes: GeometryError, never another one."""
    with pytest.raises(GeometryError):
        esri_geometry_to_geojson(geometry)


def test_the_converter_writes_null_and_counts() -> None:
    """GeoJSONConverter keeps the feature and its attributes, with a null geometry."""
    converter = GeoJSONConverter()
    bad = {"attributes": {"OBJECTID": 7, "NAME": "x"}, "geometry": {"x": "abc", "y": 1}}
    good = {"attributes": {"OBJECTID": 8}, "geometry": {"x": 1, "y": 2}}
    assert {
        "type": "Feature",
        "id": 7,
        "geometry": None,
        "properties": {"OBJECTID": 7, "NAME": "x"},
    } == converter.feature(bad, "OBJECTID")
    assert [1, 2] == converter.feature(good, "OBJECTID")["geometry"]["coordinates"]
    assert 1 == converter.unconvertible


def test_each_hole_goes_to_the_smallest_outer_ring_that_holds_it() -> None:
    """An island in a lake in a polygon: the island's hole is the island's, in any order."""
    outer, lake = square(0, 10, clockwise=True), square(1, 9, clockwise=False)
    island, pond = square(2, 8, clockwise=True), square(3, 7, clockwise=False)
    for rings in ([outer, lake, island, pond], [island, outer, pond, lake]):
        geometry = esri_geometry_to_geojson({"rings": rings})
        assert geometry is not None
        polygons = sorted(geometry["coordinates"], key=lambda p: -abs(area(p[0])))
        assert [2, 2] == [len(p) for p in polygons]
        assert 200 == area(polygons[0][0])  # counter-clockwise outer ring (twice the area)
        assert -128 == area(polygons[0][1])  # its hole, the lake, clockwise
        assert 72 == area(polygons[1][0])  # the island
        assert -32 == area(polygons[1][1])  # its hole, the pond


def test_the_input_is_left_as_it_was() -> None:
    """Converting does not close, reverse or trim the caller's rings."""
    open_ring = [[0, 0], [0, 1], [1, 1]]
    geometry = {"rings": [open_ring], "hasM": True}
    esri_geometry_to_geojson(geometry)
    assert {"rings": [[[0, 0], [0, 1], [1, 1]]], "hasM": True} == geometry


@pytest.mark.anyio
async def test_a_crawl_goes_on_past_a_geometry_it_cannot_convert() -> None:
    """format='geojson': every feature arrives; a bad geometry is null, and counted."""
    fake = FakeArcGIS()
    features = [
        {"attributes": {"OBJECTID": i, "NAME": f"n{i}"}, "geometry": {"x": float(i), "y": 1.0}}
        for i in range(1, 101)
    ]
    features[41]["geometry"] = {"x": "abc", "y": 1}
    features[42]["geometry"] = {"rings": [A_B_A]}  # empty, not unconvertible
    fields = [
        {"name": "OBJECTID", "type": "esriFieldTypeOID"},
        {"name": "NAME", "type": "esriFieldTypeString"},
    ]
    fake.add_feature_layer("Odd", features=features, fields=fields, max_record_count=30)
    async with ArchieClient(fake.services_url, transport=fake.transport()) as client:
        stream = FeatureLayer(client, "Odd", 0).features(format="geojson")
        got = [feature async for feature in stream]
    assert list(range(1, 101)) == [f["id"] for f in got]
    assert [None, None] == [got[41]["geometry"], got[42]["geometry"]]
    assert "n42" == got[41]["properties"]["NAME"]
    assert 1 == stream.unconvertible_geometries


def test_numbers_too_large_for_a_float_are_a_geometry_error() -> None:
    """A 400-digit coordinate (valid JSON) raises GeometryError, not OverflowError."""
    huge = 10**400
    with pytest.raises(GeometryError):
        esri_geometry_to_geojson({"paths": [[[0, 0], [huge, 1]]]})
    with pytest.raises(GeometryError):
        esri_geometry_to_geojson({"rings": [[[0, 0], [0, huge], [1, 1], [0, 0]]]})
    converter = GeoJSONConverter()
    assert converter.feature({"geometry": {"x": float("inf"), "y": 1}})["geometry"] is None
    assert converter.feature({"geometry": {"paths": [[[0, 0], [huge, 1]]]}})["geometry"] is None
    assert 2 == converter.unconvertible


def test_a_points_z_is_kept_whatever_hasm_says() -> None:
    """A point names its z: hasM without hasZ does not drop it (only hasZ=false does)."""
    point = {"x": 1, "y": 2, "z": 3, "m": 4}
    assert [1, 2, 3] == esri_geometry_to_geojson(point, has_m=True)["coordinates"]  # type: ignore[index]
    assert [1, 2] == esri_geometry_to_geojson(point, has_z=False)["coordinates"]  # type: ignore[index]


# -- every shape, exactly (each row pins one rule of the converter) -------------------------

CW = [[0, 0], [0, 4], [4, 4], [4, 0], [0, 0]]  # an outer ring, as Esri winds it


@pytest.mark.parametrize(
    ("esri", "options", "expected"),
    [
        ({"x": 1, "y": 2}, {}, {"type": "Point", "coordinates": [1, 2]}),
        ({"x": 1, "y": 2, "z": 3}, {}, {"type": "Point", "coordinates": [1, 2, 3]}),
        ({"x": 1, "y": 2, "z": "NaN"}, {}, {"type": "Point", "coordinates": [1, 2]}),
        ({"x": 1, "y": "NaN"}, {}, None),
        ({"x": "NaN", "y": 2}, {}, None),
        ({"points": [[1, 2], [3, 4]]}, {}, {"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]}),
        ({"points": [[1, 2, 9, 7]]}, {"has_z": True, "has_m": True},
         {"type": "MultiPoint", "coordinates": [[1, 2, 9]]}),
        ({"points": []}, {}, None),
        ({"paths": [[[0, 0], [1, 1]], [[2, 2], [3, 3]]]}, {},
         {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3]]]}),
        ({"paths": [[[0, 0, 5], [1, 1, 6]]], "hasZ": False}, {},
         {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
        ({"paths": [[[0, 0, 5], [1, 1, 6]]], "hasZ": True, "hasM": True}, {},
         {"type": "LineString", "coordinates": [[0, 0, 5], [1, 1, 6]]}),
        ({"paths": [[[0, 0, 5], [1, 1, 6]]]}, {},
         {"type": "LineString", "coordinates": [[0, 0, 5], [1, 1, 6]]}),
        ({"rings": [CW]}, {}, {"type": "Polygon", "coordinates": [CW[::-1]]}),
        ({"rings": [[[0, 0], [0, 4], [4, 4], [4, 0]]]}, {},  # not closed: closed for GeoJSON
         {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]]}),
        ({"rings": [[[0, 0, 1], [0, 4, 1], [4, 4, 1], [0, 0, 1]]]}, {"has_z": True},
         {"type": "Polygon", "coordinates": [[[0, 0, 1], [4, 4, 1], [0, 4, 1], [0, 0, 1]]]}),
        ({"rings": [CW, [[10, 10], [10, 14], [14, 14], [14, 10], [10, 10]]]}, {},
         {"type": "MultiPolygon", "coordinates": [
             [CW[::-1]], [[[10, 10], [14, 10], [14, 14], [10, 14], [10, 10]]]]}),
        ({"xmin": 0, "ymin": 1, "xmax": 2, "ymax": 3}, {},
         {"type": "Polygon", "coordinates": [[[0, 1], [2, 1], [2, 3], [0, 3], [0, 1]]]}),
        ({"xmin": "NaN", "ymin": 1, "xmax": 2, "ymax": 3}, {}, None),
        ({"xmin": 0, "ymin": 1, "xmax": 2, "ymax": "NaN"}, {}, None),
        ({}, {}, None),
    ],
)  # fmt: skip
def test_each_shape_converts_exactly(
    esri: dict[str, Any], options: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    """Points, multipoints, lines, polygons and envelopes, with and without z: exact."""
    assert expected == esri_geometry_to_geojson(esri, **options)


@pytest.mark.parametrize(
    ("hole", "owner"),
    [
        ([[1, 1], [2, 1], [2, 2], [1, 2], [1, 1]], 0),  # inside the first square only
        ([[11, 1], [12, 1], [12, 2], [11, 2], [11, 1]], 1),  # inside the second only
        ([[11, 0.5], [12, 0.5], [12, 2], [11, 2], [11, 0.5]], 1),  # starts below a vertex row
    ],
)
def test_a_hole_goes_to_the_ring_around_it_not_a_neighbour(
    hole: list[list[float]], owner: int
) -> None:
    """Two squares side by side, one hole: it joins the square it lies in."""
    left = [[0, 0], [0, 4], [4, 4], [4, 0], [0, 0]]
    right = [[10, 0], [10, 4], [14, 4], [14, 0], [10, 0]]
    geometry = esri_geometry_to_geojson({"rings": [left, right, hole]})
    assert geometry is not None
    polygons = geometry["coordinates"]
    assert [2 if i == owner else 1 for i in range(2)] == [len(p) for p in polygons]
    assert hole[::-1] == polygons[owner][1]  # came counter-clockwise, leaves clockwise


def test_messages_say_what_was_wrong() -> None:
    """GeometryError names the shape it got or the error underneath."""
    with pytest.raises(GeometryError, match="not an Esri geometry: a list"):
        esri_geometry_to_geojson([1, 2])  # type: ignore[arg-type]
    with pytest.raises(GeometryError, match=r"not an Esri geometry: keys \['a', 'b'\]"):
        esri_geometry_to_geojson({"b": 1, "a": 2})
    with pytest.raises(GeometryError, match="a coordinate is not a number: 'a'"):
        esri_geometry_to_geojson({"paths": [[[0, 0], ["a", "b"]]]})
    with pytest.raises(GeometryError, match=r"not a valid Esri geometry \(TypeError"):
        esri_geometry_to_geojson({"paths": [[0, 1]]})
    with pytest.raises(GeometryError, match="expected a list of coordinates, got a str"):
        esri_geometry_to_geojson({"rings": "oops"})
    with pytest.raises(GeometryError, match="a coordinate is not a finite number"):
        esri_geometry_to_geojson({"x": float("inf"), "y": 0})


def test_the_answers_dimensions_reach_the_feature(caplog: pytest.LogCaptureFixture) -> None:
    """has_z and has_m given to a feature conversion apply to its geometry; the first
    unconvertible geometry is logged with its object id, once."""
    feature = {"attributes": {"OID": 5}, "geometry": {"paths": [[[0, 0, 7], [1, 1, 8]]]}}
    assert [[0, 0], [1, 1]] == esri_feature_to_geojson(feature, "OID", has_m=True)["geometry"][
        "coordinates"
    ]
    assert [[0, 0], [1, 1]] == esri_feature_to_geojson(feature, "OID", has_z=False)["geometry"][
        "coordinates"
    ]
    converter = GeoJSONConverter()
    assert [[0, 0], [1, 1]] == converter.feature(feature, "OID", has_m=True)["geometry"][
        "coordinates"
    ]
    assert [[0, 0, 7], [1, 1, 8]] == converter.feature(feature, "OID", has_z=True, has_m=True)[
        "geometry"
    ]["coordinates"]
    bad = {"attributes": {"OID": 6}, "geometry": {"x": "abc", "y": 1}}
    converter.feature(bad, "OID")
    converter.feature({"attributes": {"OID": 7}, "geometry": {"x": "abc", "y": 1}}, "OID")
    warnings = [r.getMessage() for r in caplog.records if r.name == "archibald"]
    assert [
        "a geometry could not be converted to GeoJSON and is written as null (object id 6): "
        "a coordinate is not a finite number: 'abc'"
    ] == warnings


def test_a_feature_without_an_object_id_has_no_id() -> None:
    """No id field named, or its value null: the Feature has no 'id' member."""
    feature = {"attributes": {"OID": None, "NAME": "x"}, "geometry": None}
    assert "id" not in esri_feature_to_geojson(feature, "OID")
    assert "id" not in esri_feature_to_geojson({"attributes": {"OID": 3}}, None)
    assert {"type": "Feature", "geometry": None, "properties": {}} == esri_feature_to_geojson({})


DIAMOND = [[5, 0], [0, 5], [5, 10], [10, 5], [5, 0]]  # clockwise; |x-5| + |y-5| <= 5
SQUARE_NE = [[8, 8], [8, 20], [20, 20], [20, 8], [8, 8]]  # clockwise, overlaps its box


@pytest.mark.parametrize(
    ("start", "owner"),
    [
        ((9, 9), "square"),  # in the diamond's bounding box, outside the diamond
        ((5, 8), "diamond"),
        ((3, 5), "diamond"),  # level with two of the diamond's corners
        ((9, 5), "diamond"),
        ((6, 1.5), "diamond"),  # near a slanted edge, inside
        ((12, 12), "square"),
    ],
)
def test_a_hole_is_placed_by_slanted_edges_too(start: tuple[float, float], owner: str) -> None:
    """Point-in-ring on a diamond's slanted edges and at the height of its corners."""
    x, y = start
    hole = [[x, y], [x + 0.5, y], [x + 0.5, y + 0.25], [x, y]]  # counter-clockwise
    geometry = esri_geometry_to_geojson({"rings": [DIAMOND, SQUARE_NE, hole]})
    assert geometry is not None
    diamond, square = geometry["coordinates"]
    holder = diamond if owner == "diamond" else square
    other = square if owner == "diamond" else diamond
    assert (2, 1) == (len(holder), len(other))


@pytest.mark.parametrize(
    "geometry",
    [
        {"paths": [[[True, False], [1, 1]]]},  # JSON true is no coordinate
        {"points": [[0, 0, True]]},
        {"rings": [[[0, 0], [0, 1, "z"], [1, 1], [0, 0]]]},  # a z after a 2D first position
        {"rings": [[[0, 0], [0, 1, None], [1, 1], [0, 0]]]},
        {"rings": [[[False, 0], [0, True], [1, 1], [False, 0]]]},
        {"xmin": 1, "ymin": 0, "xmax": 0, "ymax": 1},  # a minimum above its maximum
        {"xmin": 0, "ymin": 1, "xmax": 1, "ymax": 0},
    ],
)
def test_a_geometry_found_broken_by_the_property_tests_is_a_geometry_error(
    geometry: dict[str, Any],
) -> None:
    """Booleans, a z that is no number anywhere in a ring, an inverted envelope: refused."""
    with pytest.raises(GeometryError):
        esri_geometry_to_geojson(geometry, has_z=True)


@pytest.mark.parametrize(
    ("geojson", "esri"),
    [
        ({"type": "Point", "coordinates": [1, 2]}, {"x": 1, "y": 2}),
        ({"type": "MultiPoint", "coordinates": [[1, 2, 3]]}, {"points": [[1, 2, 3]], "hasZ": True}),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, {"paths": [[[0, 0], [1, 1]]]}),
        (
            {"type": "MultiPolygon", "coordinates": [[[[0, 0], [0, 1], [1, 1], [0, 0]]]]},
            {"rings": [[[0, 0], [0, 1], [1, 1], [0, 0]]]},
        ),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]},
            {"rings": [[[0, 0], [1, 1], [1, 0], [0, 0]]]},
        ),
    ],
)
def test_geojson_geometries_become_esri(geojson: dict[str, Any], esri: dict[str, Any]) -> None:
    """GeoJSON to Esri: points keep z, rings are closed and wound exterior clockwise."""
    assert esri == geojson_geometry_to_esri(geojson)


@pytest.mark.parametrize(
    "geojson",
    [
        {"type": "GeometryCollection", "geometries": []},
        {"type": "Point", "coordinates": ["a", 2]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]},
        {"type": "LineString", "coordinates": 5},
    ],
)
def test_geojson_without_an_esri_equivalent_is_refused(geojson: dict[str, Any]) -> None:
    """What Esri JSON cannot hold, or is not geometry, raises GeometryError."""
    with pytest.raises(GeometryError):
        geojson_geometry_to_esri(geojson)
