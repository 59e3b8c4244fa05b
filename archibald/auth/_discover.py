"""Where to sign in for a server, as ArcGIS clients find out: from its ``rest/info``.

- A server federated with a portal names it in ``owningSystemUrl``: sign in at the portal
  and exchange its token for one of this server (`FederatedServerAuth`).
- ArcGIS Online's hosted services (``*.arcgis.com``) name ArcGIS Online there too, but take
  its token as it is (as Esri's own client does), so no exchange is needed.
- A standalone server names its token endpoint (``authInfo.tokenServicesUrl``).

Credentials go only where the server itself points, over HTTPS (loopback excepted).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .._urls import arcgis_online_environment, server_root
from ..config import TokenPolicy
from ..exceptions import ConfigurationError
from ._app import AppCredentialsAuth
from ._base import TokenPlacement
from ._refresher import RefreshingAuth
from ._server import FederatedServerAuth, discover_token_url
from ._token_http import check_token_url, get_info
from ._user import DEFAULT_REFERER, UserTokenAuth

__all__ = ["discover_auth"]


async def discover_auth(
    url: str,
    username: str | None = None,
    password: str | None = None,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    expiration: int = 60,
    referer: str | None = DEFAULT_REFERER,
    placement: TokenPlacement = TokenPlacement.AUTHORIZATION,
    policy: TokenPolicy | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> RefreshingAuth[Any]:
    """The auth for the ArcGIS Server at *url*, signing in where the server says.

    Reads ``<server>/rest/info`` once and returns an auth that is not entered yet:

    - a server federated with a portal (``owningSystemUrl``): a `FederatedServerAuth`
      over a portal auth that signs in at that portal;
    - a service hosted on ArcGIS Online (``*.arcgis.com``): a portal auth at ArcGIS Online,
      whose token these services take as it is;
    - a standalone server: a `UserTokenAuth` posting to its ``tokenServicesUrl`` (which
      must be on the server's own origin).

    ```python
    url = "https://gis.example.com/server/rest/services/Roads/FeatureServer/0"
    auth = await discover_auth(url, "bob", password)
    async with ArchieClient("https://gis.example.com/server/rest/services", auth) as c:
        ...
    ```

    Give a username and password, or (for a portal) an app's client id and secret. To
    sign in somewhere else, build the auth yourself (`UserTokenAuth(..., base_url=...)`).

    Args:
        url: The server, or any URL below it (a service or layer URL).
        username: The user to sign in as.
        password: The user's password.
        client_id: An app's client id instead (OAuth2 client credentials).
        client_secret: The app's client secret.
        expiration: The token lifetime to ask for, in minutes.
        referer: As for `UserTokenAuth`.
        placement: Where requests carry the token.
        policy: When to renew and how to retry.
        http_client: The client for ``rest/info`` and token requests; by default one is
            made (for ``rest/info``, and by the auth on entry).

    Raises:
        ConfigurationError: The credentials are incomplete, or do not fit the server (an
            app's credentials for a standalone server).
        TokenRefreshError: ``rest/info`` cannot be read, or does not say where to sign in.
    """
    by_user = username is not None or password is not None
    by_app = client_id is not None or client_secret is not None
    if by_user == by_app or (by_user and not (username and password)):
        raise ConfigurationError(
            "discover_auth needs a username and password, or a client_id and client_secret"
        )
    if by_app and not (client_id and client_secret):
        raise ConfigurationError("discover_auth needs both client_id and client_secret")
    root = check_token_url(server_root(url), "the server URL")
    async with _client(http_client, policy) as http:
        info = await get_info(http, f"{root}/rest/info", who="signing in")
        owner = info.get("owningSystemUrl")
        if not (isinstance(owner, str) and owner.strip()):
            if client_id is not None:
                raise ConfigurationError(
                    f"{root} is a standalone ArcGIS Server (its rest/info names no portal): "
                    "it signs in users, not apps; give a username and password"
                )
            assert username is not None
            assert password is not None
            token_url = await discover_token_url(http, root, f"user {username!r}")
            return UserTokenAuth(
                username, password, expiration=expiration, token_url=token_url,
                referer=referer, placement=placement, policy=policy, http_client=http_client,
            )  # fmt: skip
    portal_url = check_token_url(owner, f"the portal that {root} names (owningSystemUrl)")
    portal: RefreshingAuth[Any]
    if client_id is not None and client_secret is not None:
        portal = AppCredentialsAuth(
            client_id, client_secret, portal_url, expiration, placement=placement,
            policy=policy, http_client=http_client,
        )  # fmt: skip
    else:
        assert username is not None
        assert password is not None
        portal = UserTokenAuth(
            username, password, portal_url, expiration, referer=referer, placement=placement,
            policy=policy, http_client=http_client,
        )  # fmt: skip
    if _hosted_on_arcgis_online(root, portal_url):
        return portal
    return FederatedServerAuth(portal, root, expiration, policy=policy, http_client=http_client)


def _hosted_on_arcgis_online(server_url: str, portal_url: str) -> bool:
    """Whether *server_url* is an ArcGIS Online host that takes *portal_url*'s tokens
    as they are: both under ``arcgis.com``, in the same environment (dev, qa, production)."""
    server, portal = arcgis_online_environment(server_url), arcgis_online_environment(portal_url)
    return server is not None and server == portal


@contextlib.asynccontextmanager
async def _client(
    http: httpx.AsyncClient | None, policy: TokenPolicy | None
) -> AsyncIterator[httpx.AsyncClient]:
    """The given client, left open; or a fresh one, closed on leaving."""
    if http is not None:
        yield http
        return
    async with httpx.AsyncClient(timeout=(policy or TokenPolicy()).request_timeout) as own:
        yield own
