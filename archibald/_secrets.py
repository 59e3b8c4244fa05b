"""Keeping secrets out of reprs, messages, logs and URLs.

A password or token is held in a `Secret`, whose repr and str never show the value;
only the code that must send it calls `Secret.reveal`. URLs that may carry a ``token``
parameter pass through `redact_url` before they reach a message or a log record.
"""

from __future__ import annotations

import functools
import html
import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

import attrs

# Query parameters whose values are secrets in the ArcGIS REST API and OAuth2.
SECRET_PARAMETERS = frozenset(
    {"token", "password", "client_secret", "access_token", "refresh_token", "api_key", "apikey"}
)

_MASK = "********"
# What urlsplit cannot read is masked by these: a secret parameter's value, and whatever
# stands before an @ in the authority.
_SECRET_PAIR = re.compile(
    rf"((?:^|[?&;])(?:{'|'.join(sorted(SECRET_PARAMETERS))})=)[^&#]*", re.IGNORECASE
)
_USERINFO = re.compile(r"//[^/?#]*@")


@attrs.frozen(repr=False)
class Secret:
    """A string that must not be shown: its repr and str are a mask."""

    _value: str

    def reveal(self) -> str:
        """Return the secret value, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    def __str__(self) -> str:
        return _MASK

    def __bool__(self) -> bool:
        return bool(self._value)


def redact_url(url: object) -> str:
    """Return *url* as a string with the values of secret query parameters, and any user
    name and password before the host, masked."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:  # not even a URL ("http://[host/?token=..."): mask by pattern
        text = _USERINFO.sub(rf"//{_MASK}@", text)
        return _SECRET_PAIR.sub(rf"\g<1>{_MASK}", text)
    if "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{_MASK}@{host}")
        text = urlunsplit(parts)
    if not parts.query:
        return text
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(key.lower() in SECRET_PARAMETERS for key, _ in pairs):
        return text
    cleaned = [(k, _MASK if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs]
    return urlunsplit(parts._replace(query=urlencode(cleaned, safe="*")))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Mask every occurrence of each (non-empty) secret in *text*.

    Used on text that came from a server (an error page, a message) before it goes into
    an exception, in case the server echoed what we sent.
    """
    for secret in secrets:
        if not secret:
            continue
        # Also the forms a server may echo: URL-encoded (form or path style), HTML-escaped.
        for form in {secret, quote_plus(secret), quote(secret, safe=""), html.escape(secret)}:
            text = text.replace(form, _MASK)
    return text


def is_loopback_host(host: str) -> bool:
    """Whether *host* names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_secure_url(url: str) -> bool:
    """Whether a secret may travel to *url*: HTTPS, or plain HTTP to a loopback host."""
    parts = urlsplit(url)
    return is_secure_origin(parts.scheme, parts.hostname or "")


@functools.lru_cache(maxsize=64)
def is_secure_origin(scheme: str, host: str) -> bool:
    """Whether a secret may travel to *host* over *scheme* (see `is_secure_url`).

    Cached: it is asked on every request, of the same few hosts.
    """
    scheme = scheme.lower()
    if scheme == "https":
        return True
    return scheme == "http" and is_loopback_host(host)


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of *url*, lower-cased, default ports left out."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in (("https", 443), ("http", 80)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"
