"""The allowed cross-plane flows, declared once as data (DESIGN: "Allowed cross-plane flows").

A route is (sending component, topic base name). The runtime looks every outgoing message up here:
a route across planes must name a flow; a route within one plane needs none; a route missing from the
table is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from events.planes import Component, Plane


class Flow(StrEnum):
    F1 = "F1"  # customer app -> data (gateway): get-features request
    F2 = "F2"  # data -> customer (online store): read request
    F3 = "F3"  # customer -> data: read reply, changelog
    F4 = "F4"  # data -> customer app: get-features response
    F5 = "F5"  # customer app -> data: ingest records
    F6 = "F6"  # customer batch source -> data (Rift): batch rows
    F7 = "F7"  # data -> customer (stores): online/offline writes
    F8 = "F8"  # control -> data / customer: definitions, ACLs, jobs
    F9 = "F9"  # data / customer -> control: job status, health


@dataclass(frozen=True, slots=True)
class FlowRule:
    flow: Flow
    carries_feature_data: bool
    description: str


FLOW_RULES: dict[Flow, FlowRule] = {
    Flow.F1: FlowRule(Flow.F1, False, "get-features request: keys and request context"),
    Flow.F2: FlowRule(Flow.F2, False, "online read request: keys"),
    Flow.F3: FlowRule(Flow.F3, True, "online read reply / changelog, into the volatile cache only"),
    Flow.F4: FlowRule(Flow.F4, True, "get-features response"),
    Flow.F5: FlowRule(Flow.F5, True, "ingest records (raw events)"),
    Flow.F6: FlowRule(Flow.F6, True, "batch source query results"),
    Flow.F7: FlowRule(Flow.F7, True, "online/offline writes"),
    Flow.F8: FlowRule(Flow.F8, False, "definitions, ACLs, jobs: metadata only"),
    Flow.F9: FlowRule(Flow.F9, False, "job status, health: metadata only"),
}

# (sender, topic base) -> flow. `None` marks a route that stays inside one plane.
ROUTES: dict[tuple[Component, str], Flow | None] = {
    (Component.OPERATOR, "control.commands"): None,
    (Component.FEATURE_SERVER, "control.commands"): Flow.F9,
    (Component.CONTROL_PLANE, "control.events"): Flow.F8,
    (Component.AUDIT_LOG, "audit.replies"): Flow.F8,
    (Component.FEATURE_SERVER, "online.reads"): Flow.F2,
    (Component.FEATURE_SERVER, "audit.queries"): Flow.F9,
    (Component.ONLINE_STORE, "online.replies"): Flow.F3,
    (Component.ONLINE_STORE, "online.changelog"): Flow.F3,
    # Ingested records were audited as they reached the gateway (F5); gateway to Rift stays in the data plane.
    (Component.FEATURE_SERVER, "ingest"): None,
    (Component.RIFT, "online.writes"): Flow.F7,
    (Component.RIFT, "offline.writes"): Flow.F7,
    # Undecodable messages are kept, with the reason, beside the customer's data.
    (Component.RIFT, "dead-letter"): Flow.F7,
    (Component.FEATURE_SERVER, "dead-letter"): Flow.F7,
    (Component.ONLINE_STORE, "dead-letter"): None,
    (Component.OFFLINE_STORE, "dead-letter"): None,
    (Component.CONTROL_PLANE, "dead-letter"): Flow.F8,
    (Component.AUDIT_LOG, "dead-letter"): Flow.F8,
    # Batch materialization: jobs out to the compute (F8), status back (F9). The control plane's clock
    # ticks on a topic of its own. ExternalCompute writes next to the stores, inside the customer plane.
    (Component.CONTROL_PLANE, "control.clock"): None,
    (Component.CONTROL_PLANE, "jobs.rift"): Flow.F8,
    (Component.CONTROL_PLANE, "jobs.external"): Flow.F8,
    (Component.RIFT, "job.status"): Flow.F9,
    (Component.EXTERNAL_COMPUTE, "job.status"): Flow.F9,
    (Component.EXTERNAL_COMPUTE, "online.writes"): None,
    (Component.EXTERNAL_COMPUTE, "offline.writes"): None,
    (Component.EXTERNAL_COMPUTE, "dead-letter"): None,
}


# The flow between two planes, for naming a refused message whose route is not declared at all.
NOMINAL: dict[tuple[Plane, Plane], Flow] = {
    (Plane.DATA, Plane.CUSTOMER): Flow.F7, (Plane.CUSTOMER, Plane.DATA): Flow.F3,
    (Plane.CONTROL, Plane.DATA): Flow.F8, (Plane.CONTROL, Plane.CUSTOMER): Flow.F8,
    (Plane.DATA, Plane.CONTROL): Flow.F9, (Plane.CUSTOMER, Plane.CONTROL): Flow.F9,
}


def flow_for(sender: Component, topic_base: str) -> Flow | None:
    """The flow a message from `sender` on `topic_base` uses; raises KeyError for a route not declared."""
    return ROUTES[(sender, topic_base)]
