"""Server jobs: an operation that answers ``{"statusUrl": ...}`` (a background applyEdits,
an extractChanges on ArcGIS Online) runs as a job, whose status is polled, with backoff on
anyio's clock, until it ends; then its result is read from ``resultUrl``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from .exceptions import ServiceError

if TYPE_CHECKING:
    from ._client import ArchieClient

__all__ = ["JobFailed", "wait_for_job"]

# Statuses as servers spell them (ArcGIS Server's esriJob* and the feature service's words),
# compared in lower case.
_DONE = frozenset({"completed", "esrijobsucceeded", "succeeded", "success"})
_FAILED = frozenset(
    {
        *("failed", "esrijobfailed", "cancelled", "esrijobcancelled", "timeout"),
        *("esrijobtimedout", "esrijobdeleting", "esrijobdeleted"),  # ArcGIS Server's own
    }
)
_FIRST_POLL = 0.5  # seconds before the first status poll; doubled up to _LAST_POLL
_LAST_POLL = 30.0


class JobFailed(ServiceError):
    """The job said it failed (or was cancelled, or timed out)."""


async def wait_for_job(client: ArchieClient, status_url: str, what: str) -> str:
    """Poll the job at *status_url* until it ends; its ``resultUrl``.

    Raises:
        JobFailed: The job ended without success (*what* names it in the message).
        ServiceError: A finished job named no result.
    """
    delay = _FIRST_POLL
    while True:
        await anyio.sleep(delay)
        status = await client.get_json(url=status_url)
        state = str(status.get("status", "")).lower()
        if state in _DONE:
            result_url = status.get("resultUrl")
            if not isinstance(result_url, str):
                raise ServiceError(
                    None, f"the finished {what} job named no resultUrl", url=status_url
                )
            return result_url
        if state in _FAILED:
            messages = status.get("messages") or status.get("error") or ""
            raise JobFailed(
                None, f"the {what} job ended {state!r} {messages}".strip(), url=status_url
            )
        delay = min(delay * 2, _LAST_POLL)
