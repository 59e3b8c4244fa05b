"""An anyio service that serves ArcGIS data through one long-lived ArchieClient.

A Starlette app opens one `ArchieClient` (and its background-renewed token) in its
lifespan and answers every request through it: concurrent requests share the client's
connections, its concurrency limit and its token, which renews in the background; a
token the server revokes is refreshed once for all the requests that held it.

    pip install archibald starlette uvicorn
    ARCGIS_SERVICES_URL=https://host/arcgis/rest/services ARCGIS_USERNAME=... \
        ARCGIS_PASSWORD=... uvicorn examples.service:app

    GET /layers/<service>/<layer id>/count?where=...
    GET /layers/<service>/<layer id>/features?where=...&limit=100   (GeoJSON)
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from archibald import ArcGISAuth, ArchieClient, ArchieError, FeatureLayer, UserTokenAuth


def create_app(
    services_url: str,
    auth: Callable[[], ArcGISAuth],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    max_concurrent_requests: int = 50,
) -> Starlette:
    """The service, for the ArcGIS services at *services_url*, signed in with *auth()*."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One client for the life of the service: it is entered and left in this task.
        async with ArchieClient(
            services_url,
            auth(),
            transport=transport,
            max_concurrent_requests=max_concurrent_requests,
        ) as client:
            app.state.client = client
            yield

    def layer_of(request: Request) -> FeatureLayer:
        client: ArchieClient = request.app.state.client
        service, layer_id = request.path_params["service"], request.path_params["layer"]
        return FeatureLayer(client, service, layer_id)

    async def count(request: Request) -> JSONResponse:
        where = request.query_params.get("where", "1=1")
        try:
            return JSONResponse({"count": await layer_of(request).count(where)})
        except ArchieError as exc:
            return _error(exc)

    async def features(request: Request) -> JSONResponse:
        where = request.query_params.get("where", "1=1")
        limit = min(int(request.query_params.get("limit", "100")), 1000)
        found: list[dict[str, Any]] = []
        try:
            async with layer_of(request).features(where, format="geojson") as stream:
                async for feature in stream:
                    found.append(feature)
                    if len(found) == limit:
                        break
        except ArchieError as exc:
            return _error(exc)
        return JSONResponse({"type": "FeatureCollection", "features": found})

    routes = [
        Route("/layers/{service:path}/{layer:int}/count", count),
        Route("/layers/{service:path}/{layer:int}/features", features),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _error(exc: ArchieError) -> JSONResponse:
    """An ArcGIS failure as a 502 that says what failed (no secret is in the message)."""
    return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=502)


def _app_from_environment() -> Starlette | None:
    services = os.environ.get("ARCGIS_SERVICES_URL")
    if not services:
        return None
    return create_app(services, UserTokenAuth.from_env)


app = _app_from_environment()
