"""`POST /ingest`: Tecton's ingest API shape, synchronous (returns once the online store has the rows)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from actors.components.ingest import IngestPlan
from events.access import Action
from events.errors import InvalidRequest
from gateway.auth import SERVER_KEY, caller
from gateway.tecton import json_document, snake_or_camel

MAX_RECORDS = 10_000


def _parse(payload: bytes) -> tuple[str, bool, dict[str, list[dict[str, Any]]]]:
    document = json_document(payload)
    if not isinstance(document, dict):
        raise InvalidRequest("the request body must be a JSON object")
    workspace = snake_or_camel(document, "workspace_name")
    if not isinstance(workspace, str) or not workspace:
        raise InvalidRequest("workspace_name is required")
    dry_run = snake_or_camel(document, "dry_run") or False
    records = document.get("records")
    if not isinstance(dry_run, bool):
        raise InvalidRequest("dry_run must be true or false")
    if not isinstance(records, dict) or not records:
        raise InvalidRequest('records must be an object: {"<push source>": [{"record": {...}}, ...]}')
    parsed: dict[str, list[dict[str, Any]]] = {}
    for source, items in records.items():
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("record"), dict)
                                                  for i in items):
            raise InvalidRequest(f'records.{source} must be a list of {{"record": {{...}}}} objects')
        parsed[source] = [i["record"] for i in items]
    if sum(len(items) for items in parsed.values()) > MAX_RECORDS:
        raise InvalidRequest(f"at most {MAX_RECORDS} records per request")
    return workspace, dry_run, parsed


def _render(workspace: str, plan: IngestPlan) -> dict[str, Any]:
    views = sorted({*plan.online, *plan.offline})
    return {
        "workspaceName": workspace,
        "ingestMetrics": {"featureViewIngestMetrics": [
            {"featureViewName": v, "onlineRecordIngestCount": plan.online.get(v, 0),
             "offlineRecordIngestCount": plan.offline.get(v, 0)} for v in views]},
    }


async def ingest(request: web.Request) -> web.Response:
    principal = await caller(request)
    payload = await request.read()
    workspace, dry_run, records = _parse(payload)
    server = request.app[SERVER_KEY]
    server.auth.require(principal, Action.INGEST, workspace)
    plan = await server.ingest(workspace, records, principal=principal.principal_id, payload=payload,
                               dry_run=dry_run)
    if plan.errors:
        body = {"requestError": {"errorMessage": f"{len(plan.errors)} record(s) were refused; nothing was ingested",
                                 "errorType": "INVALID_ARGUMENT"},
                "recordErrors": [{"pushSourceName": e.source, "recordIndex": e.index,
                                  "featureViewName": e.feature_view, "errorMessage": e.message}
                                 for e in plan.errors]}
        return web.json_response(body, status=400)
    return web.json_response(_render(workspace, plan))
