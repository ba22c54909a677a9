"""Control-plane operations over HTTP, for the CLI: apply, workspaces, users, service accounts, keys, roles.

The gateway checks the caller's role for a quick 403; the control plane authorizes every command
again, since it is the one that decides.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from actors.components.job_table import JobTableFollower
from events import control
from events.access import Action, ApiKeySpec, PrincipalKind, PrincipalSpec, Role, RoleGrant, new_api_key
from events.codec import CODEC
from events.envelope import new_id
from events.errors import InvalidRequest, NotFound
from events.jobs import JobRecord, JobTrigger
from events.plan import plan_changes, plan_id, workspace_digest
from events.specs import RepoSpec
from gateway.auth import SERVER_KEY, caller
from gateway.tecton import json_document

MSGPACK = "application/x-msgpack"
JOBS_KEY = web.AppKey("jobs", JobTableFollower)
JOBS_SYNC_TIMEOUT_S = 10.0


async def _json_body(request: web.Request) -> dict[str, Any]:
    body = json_document(await request.read() or b"{}")
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{key}' is required and must be a non-empty string")
    return value


async def _repo_request(request: web.Request, action: Action) -> tuple[PrincipalSpec, str, RepoSpec]:
    """The caller, the workspace and the compiled repository (msgpack) of a plan or apply request."""
    principal, workspace = await caller(request), request.match_info["workspace"]
    server = request.app[SERVER_KEY]
    if workspace in server.follower.registry.workspaces:
        server.auth.require(principal, action, workspace)
    else:
        server.auth.require_admin(principal)  # applying to a new workspace creates it
    if request.content_type != MSGPACK:
        raise InvalidRequest(f"send the compiled repository as {MSGPACK} (featureplane plan/apply do)")
    repo = CODEC.decode_value(await request.read())
    if not isinstance(repo, RepoSpec):
        raise InvalidRequest("the body is not a compiled feature repository")
    return principal, workspace, repo


async def plan_repo(request: web.Request) -> web.Response:
    """POST /api/v1/workspaces/{workspace}/plan: what applying the repository would change."""
    _, workspace, repo = await _repo_request(request, Action.READ_METADATA)
    registry = await request.app[SERVER_KEY].follower.sync(10)  # plan against every committed definition
    ws = registry.workspaces.get(workspace)
    changes = plan_changes(ws, repo)
    base = workspace_digest(ws)
    return web.json_response({
        "workspace": workspace, "plan_id": plan_id(workspace, base, repo), "base_digest": base,
        "changes": [{"action": c.action.value, "kind": c.kind, "name": c.name, "destructive": c.destructive,
                     "blocked": c.blocked, "fields": list(c.fields), "summary": c.describe()} for c in changes],
        "blocked": [c.describe() for c in changes if c.blocked],
    })


async def apply_repo(request: web.Request) -> web.Response:
    """POST /api/v1/workspaces/{workspace}/apply[?expected_digest=D]: apply atomically, or refuse."""
    principal, workspace, repo = await _repo_request(request, Action.APPLY)
    applied = await request.app[SERVER_KEY].apply_repo(
        repo, workspace=workspace, principal=principal.principal_id,
        expected_digest=request.query.get("expected_digest", ""))
    return web.json_response({"apply_id": applied.apply_id, "object_count": applied.object_count})


async def list_workspaces(request: web.Request) -> web.Response:
    principal = await caller(request)
    registry = request.app[SERVER_KEY].follower.registry
    visible = [ws for ws in registry.workspaces.values()
               if registry.may(principal.principal_id, Action.READ_METADATA, ws.name)]
    return web.json_response({"workspaces": [{"name": ws.name, "live": ws.live} for ws in visible]})


async def describe_workspace(request: web.Request) -> web.Response:
    principal, name = await caller(request), request.match_info["workspace"]
    server = request.app[SERVER_KEY]
    server.auth.require(principal, Action.READ_METADATA, name)
    ws = server.follower.registry.workspace(name)
    return web.json_response({
        "name": ws.name, "live": ws.live, "entities": sorted(ws.entities),
        "stream_sources": sorted(ws.stream_sources), "feature_views": sorted(ws.feature_views),
        "feature_services": {n: list(s.feature_views) for n, s in sorted(ws.feature_services.items())},
    })


async def create_workspace(request: web.Request) -> web.Response:
    principal, body = await caller(request), await _json_body(request)
    server = request.app[SERVER_KEY]
    server.auth.require_admin(principal)
    name, live = _text(body, "name"), body.get("live", True)
    if not isinstance(live, bool):
        raise InvalidRequest("'live' must be true or false")
    await server.run_command(control.CreateWorkspace(new_id(), name, live), workspace=name,
                             principal=principal.principal_id)
    return web.json_response({"name": name, "live": live}, status=201)


async def create_service_account(request: web.Request) -> web.Response:
    """The new account's API key is in this response and nowhere else."""
    principal, body = await caller(request), await _json_body(request)
    server = request.app[SERVER_KEY]
    server.auth.require_admin(principal)
    name = _text(body, "name")
    account = PrincipalSpec(f"sa-{new_id()[:12]}", PrincipalKind.SERVICE_ACCOUNT, name,
                            str(body.get("description", "")), principal.principal_id)
    key = new_api_key(account.principal_id, str(body.get("description", "")), principal.principal_id)
    await server.run_command(control.CreateServiceAccount(new_id(), account, key.spec), workspace="",
                             principal=principal.principal_id)
    return web.json_response({"principal_id": account.principal_id, "name": name, "key_id": key.spec.key_id,
                              "api_key": key.secret_text}, status=201)


