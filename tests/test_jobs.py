"""Server jobs: a status URL polled until the job ends, however the server spells it."""

from __future__ import annotations

import anyio
import httpx
import pytest

from archibald import ArchieClient
from archibald._jobs import JobFailed, wait_for_job

pytestmark = pytest.mark.anyio

ROOT = "https://gis.example.com/arcgis/rest/services"
STATUS = f"{ROOT}/Parcels/FeatureServer/jobs/j1/status"


@pytest.mark.parametrize("final", ["esriJobTimedOut", "esriJobDeleted", "esriJobDeleting"])
async def test_a_job_the_server_ended_without_success_fails(final: str) -> None:
    """A job ArcGIS Server timed out or deleted fails, instead of being polled forever."""
    statuses = ["esriJobSubmitted", "esriJobExecuting", final]

    def answer(request: httpx.Request) -> httpx.Response:
        status = statuses.pop(0) if len(statuses) > 1 else final  # then it stays so
        return httpx.Response(200, json={"jobId": "j1", "status": status})

    async with ArchieClient(ROOT, transport=httpx.MockTransport(answer)) as client:
        with anyio.fail_after(3600), pytest.raises(JobFailed, match=final.lower()):
            await wait_for_job(client, STATUS, "extractChanges")
