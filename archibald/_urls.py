"""ArcGIS URLs: the one place where a URL a user gave is parsed and checked.

Every URL that archibald sends to (a services root, a token endpoint, a trusted origin, a
layer URL on the command line) passes `check_http_url` first, so the same mistakes get the
same clear error wherever they are made: not http(s), no host, a malformed port, a user
name or password inside the URL (which would end up in logs, reprs and a Basic header), a
query string or fragment where none belongs.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import SplitResult, urlsplit

from ._secrets import redact_url
from .exceptions import ArchieClientError, InvalidParameterError, InvalidServiceURL

__all__ = ["check_http_url", "check_service_path", "split_layer_url", "split_services_url"]

_SERVICES = "/rest/services"


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
    clean = path.strip().strip("/")
    if not clean:
        raise InvalidParameterError(f"{what} must name a service, such as 'Parcels'; it is empty")
    if "://" in clean or any(c in clean for c in "?#\\"):
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


def _shown(value: object) -> str:
    return repr(redact_url(value)) if isinstance(value, str) else type(value).__name__
