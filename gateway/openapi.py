"""The OpenAPI 3 description of every gateway route, served at `GET /api/openapi.json` (no auth).

Kept beside the routes on purpose: a unit test checks that every route registered on the app is
described here, so a new route cannot be forgotten; the fuzz test generates its requests from it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from events.access import Role

Schema = dict[str, Any]

_ERROR: Schema = {
    "type": "object", "required": ["requestError"],
    "properties": {"requestError": {
        "type": "object", "required": ["errorMessage", "errorType"],
        "properties": {"errorMessage": {"type": "string"}, "errorType": {"type": "string"}}}},
}
_SCALAR_MAP: Schema = {"type": "object", "additionalProperties": {
    "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}], "nullable": True}}
_METADATA_OPTIONS: Schema = {"type": "object", "properties": {
    name: {"type": "boolean"} for name in
    ("include_names", "include_data_types", "include_serving_status", "include_effective_times")}}
_REQUEST_OPTIONS: Schema = {"type": "object", "properties": {
    "latency_budget_ms": {"type": "integer", "minimum": 1,
                          "description": "values the store has not read within the budget come back TIME_OUT"}}}
_NAMES = {"workspace_name": {"type": "string", "minLength": 1},
          "feature_service_name": {"type": "string", "minLength": 1}}
_GET_FEATURES: Schema = {"type": "object", "required": ["params"], "properties": {"params": {
    "type": "object", "required": ["workspace_name", "feature_service_name"],
    "properties": {**_NAMES, "join_key_map": _SCALAR_MAP, "request_context_map": _SCALAR_MAP,
                   "metadata_options": _METADATA_OPTIONS, "request_options": _REQUEST_OPTIONS}}}}
_GET_FEATURES_BATCH: Schema = {"type": "object", "required": ["params"], "properties": {"params": {
    "type": "object", "required": ["workspace_name", "feature_service_name", "request_data"],
    "properties": {**_NAMES, "request_context_map": _SCALAR_MAP, "metadata_options": _METADATA_OPTIONS,
                   "request_options": _REQUEST_OPTIONS,
                   "request_data": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {
                       "type": "object", "properties": {"join_key_map": _SCALAR_MAP,
                                                        "request_context_map": _SCALAR_MAP}}}}}}}
_METADATA: Schema = {"type": "object", "required": ["params"], "properties": {"params": {
    "type": "object", "required": ["workspace_name", "feature_service_name"], "properties": _NAMES}}}
_INGEST: Schema = {"type": "object", "required": ["workspace_name", "records"], "properties": {
    "workspace_name": {"type": "string", "minLength": 1}, "dry_run": {"type": "boolean"},
    "records": {"type": "object", "additionalProperties": {"type": "array", "items": {
        "type": "object", "required": ["record"], "properties": {"record": {"type": "object"}}}}}}}
_NAMED: Schema = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "minLength": 1}, "live": {"type": "boolean"}, "description": {"type": "string"}}}
_DESCRIPTION: Schema = {"type": "object", "properties": {"description": {"type": "string"}}}
_USER: Schema = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "minLength": 1}, "email": {"type": "string"}, "admin": {"type": "boolean"},
    "description": {"type": "string"}}}
_ROLE: Schema = {"type": "object", "required": ["principal_id", "role"], "properties": {
    "principal_id": {"type": "string", "minLength": 1},
    "role": {"type": "string", "enum": [r.value for r in Role]}}}
_MATERIALIZE: Schema = {"type": "object", "required": ["workspace", "feature_view", "start", "end"],
                        "properties": {"workspace": {"type": "string"}, "feature_view": {"type": "string"},
                                       "start": {"type": "string", "format": "date-time"},
                                       "end": {"type": "string", "format": "date-time"}}}
_REPO = {"application/x-msgpack": {"schema": {"type": "string", "format": "binary",
                                              "description": "a compiled repository (featureplane plan/apply)"}}}

_ERRORS = {"400": "invalid request", "401": "no or unknown API key", "403": "the caller's role does not allow it",
           "404": "no such object", "413": "the request body is too large",
           "429": "the replica is at its in-flight limit; retry after Retry-After seconds",
           "503": "a platform component is unavailable", "504": "the platform did not answer in time"}


def _operation(summary: str, *, body: Schema | dict[str, Any] | None = None, ok: str = "200",
               auth: bool = True, params: list[Schema] | None = None, html: bool = False) -> Schema:
    content = {"text/html": {"schema": {"type": "string"}}} if html else \
        {"application/json": {"schema": {"type": "object"}}}
    responses: Schema = {ok: {"description": "success", "content": content}}
    for status, why in _ERRORS.items():
        if auth or status not in ("401", "403"):
            responses[status] = {"description": why,
                                 "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    operation: Schema = {"summary": summary, "responses": responses, "parameters": params or []}
    if body is not None:
        media = body if "application/x-msgpack" in body else {"application/json": {"schema": body}}
        operation["requestBody"] = {"required": True, "content": media}
    if not auth:
        operation["security"] = []
    return operation


def _path(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, *, required: bool = False, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": required, "schema": schema or {"type": "string"}}


_AUDIT_QUERY = [_query("limit", schema={"type": "integer", "minimum": 1, "maximum": 10_000}),
                _query("flow", schema={"type": "string", "enum": [f"F{i}" for i in range(1, 10)]}),
                *(_query(n) for n in ("principal", "workspace", "feature_view", "subject", "correlation_id",
                                      "causation_id")),
                _query("since", schema={"type": "string", "format": "date-time"}),
                _query("until", schema={"type": "string", "format": "date-time"})]

PATHS: dict[str, dict[str, Schema]] = {
    "/api/openapi.json": {"get": _operation("This document", auth=False)},
    "/healthz": {"get": _operation("Liveness: status, replica, in-flight requests (no metadata: no key needed)",
                                   auth=False)},
    "/api/v1/feature-service/get-features": {"post": _operation("Features of one entity (Tecton shape)",
                                                                body=_GET_FEATURES)},
    "/api/v1/feature-service/get-features-batch": {"post": _operation("Features of many entities",
                                                                      body=_GET_FEATURES_BATCH)},
    "/api/v1/feature-service/metadata": {"post": _operation("A feature service's inputs and features",
                                                            body=_METADATA)},
    "/ingest": {"post": _operation("Push records to push sources (Tecton's ingest API)", body=_INGEST)},
    "/api/v1/audit/flows": {"get": _operation("Audit records, newest first (admins)", params=_AUDIT_QUERY)},
    "/api/v1/lineage": {"post": _operation("Where each served value came from", body=_GET_FEATURES)},
    "/api/v1/lineage/writes/{write_id}": {"get": _operation("One store write traced to its sources (admins)",
                                                            params=[_path("write_id")])},
    "/api/v1/workspaces": {"get": _operation("The workspaces the caller may read"),
                           "post": _operation("Create a workspace (admins)", body=_NAMED, ok="201")},
    "/api/v1/workspaces/{workspace}": {"get": _operation("A workspace's objects", params=[_path("workspace")])},
    "/api/v1/workspaces/{workspace}/plan": {"post": _operation("What applying a repository would change",
                                                               body=_REPO, params=[_path("workspace")])},
    "/api/v1/workspaces/{workspace}/apply": {"post": _operation(
        "Apply a repository atomically", body=_REPO,
        params=[_path("workspace"), _query("expected_digest")])},
    "/api/v1/workspaces/{workspace}/roles": {
        "post": _operation("Assign a role", body=_ROLE, params=[_path("workspace")]),
        "delete": _operation("Unassign a role", body=_ROLE, params=[_path("workspace")])},
    "/api/v1/service-accounts": {"post": _operation("Create a service account and its key (admins)",
                                                    body=_NAMED, ok="201")},
    "/api/v1/principals/{principal}/keys": {"post": _operation("Issue an API key (admins)", body=_DESCRIPTION,
                                                               ok="201", params=[_path("principal")])},
    "/api/v1/users": {"post": _operation("Create a user and their key; admin: an account admin (admins)",
                                         body=_USER, ok="201")},
    "/api/v1/keys": {"get": _operation("API keys' metadata, never hashes: all for admins, else the caller's")},
    "/api/v1/keys/{key_id}": {"delete": _operation("Revoke an API key (admins)", params=[_path("key_id")])},
    "/api/v1/materialize": {"post": _operation("Start a manual materialization job", body=_MATERIALIZE,
                                               ok="202")},
    "/api/v1/jobs": {"get": _operation("Batch jobs of a workspace",
                                       params=[_query("workspace", required=True), _query("feature_view")])},
    "/ui/lineage": {"get": _operation("The audited flows as an HTML page", html=True,
                                      params=[_query("workspace")])},
}


def document() -> Schema:
    return {
        "openapi": "3.0.3",
        "info": {"title": "featureplane gateway", "version": "0.1.0",
                 "description": "Tecton-compatible online serving, ingest, audit and control-plane operations. "
                                "Every error body has the Tecton requestError shape."},
        "paths": PATHS,
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "Authorization",
                                           "description": "`Bearer <key>` or `Tecton-key <key>`"}},
        },
        "security": [{"apiKey": []}],
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi_json)
