"""`APIKeyAuth`: a static API key, sent like any token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from .._secrets import Secret
from .._validate import has_line_break
from ..exceptions import ConfigurationError
from ._base import ArcGISAuth, TokenPlacement
from ._env import read_env

__all__ = ["APIKeyAuth"]


class APIKeyAuth(ArcGISAuth):
    """An API key: a long-lived token that needs no exchange and no background task.

    ```python
    async with ArchieClient(services_url, APIKeyAuth(api_key)) as client:
        ...
    ```

    A rejected key cannot be replaced by refreshing: the client raises a
    `TokenExpiredError` saying the key was rejected (expired or revoked), once, instead of
    retrying.

    Args:
        api_key: The key; never shown in a repr, log or message.
        placement: Where requests carry the key.
        referer: The ``Referer`` header to send, for keys restricted to referers.
    """

    def __init__(
        self,
        api_key: str,
        *,
        placement: TokenPlacement = TokenPlacement.AUTHORIZATION,
        referer: str | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigurationError("api_key must be a non-empty string")
        if has_line_break(api_key.strip()) or not api_key.strip().isprintable():
            raise ConfigurationError(
                "api_key holds a line break or another control character, which cannot go "
                "in an HTTP header; check how it was read (a stray newline from a file?)"
            )
        super().__init__(placement=placement, referer=referer)
        self._key = Secret(api_key.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: object) -> Self:
        """Build from ``ARCGIS_API_KEY``; other arguments go to the constructor.

        Raises:
            ConfigurationError: The variable is missing; the message names it.
        """
        env = read_env(("ARCGIS_API_KEY",), f"{cls.__name__}.from_env()", environ)
        return cls(env["ARCGIS_API_KEY"], **kwargs)  # type: ignore[arg-type]

    @property
    def rejection_hint(self) -> str:
        """What to tell the user when the server rejects the key."""
        return (
            "the API key was rejected: it may have expired or been revoked, or lack the "
            "privilege for this service; create or regenerate a key"
        )

    async def get_token(self) -> str:
        """Return the key (no I/O)."""
        return self._key.reveal()

    async def force_refresh(self, rejected: str | None = None) -> None:
        """Do nothing: a key cannot be refreshed (`can_refresh` is False)."""

    def __repr__(self) -> str:
        return "APIKeyAuth(api_key=********)"
