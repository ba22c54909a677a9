from __future__ import annotations

import pytest

from actors.auditing import outbound_flow
from events.errors import FlowDenied
from events.flows import FLOW_RULES, Flow
from events.planes import PLANE_OF, Component
from events.routes import ROUTES
from events.topics import CONTROL_EVENTS, ONLINE_WRITES, PLATFORM_TOPICS


def test_every_route_names_a_declared_topic() -> None:
    bases = {t.base for t in PLATFORM_TOPICS}
    assert {topic for _, topic in ROUTES} <= bases


@pytest.mark.parametrize(("route", "flow"), list(ROUTES.items()))
def test_a_route_has_a_flow_exactly_when_it_crosses_planes(route: tuple[Component, str], flow: Flow | None) -> None:
    sender, base = route
    topic = next(t for t in PLATFORM_TOPICS if t.base == base)
    crosses = PLANE_OF[sender] != PLANE_OF[topic.consumer]
    assert (flow is not None) == crosses


def test_every_flow_has_a_rule() -> None:
    assert set(FLOW_RULES) == set(Flow)


def test_undeclared_routes_are_denied() -> None:
    assert outbound_flow(Component.RIFT, ONLINE_WRITES) is Flow.F7
    with pytest.raises(FlowDenied, match=r"control\.events"):
        outbound_flow(Component.RIFT, CONTROL_EVENTS)


def test_audit_row_counts_follow_the_body() -> None:
    from actors.auditing import rows_in
    from events.data import Lookup, OnlineRowsWritten, ReadOnlineRows

    assert rows_in(ReadOnlineRows("r", (Lookup("v", ("a",)), Lookup("v", ("b",))), "fs")) == 2
    assert rows_in(OnlineRowsWritten("v", 7, "w")) == 7
    assert rows_in(object()) == 0


def test_audit_queries_filter_by_every_field_and_time() -> None:
    from dataclasses import replace
    from datetime import UTC, timedelta

    from actors.auditing import make_record
    from events.audit import QueryAuditLog
    from events.envelope import new_message
    from events.flows import Flow

    envelope = new_message(None, type_tag="t", schema_version=1, producer=Component.RIFT, workspace="prod",
                           principal="sa-x").envelope
    record = make_record(Flow.F7, Component.RIFT, Component.ONLINE_STORE, envelope, subject="user_last",
                         message_count=1, row_count=2, byte_count=10, digest="d")
    at = record.occurred_at
    assert QueryAuditLog("q", "r", 10).matches(record)
    assert QueryAuditLog("q", "r", 10, flow="F7", principal="sa-x", workspace="prod", subject="user_last",
                         correlation_id=record.correlation_id, causation_id=envelope.event_id).matches(record)
    for mismatch in ({"flow": "F5"}, {"principal": "sa-y"}, {"workspace": "dev"}, {"subject": "other"},
                     {"correlation_id": "nope"}, {"since": at + timedelta(seconds=1)}, {"until": at}):
        assert not replace(QueryAuditLog("q", "r", 10), **mismatch).matches(record), mismatch
    assert QueryAuditLog("q", "r", 10, since=at, until=at + timedelta(seconds=1)).matches(record)
    assert at.tzinfo is UTC or at.utcoffset() == timedelta(0)

