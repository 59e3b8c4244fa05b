"""Secrets stay masked; exceptions read well and keep their fields."""

from __future__ import annotations

import pickle
import types

import httpx
import pytest

import archibald
from archibald._responses import arcgis_error, read_envelope, snippet
from archibald._secrets import Secret, is_secure_url, redact_url, scrub
from archibald.auth import APIKeyAuth, AppCredentialsAuth, UserTokenAuth
from archibald.auth._source import lifetime_from_expires
from archibald.exceptions import (
    ArcGISError,
    ArchieClientError,
    ArchieError,
    ConfigurationError,
    InvalidCredentialsError,
    TokenExpiredError,
    TokenRefreshError,
)


def test_a_secret_never_shows_its_value() -> None:
    """repr, str and f-strings of a Secret are a mask; reveal() gives the value."""
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret}"
    assert "hunter2" == secret.reveal()


def test_redact_url_masks_tokens_and_keeps_the_rest() -> None:
    """The token parameter is masked; other parameters and the path are kept."""
    url = "https://h.example.com/arcgis/rest/services?f=json&token=abc123&where=1%3D1"
    redacted = redact_url(url)
    assert "abc123" not in redacted
    assert redacted.startswith("https://h.example.com/arcgis/rest/services?")
    assert "f=json" in redacted
    assert "where=1%3D1" in redacted


def test_only_https_or_loopback_is_secure() -> None:
    """Secrets may go over https anywhere, and over plain http only to loopback."""
    assert is_secure_url("https://www.arcgis.com/sharing/rest")
    assert is_secure_url("http://127.0.0.1:8000/x")
    assert is_secure_url("http://localhost/x")
    assert is_secure_url("http://[::1]:9/x")
    assert not is_secure_url("http://www.arcgis.com/sharing/rest")
    assert not is_secure_url("ftp://127.0.0.1/x")


def test_an_arcgis_error_keeps_its_envelope() -> None:
    """code, message, details, messageCode and a token-free URL, all in the message."""
    error = TokenExpiredError(
        498,
        "Invalid token.",
        ["Invalid token."],
        message_code="GWM_0003",
        url="https://h.example.com/arcgis/rest/services?token=abc123",
    )
    assert (498, "Invalid token.", ["Invalid token."]) == (error.code, error.message, error.details)
    assert "GWM_0003" == error.message_code
    assert "abc123" not in str(error)
    assert "abc123" not in (error.url or "")
    assert "ArcGIS error 498 (GWM_0003): Invalid token. at https://h.example.com" in str(error)
    assert isinstance(error, ArcGISError)
    assert isinstance(error, ArchieError)


def test_exceptions_survive_pickling() -> None:
    """Errors cross process boundaries (multiprocessing, trio.to_thread) intact."""
    error = pickle.loads(pickle.dumps(ArcGISError(400, "Bad", ["x"], url="https://h/x")))
    assert (400, "Bad", ["x"], "https://h/x") == (
        error.code,
        error.message,
        error.details,
        error.url,
    )
    refused = pickle.loads(pickle.dumps(InvalidCredentialsError("no")))
    assert (InvalidCredentialsError, "no", False) == (
        type(refused),
        str(refused),
        refused.retryable,
    )


def test_the_hierarchy_is_as_documented() -> None:
    """Refused credentials are a refresh error; a refresh error is a client error."""
    assert issubclass(InvalidCredentialsError, TokenRefreshError)
    assert issubclass(TokenRefreshError, ArchieClientError)
    assert issubclass(ConfigurationError, ValueError)
    assert not InvalidCredentialsError("x").retryable
    assert TokenRefreshError("x").retryable


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (1800.0, 1800.0),  # the server granted less than asked: believe it
        (-60.0, 3600.0),  # already past: a clock is off, use the request
        (3600.0 * 24, 3600.0),  # far beyond the request: a clock is off, use the request
        (None, 3600.0),  # no expires at all
    ],
)
def test_lifetime_from_expires(offset: float | None, expected: float) -> None:
    """The server's expires is trusted only when it is plausible."""
    now = 1_700_000_000.0
    expires = None if offset is None else (now + offset) * 1000
    assert expected == pytest.approx(lifetime_from_expires(expires, 3600.0, now=now))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"client_id": ""}, "client_id must be a non-empty string"),
        ({"client_id": None}, "client_id must be a non-empty string"),
        ({"client_secret": ""}, "the client secret of app 'app-1' must not be empty"),
        ({"client_secret": b"bytes"}, "the client secret of app 'app-1' must not be empty"),
        ({"expiration": 0}, "at least 1"),
        ({"base_url": "http://www.arcgis.com"}, "must use https://"),
    ],
)
def test_app_credentials_auth_refuses_bad_arguments(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"client_id": "app-1", "client_secret": "sec-SECRET"} | kwargs
    with pytest.raises(ConfigurationError, match=message) as info:
        AppCredentialsAuth(**args)  # type: ignore[arg-type]
    assert "sec-SECRET" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"username": ""}, "username must be a non-empty string"),
        ({"password": ""}, "password for user 'alice' must not be empty"),
        ({"expiration": 0}, "at least 1"),
        ({"expiration": 1.5}, "whole minutes"),
        ({"base_url": "http://www.arcgis.com"}, "must use https://"),
        ({"base_url": "www.arcgis.com"}, "http.s. URL"),
        ({"token_url": "https://h.example.com/t?token=x"}, "query string"),
        ({"referer": ""}, "referer must be"),
        ({"referer": "app\r\nX-Injected: 1"}, "without line breaks"),
        ({"referer": "app\n"}, "without line breaks"),
        ({"base_url": "https://alice:pw-SECRET@www.arcgis.com"}, "user name or password"),
    ],
)
def test_user_token_auth_refuses_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    """Bad arguments fail at construction with ConfigurationError, never echoing a password."""
    args: dict[str, object] = {"username": "alice", "password": "pw-SECRET"} | kwargs
    with pytest.raises(ConfigurationError, match=message) as info:
        UserTokenAuth(**args)  # type: ignore[arg-type]
    assert "pw-SECRET" not in str(info.value)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://www.arcgis.com", "https://www.arcgis.com/sharing/rest/generateToken"),
        ("https://org.maps.arcgis.com/", "https://org.maps.arcgis.com/sharing/rest/generateToken"),
        (
            "https://gis.example.com/portal",
            "https://gis.example.com/portal/sharing/rest/generateToken",
        ),
        (
            "https://gis.example.com/portal/sharing/rest",
            "https://gis.example.com/portal/sharing/rest/generateToken",
        ),
    ],
)
def test_the_token_url_follows_the_portal(base_url: str, expected: str) -> None:
    """generateToken lives under <portal>/sharing/rest, however the portal URL is written."""
    assert expected == UserTokenAuth("alice", "pw", base_url).token_url


