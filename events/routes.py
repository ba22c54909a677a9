"""The allowed routes: (sending component, topic) -> the cross-plane flow it uses (events/flows.py).

The runtime looks every outgoing message up here: a route across planes must name a flow; a route within
one plane needs none; a route missing from the table is refused. Topics are named through the topic
registry (events/topics.py), the one place their names live.
"""

from __future__ import annotations

from events.flows import Flow
from events.planes import Component
from events.topics import (
    AUDIT_QUERIES,
    AUDIT_REPLIES,
    CONTROL_CLOCK,
    CONTROL_COMMANDS,
    CONTROL_EVENTS,
    DEAD_LETTER,
    INGEST,
    JOB_STATUS,
    JOBS_EXTERNAL,
    JOBS_RIFT,
    OFFLINE_WRITES,
    ONLINE_CHANGELOG,
    ONLINE_READS,
    ONLINE_REPLIES,
    ONLINE_WRITES,
)

# (sender, topic base) -> flow. `None` marks a route that stays inside one plane.
ROUTES: dict[tuple[Component, str], Flow | None] = {
    (Component.OPERATOR, CONTROL_COMMANDS.base): None,
    (Component.FEATURE_SERVER, CONTROL_COMMANDS.base): Flow.F9,
    (Component.CONTROL_PLANE, CONTROL_EVENTS.base): Flow.F8,
    (Component.AUDIT_LOG, AUDIT_REPLIES.base): Flow.F8,
    (Component.FEATURE_SERVER, ONLINE_READS.base): Flow.F2,
    (Component.FEATURE_SERVER, AUDIT_QUERIES.base): Flow.F9,
    (Component.ONLINE_STORE, ONLINE_REPLIES.base): Flow.F3,
    (Component.ONLINE_STORE, ONLINE_CHANGELOG.base): Flow.F3,
    # Ingested records were audited as they reached the gateway (F5); gateway to Rift stays in the data plane.
    (Component.FEATURE_SERVER, INGEST.base): None,
    (Component.RIFT, ONLINE_WRITES.base): Flow.F7,
    (Component.RIFT, OFFLINE_WRITES.base): Flow.F7,
    # Undecodable messages are kept, with the reason, beside the customer's data.
    (Component.RIFT, DEAD_LETTER.base): Flow.F7,
    (Component.FEATURE_SERVER, DEAD_LETTER.base): Flow.F7,
    (Component.ONLINE_STORE, DEAD_LETTER.base): None,
    (Component.OFFLINE_STORE, DEAD_LETTER.base): None,
    (Component.CONTROL_PLANE, DEAD_LETTER.base): Flow.F8,
    (Component.AUDIT_LOG, DEAD_LETTER.base): Flow.F8,
    # Batch materialization: jobs out to the compute (F8), status back (F9). The control plane's clock
    # ticks on a topic of its own. ExternalCompute writes next to the stores, inside the customer plane.
    (Component.CONTROL_PLANE, CONTROL_CLOCK.base): None,
    (Component.CONTROL_PLANE, JOBS_RIFT.base): Flow.F8,
    (Component.CONTROL_PLANE, JOBS_EXTERNAL.base): Flow.F8,
    (Component.RIFT, JOB_STATUS.base): Flow.F9,
    (Component.EXTERNAL_COMPUTE, JOB_STATUS.base): Flow.F9,
    (Component.EXTERNAL_COMPUTE, ONLINE_WRITES.base): None,
    (Component.EXTERNAL_COMPUTE, OFFLINE_WRITES.base): None,
    (Component.EXTERNAL_COMPUTE, DEAD_LETTER.base): None,
}


def flow_for(sender: Component, topic_base: str) -> Flow | None:
    """The flow a message from `sender` on `topic_base` uses; raises KeyError for a route not declared."""
    return ROUTES[(sender, topic_base)]
