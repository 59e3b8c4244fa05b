"""Reading credentials from environment variables, for the ``from_env()`` constructors."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..exceptions import ConfigurationError

__all__ = ["read_env"]

PORTAL_URL = "ARCGIS_PORTAL_URL"


def read_env(
    required: tuple[str, ...], who: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The values of *required* variables, plus ``ARCGIS_PORTAL_URL`` if it is set.

    Raises:
        ConfigurationError: A required variable is missing or empty; the message names it
            (never its value).
    """
    env = os.environ if environ is None else environ
    missing = [name for name in required if not env.get(name)]
    if missing:
        names = " and ".join(missing)
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigurationError(
            f"{who} needs the environment variable {names}, which {verb} not set"
        )
    values = {name: env[name] for name in required}
    if env.get(PORTAL_URL):
        values[PORTAL_URL] = env[PORTAL_URL]
    return values
