"""The `featureplane` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.settings import store_dir
from deploy import client
from deploy.kafka import pid_alive
from deploy.lineage import offline_lineage
from deploy.runinfo import DEFAULT_STATE_DIR, RunInfo
from events.data import Scalar
from events.errors import FeatureplaneError, InvalidRequest
from events.topics import TopicNames
from stores.metadata import DEFAULT_KEY_ENV_VAR, MetadataKey, load_metadata_key, rotate_key, write_key_file


def _connection(args: argparse.Namespace) -> client.Connection:
    """Flags first, then the running deployment's run file, then the defaults of `featureplane up`."""
    info = RunInfo.read(args.state_dir.resolve())
    bootstrap = args.bootstrap or os.environ.get("FEATUREPLANE_BOOTSTRAP") or (
        info.bootstrap_servers if info else "127.0.0.1:9092")
    prefix = args.topic_prefix or (info.topic_prefix if info else "fp")
    gateway = args.gateway or os.environ.get("FEATUREPLANE_GATEWAY") or (
        info.gateway_url if info else "http://127.0.0.1:8080")
    # The operator's login from the state folder, unless the running deployment's broker takes none (--insecure).
    kafka = None if info is not None and not info.secure else client.operator_credentials(_logins_dir(args, info))
    return client.Connection(bootstrap, TopicNames(prefix), gateway.rstrip("/"), kafka)


def _logins_dir(args: argparse.Namespace, info: RunInfo | None) -> Path:
    """The state folder holding the deployment's Kafka logins: the running one's (`info`), else --state-dir."""
    return Path(info.state_dir) if info else args.state_dir.resolve()


def _api_key(args: argparse.Namespace) -> str:
    """--api-key, then $FEATUREPLANE_API_KEY, then the admin key `featureplane up` wrote."""
    key = args.api_key or os.environ.get("FEATUREPLANE_API_KEY") or client.read_key_file(
        client.admin_key_path(args.state_dir.resolve()))
    if not key:
        raise InvalidRequest("no API key: pass --api-key, set FEATUREPLANE_API_KEY, or run `featureplane up`")
    return key


def _workspace(args: argparse.Namespace) -> str:
    """--workspace, then the one `featureplane workspace select` chose, then 'prod'."""
    if getattr(args, "workspace", None):
        return str(args.workspace)
    selected = client.read_key_file(args.state_dir.resolve() / "workspace")
    return selected or "prod"


def _call(args: argparse.Namespace, method: str, path: str, body: Mapping[str, object] | None = None) -> dict[str, Any]:
    conn = _connection(args)
    data = None if body is None else json.dumps(body).encode()
    status, answer = client.http_call(method, f"{conn.gateway_url}{path}", api_key=_api_key(args), data=data,
                                      timeout_s=60)
    return client.expect_ok(status, answer)


