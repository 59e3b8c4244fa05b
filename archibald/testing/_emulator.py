"""FakeArcGIS: an in-memory ArcGIS REST emulator.

`FakeArcGIS` holds the state (settings, services, faults, counters) and routes each
request to the part that answers it: `Tokens` signs in and checks tokens, `_query`
answers queries, `_edits` applies edits, `_metadata` describes the site, and `_faults`
makes it misbehave on demand. ``FakeArcGIS.respond`` is the one entry; the adaptors in
`_adaptors` put it on the wire. Its clock is anyio's, so on Trio's MockClock a token's
hour passes at once.
"""

from __future__ import annotations

import datetime
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import httpx

from . import _adaptors
from ._attachments import answer_attachments, is_attachment_path
from ._changes import ANONYMOUS_EDITOR, extract_changes
from ._control import EditingControls
from ._data import GEOMETRY_TYPES, FakeLayer, FakeService
from ._edits import read_edits
from ._faults import Faults, fault_answer
from ._generated import GENERATED_FIELDS, GeometryKind, generate_features
from ._jobs import EditJobs
from ._metadata import all_layers, catalog, layer_metadata, portal_info, server_info, service_info
from ._query import answer_query, extracted_feature
from ._statistics import Counters, FakeStatistics
from ._tokens import ServerKind, Tokens
from ._wire import (
    ErrorStyle,
    Refusal,
    Request,
    Response,
    html_page,
    is_true,
    json_response,
    proxy_page,
)

# Request and Response are also imported from here by the benchmarks (bench/).
__all__ = ["FakeArcGIS", "FakeStatistics", "Faults", "Request", "Response"]

_JSON_FORMATS = ("json", "pjson")
_Handler = Callable[[Request], Awaitable[Response]]
logger = logging.getLogger("archibald.testing")
_FORBIDDEN = "You do not have permissions to access this resource or perform this operation."


_EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class FakeArcGIS(EditingControls):
    """An in-memory ArcGIS Online/Enterprise emulator for tests, demos and benchmarks.

    It emulates a portal (``/sharing/rest``: generateToken, oauth2/token, info) and an
    ArcGIS Server site (``/<site>/rest/info``, ``/<site>/tokens/generateToken``, the
    services catalog, FeatureServer and MapServer metadata, layer query and applyEdits),
    on one origin.

    ```python
    fake = FakeArcGIS()
    fake.add_user("alice", "wonderland")
    fake.add_feature_layer("Parcels", count=10_001, secured=True)
    async with fake.client() as http:  # in process: no sockets
        ...
    async with fake.serve() as origin:  # real HTTP on 127.0.0.1
        ...
    ```

    Args:
        origin: The scheme and host of the in-process emulator.
        site: The ArcGIS Server site name (the first path segment of its URLs).
        error_style: ``"body"`` answers errors as real servers do, HTTP 200 with an
            ``{"error": ...}`` body; ``"http"`` also sets the HTTP status to the error
            code, as some proxies do.
        max_token_minutes: The longest token lifetime granted, in minutes (a fraction
            gives tokens of seconds, for demos); longer requests are silently capped, as
            real servers do.
        server: How the ArcGIS Server relates to the portal. ``"hosted"`` (as ArcGIS
            Online's hosted services): its services take portal tokens as they are.
            ``"federated"`` (as an Enterprise federated server): ``rest/info`` names the
            portal (``owningSystemUrl``) and the services take only server tokens,
            exchanged at the portal's generateToken (``token`` + ``serverUrl``).
            ``"standalone"``: no portal; the services take the server's own tokens
            (from ``/<site>/tokens/generateToken``).
        seed: Seeds token values and generated data, so runs are repeatable.
        epoch: The wall-clock time at virtual time 0 (see `now_ms`): edit dates and
            change-tracking generations count from it, in epoch milliseconds.

    Attributes:
        max_body_bytes: The largest request body accepted (None: no limit). A bigger
            POST gets HTTP 413 "Request Entity Too Large" as an HTML page, with no ArcGIS
            envelope, as the web server in front of ArcGIS (IIS, nginx) answers: what
            ArcGIS itself says is not documented.
        async_edit_seconds: How long an ``async=true`` applyEdits job (or an
            extractChanges job) runs before its status says ``Completed`` (on anyio's
            clock).
        extract_changes_as_job: Answer every extractChanges with a job to poll
            (``statusUrl``), as ArcGIS Online may, not only those asking ``async=true``.
        clock_skew_ms: Added to the wall clock for edit dates (editor tracking and
            ``editingInfo``), not for change-tracking generations: a server whose
            clock is behind (negative) or ahead. 0 by default.
    """

    def __init__(
        self,
        *,
        origin: str = "https://arcgis.example.com",
        site: str = "arcgis",
        error_style: ErrorStyle = "body",
        max_token_minutes: float = 20160,
        server: ServerKind = "hosted",
        seed: int = 0,
        epoch: datetime.datetime = _EPOCH,
    ) -> None:
        if epoch.tzinfo is None:
            raise ValueError("epoch must be timezone-aware, e.g. datetime(2026, 1, 1, tzinfo=UTC)")
        if error_style not in ("body", "http"):
            raise ValueError(f"error_style must be 'body' or 'http', got {error_style!r}")
        self.origin = origin.rstrip("/")
        self.site = site.strip("/")
        self.error_style: ErrorStyle = error_style
        self.max_token_minutes = max_token_minutes
        if server not in ("hosted", "federated", "standalone"):
            raise ValueError(
                f"server must be 'hosted', 'federated' or 'standalone', got {server!r}"
            )
        self.server: ServerKind = server
        self.faults = Faults()
        self.services: dict[str, FakeService] = {}
        # One stream of random numbers for token values and the GlobalIDs of edits, and
        # another for random failures, so that each is repeatable for a seed.
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(seed + 1)
        self._seed = seed
        self._counters = Counters()
        # The token rules read this emulator's settings at each request.
        self._tokens = Tokens(self, rng=self._rng, counters=self._counters)
        self._read_only_users: set[str] = set()
        self._jobs = EditJobs(self._rng)
        self.max_body_bytes: int | None = None
        self.async_edit_seconds: float = 2.0
        self.extract_changes_as_job = False
        self._epoch_ms = round(epoch.timestamp() * 1000)
        self.clock_skew_ms = 0
        self._last_gen = 0

    # -- URLs --------------------------------------------------------------------------

    @property
    def portal_url(self) -> str:
        """The portal root, for ``UserTokenAuth(base_url=...)``."""
        return self.origin

    @property
    def services_url(self) -> str:
        """The services root: ``<origin>/<site>/rest/services``."""
        return f"{self.origin}/{self.site}/rest/services"

    @property
    def token_url(self) -> str:
        """The portal's generateToken endpoint."""
        return f"{self.origin}/sharing/rest/generateToken"

    @property
    def server_token_url(self) -> str:
        """The standalone server's generateToken endpoint."""
        return f"{self.origin}/{self.site}/tokens/generateToken"

    # -- set-up ------------------------------------------------------------------------

    def add_user(self, username: str, password: str, *, can_edit: bool = True) -> None:
        """Let *username* sign in with *password* through generateToken.

        A user who cannot edit (*can_edit* False, as an ArcGIS Online viewer) reads
        every service it may read, and gets error 403 from applyEdits.
        """
        self._tokens.add_user(username, password)
        if can_edit:
            self._read_only_users.discard(username)
        else:
            self._read_only_users.add(username)

    def add_app(self, client_id: str, client_secret: str) -> None:
        """Let an app sign in through oauth2/token (client_credentials)."""
        self._tokens.add_app(client_id, client_secret)

    def add_api_key(self, key: str) -> None:
        """Accept *key* as a token (an API key) until it is revoked."""
        self._tokens.add_api_key(key)

    def add_feature_layer(  # noqa: PLR0913  (public: one keyword per layer setting)
        self,
        service: str,
        *,
        layer_id: int | None = None,
        name: str | None = None,
        count: int | None = None,
        geometry: GeometryKind | None = "point",
        features: Iterable[Mapping[str, Any]] | None = None,
        fields: Sequence[Mapping[str, Any]] | None = None,
        object_id_field: str = "OBJECTID",
        max_record_count: int = 1000,
        secured: bool = False,
        editable: bool = True,
        seed: int | None = None,
        lazy: bool = False,
        first_oid: int = 1,
        has_attachments: bool = False,
        change_tracking: bool = False,
        editor_tracking: bool = False,
    ) -> FakeLayer:
        """Add a FeatureServer layer, generated (*count*) or from your *features*.

        Args:
            service: The service name, with its folder if any (``"Folder/Name"``).
            layer_id: The layer id; by default the next free one.
            name: The layer name; by default the service name.
            count: Generate this many deterministic features (fields: `GENERATED_FIELDS`).
            geometry: ``"point"``, ``"polyline"``, ``"polygon"``, or None for a table.
            features: Your own features (Esri JSON, each with its object id) instead.
            fields: Field definitions for *features*; by default the generated fields.
            object_id_field: The object-id field of *features*.
            max_record_count: The layer's ``maxRecordCount``.
            secured: Whether the service needs a token.
            editable: Whether the layer advertises Create, Update and Delete.
            seed: Seed of the generated features (default: the emulator's seed).
            lazy: Make each generated feature only when a query reads it, from *seed*
                and its object id, instead of holding *count* features: for layers of
                millions (a layer of 5,000,000 costs a few megabytes). The features
                differ from those made without *lazy*; the layer cannot be edited (see
                `FakeLayer`).
            first_oid: The object id of the first generated feature.
            has_attachments: Whether its features may have attachments (see
                `FakeLayer` for the other attachment settings).
            change_tracking: Add ``ChangeTracking`` to the layer's capabilities; the
                service has it (``extractChanges``, ``changeTrackingInfo``) when all
                its layers do, as on real servers.
            editor_tracking: Add the fields ``created_user``, ``created_date``,
                ``last_edited_user`` and ``last_edited_date`` (``editFieldsInfo``),
                stamped by every add and update; the features given now are stamped
                as created now by ``esri_anonymous`` unless they carry values.
        """
        capabilities = "Create,Delete,Query,Update,Editing" if editable else "Query"
        layer = self._add_layer(
            service,
            kind="FeatureServer",
            layer_id=layer_id,
            name=name,
            count=count,
            geometry=geometry,
            features=features,
            fields=fields,
            object_id_field=object_id_field,
            max_record_count=max_record_count,
            secured=secured,
            capabilities=capabilities + (",ChangeTracking" if change_tracking else ""),
            seed=seed,
            lazy=lazy,
            first_oid=first_oid,
        )
        layer.has_attachments = has_attachments
        if editor_tracking:
            self._track_editors(layer)
        return layer

    def add_map_layer(  # noqa: PLR0913  (public: one keyword per layer setting)
        self,
        service: str,
        *,
        layer_id: int | None = None,
        name: str | None = None,
        count: int | None = None,
        geometry: GeometryKind | None = "point",
        features: Iterable[Mapping[str, Any]] | None = None,
        fields: Sequence[Mapping[str, Any]] | None = None,
        object_id_field: str = "OBJECTID",
        max_record_count: int = 1000,
        secured: bool = False,
        seed: int | None = None,
        lazy: bool = False,
        first_oid: int = 1,
    ) -> FakeLayer:
        """Add a MapServer layer; the arguments are those of `add_feature_layer`."""
        return self._add_layer(
            service,
            kind="MapServer",
            layer_id=layer_id,
            name=name,
            count=count,
            geometry=geometry,
            features=features,
            fields=fields,
            object_id_field=object_id_field,
            max_record_count=max_record_count,
            secured=secured,
            capabilities="Map,Query,Data",
            seed=seed,
            lazy=lazy,
            first_oid=first_oid,
        )

    def _add_layer(  # noqa: PLR0913  (the settings of both public calls, by keyword)
        self,
        service_name: str,
        *,
        kind: Literal["FeatureServer", "MapServer"],
        layer_id: int | None,
        name: str | None,
        count: int | None,
        geometry: GeometryKind | None,
        features: Iterable[Mapping[str, Any]] | None,
        fields: Sequence[Mapping[str, Any]] | None,
        object_id_field: str,
        max_record_count: int,
        secured: bool,
        capabilities: str,
        seed: int | None,
        lazy: bool,
        first_oid: int,
    ) -> FakeLayer:
        service_name = service_name.strip("/")
        _check_layer_source(count, features, fields, object_id_field, lazy=lazy)
        service = self._service(service_name, kind, secured=secured)
        if layer_id is None:
            layer_id = max(service.layers, default=-1) + 1
        if layer_id in service.layers:
            raise ValueError(f"{service_name}/{kind} already has a layer {layer_id}")
        layer = FakeLayer(
            id=layer_id,
            name=name or service_name.rsplit("/", 1)[-1],
            fields=[dict(f) for f in (fields or GENERATED_FIELDS)],
            object_id_field=object_id_field,
            geometry_type=GEOMETRY_TYPES[geometry] if geometry else None,
            max_record_count=max_record_count,
            capabilities=capabilities,
            url=f"/{self.site}/rest/services/{service_name}/{kind}/{layer_id}",
        )
        seed = self._seed if seed is None else seed
        if lazy:
            assert count is not None  # as checked above
            layer.generate_lazily(count, seed=seed, geometry=geometry, first_oid=first_oid)
        else:
            if count is not None:
                features = generate_features(
                    count, geometry=geometry, seed=seed, first_oid=first_oid
                )
            assert features is not None  # exactly one of count and features, as checked above
            layer.load(features)
        self._start_tracking(layer)
        service.layers[layer_id] = layer
        return layer

    def _service(
        self, name: str, kind: Literal["FeatureServer", "MapServer"], *, secured: bool
    ) -> FakeService:
        """The service *name* of *kind*, made if new; secured if any of its layers is."""
        service = self.services.get(f"{name}/{kind}")
        if service is None:
            service = self.services[f"{name}/{kind}"] = FakeService(name, kind, secured)
        service.secured = service.secured or secured
        return service

    def layer(self, service: str, layer_id: int = 0, kind: str = "FeatureServer") -> FakeLayer:
        """The layer *layer_id* of *service*."""
        return self.services[f"{service.strip('/')}/{kind}"].layers[layer_id]

    # -- on the wire -------------------------------------------------------------------

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that this emulator answers in process (no sockets)."""
        return _adaptors.ArcGISTransport(self)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An `httpx.AsyncClient` on `transport`, for ``http_client=`` arguments and tests."""
        return httpx.AsyncClient(transport=self.transport(), **kwargs)

    @property
    def asgi_app(self) -> Callable[..., Awaitable[None]]:
        """This emulator as an ASGI application."""
        return _adaptors.asgi_app(self)

    def serve(self) -> AbstractAsyncContextManager[str]:
        """Serve over real HTTP on 127.0.0.1, on a free port, for the ``async with`` block.

        Yields the origin (``http://127.0.0.1:<port>``); use it in place of `origin`,
        for example ``f"{origin}/arcgis/rest/services"``. Needs hypercorn
        (``pip install 'archibald[server]'``). Runs under Trio and asyncio.
        """
        return _adaptors.serve(self)

    # -- switches and counters ---------------------------------------------------------

    def revoke_all_tokens(self) -> None:
        """Invalidate every token issued so far (API keys included): the next use gets 498."""
        self._tokens.revoke_all()

    def expire_token(self, token: str) -> None:
        """Make one token expire now."""
        self._tokens.expire(token)

    def issued_tokens(self) -> list[str]:
        """Every token this emulator has handed out, for tests that check that none of
        them reached a log, a message or a URL."""
        return self._tokens.issued()

    def statistics(self) -> FakeStatistics:
        """A snapshot of the counters."""
        return self._counters.snapshot()

    def reset_statistics(self) -> None:
        """Set every counter back to zero."""
        self._counters.reset()

    # -- answering ---------------------------------------------------------------------

    async def respond(self, request: Request) -> Response:
        """Answer one request (the adaptors call this)."""
        endpoint, handler = self._route(request.path)
        self._counters.requests[endpoint] += 1
        fault = await fault_answer(self.faults, endpoint, request, self._fault_rng)
        if fault is not None:
            self._counters.faults_injected += 1
            return fault
        if self._too_big(request):
            return proxy_page(413, "Request Entity Too Large")
        fmt = request.params.get("f", "html").lower()
        if fmt not in (*_JSON_FORMATS, "geojson", "pbf") and endpoint != "attachments":
            return html_page(request.path)
        try:
            return await handler(request)
        except Refusal as refusal:
            return self._error(refusal)
        except Exception as exc:  # an emulator bug must look like a server error, not a crash
            logger.exception("FakeArcGIS failed on %s %s", request.method, request.path)
            details = [f"{type(exc).__name__}: {exc}"]
            return self._error(Refusal(500, "FakeArcGIS internal error.", details))

    def _route(self, path: str) -> tuple[str, _Handler]:
        """The endpoint that *path* names (as counted), and its handler."""
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["sharing", "rest"]:
            rest = parts[2:]
            if rest == ["generateToken"]:
                return "generateToken", self._tokens.generate_token
            if rest == ["oauth2", "token"]:
                return "oauth2/token", self._tokens.oauth_token
            if rest == ["info"]:
                return "info", self._portal_info
        elif parts[:1] == [self.site]:
            rest = parts[1:]
            if rest == ["rest", "info"]:
                return "info", self._server_info
            if rest == ["tokens", "generateToken"]:
                return "generateToken", self._tokens.generate_token
            if rest[:2] == ["rest", "services"]:
                return self._route_services(rest[2:])
        return "unknown", self._unknown

    def _route_services(self, parts: list[str]) -> tuple[str, _Handler]:
        for index, part in enumerate(parts):
            if part in ("FeatureServer", "MapServer"):
                service = self.services.get("/".join(parts[: index + 1]))
                if service is None:
                    return "service", self._unknown
                return self._route_service(service, parts[index + 1 :])
        return "catalog", functools.partial(self._catalog, "/".join(parts))

    def _route_service(self, service: FakeService, tail: list[str]) -> tuple[str, _Handler]:
        """The endpoint that *tail* (the path below a service) names, and its handler."""
        if not tail:
            return "service", functools.partial(self._service_info, service)
        if tail == ["layers"]:
            return "service", functools.partial(self._all_layers, service)
        if tail == ["extractChanges"] and service.kind == "FeatureServer":
            return "extractChanges", functools.partial(self._extract_changes, service)
        if tail[0] == "jobs" and len(tail) == 3 and service.kind == "FeatureServer":
            return "jobs", functools.partial(self._job, service, tail[1], tail[2])
        is_id = tail[0].isascii() and tail[0].isdecimal()
        layer = service.layers.get(int(tail[0])) if is_id else None
        if layer is None:
            return "layer", self._unknown
        return self._route_layer(service, layer, tail[1:])

    def _route_layer(
        self, service: FakeService, layer: FakeLayer, rest: list[str]
    ) -> tuple[str, _Handler]:
        """The endpoint that *rest* (the path below a layer) names, and its handler."""
        if not rest:
            return "layer", functools.partial(self._layer_info, service, layer)
        if rest == ["query"]:
            return "query", functools.partial(self._query, service, layer)
        if rest == ["applyEdits"] and service.kind == "FeatureServer":
            return "applyEdits", functools.partial(self._apply_edits, service, layer)
        if service.kind == "FeatureServer" and is_attachment_path(rest):
            return "attachments", functools.partial(self._attachments, service, layer, rest)
        return "unknown", self._unknown

    def _error(self, refusal: Refusal) -> Response:
        """*refusal* as an ArcGIS error body, counting the token errors."""
        if refusal.code == 498:
            self._counters.rejected_498 += 1
        elif refusal.code == 499:
            self._counters.rejected_499 += 1
        error: dict[str, Any] = {
            "code": refusal.code,
            "message": refusal.message,
            "details": list(refusal.details),
        }
        if refusal.message_code:
            error["messageCode"] = refusal.message_code
        http_status = self.error_style == "http" and 400 <= refusal.code <= 599
        return json_response({"error": error}, refusal.code if http_status else 200)

    # -- handlers: the token check, then the part that answers --------------------------

    async def _portal_info(self, request: Request) -> Response:
        return json_response(portal_info(request))

    async def _server_info(self, request: Request) -> Response:
        return json_response(server_info(request, site=self.site, server=self.server))

    async def _catalog(self, folder: str, request: Request) -> Response:
        signed_in = self._tokens.signed_in(request)
        return json_response(catalog(self.services.values(), folder, signed_in=signed_in))

    async def _service_info(self, service: FakeService, request: Request) -> Response:
        self._tokens.authorize(request, service)
        updates = is_true(request.params.get("returnUpdates"))
        return json_response(service_info(service, return_updates=updates))

    async def _all_layers(self, service: FakeService, request: Request) -> Response:
        self._tokens.authorize(request, service)
        return json_response(all_layers(service))

    async def _layer_info(
        self, service: FakeService, layer: FakeLayer, request: Request
    ) -> Response:
        self._tokens.authorize(request, service)
        return json_response(layer_metadata(layer))

    async def _query(self, service: FakeService, layer: FakeLayer, request: Request) -> Response:
        self._tokens.authorize(request, service)
        return answer_query(layer, request.params, faults=self.faults, counters=self._counters)

    async def _apply_edits(
        self, service: FakeService, layer: FakeLayer, request: Request
    ) -> Response:
        self._tokens.authorize(request, service)
        if self._tokens.editor(request) in self._read_only_users:
            raise Refusal(403, _FORBIDDEN, [], "GWM_0003")
        edits = read_edits(request, layer.capabilities)
        try:
            body: dict[str, Any] = self._apply_tracked_edits(
                layer,
                edits.adds,
                edits.updates,
                edits.deletes,
                rollback_on_failure=edits.rollback_on_failure,
                user=self._tokens.editor(request) or ANONYMOUS_EDITOR,
                at_ms=None,
            )
        except Refusal as refusal:
            if not (edits.background and layer.supports_async_apply_edits):
                raise
            body = {"error": {"code": refusal.code, "message": refusal.message,
                              "details": refusal.details}}  # fmt: skip
        if edits.background and layer.supports_async_apply_edits:
            service_url = layer.url.rsplit("/", 1)[0]
            return json_response(
                self._jobs.start(request, service_url, body, self.async_edit_seconds)
            )
        return json_response(body)

    async def _job(
        self, service: FakeService, job_id: str, what: str, request: Request
    ) -> Response:
        self._tokens.authorize(request, service)
        return json_response(self._jobs.answer(request, job_id, what))

    def _too_big(self, request: Request) -> bool:
        if self.max_body_bytes is None or request.method != "POST":
            return False
        size = request.headers.get("content-length", "")
        return size.isdecimal() and int(size) > self.max_body_bytes

    async def _attachments(
        self, service: FakeService, layer: FakeLayer, parts: list[str], request: Request
    ) -> Response:
        self._tokens.authorize(request, service)
        return answer_attachments(layer, parts, request, rng=self._rng)

    async def _extract_changes(self, service: FakeService, request: Request) -> Response:
        self._tokens.authorize(request, service)
        self._refuse_untracked(service)
        body = extract_changes(service.layers, request, extracted_feature)
        if self.extract_changes_as_job or is_true(request.params.get("async", "")):
            service_url = f"/{self.site}/rest/services/{service.name}/{service.kind}"
            return json_response(
                self._jobs.start(request, service_url, body, self.async_edit_seconds)
            )
        return json_response(body)

    async def _unknown(self, request: Request) -> Response:
        raise Refusal(400, "Invalid URL", ["Invalid URL"])


def _check_layer_source(
    count: int | None,
    features: Iterable[Mapping[str, Any]] | None,
    fields: Sequence[Mapping[str, Any]] | None,
    object_id_field: str,
    *,
    lazy: bool,
) -> None:
    """Refuse layer settings that contradict each other, saying which to give."""
    if (count is None) == (features is None):
        raise ValueError("give either count (generated features) or features, not both")
    if lazy and (count is None or fields is not None):
        raise ValueError("lazy=True generates its features: give count, without features or fields")
    field_names = {f["name"] for f in (fields or GENERATED_FIELDS)}
    if object_id_field not in field_names:
        raise ValueError(
            f"object_id_field {object_id_field!r} is not among the fields "
            f"({', '.join(sorted(field_names))}); pass fields= for your own features"
        )
