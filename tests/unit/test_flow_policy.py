"""The flow policy at the seam: a message on a flow its sender may not use is refused, not sent, and
recorded as denied; the rest of the batch goes on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from actors.bus import Outgoing
from actors.memory_bus import MemoryBus
from actors.outbox import Outbound
from actors.runtime import ComponentRuntime, Decision, Inbound
from events import control
from events.audit import Outcome
from events.codec import CODEC
from events.data import FeatureRow, SourceRange, WriteOnlineRows
from events.planes import Component
from events.topics import AUDIT, CONTROL_COMMANDS, CONTROL_EVENTS, ONLINE_WRITES, TopicNames

NAMES = TopicNames("t")
ROWS = WriteOnlineRows("v", (FeatureRow(("u1",), datetime(2026, 1, 1, tzinfo=UTC), {"secret": 987654.321}),),
                       SourceRange("s", 0, 0, 0))


class Misconfigured:
    """A Rift worker wired wrong: besides its online write, it sends feature rows to the control plane."""

    component = Component.RIFT

    def subscriptions(self) -> Sequence[str]:
        return ["src"]

    async def handle(self, batch: Sequence[Inbound]) -> Decision:
        def message(body: object) -> object:
            return CODEC.message(body, producer=self.component, workspace="w")

        return Decision([
            Outbound(ONLINE_WRITES, message(ROWS)),  # allowed: F7
            Outbound(CONTROL_COMMANDS, message(ROWS)),  # feature rows into the control plane
            Outbound(CONTROL_EVENTS, message(control.RepoApplied("x", 1))),  # a route Rift does not have
        ])  # type: ignore[arg-type]


async def test_refused_messages_are_not_sent_but_audited_as_denied() -> None:
    bus = MemoryBus()
    await bus.send([Outgoing("src", b"{}")])
    runtime = ComponentRuntime(bus, NAMES, Misconfigured(), instance_id="rift-0", group_id="t.rift")
    await runtime.start()
    assert await runtime.step() == 1
    assert len(bus.records(NAMES.name(ONLINE_WRITES))) == 1
    assert bus.records(NAMES.name(CONTROL_COMMANDS)) == []
    assert bus.records(NAMES.name(CONTROL_EVENTS)) == []
    audits = [CODEC.decode(r.value).body for r in bus.records(NAMES.name(AUDIT))]
    denied = [a for a in audits if a.outcome is Outcome.DENIED]
    assert sorted((a.flow.value, a.topic) for a in denied) == [("F9", "control.commands"),
                                                               ("F9", "control.events")]
    assert all(a.byte_count > 0 and a.digest for a in denied)
    assert all("987654" not in repr(a) for a in denied)  # the record describes the message, never its values
    assert [a.outcome for a in audits if a.flow.value == "F7"] == [Outcome.ALLOWED]
    assert bus.committed("t.rift") == {("src", 0): 1}  # the batch is done, not retried forever