async def create_user(request: web.Request) -> web.Response:
    """POST /api/v1/users {name, email?, admin?}: a user and their first API key, in this response only."""
    principal, body = await caller(request), await _json_body(request)
    server = request.app[SERVER_KEY]
    server.auth.require_admin(principal)
    name, email, admin = _text(body, "name"), body.get("email", ""), body.get("admin", False)
    if not isinstance(email, str):
        raise InvalidRequest("'email' must be a string")
    if not isinstance(admin, bool):
        raise InvalidRequest("'admin' must be true or false")
    user = PrincipalSpec(f"user-{new_id()[:12]}", PrincipalKind.USER, name, str(body.get("description", "")),
                         principal.principal_id, is_admin=admin, email=email)
    key = new_api_key(user.principal_id, f"first key of user '{name}'", principal.principal_id)
    await server.run_command(control.CreateUser(new_id(), user, key.spec), workspace="",
                             principal=principal.principal_id)
    return web.json_response({"principal_id": user.principal_id, "name": name, "email": email, "admin": admin,
                              "key_id": key.spec.key_id, "api_key": key.secret_text}, status=201)


def _key_json(spec: ApiKeySpec, revoked: bool) -> dict[str, Any]:
    """A key's metadata: never its salt, hash or secret."""
    return {"key_id": spec.key_id, "principal_id": spec.principal_id, "description": spec.description,
            "created_by": spec.created_by, "created_at": spec.created_at.isoformat() if spec.created_at else None,
            "revoked": revoked}


async def list_keys(request: web.Request) -> web.Response:
    """GET /api/v1/keys: every key, revoked ones too, for an admin; the caller's own keys for anyone else."""
    principal = await caller(request)
    registry = request.app[SERVER_KEY].follower.registry
    keys = [(spec, False) for spec in registry.keys.values()] + \
        [(spec, True) for spec in registry.revoked_keys.values()]
    visible = [_key_json(spec, revoked) for spec, revoked in keys
               if principal.is_admin or spec.principal_id == principal.principal_id]
    visible.sort(key=lambda k: (k["created_at"] or "", k["key_id"]))
    return web.json_response({"keys": visible})


async def issue_key(request: web.Request) -> web.Response:
    principal, body = await caller(request), await _json_body(request)
    server = request.app[SERVER_KEY]
    server.auth.require_admin(principal)
    owner = request.match_info["principal"]
    key = new_api_key(owner, str(body.get("description", "")), principal.principal_id)
    await server.run_command(control.IssueApiKey(new_id(), key.spec), workspace="", principal=principal.principal_id)
    return web.json_response({"principal_id": owner, "key_id": key.spec.key_id, "api_key": key.secret_text},
                             status=201)


async def revoke_key(request: web.Request) -> web.Response:
    principal = await caller(request)
    server = request.app[SERVER_KEY]
    server.auth.require_admin(principal)
    key_id = request.match_info["key_id"]
    if key_id not in server.follower.registry.keys:
        raise NotFound(f"API key '{key_id}' does not exist or is revoked already")
    await server.run_command(control.RevokeApiKey(new_id(), key_id), workspace="", principal=principal.principal_id)
    return web.json_response({"key_id": key_id, "revoked": True})


