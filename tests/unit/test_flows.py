from __future__ import annotations

import pytest

from actors.auditing import outbound_flow
from events.errors import FlowDenied
from events.flows import FLOW_RULES, ROUTES, Flow
from events.planes import PLANE_OF, Component
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
