"""ArcGIS URLs: the one place where a URL a user gave is parsed and checked.

Every URL that archibald sends to (a services root, a token endpoint, a trusted origin, a
layer URL on the command line) passes `check_http_url` first, so the same mistakes get the
same clear error wherever they are made: not http(s), no host, a malformed port, a user
name or password inside the URL (which would end up in logs, reprs and a Basic header), a
query string or fragment where none belongs.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from ._secrets import origin_of, redact_url
from .exceptions import (
    ArchieClientError,
    ConfigurationError,
    InvalidParameterError,
    InvalidServiceURL,
)

__all__ = [
    "arcgis_online_environment",
    "check_base_url",
    "check_http_url",
    "check_origin",
    "check_service_path",
    "join_endpoint",
    "portal_endpoint",
    "server_root",
    "split_layer_url",
    "split_query",
    "split_services_url",
]

_SERVICES = "/rest/services"
_ENDS = re.compile(r"^[\s/]+|[\s/]+$")


def check_http_url(
    url: object,
    what: str,
    error: type[ArchieClientError],
    *,
    extras: Literal["refuse", "allow"] = "refuse",
) -> SplitResult:
    """*url* split into its parts, or *error* saying what is wrong with it.

    Args:
        url: The URL to check.
        what: What the URL is, for the message (``"base_url"``).
        error: The exception class to raise.
        extras: ``"refuse"`` a query string or fragment, or ``"allow"`` them.
    """
    if not isinstance(url, str) or not url.strip():
        raise error(f"{what} must be a URL string, got {_shown(url)}")
    text = url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (a malformed port raises here)
    except ValueError as exc:
        raise error(f"{what} is not a valid URL ({exc}): {redact_url(text)!r}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise error(f"{what} must be an http(s) URL with a host, got {redact_url(text)!r}")
    if "@" in parts.netloc:
        raise error(
            f"{what} must not hold a user name or password ({redact_url(text)!r}): "
            "credentials in a URL end up in logs and headers; pass them to an auth "
            "such as UserTokenAuth instead"
        )
    if extras == "refuse" and parts.query:
        raise error(
            f"{what} must not have a query string: {redact_url(text)!r}; pass parameters "
            "with each request, and tokens through an auth"
        )
    if extras == "refuse" and parts.fragment:
        raise error(f"{what} must not have a fragment (#...): {redact_url(text)!r}")
    return parts


def split_services_url(parts: SplitResult) -> tuple[str, str] | None:
    """(services root, the path below it) of a checked URL, or None if it has no
    ``/rest/services`` in its path."""
    path = parts.path.rstrip("/")
    index = len(path) - len(_SERVICES) if path.endswith(_SERVICES) else path.find(_SERVICES + "/")
    if index < 0:
        return None
    root = parts._replace(path=path[: index + len(_SERVICES)], query="", fragment="")
    return root.geturl(), path[index + len(_SERVICES) :].strip("/")


def check_service_path(path: object, what: str = "service_path") -> str:
    """A path below the services root (``Parcels``, ``Folder/Parcels/FeatureServer``).

    Raises:
        InvalidParameterError: It is empty, absolute, or climbs out with ``..``.
    """
    if not isinstance(path, str):
        raise InvalidParameterError(f"{what} must be a string such as 'Parcels', got {path!r}")
    clean = _ENDS.sub("", path)  # spaces and slashes around it, in any order
    if not clean:
        raise InvalidParameterError(f"{what} must name a service, such as 'Parcels'; it is empty")
    if "://" in clean or any(c in "?#\\" or c < " " or c == "\x7f" for c in clean):
        raise InvalidParameterError(
            f"{what} must be a path below the client's services root, such as "
            f"'Folder/Parcels', got {redact_url(clean)!r}"
        )
    segments = clean.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise InvalidParameterError(
            f"{what} {clean!r} has an empty, '.' or '..' segment; name the service as it "
            "is listed below the services root"
        )
    return clean


def join_endpoint(root: str, endpoint: object) -> str:
    """The absolute URL of *endpoint*, a path below the services *root* (with or without
    a query string)."""
    if not isinstance(endpoint, str):
        raise InvalidParameterError(f"endpoint must be a string path, got {endpoint!r}")
    try:
        scheme = urlsplit(endpoint).scheme
    except ValueError as exc:  # "//[": an authority urlsplit cannot read
        raise InvalidParameterError(
            f"endpoint {redact_url(endpoint)!r} is not a path below the services root ({exc})"
        ) from None
    if scheme:
        raise InvalidParameterError(
            f"endpoint {redact_url(endpoint)!r} is an absolute URL; pass it as url= instead"
        )
    endpoint = endpoint.strip("/")
    if not endpoint:
        return root
    path, mark, query = endpoint.partition("?")
    if not path.strip("/"):
        return f"{root}{mark}{query}"
    return f"{root}/{check_service_path(path, 'endpoint')}{mark}{query}"


def split_layer_url(url: str, root: str, kind: str) -> tuple[str, int]:
    """(service path, layer id) of a layer URL (``<root>/<service>/<kind>/<id>``).

    Raises:
        InvalidServiceURL: *url* is not below *root*, or not a layer URL of that kind.
    """
    clean = url.strip().split("?", 1)[0].rstrip("/")
    if not clean.startswith(root + "/"):
        raise InvalidServiceURL(
            f"{url!r} is not below the client's services root {root!r}; make an "
            "ArchieClient for its own root"
        )
    parts = clean[len(root) + 1 :].split("/")
    if len(parts) < 3 or parts[-2] != kind or not parts[-1].isdecimal():
        raise InvalidServiceURL(
            f"{url!r} is not a {kind} layer URL; one looks like {root}/<service>/{kind}/0"
        )
    return "/".join(parts[:-1]), int(parts[-1])


def split_query(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its query string, and the query's parameters."""
    if "?" not in url and "#" not in url:
        return url, {}  # the usual case; a malformed URL fails in `_build`
    try:
        parsed = httpx.URL(url)
        parsed.port  # noqa: B018  (a malformed port raises here)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidParameterError(f"not a valid URL: {redact_url(url)}") from exc
    params = dict(parsed.params.multi_items())
    return str(parsed.copy_with(query=None, fragment=None)), params


