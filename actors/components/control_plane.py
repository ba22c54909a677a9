"""ControlPlane: validates `ApplyRepo` commands and publishes the definitions on control events (F8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors.outbox import Outbound
from actors.runtime import Decision, Inbound
from events import control
from events.codec import CODEC, Codec
from events.envelope import Message
from events.planes import Component
from events.topics import CONTROL_COMMANDS, CONTROL_EVENTS, TopicNames
from events.validation import repo_errors


def decide_apply(command: control.ApplyRepo) -> list[Any]:
    """The control events that one apply publishes, in order: objects first, then the closing event."""
    errors = repo_errors(command.repo)
    if errors:
        return [control.RepoRejected(command.apply_id, tuple(errors))]
    repo = command.repo
    events: list[Any] = [
        *(control.EntityApplied(e) for e in repo.entities),
        *(control.StreamSourceApplied(s) for s in repo.stream_sources),
        *(control.FeatureViewApplied(v) for v in repo.feature_views),
        *(control.FeatureServiceApplied(s) for s in repo.feature_services),
    ]
    return [*events, control.RepoApplied(command.apply_id, len(events))]


class ControlPlane:
    component = Component.CONTROL_PLANE

    def __init__(self, names: TopicNames, codec: Codec = CODEC) -> None:
        self._names = names
        self._codec = codec

    def subscriptions(self) -> Sequence[str]:
        return [self._names.name(CONTROL_COMMANDS)]

    async def handle(self, batch: Sequence[Inbound]) -> Decision:
        outputs: list[Outbound] = []
        for inbound in batch:
            message: Message[Any] | None = inbound.message
            if message is None or not isinstance(message.body, control.ApplyRepo):
                continue
            for body in decide_apply(message.body):
                event = self._codec.message(body, producer=self.component,
                                            workspace=message.envelope.workspace, caused_by=message.envelope)
                outputs.append(Outbound(CONTROL_EVENTS, event))
        return Decision(outputs)
