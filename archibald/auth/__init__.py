"""Authentication: where tokens come from and how requests carry them.

- `NoAuth` for public services.
- `UserTokenAuth` for a named user (generateToken), renewed in the background; also for a
  standalone ArcGIS Server (`UserTokenAuth.for_server`).
- `AppCredentialsAuth` for an application (OAuth2 client credentials).
- `APIKeyAuth` for an API key.
- `FederatedServerAuth` for a server federated with a portal (token exchange).
- `discover_auth` to find out from a server's ``rest/info`` where to sign in.
- `RefreshingAuth` and `TokenSource` to plug in another way of fetching a token.
- `UserCredentials`, `AppCredentials` and `APIKey`: how to sign in, as values that travel
  to other processes (each builds its own auth there with `auth_for`).
"""

from ._apikey import APIKeyAuth as APIKeyAuth
from ._app import AppCredentialsAuth as AppCredentialsAuth
from ._base import ArcGISAuth as ArcGISAuth
from ._base import NoAuth as NoAuth
from ._base import TokenPlacement as TokenPlacement
from ._discover import discover_auth as discover_auth
from ._refresher import RefreshingAuth as RefreshingAuth
from ._server import FederatedServerAuth as FederatedServerAuth
from ._source import IssuedToken as IssuedToken
from ._source import TokenSource as TokenSource
from ._source import TokenStatistics as TokenStatistics
from ._specs import APIKey as APIKey
from ._specs import AppCredentials as AppCredentials
from ._specs import SignIn as SignIn
from ._specs import UserCredentials as UserCredentials
from ._user import UserTokenAuth as UserTokenAuth

__all__ = [
    "APIKey",
    "APIKeyAuth",
    "AppCredentials",
    "AppCredentialsAuth",
    "ArcGISAuth",
    "FederatedServerAuth",
    "IssuedToken",
    "NoAuth",
    "RefreshingAuth",
    "SignIn",
    "TokenPlacement",
    "TokenSource",
    "TokenStatistics",
    "UserCredentials",
    "UserTokenAuth",
    "discover_auth",
]