def test_the_standalone_server_token_url_is_used_as_given() -> None:
    """token_url overrides the portal's endpoint (standalone ArcGIS Server)."""
    url = "https://gis.example.com/arcgis/tokens/generateToken"
    assert url == UserTokenAuth("alice", "pw", token_url=url).token_url


def test_every_public_name_is_exported_from_the_top() -> None:
    """The names in DESIGN.md are importable from archibald itself and from their modules."""
    from archibald import auth, config, exceptions

    for name in ["ArcGISAuth", "NoAuth", "UserTokenAuth", "TokenPlacement"]:
        assert getattr(archibald, name) is getattr(auth, name)
    assert archibald.TokenPolicy is config.TokenPolicy
    for name in exceptions.__all__:
        assert getattr(archibald, name) is getattr(exceptions, name)
    public = {
        name
        for name in dir(archibald)
        if not name.startswith("_") and not isinstance(getattr(archibald, name), types.ModuleType)
    }
    assert set(archibald.__all__) == public | {"__version__"}


def test_scrub_masks_echoed_forms_of_a_secret() -> None:
    """A server echoing the password URL-encoded or HTML-escaped still shows no secret."""
    secret = "p@ss word&<1>"
    page = (
        f"bad {secret} / p%40ss+word%26%3C1%3E / p%40ss%20word%26%3C1%3E / p@ss word&amp;&lt;1&gt;"
    )
    cleaned = scrub(page, [secret])
    for form in ("p@ss", "p%40ss"):
        assert form not in cleaned


@pytest.mark.parametrize("key", ["AAPK\r\nX-Injected: 1", "AAPK-SECRET\nmore", "AAPK\x00SECRET"])
def test_an_api_key_that_would_split_a_header_is_refused(key: str) -> None:
    """A line break or control character inside an API key fails at construction, unshown."""
    with pytest.raises(ConfigurationError, match="line break") as info:
        APIKeyAuth(key)
    assert "SECRET" not in str(info.value)
    assert "AAPK" not in str(info.value)


def test_a_trailing_newline_around_an_api_key_is_trimmed() -> None:
    """A key read from a file with its newline still works (the ends are trimmed)."""
    assert "APIKeyAuth(api_key=********)" == repr(APIKeyAuth("AAPK-key\n"))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"features": [{"attributes": {"OBJECTID": 1, "NAME": "caf\\u00e9"}}]}',
         {"features": [{"attributes": {"OBJECTID": 1, "NAME": "café"}}]}),
        (b'{"count": 9223372036854775807}', {"count": 9223372036854775807}),
        (b'{"xmin": NaN}', "nan"),  # some servers write NaN bare; orjson refuses it
        ('{"count": 3}'.encode("utf-16"), {"count": 3}),  # orjson reads UTF-8 only
    ],
)  # fmt: skip
def test_answers_decode_as_the_standard_library_reads_them(
    content: bytes, expected: object
) -> None:
    """The fast decoder gives what json.loads gives, falling back to it where it must."""
    import json
    import math

    from archibald._responses import decode_json

    decoded = decode_json(content)
    if expected == "nan":
        assert math.isnan(decoded["xmin"])
    else:
        assert expected == decoded == json.loads(content)


def test_an_answer_that_is_not_json_is_a_value_error() -> None:
    from archibald._responses import decode_json

    with pytest.raises(ValueError, match="Expecting value"):
        decode_json(b"<html>")


def test_redact_url_masks_a_url_urlsplit_cannot_read() -> None:
    """A malformed URL (an unclosed IPv6 bracket) still has its token and user masked."""
    redacted = redact_url("http://bob:pw@[host/query?f=json&TOKEN=abc123&password=pw")
    assert "http://********@[host/query?f=json&TOKEN=********&password=********" == redacted


def test_a_snippet_cut_through_a_secret_shows_none_of_it() -> None:
    """A body cut at 200 characters in the middle of a secret: masked before the cut."""
    response = httpx.Response(502, content=("x" * 195 + "s3cr3tKEYzz9").encode())
    assert "x" * 195 + "*****…" == snippet(response, ["s3cr3tKEYzz9"])


def test_a_message_code_that_echoes_a_secret_is_masked() -> None:
    """An envelope's messageCode is server text like its message: secrets masked."""
    envelope = read_envelope({"error": {"code": 400, "messageCode": "bad token abc123"}})
    assert envelope is not None
    error = arcgis_error(envelope, url=None, secrets=["abc123"])
    assert "bad token ********" == error.message_code
    assert "abc123" not in str(error)
