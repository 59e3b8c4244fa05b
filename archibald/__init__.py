"""archibald: a Trio-first, structured-concurrency client for ESRI ArcGIS REST services.

Everything public is importable from here; the submodules `archibald.auth`,
`archibald.config` and `archibald.exceptions` group the same names by topic, and
`archibald.testing` holds the ArcGIS emulator.
"""

from ._client import ArchieClient as ArchieClient
from ._client import ClientStatistics as ClientStatistics
from ._version import __version__ as __version__
from .auth import APIKey as APIKey
from .auth import APIKeyAuth as APIKeyAuth
from .auth import AppCredentials as AppCredentials
from .auth import AppCredentialsAuth as AppCredentialsAuth
from .auth import ArcGISAuth as ArcGISAuth
from .auth import FederatedServerAuth as FederatedServerAuth
from .auth import IssuedToken as IssuedToken
from .auth import NoAuth as NoAuth
from .auth import RefreshingAuth as RefreshingAuth
from .auth import SignIn as SignIn
from .auth import TokenPlacement as TokenPlacement
from .auth import TokenSource as TokenSource
from .auth import TokenStatistics as TokenStatistics
from .auth import UserCredentials as UserCredentials
from .auth import UserTokenAuth as UserTokenAuth
from .auth import discover_auth as discover_auth
from .config import RetryPolicy as RetryPolicy
from .config import TokenPolicy as TokenPolicy
from .exceptions import ArcGISError as ArcGISError
from .exceptions import ArchieClientError as ArchieClientError
from .exceptions import ArchieError as ArchieError
from .exceptions import AuthNotActiveError as AuthNotActiveError
from .exceptions import AuthorizationError as AuthorizationError
from .exceptions import ConfigurationError as ConfigurationError
from .exceptions import EditOutcomeUnknownError as EditOutcomeUnknownError
from .exceptions import IncompleteResultError as IncompleteResultError
from .exceptions import InvalidCredentialsError as InvalidCredentialsError
from .exceptions import InvalidParameterError as InvalidParameterError
from .exceptions import InvalidServiceURL as InvalidServiceURL
from .exceptions import LayerCapabilityError as LayerCapabilityError
from .exceptions import LifecycleError as LifecycleError
from .exceptions import NetworkError as NetworkError
from .exceptions import NotFoundError as NotFoundError
from .exceptions import ServiceError as ServiceError
from .exceptions import TokenExpiredError as TokenExpiredError
from .exceptions import TokenMissingError as TokenMissingError
from .exceptions import TokenRefreshError as TokenRefreshError
from .layers import AttachmentEditResult as AttachmentEditResult
from .layers import AttachmentInfo as AttachmentInfo
from .layers import EditResult as EditResult
from .layers import EditResults as EditResults
from .layers import FeatureLayer as FeatureLayer
from .layers import FeatureService as FeatureService
from .layers import FeatureStream as FeatureStream
from .layers import LayerInfo as LayerInfo
from .layers import MapLayer as MapLayer
from .layers import MapService as MapService
from .layers import Page as Page
from .layers import PageStream as PageStream
from .layers import Partition as Partition
from .layers import QueryResult as QueryResult
from .sync import LayerMirror as LayerMirror
from .sync import SyncReport as SyncReport

__all__ = [
    "APIKey",
    "APIKeyAuth",
    "AppCredentials",
    "AppCredentialsAuth",
    "ArcGISAuth",
    "AttachmentEditResult",
    "AttachmentInfo",
    "ArchieClient",
    "ClientStatistics",
    "ArcGISError",
    "ArchieClientError",
    "ArchieError",
    "AuthNotActiveError",
    "AuthorizationError",
    "ConfigurationError",
    "EditOutcomeUnknownError",
    "EditResult",
    "EditResults",
    "FeatureLayer",
    "FeatureService",
    "FeatureStream",
    "FederatedServerAuth",
    "IncompleteResultError",
    "InvalidCredentialsError",
    "InvalidParameterError",
    "InvalidServiceURL",
    "IssuedToken",
    "LayerCapabilityError",
    "LifecycleError",
    "LayerInfo",
    "LayerMirror",
    "MapLayer",
    "MapService",
    "NetworkError",
    "NoAuth",
    "NotFoundError",
    "Page",
    "PageStream",
    "Partition",
    "QueryResult",
    "RefreshingAuth",
    "RetryPolicy",
    "ServiceError",
    "SignIn",
    "SyncReport",
    "TokenExpiredError",
    "TokenMissingError",
    "TokenPlacement",
    "TokenPolicy",
    "TokenRefreshError",
    "TokenSource",
    "TokenStatistics",
    "UserCredentials",
    "UserTokenAuth",
    "__version__",
    "discover_auth",
]
