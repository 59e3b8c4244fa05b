"""Sign-in specs: how to sign in, as a value that can travel to other processes.

An auth is alive: it holds a token and, once entered, a task that renews it, so it cannot
be pickled, and its token is not to be shared. A spec holds only what signing in needs:
the credentials (in `Secret`s, which no repr shows but pickle carries) and where to sign
in. Whoever receives one builds a fresh auth from it with `auth_for` and signs in itself,
so a token never travels. The command line parses its options into one, and
`archibald.dask` ships one to every worker.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import attrs

from .._secrets import Secret
from ..config import TokenPolicy
from ..exceptions import ConfigurationError
from ._apikey import APIKeyAuth
from ._app import AppCredentialsAuth
from ._base import ArcGISAuth
from ._discover import discover_auth
from ._token_http import check_minutes, check_token_url
from ._user import UserTokenAuth

__all__ = ["APIKey", "AppCredentials", "SignIn", "UserCredentials"]


def _secret(value: str | Secret) -> Secret:
    """A `Secret` from a string (its value is never put in a message)."""
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ConfigurationError(f"a secret must be a string, got {type(value).__name__}")
    return Secret(value)


def _portal(value: str | None) -> str | None:
    return None if value is None else check_token_url(value, "base_url")


def _filled(what: str) -> Any:
    """An attrs validator: a non-empty string, or a non-empty `Secret`."""

    def check(_: object, __: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, Secret):
            if not value.reveal().strip():
                raise ConfigurationError(f"{what} must not be empty")
        elif not isinstance(value, str) or not value.strip():
            raise ConfigurationError(f"{what} must be a non-empty string, got {value!r}")

    return check


def _minutes(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        check_minutes(value)


def _policy(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, TokenPolicy):
        raise ConfigurationError(f"policy must be a TokenPolicy or None, got {value!r}")


def _token_options(expiration: int | None, policy: TokenPolicy | None) -> dict[str, Any]:
    """The keyword arguments that leave each auth's own defaults alone when not given."""
    options: dict[str, Any] = {"policy": policy}
    if expiration is not None:
        options["expiration"] = expiration
    return options


@attrs.frozen
class UserCredentials:
    """Sign in as a named user (generateToken), wherever this spec is used.

    ```python
    spec = UserCredentials("alice", password)  # where: asked of the server
    spec = UserCredentials("alice", password, base_url="https://gis.example.com/portal")
    ```

    Attributes:
        username: The ArcGIS username (case-sensitive).
        password: The password; the repr shows a mask, pickling carries it.
        base_url: The portal to sign in at, as for `UserTokenAuth`. None (default): ask
            the server of the URL being read where to sign in, as `discover_auth` does
            (its portal if it is federated or hosted, its own token endpoint if it is
            standalone).
        expiration: The token lifetime to ask for, in minutes; None: the auth's default.
        policy: When to renew and how to retry; None: the default `TokenPolicy`.
    """

    username: str = attrs.field(validator=_filled("username"))
    password: Secret = attrs.field(converter=_secret, validator=_filled("the password"))
    base_url: str | None = attrs.field(default=None, kw_only=True, converter=_portal)
    expiration: int | None = attrs.field(default=None, kw_only=True, validator=_minutes)
    policy: TokenPolicy | None = attrs.field(default=None, kw_only=True, validator=_policy)

    async def auth_for(self, url: str) -> ArcGISAuth:
        """A new auth (not entered yet) for the server of *url* (a layer, service or
        services URL); without a *base_url*, the server's ``rest/info`` is read first."""
        options = _token_options(self.expiration, self.policy)
        password = self.password.reveal()
        if self.base_url is not None:
            return UserTokenAuth(self.username, password, self.base_url, **options)
        return await discover_auth(url, self.username, password, **options)


@attrs.frozen
class AppCredentials:
    """Sign in as an application (OAuth2 client credentials), wherever this spec is used.

    Attributes:
        client_id: The app's client id.
        client_secret: The app's client secret; the repr shows a mask, pickling carries it.
        base_url: The portal, as for `AppCredentialsAuth`. None (default): the portal that
            the server of the URL being read names (`discover_auth`).
        expiration: The token lifetime to ask for, in minutes; None: the auth's default.
        policy: When to renew and how to retry; None: the default `TokenPolicy`.
    """

    client_id: str = attrs.field(validator=_filled("client_id"))
    client_secret: Secret = attrs.field(converter=_secret, validator=_filled("client_secret"))
    base_url: str | None = attrs.field(default=None, kw_only=True, converter=_portal)
    expiration: int | None = attrs.field(default=None, kw_only=True, validator=_minutes)
    policy: TokenPolicy | None = attrs.field(default=None, kw_only=True, validator=_policy)

    async def auth_for(self, url: str) -> ArcGISAuth:
        """A new auth (not entered yet) for the server of *url*; without a *base_url*,
        the server's ``rest/info`` is read first."""
        options = _token_options(self.expiration, self.policy)
        secret = self.client_secret.reveal()
        if self.base_url is not None:
            return AppCredentialsAuth(self.client_id, secret, self.base_url, **options)
        return await discover_auth(url, client_id=self.client_id, client_secret=secret, **options)


@attrs.frozen
class APIKey:
    """Use an API key, wherever this spec is used.

    Attributes:
        api_key: The key; the repr shows a mask, pickling carries it.
    """

    api_key: Secret = attrs.field(converter=_secret, validator=_filled("api_key"))

    def __attrs_post_init__(self) -> None:
        APIKeyAuth(self.api_key.reveal())  # the key's own checks, now rather than later

    async def auth_for(self, url: str) -> ArcGISAuth:
        """A new `APIKeyAuth` for the key (*url* is not needed: a key goes anywhere
        the client sends it)."""
        return APIKeyAuth(self.api_key.reveal())


SignIn: TypeAlias = UserCredentials | AppCredentials | APIKey
"""A sign-in spec: `UserCredentials`, `AppCredentials` or `APIKey`."""
