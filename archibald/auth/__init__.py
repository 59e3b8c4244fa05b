"""Authentication: where tokens come from and how requests carry them.

- `NoAuth` for public services.
- `UserTokenAuth` for a named user (generateToken), renewed in the background.
- `RefreshingAuth` and `TokenSource` to plug in another way of fetching a token.
"""

from ._base import ArcGISAuth as ArcGISAuth
from ._base import NoAuth as NoAuth
from ._base import TokenPlacement as TokenPlacement
from ._refresher import IssuedToken as IssuedToken
from ._refresher import RefreshingAuth as RefreshingAuth
from ._refresher import TokenSource as TokenSource
from ._refresher import TokenStatistics as TokenStatistics
from ._user import UserTokenAuth as UserTokenAuth

__all__ = [
    "ArcGISAuth",
    "IssuedToken",
    "NoAuth",
    "RefreshingAuth",
    "TokenPlacement",
    "TokenSource",
    "TokenStatistics",
    "UserTokenAuth",
]