def check_base_url(base_url: object) -> str:
    """A services root (``https://host/arcgis/rest/services``), without a trailing slash;
    a service or layer URL, or a server URL, gets a hint at the root it meant."""
    parts = check_http_url(base_url, "base_url", InvalidServiceURL)
    url = parts.geturl().rstrip("/")
    path = parts.path.rstrip("/")
    if path.endswith("/rest/services"):
        return url
    if "/rest/services/" in path:
        root = url[: url.index("/rest/services/") + len("/rest/services")]
        hint = f"that is a service or layer URL; use base_url={root!r} and the rest as endpoint"
    elif path.endswith("/rest") or path.endswith("/arcgis") or path == "":
        hint = f"did you mean {url.removesuffix('/rest') + '/rest/services'!r}?"
    else:
        hint = "an ArcGIS services root looks like https://host/arcgis/rest/services"
    raise InvalidServiceURL(f"base_url must end in rest/services: {redact_url(base_url)!r}; {hint}")


def check_origin(origin: object) -> str:
    """An origin (``https://host``) that may receive the token."""
    parts = check_http_url(origin, "a trusted origin (https://host)", ConfigurationError)
    return origin_of(parts.geturl())


def server_root(url: str) -> str:
    """``https://host/arcgis`` from a server URL, however much of its REST path it has."""
    if not isinstance(url, str):
        raise ConfigurationError(f"server_url must be a URL string, got {url!r}")
    parts = check_http_url(url, "server_url", ConfigurationError, extras="allow")
    path = parts.path.rstrip("/")
    if path.endswith("/rest"):
        path = path[: -len("/rest")]
    elif "/rest/" in path:
        path = path[: path.index("/rest/")]
    return urlunsplit(parts._replace(path=path, query="", fragment=""))


def portal_endpoint(base_url: str, operation: str) -> str:
    """``<portal>/sharing/rest/<operation>``, however the portal URL was written."""
    if base_url.endswith("/sharing/rest"):
        return f"{base_url}/{operation}"
    if base_url.endswith("/sharing"):
        return f"{base_url}/rest/{operation}"
    return f"{base_url}/sharing/rest/{operation}"


def arcgis_online_environment(url: str) -> str | None:
    """``"production"``, ``"dev"`` or ``"qa"`` for an ArcGIS Online host (``*.arcgis.com``),
    None for any other."""
    host = (urlsplit(url).hostname or "").lower()
    if not host.endswith(".arcgis.com"):
        return None
    last = host.removesuffix(".arcgis.com").split(".")[-1]  # "services", "maps", "mapsdev"
    if "dev" in last:
        return "dev"
    if "qa" in last:
        return "qa"
    return "production"


def _shown(value: object) -> str:
    return repr(redact_url(value)) if isinstance(value, str) else type(value).__name__
