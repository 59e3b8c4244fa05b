"""Tokens for FakeArcGIS: who may sign in, the tokens handed out, and the checks they pass.

`Tokens` answers the token endpoints (generateToken, its federated exchange, and
oauth2/token) and decides whether a request's token lets it use a service. Token life
runs on anyio's clock, so on Trio's MockClock an hour passes at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Literal, Protocol

import anyio
import attrs

from ._data import FakeService
from ._faults import Faults
from ._statistics import Counters
from ._wire import ErrorStyle, Refusal, Request, Response, json_response

__all__ = ["ServerKind", "TokenSettings", "Tokens"]

ServerKind = Literal["hosted", "federated", "standalone"]

_UNABLE = "Unable to generate token."
_FORBIDDEN = "You do not have permissions to access this resource or perform this operation."


class TokenSettings(Protocol):
    """The emulator settings tokens depend on, read at every request (tests change them)."""

    @property
    def site(self) -> str: ...

    @property
    def server(self) -> ServerKind: ...

    @property
    def max_token_minutes(self) -> float: ...

    @property
    def error_style(self) -> ErrorStyle: ...

    @property
    def faults(self) -> Faults: ...


@attrs.define(eq=False)
class _Token:
    value: str
    subject: str
    expires_at: float  # anyio clock
    referer: str | None
    scope: str  # "portal", "server" or "apikey"


class Tokens:
    """The emulator's sign-in: users, apps, API keys, and the tokens issued to them.

    Token values come from *rng*, so a seeded emulator hands out the same tokens on
    every run; *counters* counts the tokens issued.
    """

    def __init__(self, settings: TokenSettings, *, rng: random.Random, counters: Counters) -> None:
        self._settings = settings
        self._rng = rng
        self._counters = counters
        self._users: dict[str, str] = {}
        self._apps: dict[str, str] = {}
        self._tokens: dict[str, _Token] = {}

    # -- set-up and switches -----------------------------------------------------------

    def add_user(self, username: str, password: str) -> None:
        self._users[username] = password

    def add_app(self, client_id: str, client_secret: str) -> None:
        self._apps[client_id] = client_secret

    def add_api_key(self, key: str) -> None:
        self._tokens[key] = _Token(key, "apikey", float("inf"), None, "apikey")

    def revoke_all(self) -> None:
        self._tokens.clear()

    def expire(self, token: str) -> None:
        record = self._tokens.get(token)
        if record is not None:
            record.expires_at = anyio.current_time()

    def issued(self) -> list[str]:
        return list(self._tokens)

    # -- the token endpoints -----------------------------------------------------------

    async def generate_token(self, request: Request) -> Response:
        """generateToken: a token for a username and password, or a federated exchange."""
        if request.method != "POST":
            raise Refusal(400, _UNABLE, ["generateToken requires POST."])
        params = request.params
        if "serverUrl" in params and "token" in params:
            return self._exchange(request)
        username, password = params.get("username", ""), params.get("password", "")
        if not username or not password:
            raise Refusal(400, _UNABLE, ["'username' and 'password' must be specified."])
        if self._settings.faults.refuse_credentials or self._users.get(username) != password:
            raise Refusal(400, _UNABLE, ["Invalid username or password."])
        referer = _referer(params)
        scope = "portal" if request.path.startswith("/sharing/") else "server"
        minutes = self._minutes(params.get("expiration"), default=60)
        token = self._issue(username, minutes * 60.0, referer, scope)
        body = {"token": token, "expires": int((time.time() + minutes * 60) * 1000)}
        if request.origin.startswith("https://"):
            body["ssl"] = True
        return json_response(body)

    def _exchange(self, request: Request) -> Response:
        """A server token for a portal token, as a federated server's portal gives."""
        site, server = self._settings.site, self._settings.server
        if not request.path.startswith("/sharing/") or server == "standalone":
            raise Refusal(400, _UNABLE, ["Token exchange is not available."])
        if request.params["serverUrl"].rstrip("/") != f"{request.origin}/{site}":
            raise Refusal(400, _UNABLE, ["'serverUrl' is not a federated server."])
        portal = self._valid(request.params["token"], request)
        if portal is None or portal.scope != "portal":
            raise Refusal(498, "Invalid token.", ["Invalid token."])
        minutes = self._minutes(request.params.get("expiration"), default=60)
        remaining = portal.expires_at - anyio.current_time()
        lifetime = min(minutes * 60.0, remaining)
        token = self._issue(portal.subject, lifetime, portal.referer, "server")
        return json_response({"token": token, "expires": int((time.time() + lifetime) * 1000)})

    async def oauth_token(self, request: Request) -> Response:
        """oauth2/token: an app's token for its client id and secret (client_credentials)."""
        params = request.params
        if request.method != "POST":
            return self._oauth_error("invalid_request", "oauth2/token requires POST.")
        if params.get("grant_type") != "client_credentials":
            return self._oauth_error(
                "unsupported_grant_type", "Only client_credentials is supported."
            )
        client_id = params.get("client_id", "")
        if client_id not in self._apps or self._settings.faults.refuse_credentials:
            return self._oauth_error("invalid_client_id", "Invalid client_id")
        if self._apps[client_id] != params.get("client_secret"):
            return self._oauth_error("invalid_client", "Invalid client_secret")
        minutes = self._minutes(params.get("expiration"), default=120)
        token = self._issue(client_id, minutes * 60.0, None, "portal")
        return json_response({"access_token": token, "expires_in": round(minutes * 60)})

    def _oauth_error(self, name: str, description: str) -> Response:
        error = {
            "code": 400,
            "error": name,
            "error_description": description,
            "message": description,
            "details": [],
        }
        status = 400 if self._settings.error_style == "http" else 200
        return json_response({"error": error}, status)

    def _minutes(self, value: str | None, *, default: int) -> float:
        try:
            minutes = int(value) if value else default
        except ValueError as exc:
            raise Refusal(400, _UNABLE, ["'expiration' must be a number."]) from exc
        return min(max(1, minutes), self._settings.max_token_minutes)

    def _issue(self, subject: str, lifetime: float, referer: str | None, scope: str) -> str:
        value = f"fake-{scope}-{self._rng.getrandbits(96):024x}"
        self._tokens[value] = _Token(
            value, subject, anyio.current_time() + lifetime, referer, scope
        )
        self._counters.tokens_issued += 1
        return value

    # -- checking a presented token ----------------------------------------------------

    def authorize(self, request: Request, service: FakeService) -> None:
        """Refuse *request* unless its token (if any) lets it use *service*."""
        token = _presented(request)
        if token is None:
            if service.secured:
                raise Refusal(499, "Token Required", ["Token Required"], "GWM_0003")
            return
        # As on ArcGIS Online, a bad token is refused even where none is needed.
        record = self._accepted(token, request)
        if (
            service.secured
            and service.allowed is not None
            and record.subject not in service.allowed
        ):
            raise Refusal(403, _FORBIDDEN, [], "GWM_0003")

    def editor(self, request: Request) -> str | None:
        """Who edits through *request*: its valid token's user (or app), else None."""
        token = _presented(request)
        record = self._valid(token, request) if token is not None else None
        return record.subject if record is not None else None

    def signed_in(self, request: Request) -> bool:
        """Whether *request* carries a token; refused if that token is not valid here."""
        token = _presented(request)
        if token is None:
            return False
        self._accepted(token, request)
        return True

    def _accepted(self, token: str, request: Request) -> _Token:
        """The record of *token*, valid and of a kind the services take; else 498."""
        record = self._valid(token, request)
        if record is None or (record.scope == "portal" and self._settings.server != "hosted"):
            raise Refusal(498, "Invalid token.", ["Invalid token."])
        return record

    def _valid(self, value: str, request: Request) -> _Token | None:
        record = self._tokens.get(value)
        if record is None or anyio.current_time() >= record.expires_at:
            return None
        if record.referer is not None and request.headers.get("referer") != record.referer:
            return None
        return record


def _presented(request: Request) -> str | None:
    for header in ("x-esri-authorization", "authorization"):
        value = request.headers.get(header, "")
        if value[:7].lower() == "bearer " and value[7:].strip():
            return value[7:].strip()
    return request.params.get("token") or None


def _referer(params: Mapping[str, str]) -> str | None:
    """The referer a generateToken request binds its token to, if any (``client``)."""
    client = params.get("client", "requestip").lower()
    if client not in ("referer", "requestip", "ip"):
        raise Refusal(400, _UNABLE, [f"Invalid client: {client}."])
    if client == "ip" and not params.get("ip"):
        raise Refusal(400, _UNABLE, ["'ip' must be specified."])
    if client != "referer":
        return None
    referer = params.get("referer")
    if not referer:
        raise Refusal(400, _UNABLE, ["'referer' must be specified."])
    return referer
