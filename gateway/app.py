"""The aiohttp application: routes, body limits and the translation of errors into responses."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import structlog
from aiohttp import web

from actors.components.feature_server import FeatureServer
from actors.components.serving import FeatureRequest
from events.access import Action, PrincipalSpec
from events.errors import FeatureplaneError, InvalidRequest, PermissionDenied
from events.flows import Flow
from gateway import admin, ingest, openapi, ui
from gateway.auth import SERVER_KEY, caller
from gateway.errors import error_response, response_for
from gateway.limits import InFlight, limits_middleware, too_large
from gateway.tecton import (
    json_document,
    parse_get_features,
    parse_get_features_batch,
    render_get_features,
    render_get_features_batch,
    render_metadata,
    snake_or_camel,
)

MAX_BODY_BYTES = 1024 * 1024
MAX_AUDIT_LIMIT = 10_000
DEFAULT_MAX_IN_FLIGHT = 64
IN_FLIGHT_KEY = web.AppKey("in_flight", InFlight)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(document: Any) -> str:
    return json.dumps(document, default=_json_default, separators=(",", ":"))


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FeatureplaneError as error:
        return response_for(error)
    except web.HTTPException as exc:
        if exc.status == 413:
            return too_large(MAX_BODY_BYTES)
        if exc.status >= 400:
            return error_response(exc.status, exc.reason.upper().replace(" ", "_"), exc.text or exc.reason)
        raise
    except Exception:  # noqa: BLE001 - the edge answers 500 with a body, never drops the connection
        structlog.get_logger().exception("unhandled_request_error", path=request.path)
        return error_response(500, "INTERNAL", "internal error; see the gateway log")


async def get_features(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    principal = await caller(request)
    payload = await request.read()
    feature_request, options = parse_get_features(payload, principal.principal_id)
    await _require_read(server, principal, feature_request)
    served = await server.get_features(feature_request)
    body = _dumps(render_get_features(served, options)).encode()
    await server.audit_response(served, body)
    return web.Response(body=body, content_type="application/json")


async def _require_read(server: FeatureServer, principal: PrincipalSpec, feature_request: FeatureRequest) -> None:
    """The caller may read features in the workspace; a refused read is audited (F1, denied) first."""
    try:
        server.auth.require(principal, Action.READ_FEATURES, feature_request.workspace)
    except PermissionDenied:
        await server.audit_refused(feature_request)
        raise


async def healthz(request: web.Request) -> web.Response:
    """Liveness for orchestrators, without a key: so no metadata (workspace names need the viewer role)."""
    server = request.app[SERVER_KEY]
    in_flight = request.app[IN_FLIGHT_KEY]
    return web.json_response({
        "status": "ok",
        "replica": server.replica_id,
        "in_flight": {"current": in_flight.current, "limit": in_flight.limit, "refused": in_flight.refused},
    })


async def audit_flows(request: web.Request) -> web.Response:
    principal = await caller(request)
    request.app[SERVER_KEY].auth.require_admin(principal)
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_AUDIT_LIMIT:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_AUDIT_LIMIT}, got {raw!r}")
    answer = await request.app[SERVER_KEY].recent_audit(int(raw), principal.principal_id,
                                                        **audit_filters(request.query))
    document = {"total": answer.total, "records": [dataclasses.asdict(r) for r in answer.records]}
    return web.Response(text=_dumps(document), content_type="application/json")


_FILTERS = {"flow": "flow", "principal": "principal", "workspace": "workspace", "feature_view": "subject",
            "subject": "subject", "correlation_id": "correlation_id", "causation_id": "causation_id"}


def audit_filters(query: Mapping[str, str]) -> dict[str, Any]:
    """The audit query's filters from URL parameters; InvalidRequest names a bad one."""
    filters: dict[str, Any] = {_FILTERS[name]: value for name, value in query.items() if name in _FILTERS}
    if filters.get("flow") and filters["flow"] not in {f.value for f in Flow}:
        raise InvalidRequest(f"flow must be one of F1..F9, got {filters['flow']!r}")
    for bound in ("since", "until"):
        if bound in query:
            try:
                moment = datetime.fromisoformat(query[bound])
            except ValueError:
                raise InvalidRequest(f"{bound} must be an ISO-8601 time, got {query[bound]!r}") from None
            filters[bound] = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    unknown = set(query) - set(_FILTERS) - {"since", "until", "limit"}
    if unknown:
        raise InvalidRequest(f"unknown audit filter(s) {sorted(unknown)}")
    return filters


async def lineage(request: web.Request) -> web.Response:
    """POST /api/v1/lineage with get-features' params: where each served value came from."""
    principal = await caller(request)
    feature_request, _ = parse_get_features(await request.read(), principal.principal_id)
    server = request.app[SERVER_KEY]
    server.auth.require(principal, Action.READ_METADATA, feature_request.workspace)
    chains = await server.lineage(feature_request.workspace, feature_request.feature_service,
                                  feature_request.join_keys, principal.principal_id)
    return web.Response(text=_dumps({"lineage": chains}), content_type="application/json")


async def lineage_of_write(request: web.Request) -> web.Response:
    """GET /api/v1/lineage/writes/{write_id}: one store write (e.g. the `_written_by` of an offline row)
    traced to its source records; audit-log reading, so account admins only, like the audit routes."""
    principal = await caller(request)
    server = request.app[SERVER_KEY]
    server.auth.require_admin(principal)
    chain = await server.trace_write(request.match_info["write_id"], principal.principal_id)
    return web.Response(text=_dumps(chain), content_type="application/json")


async def get_features_batch(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    principal = await caller(request)
    payload = await request.read()
    feature_request, key_maps, contexts, options = parse_get_features_batch(payload, principal.principal_id)
    await _require_read(server, principal, feature_request)
    served = await server.get_features_batch(feature_request, key_maps, contexts)
    body = _dumps(render_get_features_batch(served, options)).encode()
    await server.audit_response(served, body)
    return web.Response(body=body, content_type="application/json")


async def feature_service_metadata(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    principal = await caller(request)
    document = json_document(await request.read())
    params = document.get("params") if isinstance(document, dict) else None
    if not isinstance(params, dict):
        raise InvalidRequest("the request body must be an object with a 'params' object")
    workspace, service = snake_or_camel(params, "workspace_name"), snake_or_camel(params, "feature_service_name")
    if not isinstance(workspace, str) or not isinstance(service, str):
        raise InvalidRequest("params.workspace_name and params.feature_service_name are required")
    server.auth.require(principal, Action.READ_METADATA, workspace)
    ws = server.follower.registry.workspace(workspace)
    return web.json_response(render_metadata(ws, ws.service(service)))


def create_app(server: FeatureServer, *, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> web.Application:
    in_flight = InFlight(max_in_flight)
    app = web.Application(middlewares=[limits_middleware(in_flight, MAX_BODY_BYTES), errors_middleware],
                          client_max_size=MAX_BODY_BYTES)
    app[SERVER_KEY] = server
    app[IN_FLIGHT_KEY] = in_flight
    app.router.add_post("/api/v1/feature-service/get-features", get_features)
    app.router.add_post("/api/v1/feature-service/get-features-batch", get_features_batch)
    app.router.add_post("/api/v1/feature-service/metadata", feature_service_metadata)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/audit/flows", audit_flows)
    app.router.add_post("/ingest", ingest.ingest)
    app.router.add_post("/api/v1/lineage", lineage)
    app.router.add_get("/api/v1/lineage/writes/{write_id}", lineage_of_write)
    admin.add_routes(app)
    ui.add_routes(app)
    openapi.add_routes(app)
    return app
