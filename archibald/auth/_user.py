"""`UserTokenAuth`: tokens from a username and password, through generateToken."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

import attrs
import httpx

from .._secrets import Secret, origin_of
from .._urls import server_root
from ..config import TokenPolicy
from ..exceptions import ConfigurationError, TokenRefreshError
from ._base import TokenPlacement
from ._env import PORTAL_URL, read_env
from ._refresher import RefreshingAuth
from ._server import discover_token_url
from ._source import IssuedToken, TokenSource, lifetime_from_expires
from ._token_http import (
    check_minutes,
    check_token_url,
    post_token_form,
    token_endpoint,
)

__all__ = ["UserTokenAuth"]

DEFAULT_REFERER = "archibald"


@attrs.define(kw_only=True)
class _GenerateToken(TokenSource):
    """POST username and password to generateToken; read ``token`` and ``expires``.

    For a standalone server, ``url`` starts as None and is discovered from the server's
    ``rest/info`` on the first fetch.
    """

    url: str | None
    username: str
    password: Secret
    expiration: int  # minutes
    referer: str | None
    server_url: str | None = None

    def describe(self) -> str:
        return f"user {self.username!r} at {self.server_url or self.url}"

    def origins(self) -> frozenset[str]:
        where = self.server_url or self.url
        assert where is not None
        return frozenset({origin_of(where)})

    async def fetch(self, http: httpx.AsyncClient) -> IssuedToken:
        if self.url is None:
            assert self.server_url is not None
            self.url = await discover_token_url(http, self.server_url, f"user {self.username!r}")
        form = {
            "username": self.username,
            "password": self.password.reveal(),
            "expiration": str(self.expiration),
            "f": "json",
        }
        if self.referer is not None:
            form |= {"client": "referer", "referer": self.referer}
        else:
            form["client"] = "requestip"
        body = await post_token_form(
            http,
            self.url,
            form,
            who=f"user {self.username!r}",
            secrets=[self.password.reveal()],
            refused_hint="check the username (it is case-sensitive) and the password",
        )
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise TokenRefreshError(
                f"{self.url} answered the token request for user {self.username!r} "
                f"without a token (keys: {', '.join(sorted(body)) or 'none'})"
            )
        lifetime = lifetime_from_expires(body.get("expires"), self.expiration * 60.0)
        return IssuedToken(value=token, lifetime=lifetime)


class UserTokenAuth(RefreshingAuth[_GenerateToken]):
    """Tokens for a named user, from ArcGIS Online, a Portal, or a standalone ArcGIS Server.

    POSTs the username and password to ``<base_url>/sharing/rest/generateToken`` (or to
    *token_url*) and renews the token in the background before it expires.

    ```python
    async with UserTokenAuth("bob", password) as auth:
        async with httpx.AsyncClient(auth=auth) as http:
            ...
    ```

    Args:
        username: The ArcGIS username (case-sensitive).
        password: The password. It is never shown in a repr, a log or a message.
        base_url: The portal: ``https://www.arcgis.com``, ``https://<org>.maps.arcgis.com``
            or an Enterprise portal such as ``https://gis.example.com/portal``.
        expiration: The token lifetime to ask for, in minutes. Servers may grant less;
            the auth renews on the lifetime the server grants.
        token_url: The generateToken endpoint, when it is not the portal's: for a
            standalone ArcGIS Server, ``https://<host>/arcgis/tokens/generateToken``.
        referer: The referer the token is bound to (``client=referer``); every authorized
            request then carries it as its ``Referer`` header. None binds the token to
            the caller's IP address instead (``client=requestip``).
        placement: Where requests carry the token.
        policy: When to renew and how to retry.
        http_client: The client for token requests; by default one is made on entry.

    Raises:
        ConfigurationError: An argument is invalid, or a URL would send the password
            over plain HTTP.
    """

    def __init__(
        self,
        username: str,
        password: str,
        base_url: str = "https://www.arcgis.com",
        expiration: int = 60,
        *,
        token_url: str | None = None,
        referer: str | None = DEFAULT_REFERER,
        placement: TokenPlacement = TokenPlacement.AUTHORIZATION,
        policy: TokenPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not isinstance(username, str) or not username:
            raise ConfigurationError("username must be a non-empty string")
        if not isinstance(password, str) or not password:
            raise ConfigurationError(f"the password for user {username!r} must not be empty")
        check_minutes(expiration)
        super().__init__(
            _GenerateToken(
                url=token_endpoint(base_url, token_url, "generateToken"),
                username=username,
                password=Secret(password),
                expiration=expiration,
                referer=referer,
            ),
            policy=policy,
            placement=placement,
            referer=referer,
            http_client=http_client,
        )

    @classmethod
    def for_server(
        cls,
        server_url: str,
        username: str,
        password: str,
        expiration: int = 60,
        *,
        referer: str | None = DEFAULT_REFERER,
        placement: TokenPlacement = TokenPlacement.AUTHORIZATION,
        policy: TokenPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> Self:
        """Tokens from a standalone ArcGIS Server, its token endpoint found in ``rest/info``.

        ```python
        auth = UserTokenAuth.for_server("https://gis.example.com/arcgis", "bob", password)
        ```

        On entry, the auth reads ``<server>/rest/info`` for ``authInfo.tokenServicesUrl``
        (which must be on the server's own origin) and then signs in there. A server
        federated with a portal says so in ``rest/info``; entering then fails with a
        `TokenRefreshError` that says to sign in to the portal and use
        `FederatedServerAuth`.

        Args:
            server_url: The server root (``https://host/arcgis``); a URL that goes on to
                ``/rest/services`` is cut back to its root.
            username: The username.
            password: The password.
            expiration: The token lifetime to ask for, in minutes.
            referer: As for the constructor; None asks for an IP-bound token
                (``client=requestip``).
            placement: Where requests carry the token.
            policy: When to renew and how to retry.
            http_client: The client for token requests.
        """
        auth = cls(
            username,
            password,
            expiration=expiration,
            token_url=check_token_url(server_root(server_url), "server_url"),
            referer=referer,
            placement=placement,
            policy=policy,
            http_client=http_client,
        )
        source = auth._source
        source.server_url, source.url = source.url, None
        return auth

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: object) -> Self:
        """Build from ``ARCGIS_USERNAME``, ``ARCGIS_PASSWORD`` and, if set,
        ``ARCGIS_PORTAL_URL``; other arguments go to the constructor.

        Raises:
            ConfigurationError: A variable is missing; the message names it.
        """
        env = read_env(
            ("ARCGIS_USERNAME", "ARCGIS_PASSWORD"), f"{cls.__name__}.from_env()", environ
        )
        if PORTAL_URL in env:
            kwargs.setdefault("base_url", env[PORTAL_URL])
        return cls(env["ARCGIS_USERNAME"], env["ARCGIS_PASSWORD"], **kwargs)  # type: ignore[arg-type]

    @property
    def username(self) -> str:
        """The ArcGIS username."""
        return self._source.username

    @property
    def token_url(self) -> str | None:
        """The generateToken endpoint this auth posts to (None until a server's is found)."""
        return self._source.url

    @property
    def expiration(self) -> int:
        """The requested token lifetime in minutes."""
        return self._source.expiration
