"""ArcGIS Server tokens: discovery from ``rest/info``, and federated token exchange.

A standalone server names its token endpoint in ``<server>/rest/info``
(``authInfo.tokenServicesUrl``). A server federated with a portal names the portal
instead (``owningSystemUrl``): its tokens are obtained by exchanging a portal token at the
portal's generateToken (``token`` + ``serverUrl``). `FederatedServerAuth` does that
exchange on the one refresher, renewing the server token right after the portal token.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import attrs
import httpx

from .._secrets import origin_of
from .._urls import server_root
from ..config import TokenPolicy
from ..exceptions import ConfigurationError, TokenRefreshError
from ._base import TokenPlacement
from ._refresher import RefreshingAuth
from ._source import IssuedToken, TokenSource, lifetime_from_expires
from ._token_http import check_minutes, check_token_url, get_info, post_token_form

__all__ = ["FederatedServerAuth", "discover_token_url"]


async def discover_token_url(http: httpx.AsyncClient, server_url: str, who: str) -> str:
    """The token endpoint a standalone server names in its ``rest/info``.

    Raises:
        TokenRefreshError: The server cannot be read, does not use tokens, is federated
            (sign in to its portal instead), or names a token endpoint elsewhere.
    """
    info_url = f"{server_url}/rest/info"
    info = await get_info(http, info_url, who=who)
    auth_info = info.get("authInfo") if isinstance(info.get("authInfo"), dict) else {}
    assert isinstance(auth_info, dict)
    owner = info.get("owningSystemUrl")
    if isinstance(owner, str) and owner:
        raise TokenRefreshError(
            f"{server_url} is federated with the portal {owner}: sign in there, for example "
            f"UserTokenAuth(username, password, {owner!r}), and use "
            f"FederatedServerAuth(portal_auth, {server_url!r}) for this server",
            retryable=False,
        )
    if auth_info.get("isTokenBasedSecurity") is False:
        raise TokenRefreshError(
            f"{server_url} does not use token-based security ({info_url} says so); "
            "use NoAuth, or the web-tier authentication of its web server",
            retryable=False,
        )
    token_url = auth_info.get("tokenServicesUrl")
    if not isinstance(token_url, str) or not token_url:
        raise TokenRefreshError(
            f"{info_url} names no token endpoint (authInfo.tokenServicesUrl); "
            "pass token_url= to UserTokenAuth instead",
            retryable=False,
        )
    try:
        token_url = check_token_url(token_url, "tokenServicesUrl")
    except ConfigurationError as exc:
        raise TokenRefreshError(f"{info_url}: {exc}", retryable=False) from exc
    if origin_of(token_url) != origin_of(server_url):
        raise TokenRefreshError(
            f"{info_url} names a token endpoint on another origin ({token_url}); the "
            "password is not sent there unless you pass token_url= yourself",
            retryable=False,
        )
    return token_url


@attrs.define(kw_only=True)
class _ServerTokenExchange(TokenSource):
    """Exchange the portal's token for one of this server's (``token`` + ``serverUrl``)."""

    portal: RefreshingAuth[Any]
    server_url: str
    expiration: int  # minutes
    exchange_url: str | None = None  # the portal's generateToken, found on first use

    def describe(self) -> str:
        return f"server {self.server_url} through {self.portal._description}"

    def origins(self) -> frozenset[str]:
        return frozenset({origin_of(self.server_url)})

    async def fetch(self, http: httpx.AsyncClient) -> IssuedToken:
        who = f"server {self.server_url}"
        if self.exchange_url is None:
            self.exchange_url = await self._find_exchange_url(http, who)
        portal_token = await self.portal.get_token()
        portal_state = self.portal.statistics()
        form = {
            "token": portal_token,
            "serverUrl": self.server_url,
            "expiration": str(self.expiration),
            "f": "json",
        }
        headers = {}
        if self.portal.referer is not None:
            form |= {"client": "referer", "referer": self.portal.referer}
            headers["Referer"] = self.portal.referer
        body = await post_token_form(
            http,
            self.exchange_url,
            form,
            who=who,
            secrets=[portal_token],
            refused_hint="the portal refused to exchange its token for this server's",
            headers=headers,
        )
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise TokenRefreshError(
                f"{self.exchange_url} answered the exchange for {who} without a token"
            )
        lifetime = lifetime_from_expires(body.get("expires"), self.expiration * 60.0)
        renew_after = None
        if portal_state.expires_in is not None:
            # A server token is no good once the portal token behind it lapses; renew it
            # just after the portal renews its own: a second later, or halfway to the
            # portal token's expiry if that comes sooner (tokens of seconds).
            lifetime = min(lifetime, portal_state.expires_in)
            if portal_state.renews_in is not None and portal_state.renews_in >= 0:
                window = max(0.0, portal_state.expires_in - portal_state.renews_in)
                renew_after = portal_state.renews_in + min(1.0, window / 2)
        return IssuedToken(value=token, lifetime=lifetime, renew_after=renew_after)

    async def _find_exchange_url(self, http: httpx.AsyncClient, who: str) -> str:
        info = await get_info(http, f"{self.server_url}/rest/info", who=who)
        owner = info.get("owningSystemUrl")
        if not isinstance(owner, str) or not owner:
            raise TokenRefreshError(
                f"{self.server_url} is not federated with a portal (its rest/info has no "
                "owningSystemUrl): use UserTokenAuth.for_server() for it",
                retryable=False,
            )
        portal_info = await get_info(http, f"{owner.rstrip('/')}/sharing/rest/info", who=who)
        auth_info = portal_info.get("authInfo")
        url = auth_info.get("tokenServicesUrl") if isinstance(auth_info, dict) else None
        if not isinstance(url, str) or not url:
            url = f"{owner.rstrip('/')}/sharing/rest/generateToken"
        if origin_of(url) not in self.portal.trusted_origins:
            raise TokenRefreshError(
                f"{self.server_url} is federated with {owner}, not with the portal that "
                f"{self.portal._description} signs in to; its token is not sent there",
                retryable=False,
            )
        return url


class FederatedServerAuth(RefreshingAuth[_ServerTokenExchange]):
    """Tokens for an ArcGIS Server federated with a portal, from the portal's token.

    The portal token (from any token auth: `UserTokenAuth`, `AppCredentialsAuth`) is
    exchanged at the portal for a token of this server, renewed in the background on the
    same refresher as any other token, right after the portal token renews. Several
    servers can share one portal auth: give each its own `FederatedServerAuth` (and its
    own `ArchieClient`). Services hosted on ArcGIS Online (``*.arcgis.com``) need none of
    this: they take the portal token as it is.

    ```python
    portal = UserTokenAuth("bob", password, "https://gis.example.com/portal")
    server = FederatedServerAuth(portal, "https://gis.example.com/server")
    async with portal, ArchieClient(
        "https://gis.example.com/server/rest/services", server
    ) as client:
        ...
    ```

    Entering takes a hold on the portal auth too (entering it if it is not active yet),
    released when this auth stops.

    Args:
        portal: The portal's token auth.
        server_url: The server root (``https://host/server``).
        expiration: The server token lifetime to ask for, in minutes (never beyond the
            portal token's).
        exchange_url: The portal's generateToken; by default found through the server's
            ``rest/info`` (``owningSystemUrl``), and only used if it is the portal's.
        placement: Where requests carry the server token; by default as the portal's.
        policy: When to renew and how to retry.
        http_client: The client for token requests; by default one is made on entry.
    """

    def __init__(
        self,
        portal: RefreshingAuth[Any],
        server_url: str,
        expiration: int = 60,
        *,
        exchange_url: str | None = None,
        placement: TokenPlacement | None = None,
        policy: TokenPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not isinstance(portal, RefreshingAuth):
            raise ConfigurationError(
                f"portal must be a token auth such as UserTokenAuth, got {portal!r}"
            )
        check_minutes(expiration)
        root = check_token_url(server_root(server_url), "server_url")
        if exchange_url is not None:
            exchange_url = check_token_url(exchange_url, "exchange_url")
            if origin_of(exchange_url) not in portal.trusted_origins:
                raise ConfigurationError(
                    f"exchange_url {exchange_url!r} is not on the portal's origin; the portal "
                    "token is only sent to the portal"
                )
        super().__init__(
            _ServerTokenExchange(
                portal=portal, server_url=root, expiration=expiration, exchange_url=exchange_url
            ),
            policy=policy,
            placement=placement if placement is not None else portal.placement,
            referer=portal.referer,
            http_client=http_client,
        )
        self._portal = portal

    @property
    def portal(self) -> RefreshingAuth[Any]:
        """The portal auth whose token is exchanged."""
        return self._portal

    @property
    def server_url(self) -> str:
        """The server root."""
        return self._source.server_url

    async def _enter_dependencies(self, stack: AsyncExitStack) -> None:
        """Take a hold on the portal auth (entering it if nobody has) while this is active."""
        await stack.enter_async_context(self._portal)
