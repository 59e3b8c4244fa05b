"""Property tests: answers, geometries and URLs of any shape get a typed outcome, never a crash.

The examples are drawn by hypothesis under the profile set in conftest.py (the same ones on
every run). Async code runs inside each example with `run_on`, on asyncio and on trio,
both on a virtual clock, as the rest of the suite does.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from archibald import APIKeyAuth, ArchieClient, ArchieError, RetryPolicy
from archibald._geojson import GeoJSONConverter, GeometryError, esri_geometry_to_geojson
from archibald._responses import Failure, Success, TokenRejected, Transient, classify, snippet
from archibald._secrets import redact_url
from archibald._urls import (
    check_http_url,
    check_service_path,
    join_endpoint,
    server_root,
    split_layer_url,
    split_services_url,
)
from archibald.exceptions import ConfigurationError, InvalidParameterError, InvalidServiceURL
from archibald.testing import AutojumpEventLoop

T = TypeVar("T")

BACKENDS = ("asyncio", "trio")
EXAMPLES = settings.default.max_examples  # of the profile loaded in conftest.py
SECRET = "s3cr3tKEYzz9"
ROOT = "https://gis.example.com/arcgis/rest/services"


def run_on(backend: str, main: Callable[[], Awaitable[T]]) -> T:
    """*main* run to its end on *backend*, on a virtual clock that jumps when all wait."""
    if backend == "trio":
        options: dict[str, Any] = {"clock": MockClock(autojump_threshold=0)}
    else:
        options = {"loop_factory": AutojumpEventLoop}
    return anyio.run(main, backend=backend, backend_options=options)


# -- answers: envelopes and error bodies ------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from([SECRET, f"token {SECRET} rejected", 498, 499, "498", 403.0, "error"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
envelope_fields = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        ("code", "message", "details", "messageCode", "error", "error_description"), json_values
    ),
)
envelopes = (
    st.builds(lambda error: {"error": error}, envelope_fields | json_values)
    | st.builds(
        lambda messages, code: {"status": "error", "messages": messages, "code": code},
        json_values,
        json_values,
    )
    | st.dictionaries(st.sampled_from(["features", "objectIds", "count", "error"]), json_values)
)


def _encoded(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


bodies = (
    envelopes.map(_encoded)
    | json_values.map(_encoded)
    | st.binary(max_size=300)
    | st.builds(lambda head, tail: head + SECRET.encode() + tail, st.binary(), st.binary())
    | st.sampled_from(
        [b"[" * 100_000, b'{"error": ' * 5000, b"", b"NaN", b"<html>Bad Gateway</html>"]
    )
)
statuses = st.sampled_from([200, 400, 403, 404, 498, 499, 500, 502, 503])
content_types = st.sampled_from(
    ["application/json", "text/html", "text/plain; charset=utf-8", "application/geo+json", ""]
)
formats = st.sampled_from(["json", "geojson"])
retry_afters = st.none() | st.sampled_from(["1", "nan", "inf", "-5", "soon", "Wed, 21 Oct 2015"])


def _no_secret(text: str) -> None:
    assert SECRET not in text


@settings(max_examples=4 * EXAMPLES)
@given(body=bodies, status=statuses, content_type=content_types, fmt=formats)
def test_any_answer_is_classified_without_a_crash(
    body: bytes, status: int, content_type: str, fmt: str
) -> None:
    """Any body, status and content type: one of the four outcomes, secrets masked."""
    response = httpx.Response(status, content=body, headers={"content-type": content_type})
    outcome = classify(response, fmt, f"{ROOT}/x?token={SECRET}", secrets=[SECRET])
    assert isinstance(outcome, Success | TokenRejected | Transient | Failure)
    if isinstance(outcome, Transient | Failure):
        assert isinstance(outcome.error, ArchieError)
        _no_secret(str(outcome.error))


@given(before=st.integers(0, 400), text=st.text(max_size=20), suffix=st.text(max_size=50))
def test_a_snippet_never_shows_part_of_a_secret(before: int, text: str, suffix: str) -> None:
    """However a body is cut to its first 200 characters, no piece of a secret shows."""
    prefix = ("x" * before + text)[-before:] if before else text
    response = httpx.Response(502, content=(prefix + SECRET + suffix).encode())
    shown = snippet(response, [SECRET])
    assert SECRET[: len(SECRET) // 2] not in shown, "half of the secret shows"


@settings(max_examples=EXAMPLES)
@given(
    body=bodies,
    status=statuses,
    content_type=content_types,
    fmt=formats,
    retry_after=retry_afters,
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_client_returns_an_object_or_raises_a_typed_error(
    backend: str, body: bytes, status: int, content_type: str, fmt: str, retry_after: str | None
) -> None:
    """Through ArchieClient: a JSON object, or an ArchieError whose message hides the key."""
    headers = {"content-type": content_type}
    if retry_after is not None:
        headers["retry-after"] = retry_after

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    async def main() -> dict[str, Any] | ArchieError:
        auth = APIKeyAuth(SECRET)
        retry = RetryPolicy(attempts=2, base=0.1, budget=1.0)
        async with ArchieClient(
            ROOT, auth, transport=httpx.MockTransport(answer), retry=retry
        ) as client:
            try:
                return await client.get_json("Parcels/FeatureServer/0/query", params={"f": fmt})
            except ArchieError as exc:
                return exc

    result = run_on(backend, main)
    if isinstance(result, ArchieError):
        _no_secret(str(result))
        _no_secret(" ".join(map(str, getattr(result, "details", []))))
    else:
        assert isinstance(result, dict)


# -- geometries: Esri JSON to GeoJSON ---------------------------------------------------

coordinates = st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-1000, 1000)
odd_values = st.sampled_from(
    [None, "NaN", "nan", "12", math.nan, math.inf, -math.inf, True, [], {}, 1e308]
)
values = coordinates | odd_values
positions = st.lists(coordinates, min_size=2, max_size=4) | st.lists(values, max_size=5)
point_lists = st.lists(positions, max_size=7)
flags = st.fixed_dictionaries({}, optional={"hasZ": st.booleans(), "hasM": st.booleans()})
esri_geometries = st.one_of(
    st.builds(
        lambda x, y, z, f: {"x": x, "y": y, "z": z, **f}, values, values, values | st.just(0), flags
    ),
    st.builds(lambda pts, f: {"points": pts, **f}, point_lists, flags),
    st.builds(lambda paths, f: {"paths": paths, **f}, st.lists(point_lists, max_size=3), flags),
    st.builds(lambda rings, f: {"rings": rings, **f}, st.lists(point_lists, max_size=4), flags),
    st.builds(
        lambda v: dict(zip(("xmin", "ymin", "xmax", "ymax"), v, strict=True)),
        st.tuples(values, values, values, values),
    ),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    json_values,
)


def _valid_position(position: object) -> None:
    assert isinstance(position, list)
    assert len(position) in (2, 3)
    for value in position:
        assert type(value) in (int, float), f"not a number: {value!r}"
        assert math.isfinite(value)


def _twice_the_area(ring: list[list[float]]) -> tuple[float, float]:
    """The shoelace sum and the sum of its terms' sizes (for a tolerance)."""
    terms = [a[0] * b[1] - b[0] * a[1] for a, b in itertools.pairwise(ring)]
    return sum(terms), sum(map(abs, terms))


