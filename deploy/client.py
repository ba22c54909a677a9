"""Client operations of the CLI: apply a repository, ingest events, read the audit log.

`apply` is the operator acting on the control plane (Tecton's `tecton apply`); `ingest` plays the
customer's application producing raw events to a source topic (flow F5 starts there).
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.bus import Outgoing
from actors.follower import RegistryFollower
from actors.kafka_bus import KafkaBus
from events import control
from events.codec import CODEC
from events.envelope import new_id
from events.errors import DeadlineExceeded, InvalidRequest
from events.planes import Component
from events.registry import Registry
from events.topics import CONTROL_COMMANDS, TopicNames
from sdk.repo import load_repo
from stores.audit_log import LmdbAuditStore

INGEST_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Connection:
    bootstrap_servers: str
    topics: TopicNames
    gateway_url: str


async def apply_repo(conn: Connection, folder: Path, workspace: str, timeout_s: float) -> control.RepoApplied:
    """Send the repository to the control plane and wait until it has published every definition."""
    repo = load_repo(folder)
    command = control.ApplyRepo(new_id(), repo)
    bus = KafkaBus(conn.bootstrap_servers, client_id="featureplane-cli")
    follower = RegistryFollower(bus, conn.topics)
    try:
        await follower.start()
        message = CODEC.message(command, producer=Component.OPERATOR, workspace=workspace)
        await bus.send([Outgoing(conn.topics.name(CONTROL_COMMANDS), CODEC.encode(message),
                                 CONTROL_COMMANDS.key(message))])
        done = await follower.wait_for(
            lambda r: command.apply_id in r.applied or command.apply_id in r.rejected, timeout_s)
    finally:
        await follower.close()
        await bus.close()
    if command.apply_id in done.rejected:
        raise InvalidRequest("the control plane rejected the repository: " +
                             "; ".join(done.rejected[command.apply_id]))
    count = len(repo.entities) + len(repo.stream_sources) + len(repo.feature_views) + len(repo.feature_services)
    return control.RepoApplied(command.apply_id, count)


async def source_topic(conn: Connection, workspace: str, source: str, timeout_s: float = 15) -> str:
    bus = KafkaBus(conn.bootstrap_servers, client_id="featureplane-cli")
    follower = RegistryFollower(bus, conn.topics)

    def known(registry: Registry) -> bool:
        ws = registry.workspaces.get(workspace)
        return ws is not None and source in ws.stream_sources

    try:
        await follower.start()
        registry = await follower.wait_for(known, timeout_s)
    except DeadlineExceeded:
        raise InvalidRequest(f"stream source '{source}' is not applied in workspace '{workspace}'") from None
    finally:
        await follower.close()
        await bus.close()
    return registry.workspaces[workspace].stream_sources[source].topic


def read_json_lines(lines: Iterable[str], origin: str) -> Iterator[bytes]:
    """Each non-blank line as compact JSON bytes; InvalidRequest names the first bad line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError as exc:
            raise InvalidRequest(f"{origin}:{number}: not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise InvalidRequest(f"{origin}:{number}: a record must be a JSON object")
        yield json.dumps(document, separators=(",", ":")).encode()


async def ingest(conn: Connection, topic: str, records: Iterable[bytes]) -> int:
    """Produce the records to `topic` (idempotent, acks=all), in chunks, reporting progress."""
    bus = KafkaBus(conn.bootstrap_servers, client_id="featureplane-ingest")
    sent = 0
    chunk: list[Outgoing] = []
    try:
        for value in records:
            chunk.append(Outgoing(topic, value))
            if len(chunk) >= INGEST_CHUNK:
                sent += len(await bus.send(chunk))
                chunk = []
                print(f"  sent {sent} records ...", file=sys.stderr, flush=True)
        if chunk:
            sent += len(await bus.send(chunk))
    finally:
        await bus.close()
    return sent


def verify_audit_chain(store_dir: Path) -> tuple[int, int | None]:
    """(records in the chain, first broken sequence number or None); opens the store read-only."""
    with LmdbAuditStore(store_dir, readonly=True) as store:
        return store.count(), store.verify()


def http_json(url: str, body: dict[str, Any] | None = None, timeout_s: float = 10) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def audit_summary(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Counts per flow: audit records, messages, rows and bytes, and the planes each flow joined."""
    summary: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"records": 0, "messages": 0, "rows": 0, "bytes": 0, "routes": set()})
    for record in records:
        entry = summary[record["flow"]]
        entry["records"] += 1
        entry["messages"] += record["message_count"]
        entry["rows"] += record["row_count"]
        entry["bytes"] += record["byte_count"]
        entry["routes"].add(f"{record['from_component']} ({record['from_plane']}) -> "
                            f"{record['to_component']} ({record['to_plane']})")
    for entry in summary.values():
        entry["route"] = "; ".join(sorted(entry.pop("routes")))
    return dict(sorted(summary.items()))
