"""A scriptable generateToken endpoint for the auth tests, served by httpx.MockTransport.

Its clock is anyio's, like the auth's, so it can judge whether a token was still valid
when it was used. The ArcGIS emulator (archibald.testing) is the full-featured version;
this one does only what the token lifecycle tests need, and records every request.
"""

from __future__ import annotations

import time
from typing import Literal
from urllib.parse import parse_qs

import anyio
import attrs
import httpx

TOKEN_URL = "https://portal.example.com/sharing/rest/generateToken"
USERNAME = "alice"
PASSWORD = "hunter2-SECRET-password"
TOKEN_PREFIX = "tok-SECRET-"

Mode = Literal["ok", "down", "unavailable", "busy-json", "html", "refuse", "not-found", "no-token"]


@attrs.define
class Issued:
    value: str
    issued_at: float
    expires_at: float


@attrs.define
class Sent:
    at: float
    form: dict[str, str]


@attrs.define
class FakeTokenServer:
    """generateToken with switches: outage, refused credentials, latency, lifetime cap."""

    mode: Mode = "ok"
    latency: float = 0.0
    max_expiration: int | None = None  # minutes, like a server's cap
    expires_offset: float | None = None  # seconds from now to report, overriding the truth
    requests: list[Sent] = attrs.Factory(list)
    issued: list[Issued] = attrs.Factory(list)

    def client(self) -> httpx.AsyncClient:
        """An httpx client whose requests this server answers (no sockets)."""
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def valid_at(self, token: str, at: float) -> bool:
        """Whether *token* was issued by this server and unexpired at time *at*."""
        return any(i.value == token and i.issued_at <= at < i.expires_at for i in self.issued)

    @property
    def secrets(self) -> list[str]:
        """The password and every token issued: none may reach a log or a message."""
        return [PASSWORD, *(i.value for i in self.issued)]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.requests.append(Sent(anyio.current_time(), form))
        if self.latency:
            await anyio.sleep(self.latency)
        if self.mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if self.mode == "unavailable":
            return httpx.Response(503, text="Service Unavailable")
        if self.mode == "busy-json":  # a busy server that still answers in JSON
            return httpx.Response(
                503, json={"error": {"code": 503, "message": "Service is busy, retry later."}}
            )
        if self.mode == "html":
            return httpx.Response(
                200,
                text="<html><body>Gateway hiccup</body></html>",
                headers={"Content-Type": "text/html"},
            )
        if self.mode == "not-found":
            return httpx.Response(404, text="Not Found")
        if self.mode == "no-token":
            return httpx.Response(200, json={"expires": 0})
        if self.mode == "refuse" or (form.get("username"), form.get("password")) != (
            USERNAME,
            PASSWORD,
        ):
            return httpx.Response(
                200,
                json={
                    "error": {
                        "code": 400,
                        "message": "Unable to generate token.",
                        "details": ["Invalid username or password."],
                    }
                },
            )
        minutes = int(form.get("expiration", "60"))
        if self.max_expiration is not None:
            minutes = min(minutes, self.max_expiration)
        now = anyio.current_time()
        value = f"{TOKEN_PREFIX}{len(self.issued) + 1}"
        self.issued.append(Issued(value, now, now + minutes * 60))
        offset = minutes * 60 if self.expires_offset is None else self.expires_offset
        return httpx.Response(
            200, json={"token": value, "expires": int((time.time() + offset) * 1000), "ssl": True}
        )
