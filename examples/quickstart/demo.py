"""The quickstart demo, as a customer's application sees featureplane.

1. as the admin, creates a service account for the fraud model and gives it the consumer role;
2. produces the events of events.jsonl to the `transactions` topic with an ordinary Kafka producer
   (aiokafka here; any Kafka client works: the source topic is the customer's), logged in as the customer
   plane's Kafka principal, the one the broker's ACLs let write source topics (flow F5; its password is in
   .state/kafka-credentials.json, readable by its owner only);
3. asks the gateway for each user's features over HTTP, with the model's key, until the latest event
   of each user shows;
4. prints the values and the audit log's summary by flow.

Run by `make demo` after `featureplane up` and `featureplane apply examples/quickstart`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from actors.kafka_bus import security_options
from actors.settings import KafkaCredentials
from deploy.client import admin_key_path, audit_summary, customer_credentials, expect_ok, http_json, read_key_file
from deploy.runinfo import DEFAULT_STATE_DIR, RunInfo

# The broker creates the source topic on the producer's first request; before that, aiokafka logs the
# topic's absence as an error ("Topic transactions not found in cluster metadata"), which is expected here.
logging.getLogger("aiokafka.cluster").setLevel(logging.CRITICAL)

HERE = Path(__file__).parent
SERVICE = "fraud_detection"
WORKSPACE = "prod"


async def produce(bootstrap: str, login: KafkaCredentials | None, events: list[dict[str, object]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                **security_options(login))
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait("transactions", json.dumps(event).encode(),
                                         key=str(event["user_id"]).encode())
    finally:
        await producer.stop()


def expected_latest(events: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    latest: dict[str, dict[str, object]] = {}
    for event in events:
        user = str(event["user_id"])
        if user not in latest or str(event["ts"]) > str(latest[user]["ts"]):
            latest[user] = event
    return latest


def get_features(gateway: str, user: str, key: str) -> tuple[int, dict[str, object]]:
    return http_json(f"{gateway}/api/v1/feature-service/get-features", {"params": {
        "workspace_name": WORKSPACE, "feature_service_name": SERVICE, "join_key_map": {"user_id": user},
        "metadata_options": {"include_names": True, "include_serving_status": True}}}, api_key=key)


def model_service_key(gateway: str, admin_key: str) -> tuple[str, str]:
    """A service account for the fraud model, allowed to read features in the workspace and nothing else."""
    status, made = http_json(f"{gateway}/api/v1/service-accounts",
                             {"name": "fraud-model", "description": "reads features at authorization time"},
                             api_key=admin_key)
    account = expect_ok(status, made)
    status, body = http_json(f"{gateway}/api/v1/workspaces/{WORKSPACE}/roles",
                             {"principal_id": account["principal_id"], "role": "consumer"}, api_key=admin_key)
    expect_ok(status, body)
    return str(account["principal_id"]), str(account["api_key"])


def main() -> int:
    info = RunInfo.read(DEFAULT_STATE_DIR.resolve())
    if info is None:
        print("featureplane is not running: start it with `featureplane up`", file=sys.stderr)
        return 1
    admin_key = read_key_file(admin_key_path(DEFAULT_STATE_DIR.resolve()))
    if admin_key is None:
        print("no admin key: featureplane up writes one to .state/admin.key", file=sys.stderr)
        return 1
    principal, key = model_service_key(info.gateway_url, admin_key)
    print(f"service account {principal} (role consumer in '{WORKSPACE}') will read the features")
    events = [json.loads(line) for line in (HERE / "events.jsonl").read_text().splitlines() if line.strip()]
    print(f"producing {len(events)} events to topic 'transactions' at {info.bootstrap_servers}")
    login = customer_credentials(Path(info.state_dir)) if info.secure else None  # None: `up --insecure`
    asyncio.run(produce(info.bootstrap_servers, login, events))
    deadline = time.monotonic() + 60
    for user, event in sorted(expected_latest(events).items()):
        while True:
            status, body = get_features(info.gateway_url, user, key)
            values = body.get("result", {}).get("features") if status == 200 else None  # type: ignore[union-attr]
            if (values and values[0] == event["amount"]) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        names = [f["name"] for f in body.get("metadata", {}).get("features", [])]  # type: ignore[union-attr]
        print(f"\nPOST {info.gateway_url}/api/v1/feature-service/get-features  user_id={user} -> HTTP {status}")
        for name, value in zip(names, values or [], strict=False):
            print(f"  {name:<40} {value}")
        if not values or values[0] != event["amount"]:
            print(f"  expected last_amount={event['amount']}, got {values}", file=sys.stderr)
            return 1
    summary = settled_audit_summary(info.gateway_url, admin_key)
    print(f"\naudit log: {summary['total']} records (hash-chained); cross-plane flows:")
    for flow, entry in summary["flows"].items():
        print(f"  {flow}  messages={entry['messages']:<4} rows={entry['rows']:<4} bytes={entry['bytes']:<6} "
              f"{entry['route']}")
    return 0


def settled_audit_summary(gateway: str, admin_key: str) -> dict[str, Any]:
    """The audit summary once the audit log has caught up with the last response (F4 = F1), or after 10 s.

    The audit log consumes its topic asynchronously, so the newest records can be a moment behind.
    """
    deadline = time.monotonic() + 10
    while True:
        _, audit = http_json(f"{gateway}/api/v1/audit/flows?limit=10000", api_key=admin_key)
        flows = audit_summary(audit["records"])
        settled = flows.get("F1", {}).get("messages") == flows.get("F4", {}).get("messages")
        if settled or time.monotonic() > deadline:
            return {"total": audit["total"], "flows": flows}
        time.sleep(0.3)


if __name__ == "__main__":
    sys.exit(main())
