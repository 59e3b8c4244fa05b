"""One token request: send a form, read the answer, classify what went wrong.

Token endpoints (generateToken, oauth2/token) answer refusals as HTTP 200 with an ArcGIS
error envelope, so the body decides as much as the status does. Every failure becomes a
`TokenRefreshError` whose ``retryable`` flag tells the refresher whether to try again;
refused credentials become `InvalidCredentialsError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from .._responses import Envelope, is_transient, read_envelope, snippet
from .._secrets import is_secure_url, scrub
from .._urls import check_http_url, portal_endpoint
from .._validate import is_whole
from ..exceptions import ConfigurationError, InvalidCredentialsError, TokenRefreshError

# Error-envelope codes that mean the credentials (or the request for them) were refused.
_REFUSED_CODES = frozenset({400, 401, 403})
# OAuth2 error names (RFC 6749 section 5.2) that mean the client itself was refused.
_OAUTH_REFUSALS = frozenset(
    {"invalid_client", "invalid_request", "invalid_grant", "unauthorized_client"}
)
# OAuth2 error names that mean: try again later.
_OAUTH_TRANSIENT = frozenset({"server_error", "temporarily_unavailable"})


def check_token_url(url: object, what: str) -> str:
    """Return *url* normalised, or raise `ConfigurationError` if secrets may not go there."""
    url = check_http_url(url, what, ConfigurationError).geturl().rstrip("/")
    if not is_secure_url(url):
        raise ConfigurationError(
            f"{what} must use https:// (credentials would travel in clear text): {url!r}; "
            "plain http is accepted for loopback addresses only"
        )
    return url


def token_endpoint(base_url: str, token_url: str | None, operation: str) -> str:
    """The token endpoint: *token_url* if given, else the portal's *operation* below
    *base_url*; either checked with `check_token_url`."""
    if token_url is not None:
        return check_token_url(token_url, "token_url")
    return portal_endpoint(check_token_url(base_url, "base_url"), operation)


def check_minutes(expiration: object) -> int:
    """A token lifetime request, in whole minutes (at least 1)."""
    if not is_whole(expiration, 1):
        raise ConfigurationError(
            f"expiration is in whole minutes and must be at least 1, got {expiration!r}"
        )
    return expiration


async def post_token_form(
    http: httpx.AsyncClient,
    url: str,
    form: Mapping[str, str],
    *,
    who: str,
    secrets: Sequence[str],
    refused_hint: str,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST *form* to the token endpoint *url*; return the JSON object it answered.

    Args:
        http: The client to send with.
        url: The token endpoint (free of secrets).
        form: The form fields, secrets included.
        who: Whose token this is, for messages (no secret).
        secrets: Values to mask in any server text quoted in a message.
        refused_hint: What to check when the credentials are refused.
        headers: More request headers (a ``Referer`` for a referer-bound token).
    """
    try:
        response = await http.post(
            url, data=dict(form), headers={"Accept": "application/json", **(headers or {})}
        )
    except httpx.TimeoutException as exc:
        raise TokenRefreshError(
            f"the token request for {who} to {url} timed out ({type(exc).__name__})"
        ) from exc
    except httpx.RequestError as exc:
        raise TokenRefreshError(
            f"could not reach {url} for a token for {who}: {type(exc).__name__}"
        ) from exc

    status = response.status_code
    body = _json_object(response)
    transient = is_transient(status, token_endpoint=True)
    envelope = read_envelope(body) if body is not None else None
    if envelope is not None and not transient:
        raise _envelope_error(envelope, url, who, secrets, refused_hint)
    if status >= 400:
        # A busy or failing server is worth retrying whatever its body says.
        hint = "" if transient else "; check the token URL"
        raise TokenRefreshError(
            f"{url} answered HTTP {status} {response.reason_phrase} to the token request "
            f"for {who}{hint}: {snippet(response, secrets, 160)}",
            retryable=transient,
        )
    if body is None:
        raise TokenRefreshError(
            f"{url} answered the token request for {who} with something other than a JSON "
            f"object (HTTP {status}): {snippet(response, secrets, 160)}"
        )
    return body


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return data if isinstance(data, dict) else None


def _envelope_error(
    envelope: Envelope,
    url: str,
    who: str,
    secrets: Sequence[str],
    refused_hint: str,
) -> TokenRefreshError:
    """Turn a token endpoint's error envelope into the matching exception."""
    parts = [envelope.message, envelope.oauth_error or "", *envelope.details]
    text = scrub("; ".join(dict.fromkeys(p for p in parts if p)), secrets)
    code = envelope.code
    label = f"error {code}" if code is not None else "an error"
    if is_transient(code, token_endpoint=True) or envelope.oauth_error in _OAUTH_TRANSIENT:
        return TokenRefreshError(f"{url} answered {label} to the token request for {who}: {text}")
    if code in _REFUSED_CODES or envelope.oauth_error in _OAUTH_REFUSALS:
        return InvalidCredentialsError(
            f"{url} refused the credentials of {who} ({label}: {text}); {refused_hint}"
        )
    return TokenRefreshError(
        f"{url} answered {label} to the token request for {who}: {text}", retryable=False
    )


async def get_info(http: httpx.AsyncClient, url: str, *, who: str) -> dict[str, Any]:
    """GET an ArcGIS ``info`` document (``f=json``); failures are `TokenRefreshError`."""
    try:
        response = await http.get(url, params={"f": "json"}, headers={"Accept": "application/json"})
    except httpx.TimeoutException as exc:
        raise TokenRefreshError(
            f"reading {url} for {who} timed out ({type(exc).__name__})"
        ) from exc
    except httpx.RequestError as exc:
        raise TokenRefreshError(f"could not reach {url} for {who}: {type(exc).__name__}") from exc
    status = response.status_code
    body = _json_object(response)
    transient = is_transient(status, token_endpoint=True)
    if status >= 400 or body is None or read_envelope(body) is not None:
        detail = f"HTTP {status}: {snippet(response, (), 160)}"
        raise TokenRefreshError(
            f"could not read {url} for {who} ({detail})", retryable=transient or body is None
        )
    return body