def _valid_polygon(rings: object) -> None:
    assert isinstance(rings, list)
    assert rings
    for index, ring in enumerate(rings):
        assert isinstance(ring, list)
        assert len(ring) >= 4
        for position in ring:
            _valid_position(position)
        assert ring[0] == ring[-1]
        area, size = _twice_the_area(ring)
        if abs(area) > 1e-9 * size:  # outer rings counter-clockwise, holes clockwise
            assert (area > 0) == (index == 0), f"ring {index} is wound the wrong way"


def check_geojson_geometry(geometry: object) -> None:
    """Fail unless *geometry* is what the converter promises: an RFC 7946 geometry."""
    assert isinstance(geometry, dict)
    kind, coords = geometry["type"], geometry["coordinates"]
    assert set(geometry) == {"type", "coordinates"}
    if kind == "Point":
        _valid_position(coords)
    elif kind in ("MultiPoint", "LineString"):
        assert isinstance(coords, list)
        assert len(coords) >= (1 if kind == "MultiPoint" else 2)
        for position in coords:
            _valid_position(position)
    elif kind == "MultiLineString":
        assert len(coords) >= 2
        for line in coords:
            check_geojson_geometry({"type": "LineString", "coordinates": line})
    elif kind == "Polygon":
        _valid_polygon(coords)
    elif kind == "MultiPolygon":
        assert len(coords) >= 2
        for polygon in coords:
            _valid_polygon(polygon)
    else:
        pytest.fail(f"not a GeoJSON geometry type: {kind!r}")


@settings(max_examples=6 * EXAMPLES)
@given(geometry=esri_geometries, has_z=st.none() | st.booleans(), has_m=st.none() | st.booleans())
@example(geometry={"rings": [[[0, 0], [0, 1, "z"], [1, 1], [0, 0]]]}, has_z=True, has_m=None)
@example(geometry={"paths": [[[True, False], [1, 1]]]}, has_z=None, has_m=None)
def test_any_esri_geometry_converts_to_valid_geojson_or_a_geometry_error(
    geometry: Any, has_z: bool | None, has_m: bool | None
) -> None:
    """Any geometry: a valid GeoJSON geometry, None, or GeometryError; nothing else."""
    try:
        converted = esri_geometry_to_geojson(geometry, has_z=has_z, has_m=has_m)
    except GeometryError:
        return
    if converted is not None:
        check_geojson_geometry(converted)


@given(geometry=esri_geometries)
def test_the_converter_never_raises_on_a_geometry(geometry: Any) -> None:
    """GeoJSONConverter writes null for what it cannot convert, and keeps the attributes."""
    converter = GeoJSONConverter()
    feature = converter.feature({"attributes": {"OID": 1}, "geometry": geometry}, "OID")
    assert {"OID": 1} == feature["properties"]
    if feature["geometry"] is not None:
        check_geojson_geometry(feature["geometry"])