def cmd_up(args: argparse.Namespace) -> int:
    from deploy import supervisor  # imported by the commands that run the system: it brings Ray (0.7 s)

    options = supervisor.UpOptions(
        state_dir=args.state_dir, gateway_host=args.host, gateway_port=args.port, kafka_port=args.kafka_port,
        kafka_controller_port=args.kafka_controller_port,
        external_bootstrap=args.bootstrap, topic_prefix=args.topic_prefix or "fp", rift_workers=args.rift_workers,
        metadata_key_file=args.metadata_key_file, secure=not args.insecure,
    )
    if args.foreground:
        return asyncio.run(supervisor.run_foreground(options))
    argv = [a for a in sys.argv[1:] if a != "--foreground"]
    info = supervisor.start_background(options, argv)
    print(f"featureplane is up (pid {info.pid})\n"
          f"  gateway:     {info.gateway_url}  (POST /api/v1/feature-service/get-features)\n"
          f"  kafka:       {info.bootstrap_servers}  (topic prefix '{info.topic_prefix}')\n"
          f"  state:       {info.state_dir}\n"
          f"  log:         {info.log_path}\n"
          f"  stop with:   featureplane down")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from deploy import supervisor

    stopped = supervisor.stop_background(args.state_dir)
    print("featureplane stopped" if stopped else "featureplane was not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    info = RunInfo.read(args.state_dir.resolve())
    if info is None or not pid_alive(info.pid):
        print("featureplane is not running")
        return 1
    status, health = client.http_json(f"{info.gateway_url}/healthz")
    print(json.dumps({"pid": info.pid, "gateway": info.gateway_url, "kafka": info.bootstrap_servers,
                      "gateway_health": health if status == 200 else f"HTTP {status}"}, indent=2))
    return 0 if status == 200 else 1


def cmd_plan(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    plan = client.plan_repo(_connection(args), Path(args.repo), workspace, _api_key(args), _plans_dir(args))
    changes = plan["changes"]
    print(f"plan {plan['plan_id']} for workspace '{workspace}': {len(changes) or 'no'} change(s)")
    for change in changes:
        mark = {"create": "+", "update": "~", "delete": "-"}[change["action"]]
        print(f"  {mark} {change['summary']}")
    if plan["blocked"]:
        print("this plan cannot be applied: prevent_destroy blocks the changes marked BLOCKED", file=sys.stderr)
        return 1
    print(f"apply exactly this with: featureplane apply --plan-id {plan['plan_id']}")
    return 0


def _plans_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir).resolve() / "plans"


def cmd_apply(args: argparse.Namespace) -> int:
    if args.plan_id:
        workspace, applied = client.apply_plan(_connection(args), args.plan_id, _api_key(args), _plans_dir(args))
    elif args.repo:
        workspace = _workspace(args)
        applied = client.apply_repo(_connection(args), Path(args.repo), workspace, _api_key(args))
    else:
        raise InvalidRequest("name a feature repository folder, or --plan-id of a saved plan")
    print(f"applied {applied['object_count']} change(s) to workspace '{workspace}' (apply {applied['apply_id']})")
    return 0


def cmd_workspace(args: argparse.Namespace) -> int:
    if args.workspace_command == "create":
        _call(args, "POST", "/api/v1/workspaces", {"name": args.name, "live": not args.development})
        print(f"created {'development' if args.development else 'live'} workspace '{args.name}'")
    elif args.workspace_command == "list":
        selected = _workspace(args)
        for ws in _call(args, "GET", "/api/v1/workspaces")["workspaces"]:
            mark = "*" if ws["name"] == selected else " "
            print(f"{mark} {ws['name']:<30} {'live' if ws['live'] else 'development'}")
    else:
        client.write_key_file(args.state_dir.resolve() / "workspace", args.name)
        print(f"selected workspace '{args.name}'")
    return 0


def cmd_service_account(args: argparse.Namespace) -> int:
    made = _call(args, "POST", "/api/v1/service-accounts", {"name": args.name, "description": args.description})
    print(f"created service account {made['principal_id']} ('{args.name}')\n"
          f"API key (shown once, store it now): {made['api_key']}")
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    made = _call(args, "POST", "/api/v1/users", {"name": args.name, "email": args.email, "admin": args.admin})
    role = " (account admin)" if made["admin"] else ""
    print(f"created user {made['principal_id']} ('{args.name}'){role}\n"
          f"API key (shown once, store it now): {made['api_key']}")
    return 0


def cmd_access(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    method = "DELETE" if args.access_command == "unassign-role" else "POST"
    _call(args, method, f"/api/v1/workspaces/{workspace}/roles", {"principal_id": args.principal, "role": args.role})
    verb = "removed" if method == "DELETE" else "assigned"
    print(f"{verb} role {args.role} for {args.principal} in workspace '{workspace}'")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    if args.keys_command == "revoke":
        _call(args, "DELETE", f"/api/v1/keys/{args.key_id}")
        print(f"revoked API key {args.key_id}")
    elif args.keys_command == "list":
        keys = _call(args, "GET", "/api/v1/keys")["keys"]
        print(f"{'KEY ID':<16}  {'PRINCIPAL':<20}  {'STATE':<7}  {'CREATED':<25}  {'CREATED BY':<20}  DESCRIPTION")
        for key in keys:
            print(f"{key['key_id']:<16}  {key['principal_id']:<20}  {'revoked' if key['revoked'] else 'active':<7}  "
                  f"{key['created_at'] or '-':<25}  {key['created_by'] or '-':<20}  {key['description']}")
    else:
        made = _call(args, "POST", f"/api/v1/principals/{args.principal}/keys", {"description": args.description})
        print(f"API key {made['key_id']} for {args.principal} (shown once, store it now): {made['api_key']}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    conn = _connection(args)
    topic = asyncio.run(client.source_topic(conn, _workspace(args), args.source))
    if args.file == "-":
        records = list(client.read_json_lines(sys.stdin, "<stdin>"))
    else:
        with open(args.file, encoding="utf-8") as handle:
            records = list(client.read_json_lines(handle, args.file))
    # As the customer's application (F5), with the customer plane's login: the operator only looked the topic up.
    customer = client.as_customer_app(conn, _logins_dir(args, RunInfo.read(args.state_dir.resolve())))
    sent = asyncio.run(client.ingest(customer, topic, records))
    print(f"sent {sent} records to topic '{topic}'")
    return 0


def cmd_audit_summary(args: argparse.Namespace) -> int:
    conn = _connection(args)
    status, body = client.http_json(f"{conn.gateway_url}/api/v1/audit/flows?limit={args.limit}",
                                    api_key=_api_key(args))
    if status != 200:
        print(f"the gateway answered {status}: {body}", file=sys.stderr)
        return 1
    print(f"audit log: {body['total']} records; by flow (latest {len(body['records'])}):")
    for flow, entry in client.audit_summary(body["records"]).items():
        print(f"  {flow}  records={entry['records']:<5} messages={entry['messages']:<6} rows={entry['rows']:<6} "
              f"bytes={entry['bytes']:<8} {entry['route']}")
    return 0


def cmd_audit_query(args: argparse.Namespace) -> int:
    """The newest matching audit records, one JSON object per line."""
    params = {"limit": str(args.limit)}
    for name in ("flow", "principal", "workspace", "feature_view", "correlation_id", "since", "until"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    answer = _call(args, "GET", "/api/v1/audit/flows?" + urllib.parse.urlencode(params))
    for record in answer["records"]:
        print(json.dumps(record))
    print(f"{len(answer['records'])} matching record(s) of {answer['total']}", file=sys.stderr)
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    """Where each served value of a feature service came from, for one entity; with --at, where the
    training-data value in effect at that time came from (traced from the offline store)."""
    keys: dict[str, Scalar] = {}
    for item in args.key:
        name, _, raw = item.partition("=")
        if not name or not raw:
            raise InvalidRequest(f"--key takes name=value, got {item!r}")
        try:
            keys[name] = json.loads(raw)  # 123 is a number, "123" or u1 a string
        except ValueError:
            keys[name] = raw
    workspace = _workspace(args)
    if args.at is None:
        body = {"params": {"workspace_name": workspace, "feature_service_name": args.service,
                           "join_key_map": keys}}
        print(json.dumps(_call(args, "POST", "/api/v1/lineage", body)["lineage"], indent=2))
        return 0
    conn = _connection(args)
    ws = asyncio.run(client.workspace_of(conn, workspace, lambda ws: args.service in ws.feature_services,
                                         f"feature service '{args.service}' is not applied in '{workspace}'"))
    offline_root = store_dir(args.state_dir.resolve(), conn.topics.prefix, "offline_store-0")
    def trace(write_id: str) -> dict[str, Any]:
        return _call(args, "GET", f"/api/v1/lineage/writes/{urllib.parse.quote(write_id)}")

    chains = offline_lineage(ws, args.service, keys, _instant(args.at), offline_root, trace)
    print(json.dumps(chains, indent=2))
    return 0


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"--at must be an ISO-8601 time, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_materialize(args: argparse.Namespace) -> int:
    """A manual job for one batch feature view; with --wait, until it succeeds or is abandoned."""
    workspace = _workspace(args)
    body = {"workspace": workspace, "feature_view": args.feature_view, "start": args.start, "end": args.end}
    jobs = _call(args, "POST", "/api/v1/materialize", body)["jobs"]
    for job in jobs:
        print(client.describe_job(job))
    if not args.wait or not jobs:
        return 0
    query = urllib.parse.urlencode({"workspace": workspace, "feature_view": args.feature_view})
    job_id = jobs[0]["job_id"]
    final = client.wait_for_job(lambda: _call(args, "GET", f"/api/v1/jobs?{query}")["jobs"], job_id, args.timeout)
    print(client.describe_job(final))
    return 0 if final["state"] == "succeeded" else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    """Batch materialization jobs of a workspace: range, state, attempt and counts."""
    params = {"workspace": _workspace(args)}
    if args.feature_view:
        params["feature_view"] = args.feature_view
    jobs = _call(args, "GET", "/api/v1/jobs?" + urllib.parse.urlencode(params))["jobs"]
    for job in jobs:
        print(client.describe_job(job))
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["state"]] = counts.get(job["state"], 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"
    print(f"{len(jobs)} job(s) in workspace '{params['workspace']}': {summary}", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Run a scenario on a fresh deployment (or --against a running one) and write its report."""
    from deploy import replay as scenario_replay

    options = scenario_replay.ReplayOptions(Path(args.scenario), Path(args.out or f"replay-{Path(args.scenario).stem}"))
    if args.against:
        conn = _connection(args)
        info = RunInfo.read(args.state_dir.resolve())
        known = info is not None and info.gateway_url.rstrip("/") == args.against.rstrip("/")
        options = scenario_replay.ReplayOptions(options.scenario, options.out_dir, args.against, _api_key(args),
                                       conn.bootstrap_servers, conn.topics.prefix,
                                       args.state_dir.resolve() if known else None, conn.kafka)
    report = scenario_replay.run(options)
    failed = [e["what"] for e in report["expectations"] if not e["met"]]
    print(f"scenario {report['scenario']}: {'passed' if not failed else 'FAILED'} (digest {report['digest']})")
    for flow in report["flows"]:
        print(f"  {flow['flow']} {flow['outcome']:<7} messages={flow['messages']:<6} rows={flow['rows']:<6} "
              f"bytes={flow['bytes']:<8} principals={','.join(flow['principals'])}")
    for check in report["invariants"]:
        print(f"  invariant {check['status']:<9} {check['name']}: {check['detail']}")
    for misuse in report["misuse"]:
        print(f"  misuse {'flagged' if misuse['flagged'] else 'NOT FLAGGED'}: {misuse['name']}")
    for what in failed:
        print(f"  NOT MET: {what}")
    return 0 if not failed else 1


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Walk the audit log's hash chain in its store (read-only, beside the running writer)."""
    conn = _connection(args)
    folder = store_dir(args.state_dir.resolve(), conn.topics.prefix, "audit_log-0")
    count, broken = client.verify_audit_chain(folder)
    if broken is None:
        print(f"audit chain intact: {count} records verified ({folder})")
        return 0
    print(f"audit chain BROKEN at record {broken} of {count} ({folder})", file=sys.stderr)
    return 1


def cmd_metadata_rotate(args: argparse.Namespace) -> int:
    """Re-encrypt the control plane's snapshot under a new key; featureplane must be down (the store is locked).

    When the current key comes from $FEATUREPLANE_METADATA_KEY, `up` keeps using that variable, so a new
    key written to the state folder's metadata.key would not be used and the next start could not decrypt:
    then only an explicit --new-key-file is accepted, and the user is told to switch to it."""
    state_dir = args.state_dir.resolve()
    info = RunInfo.read(state_dir)
    if info is not None and pid_alive(info.pid):
        raise InvalidRequest("stop featureplane first (featureplane down): the control plane holds its store")
    prefix = args.topic_prefix or "fp"
    folder = store_dir(state_dir, prefix, "control_plane-0") / "metadata"
    old_file = (args.old_key_file or state_dir / "metadata.key").resolve()
    key_in_env = bool(os.environ.get(DEFAULT_KEY_ENV_VAR, "").strip())
    old = load_metadata_key(old_file if old_file.exists() else None)
    if args.new_key_file:
        new_file = args.new_key_file.resolve()
        if not new_file.exists():
            write_key_file(new_file, MetadataKey.generate())  # 0600; never replaces a file
        new = load_metadata_key(new_file, env_var="FEATUREPLANE_NO_SUCH_VAR")
        rotate_key(folder, old, new)
        print(f"re-encrypted {folder}: key {old.key_id} -> {new.key_id}, in {new_file}; start with "
              f"--metadata-key-file {new_file}" + (f" and unset {DEFAULT_KEY_ENV_VAR}" if key_in_env else ""))
        return 0
    if key_in_env:
        raise InvalidRequest(
            f"the metadata key comes from ${DEFAULT_KEY_ENV_VAR}, which `featureplane up` uses before the state "
            f"folder's metadata.key: a new key written there would not be used. Rotate to a key file instead: "
            f"`featureplane metadata rotate-key --new-key-file NEW` (made if NEW does not exist), then unset "
            f"{DEFAULT_KEY_ENV_VAR} and start with --metadata-key-file NEW")
    new = MetadataKey.generate()
    staged = old_file.with_name(old_file.name + ".new")
    staged.unlink(missing_ok=True)
    write_key_file(staged, new)
    rotate_key(folder, old, new)
    os.replace(staged, old_file)  # only once the snapshot is under the new key
    print(f"re-encrypted {folder}: key {old.key_id} -> {new.key_id}, now in {old_file}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featureplane", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="runtime state folder (default: .state, or $FEATUREPLANE_STATE_DIR)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the running deployment's)")
    parser.add_argument("--topic-prefix", help="topic prefix of the deployment (default: fp)")
    parser.add_argument("--gateway", help="gateway base URL (default: the running deployment's)")
    parser.add_argument("--api-key", help="API key (default: $FEATUREPLANE_API_KEY, else the admin key of `up`)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start Kafka, Ray, every actor and the gateway")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    up.add_argument("--kafka-port", type=int, default=9092)
    up.add_argument("--kafka-controller-port", type=int, default=0,
                    help="KRaft controller port (default: kafka port + 1)")
    up.add_argument("--rift-workers", type=int, default=1)
    up.add_argument("--metadata-key-file", type=Path,
                    help="key encrypting the control plane's metadata (default: $FEATUREPLANE_METADATA_KEY, "
                         "else one made in the state folder)")
    security = up.add_mutually_exclusive_group()
    security.add_argument("--insecure", action="store_true",
                          help="an open PLAINTEXT broker listener, no logins, no ACLs (default: SASL/SCRAM logins "
                               "and ACLs, each plane its own Kafka principal; the logins are in "
                               "<state>/kafka-credentials.json)")
    # Secure is the default; `--secure` (from when it was opt-in) is still accepted and changes nothing.
    security.add_argument("--secure", action="store_true", help=argparse.SUPPRESS)
    up.add_argument("--foreground", action="store_true", help="run in this process until SIGTERM/SIGINT")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop everything `up` started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="is it up, and where").set_defaults(func=cmd_status)

    plan = sub.add_parser("plan", help="what applying a repository would change (saved, to apply as planned)")
    plan.add_argument("repo")
    plan.add_argument("--workspace", help="default: the selected workspace, else prod")
    plan.set_defaults(func=cmd_plan)

    apply = sub.add_parser("apply", help="apply a feature repository folder (or a saved plan) to a workspace")
    apply.add_argument("repo", nargs="?")
    apply.add_argument("--plan-id", help="apply this saved plan; refused if the workspace changed since")
    apply.add_argument("--workspace", help="default: the selected workspace, else prod")
    apply.set_defaults(func=cmd_apply)

    workspace = sub.add_parser("workspace", help="create, list and select workspaces")
    ws_sub = workspace.add_subparsers(dest="workspace_command", required=True)
    ws_create = ws_sub.add_parser("create", help="a live workspace, or --development (definitions only)")
    ws_create.add_argument("name")
    ws_create.add_argument("--development", action="store_true", help="validate and store only; never serve")
    ws_sub.add_parser("list", help="the workspaces you may see (* = selected)")
    ws_select = ws_sub.add_parser("select", help="the default workspace of later commands")
    ws_select.add_argument("name")
    workspace.set_defaults(func=cmd_workspace)

    account = sub.add_parser("service-account", help="service accounts (admin)")
    account_sub = account.add_subparsers(dest="account_command", required=True)
    account_create = account_sub.add_parser("create", help="a new service account and its first API key")
    account_create.add_argument("--name", required=True)
    account_create.add_argument("--description", default="")
    account.set_defaults(func=cmd_service_account)

    user = sub.add_parser("user", help="users (admin)")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    user_create = user_sub.add_parser("create", help="a new user and their first API key")
    user_create.add_argument("--name", required=True)
    user_create.add_argument("--email", default="")
    user_create.add_argument("--admin", action="store_true", help="make the user an account admin")
    user.set_defaults(func=cmd_user)

    access = sub.add_parser("access", help="roles of principals in workspaces")
    access_sub = access.add_subparsers(dest="access_command", required=True)
    for verb in ("assign-role", "unassign-role"):
        grant = access_sub.add_parser(verb)
        grant.add_argument("--role", required=True, choices=["viewer", "consumer", "operator", "editor", "owner"])
        grant.add_argument("--principal", required=True)
        grant.add_argument("--workspace", help="default: the selected workspace, else prod")
    access.set_defaults(func=cmd_access)

    keys = sub.add_parser("keys", help="API keys (create and revoke: admin)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    revoke = keys_sub.add_parser("revoke", help="revoke a key; it fails from the next request on")
    revoke.add_argument("key_id")
    keys_sub.add_parser("list", help="keys' ids, owners, creators and descriptions (admins: all; else your own)")
    create = keys_sub.add_parser("create", help="another key for a principal")
    create.add_argument("--principal", required=True)
    create.add_argument("--description", default="")
    keys.set_defaults(func=cmd_keys)

    ingest = sub.add_parser("ingest", help="produce JSON lines to a stream source's topic")
    ingest.add_argument("source")
    ingest.add_argument("file", nargs="?", default="-", help="a JSON-lines file, or - for stdin")
    ingest.add_argument("--workspace", help="default: the selected workspace, else prod")
    ingest.set_defaults(func=cmd_ingest)

    metadata = sub.add_parser("metadata", help="the control plane's encrypted metadata")
    metadata_sub = metadata.add_subparsers(dest="metadata_command", required=True)
    rotate = metadata_sub.add_parser("rotate-key", help="re-encrypt under a new key (while featureplane is down)")
    rotate.add_argument("--old-key-file", type=Path, help="default: the state folder's metadata.key")
    rotate.add_argument("--new-key-file", type=Path,
                        help="the new key (made there, 0600, if the file does not exist); default: make one and "
                             "replace metadata.key with it, refused when the key is in $FEATUREPLANE_METADATA_KEY")
    metadata.set_defaults(func=cmd_metadata_rotate)

    audit = sub.add_parser("audit", help="read the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    summary = audit_sub.add_parser("summary", help="counts of audited flows")
    summary.add_argument("--limit", type=int, default=10_000)
    summary.set_defaults(func=cmd_audit_summary)
    audit_sub.add_parser("verify", help="walk the hash chain; exit 1 at the first broken link").set_defaults(
        func=cmd_audit_verify)
    query = audit_sub.add_parser("query", help="audit records by flow, principal, workspace, view, correlation, time")
    query.add_argument("--flow", help="F1 .. F9")
    query.add_argument("--principal")
    query.add_argument("--workspace")
    query.add_argument("--feature-view", dest="feature_view")
    query.add_argument("--correlation-id", dest="correlation_id")
    query.add_argument("--since", help="ISO-8601 time (UTC when no zone)")
    query.add_argument("--until", help="ISO-8601 time (UTC when no zone)")
    query.add_argument("--limit", type=int, default=100)
    query.set_defaults(func=cmd_audit_query)

    lineage = sub.add_parser("lineage", help="where the values a feature service serves came from")
    lineage.add_argument("--service", required=True)
    lineage.add_argument("--key", action="append", required=True, help="join key, name=value (repeat)")
    lineage.add_argument("--workspace", help="default: the selected workspace, else prod")
    lineage.add_argument("--at", help="ISO-8601 time: trace the training-data values in effect then (offline)")
    lineage.set_defaults(func=cmd_lineage)

    materialize = sub.add_parser("materialize", help="run a batch feature view's job (or a stream view's "
                                                     "backfill) for [start, end) now")
    materialize.add_argument("feature_view")
    materialize.add_argument("--start", required=True, help="ISO-8601 time (UTC when no zone), inclusive")
    materialize.add_argument("--end", required=True, help="ISO-8601 time (UTC when no zone), exclusive")
    materialize.add_argument("--workspace", help="default: the selected workspace, else prod")
    materialize.add_argument("--wait", action="store_true", help="wait until the job succeeds or is abandoned")
    materialize.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits (default 300)")
    materialize.set_defaults(func=cmd_materialize)

    jobs = sub.add_parser("jobs", help="batch materialization jobs (backfills, schedules, manual) and their state")
    jobs.add_argument("--workspace", help="default: the selected workspace, else prod")
    jobs.add_argument("--feature-view", dest="feature_view")
    jobs.set_defaults(func=cmd_jobs)

    replay_cmd = sub.add_parser("replay", help="run a scenario and write its audit report (JSON and HTML)")
    replay_cmd.add_argument("scenario", help="a scenario file, e.g. scenarios/quickstart.yaml")
    replay_cmd.add_argument("--against", help="gateway URL of a running deployment (default: start a fresh one)")
    replay_cmd.add_argument("--out", help="folder for report.json and report.html (default: replay-<name>)")
    replay_cmd.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FeatureplaneError as error:
        print(f"featureplane: {error.message}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, ValueError) as error:
        print(f"featureplane: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
