"""`AppCredentialsAuth`: tokens for an application, through OAuth2 client credentials."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Self

import attrs
import httpx

from .._secrets import Secret, origin_of
from ..config import TokenPolicy
from ..exceptions import ConfigurationError, TokenRefreshError
from ._base import TokenPlacement
from ._env import PORTAL_URL, read_env
from ._refresher import RefreshingAuth
from ._source import IssuedToken, TokenSource
from ._token_http import (
    check_minutes,
    post_token_form,
    token_endpoint,
)

__all__ = ["AppCredentialsAuth"]


@attrs.frozen(kw_only=True)
class _ClientCredentials(TokenSource):
    """POST client_id and client_secret with grant_type=client_credentials."""

    url: str
    client_id: str
    client_secret: Secret
    expiration: int  # minutes, as the request wants; the answer is in seconds

    def describe(self) -> str:
        return f"app {self.client_id!r} at {self.url}"

    def origins(self) -> frozenset[str]:
        return frozenset({origin_of(self.url)})

    async def fetch(self, http: httpx.AsyncClient) -> IssuedToken:
        body = await post_token_form(
            http,
            self.url,
            {
                "client_id": self.client_id,
                "client_secret": self.client_secret.reveal(),
                "grant_type": "client_credentials",
                "expiration": str(self.expiration),
                "f": "json",
            },
            who=f"app {self.client_id!r}",
            secrets=[self.client_secret.reveal()],
            refused_hint="check the client id and client secret of the app's credentials",
        )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenRefreshError(
                f"{self.url} answered the token request for app {self.client_id!r} without "
                f"an access_token (keys: {', '.join(sorted(body)) or 'none'})"
            )
        requested = self.expiration * 60.0
        granted = body.get("expires_in")
        lifetime = requested
        # Seconds, as granted: a server may cap the lifetime, but never extends it.
        if (
            isinstance(granted, int | float)
            and not isinstance(granted, bool)
            and math.isfinite(granted)
            and 0 < granted <= requested + 60
        ):
            lifetime = float(granted)
        return IssuedToken(value=token, lifetime=lifetime)


class AppCredentialsAuth(RefreshingAuth[_ClientCredentials]):
    """Tokens for an application (OAuth2 client credentials), renewed in the background.

    For services and daemons that sign in as an app rather than a person: POSTs the
    client id and secret to ``<base_url>/sharing/rest/oauth2/token``.

    ```python
    auth = AppCredentialsAuth("my-client-id", client_secret)
    async with ArchieClient(services_url, auth) as client:
        ...
    ```

    Args:
        client_id: The app's client id.
        client_secret: The app's client secret; never shown in a repr, log or message.
        base_url: The portal: ``https://www.arcgis.com`` or your Enterprise portal.
        expiration: The token lifetime to ask for, in minutes (the answer's
            ``expires_in`` is in seconds, and wins when the server grants less).
        token_url: The ``oauth2/token`` endpoint, if not the portal's usual one.
        placement: Where requests carry the token.
        policy: When to renew and how to retry.
        http_client: The client for token requests; by default one is made on entry.

    Raises:
        ConfigurationError: An argument is invalid, or a URL is not HTTPS.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        base_url: str = "https://www.arcgis.com",
        expiration: int = 120,
        *,
        token_url: str | None = None,
        placement: TokenPlacement = TokenPlacement.AUTHORIZATION,
        policy: TokenPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        if not isinstance(client_secret, str) or not client_secret:
            raise ConfigurationError(f"the client secret of app {client_id!r} must not be empty")
        check_minutes(expiration)
        super().__init__(
            _ClientCredentials(
                url=token_endpoint(base_url, token_url, "oauth2/token"),
                client_id=client_id,
                client_secret=Secret(client_secret),
                expiration=expiration,
            ),
            policy=policy,
            placement=placement,
            http_client=http_client,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: object) -> Self:
        """Build from ``ARCGIS_CLIENT_ID``, ``ARCGIS_CLIENT_SECRET`` and, if set,
        ``ARCGIS_PORTAL_URL``; other arguments go to the constructor.

        Raises:
            ConfigurationError: A variable is missing; the message names it.
        """
        env = read_env(
            ("ARCGIS_CLIENT_ID", "ARCGIS_CLIENT_SECRET"), f"{cls.__name__}.from_env()", environ
        )
        if PORTAL_URL in env:
            kwargs.setdefault("base_url", env[PORTAL_URL])
        return cls(env["ARCGIS_CLIENT_ID"], env["ARCGIS_CLIENT_SECRET"], **kwargs)  # type: ignore[arg-type]

    @property
    def client_id(self) -> str:
        """The app's client id."""
        return self._source.client_id
