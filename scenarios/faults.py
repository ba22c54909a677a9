"""Deliberate misuse for scenarios: things a correct deployment must refuse, provoked on purpose.

Nothing here is wired into a deployment: `deploy.cluster` never starts it, and only a scenario's misuse
step (`featureplane replay`) calls it, against a deployment it names explicitly. The seam refuses what it
tries, so even a mistaken call sends no feature data anywhere; it only leaves a `denied` audit record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from actors.kafka_bus import KafkaBus
from actors.outbox import Outbound, publish
from actors.settings import KafkaCredentials
from events.codec import CODEC
from events.data import FeatureRow, SourceRange, WriteOnlineRows
from events.errors import FlowDenied
from events.planes import Component
from events.topics import CONTROL_COMMANDS, TopicNames

# The row a misconfigured Rift worker would leak; the report checks this value never shows up anywhere.
LEAKED_VALUE = 424242.42


async def send_feature_rows_to_control_plane(bootstrap: str, names: TopicNames, workspace: str, principal: str,
                                             login: KafkaCredentials | None = None) -> list[FlowDenied]:
    """Act as a Rift worker wired to send its online write to the control plane's command topic.

    It goes through the same seam every component uses (`actors.outbox.publish` inside a Kafka
    transaction), which refuses the message and commits a `denied` audit record in its place. `login` is
    the Kafka login to do it with (the operator's: the broker must let the attempt reach the seam).
    """
    rows = WriteOnlineRows("misconfigured_view", (FeatureRow(("leaked-key",), datetime.now(UTC),
                                                             {"leaked": LEAKED_VALUE}),),
                           SourceRange("misconfigured-source", 0, 0, 0))
    message = CODEC.message(rows, producer=Component.RIFT, workspace=workspace, principal=principal)
    bus = KafkaBus(bootstrap, client_id="featureplane-scenario-fault", credentials=login)
    producer = await bus.transactional_producer(f"{names.prefix}.scenario-fault.{principal}")
    try:
        async with producer.transaction() as txn:
            return await publish(txn, CODEC, names, Component.RIFT, [Outbound(CONTROL_COMMANDS, message)])
    finally:
        await producer.close()
        await bus.close()


def flip_record_bytes(store_folder: Path, marker: bytes) -> int:
    """Change one byte of every copy of `marker` in the audit store's file, as someone editing the file
    by hand would; returns how many copies were changed. The store must be closed (its writer stopped)."""
    path = store_folder / "data.mdb"
    data = bytearray(path.read_bytes())
    changed, start = 0, data.find(marker)
    while start >= 0:
        data[start] ^= 0x01
        changed += 1
        start = data.find(marker, start + len(marker))
    path.write_bytes(bytes(data))
    return changed
