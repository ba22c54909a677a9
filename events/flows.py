"""The allowed cross-plane flows, declared once as data (DESIGN: "Allowed cross-plane flows").

The routes that use them, (sending component, topic) -> flow, are in events/routes.py, next to the topic
registry they name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from events.planes import Plane


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

# The flow between two planes, for naming a refused message whose route is not declared at all.
NOMINAL: dict[tuple[Plane, Plane], Flow] = {
    (Plane.DATA, Plane.CUSTOMER): Flow.F7, (Plane.CUSTOMER, Plane.DATA): Flow.F3,
    (Plane.CONTROL, Plane.DATA): Flow.F8, (Plane.CONTROL, Plane.CUSTOMER): Flow.F8,
    (Plane.DATA, Plane.CONTROL): Flow.F9, (Plane.CUSTOMER, Plane.CONTROL): Flow.F9,
}
