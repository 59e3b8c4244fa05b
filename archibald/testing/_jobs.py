"""Background applyEdits for FakeArcGIS: ``async=true`` answers a status URL to poll.

ArcGIS 10.9.1+ takes ``async=true`` on a layer's applyEdits when the layer advertises
``advancedEditingCapabilities.supportsAsyncApplyEdits``: it answers
``{"statusUrl": ".../FeatureServer/jobs/<id>/status"}``; the status says ``Executing``
until the job ends, then ``Completed`` with a ``resultUrl`` whose answer is the body the
request would have had (results, or an error). The emulator applies the edits at once and
lets the job finish after `FakeArcGIS.async_edit_seconds` on anyio's clock.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import attrs

from ._wire import Refusal, Request

__all__ = ["EditJobs"]


@attrs.define(eq=False)
class _Job:
    service_url: str  # the FeatureServer's path, for the URLs the job answers
    done_at: float
    body: dict[str, Any]


class EditJobs:
    """The background edit jobs of one emulator."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._jobs: dict[str, _Job] = {}

    def start(
        self, request: Request, service_url: str, body: dict[str, Any], seconds: float
    ) -> dict[str, Any]:
        """Keep *body* as a job's result, ready after *seconds*; the answer to send now."""
        job_id = f"{self._rng.getrandbits(64):016x}"
        self._jobs[job_id] = _Job(service_url, anyio.current_time() + seconds, body)
        return {"statusUrl": f"{request.origin}{service_url}/jobs/{job_id}/status"}

    def answer(self, request: Request, job_id: str, what: str) -> dict[str, Any]:
        """A job's status (*what* ``"status"``) or its result (``"result"``)."""
        job = self._jobs.get(job_id)
        if job is None or what not in ("status", "result"):
            raise Refusal(400, "Invalid URL", ["Invalid URL"])
        done = anyio.current_time() >= job.done_at
        if what == "status":
            if not done:
                return {"status": "Executing", "submissionTime": 0}
            url = f"{request.origin}{job.service_url}/jobs/{job_id}/result"
            return {"status": "Completed", "resultUrl": url}
        if not done:
            raise Refusal(400, "Unable to complete operation.", ["The job has not finished."])
        return job.body