async def assign_role(request: web.Request) -> web.Response:
    principal, body = await caller(request), await _json_body(request)
    workspace = request.match_info["workspace"]
    server = request.app[SERVER_KEY]
    server.auth.require(principal, Action.MANAGE_ROLES, workspace)
    try:
        role = Role(_text(body, "role"))
    except ValueError:
        raise InvalidRequest(f"'role' must be one of {[r.value for r in Role]}") from None
    grant = RoleGrant(_text(body, "principal_id"), workspace, role)
    command: Any = control.UnassignRole(new_id(), grant) if request.method == "DELETE" else \
        control.AssignRole(new_id(), grant)
    await server.run_command(command, workspace=workspace, principal=principal.principal_id)
    return web.json_response({"principal_id": grant.principal_id, "workspace": workspace, "role": role.value,
                              "assigned": request.method != "DELETE"})


def _instant(body: dict[str, Any], key: str) -> datetime:
    text = _text(body, key)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"'{key}' must be an ISO-8601 time, got {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def job_json(job: JobRecord) -> dict[str, Any]:
    return {"job_id": job.job_id, "workspace": job.workspace, "feature_view": job.feature_view,
            "start": job.start.isoformat(), "end": job.end.isoformat(), "attempt": job.attempt,
            "compute": job.compute.value, "trigger": job.trigger.value, "state": job.state.value,
            "updated_at": job.updated_at.isoformat(), "source_rows": job.source_rows,
            "rows_written": job.rows_written, "tiles_written": job.tiles_written, "error": job.error}


async def materialize(request: web.Request) -> web.Response:
    """POST /api/v1/materialize {workspace, feature_view, start, end}: a manual job (operator role or above)."""
    principal, body = await caller(request), await _json_body(request)
    server = request.app[SERVER_KEY]
    workspace, view = _text(body, "workspace"), _text(body, "feature_view")
    start, end = _instant(body, "start"), _instant(body, "end")
    server.auth.require(principal, Action.TRIGGER_JOBS, workspace)
    await server.run_command(control.TriggerMaterialization(new_id(), view, start, end), workspace=workspace,
                             principal=principal.principal_id)
    jobs = await request.app[JOBS_KEY].sync(JOBS_SYNC_TIMEOUT_S)
    made = [j for j in jobs.values() if j.workspace == workspace and j.feature_view == view
            and j.trigger is JobTrigger.MANUAL and (j.start, j.end) == (start, end)]
    return web.json_response({"jobs": [job_json(j) for j in made]}, status=202)


async def list_jobs(request: web.Request) -> web.Response:
    """GET /api/v1/jobs?workspace=W[&feature_view=V]: batch jobs, oldest range first."""
    principal, workspace = await caller(request), request.query.get("workspace", "")
    if not workspace:
        raise InvalidRequest("the 'workspace' query parameter is required")
    request.app[SERVER_KEY].auth.require(principal, Action.READ_METADATA, workspace)
    view = request.query.get("feature_view")
    jobs = await request.app[JOBS_KEY].sync(JOBS_SYNC_TIMEOUT_S)
    found = sorted((j for j in jobs.values() if j.workspace == workspace and view in (None, j.feature_view)),
                   key=lambda j: (j.feature_view, j.start, j.job_id))
    return web.json_response({"workspace": workspace, "jobs": [job_json(j) for j in found]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/materialize", materialize)
    app.router.add_get("/api/v1/jobs", list_jobs)
    app.router.add_post("/api/v1/workspaces/{workspace}/plan", plan_repo)
    app.router.add_post("/api/v1/workspaces/{workspace}/apply", apply_repo)
    app.router.add_get("/api/v1/workspaces", list_workspaces)
    app.router.add_post("/api/v1/workspaces", create_workspace)
    app.router.add_get("/api/v1/workspaces/{workspace}", describe_workspace)
    app.router.add_post("/api/v1/workspaces/{workspace}/roles", assign_role)
    app.router.add_delete("/api/v1/workspaces/{workspace}/roles", assign_role)
    app.router.add_post("/api/v1/service-accounts", create_service_account)
    app.router.add_post("/api/v1/principals/{principal}/keys", issue_key)
    app.router.add_post("/api/v1/users", create_user)
    app.router.add_get("/api/v1/keys", list_keys)
    app.router.add_delete("/api/v1/keys/{key_id}", revoke_key)
