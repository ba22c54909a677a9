"""The `featureplane` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from actors.settings import store_dir
from deploy import client, supervisor
from deploy.runinfo import DEFAULT_STATE_DIR, RunInfo
from events.errors import FeatureplaneError
from events.topics import TopicNames


def _connection(args: argparse.Namespace) -> client.Connection:
    """Flags first, then the running deployment's run file, then the defaults of `featureplane up`."""
    info = RunInfo.read(args.state_dir.resolve())
    bootstrap = args.bootstrap or os.environ.get("FEATUREPLANE_BOOTSTRAP") or (
        info.bootstrap_servers if info else "127.0.0.1:9092")
    prefix = args.topic_prefix or (info.topic_prefix if info else "fp")
    gateway = args.gateway or os.environ.get("FEATUREPLANE_GATEWAY") or (
        info.gateway_url if info else "http://127.0.0.1:8080")
    return client.Connection(bootstrap, TopicNames(prefix), gateway.rstrip("/"))


def cmd_up(args: argparse.Namespace) -> int:
    options = supervisor.UpOptions(
        state_dir=args.state_dir, gateway_host=args.host, gateway_port=args.port, kafka_port=args.kafka_port,
        external_bootstrap=args.bootstrap, topic_prefix=args.topic_prefix or "fp", rift_workers=args.rift_workers,
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
    stopped = supervisor.stop_background(args.state_dir)
    print("featureplane stopped" if stopped else "featureplane was not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    info = RunInfo.read(args.state_dir.resolve())
    if info is None or not supervisor.pid_alive(info.pid):
        print("featureplane is not running")
        return 1
    status, health = client.http_json(f"{info.gateway_url}/healthz")
    print(json.dumps({"pid": info.pid, "gateway": info.gateway_url, "kafka": info.bootstrap_servers,
                      "gateway_health": health if status == 200 else f"HTTP {status}"}, indent=2))
    return 0 if status == 200 else 1


def cmd_apply(args: argparse.Namespace) -> int:
    conn = _connection(args)
    applied = asyncio.run(client.apply_repo(conn, Path(args.repo), args.workspace, args.timeout))
    print(f"applied {applied.object_count} objects to workspace '{args.workspace}' (apply {applied.apply_id})")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    conn = _connection(args)
    topic = asyncio.run(client.source_topic(conn, args.workspace, args.source))
    if args.file == "-":
        records = list(client.read_json_lines(sys.stdin, "<stdin>"))
    else:
        with open(args.file, encoding="utf-8") as handle:
            records = list(client.read_json_lines(handle, args.file))
    sent = asyncio.run(client.ingest(conn, topic, records))
    print(f"sent {sent} records to topic '{topic}'")
    return 0


def cmd_audit_summary(args: argparse.Namespace) -> int:
    conn = _connection(args)
    status, body = client.http_json(f"{conn.gateway_url}/api/v1/audit/flows?limit={args.limit}")
    if status != 200:
        print(f"the gateway answered {status}: {body}", file=sys.stderr)
        return 1
    print(f"audit log: {body['total']} records; by flow (latest {len(body['records'])}):")
    for flow, entry in client.audit_summary(body["records"]).items():
        print(f"  {flow}  records={entry['records']:<5} messages={entry['messages']:<6} rows={entry['rows']:<6} "
              f"bytes={entry['bytes']:<8} {entry['route']}")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featureplane", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="runtime state folder (default: .state, or $FEATUREPLANE_STATE_DIR)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the running deployment's)")
    parser.add_argument("--topic-prefix", help="topic prefix of the deployment (default: fp)")
    parser.add_argument("--gateway", help="gateway base URL (default: the running deployment's)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start Kafka, Ray, every actor and the gateway")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    up.add_argument("--kafka-port", type=int, default=9092)
    up.add_argument("--rift-workers", type=int, default=1)
    up.add_argument("--foreground", action="store_true", help="run in this process until SIGTERM/SIGINT")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop everything `up` started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="is it up, and where").set_defaults(func=cmd_status)

    apply = sub.add_parser("apply", help="apply a feature repository folder to a workspace")
    apply.add_argument("repo")
    apply.add_argument("--workspace", default="prod")
    apply.add_argument("--timeout", type=float, default=60)
    apply.set_defaults(func=cmd_apply)

    ingest = sub.add_parser("ingest", help="produce JSON lines to a stream source's topic")
    ingest.add_argument("source")
    ingest.add_argument("file", nargs="?", default="-", help="a JSON-lines file, or - for stdin")
    ingest.add_argument("--workspace", default="prod")
    ingest.set_defaults(func=cmd_ingest)

    audit = sub.add_parser("audit", help="read the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    summary = audit_sub.add_parser("summary", help="counts of audited flows")
    summary.add_argument("--limit", type=int, default=10_000)
    summary.set_defaults(func=cmd_audit_summary)
    audit_sub.add_parser("verify", help="walk the hash chain; exit 1 at the first broken link").set_defaults(
        func=cmd_audit_verify)
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