# -- URLs -------------------------------------------------------------------------------


def _no_token(url: str, message: str) -> None:
    """*message* about *url* holds the secret only if *url* holds it outside a token=
    query parameter (read as urlsplit reads it: the fragment first, then the query)."""
    before_fragment, _, fragment = url.partition("#")
    head, _, query = before_fragment.partition("?")
    kept = [pair for pair in query.split("&") if not pair.lower().startswith("token=")]
    if SECRET not in head + "&".join(kept) + fragment:
        assert SECRET not in message


url_text = st.text(max_size=60) | st.builds(
    lambda scheme, host, path, query: f"{scheme}://{host}{path}{query}",
    st.sampled_from(["http", "https", "HTTPS", "ftp", ""]),
    st.sampled_from(["gis.example.com", "user:pw@host", "[::1]", "host:99999", "host:x", ""]),
    st.sampled_from(["", "/", "/arcgis/rest/services", "/arcgis/rest/services/A/FeatureServer/0"])
    | st.text(max_size=20).map(lambda t: "/" + t),
    st.sampled_from(["", f"?token={SECRET}", f"?f=json&TOKEN={SECRET}", "#x"]),
)


@settings(max_examples=6 * EXAMPLES)
@given(url=url_text, extras=st.sampled_from(["refuse", "allow"]))
def test_any_text_as_a_url_is_checked_or_refused(url: str, extras: Any) -> None:
    """check_http_url: a typed error without the token, or parts that split cleanly;
    server_root: a ConfigurationError, or a root without query or fragment."""
    try:
        root = server_root(url)
    except ConfigurationError as exc:
        _no_token(url, str(exc))
    else:
        assert "?" not in root
        assert "#" not in root
    try:
        parts = check_http_url(url, "url", InvalidServiceURL, extras=extras)
    except InvalidServiceURL as exc:
        _no_token(url, str(exc))
        return
    assert parts.scheme.lower() in ("http", "https")
    assert parts.hostname
    split = split_services_url(parts)
    if split is not None:
        root, below = split
        assert root.endswith("/rest/services")
        assert not below.startswith("/")


@settings(max_examples=6 * EXAMPLES)
@given(path=url_text | st.lists(st.sampled_from(["a", "..", ".", "", "B c"])).map("/".join))
def test_any_endpoint_joins_below_the_root_or_is_refused(path: str) -> None:
    """join_endpoint and check_service_path: a URL below the root, or InvalidParameterError."""
    try:
        joined = join_endpoint(ROOT, path)
    except InvalidParameterError as exc:
        _no_token(path, str(exc))
    else:
        assert joined == ROOT or joined.startswith((ROOT + "/", ROOT + "?"))
    try:
        clean = check_service_path(path)
    except InvalidParameterError as exc:
        _no_token(path, str(exc))
    else:
        assert clean == check_service_path(clean)
        assert all(segment not in ("", ".", "..") for segment in clean.split("/"))


@pytest.mark.parametrize("endpoint", ["//[", "//x]/query", "a//[b"])
def test_an_endpoint_urlsplit_cannot_read_is_a_parameter_error(endpoint: str) -> None:
    """An unclosed IPv6 bracket (found by the property tests): InvalidParameterError, not
    urlsplit's ValueError."""
    with pytest.raises(InvalidParameterError, match="endpoint"):
        join_endpoint(ROOT, endpoint)


@pytest.mark.parametrize("path", ["/\r0", " / 0", "0/ ", "\t/0/\n"])
def test_a_service_path_is_cleaned_once_for_all(path: str) -> None:
    """Spaces and slashes around a path go in any order ("/\\r0" once came out as
    "\\r0", and "0" the second time): cleaning it again changes nothing."""
    assert "0" == check_service_path(path) == check_service_path(check_service_path(path))


@settings(max_examples=6 * EXAMPLES)
@given(tail=url_text, kind=st.sampled_from(["FeatureServer", "MapServer"]))
def test_any_layer_url_splits_or_is_refused(tail: str, kind: str) -> None:
    """split_layer_url: (service, id) that rebuild the URL, or InvalidServiceURL."""
    for url in (tail, f"{ROOT}/{tail}", f"{ROOT}/Folder/{tail}/{kind}/0"):
        try:
            service, layer_id = split_layer_url(url, ROOT, kind)
        except InvalidServiceURL:
            continue
        assert service.endswith(f"/{kind}")
        assert url.split("?", 1)[0].rstrip("/") == f"{ROOT}/{service}/{layer_id}"


@settings(max_examples=4 * EXAMPLES)
@given(url=url_text | st.builds("{}{}".format, url_text, st.sampled_from(["[", "]", "%"])))
@example(url=f"http://[host/?token={SECRET}")
def test_redact_url_keeps_tokens_out(url: str) -> None:
    """A token= parameter never survives redact_url, whatever the rest of the text."""
    _no_token(url, redact_url(url))
