"""ExternalCompute: runs batch materialization jobs in the customer plane, next to the customer's files.

Chosen per feature view (`compute="external"`). The batch rows never leave the customer plane: the
writes go to the stores beside it (no plane crossed) and only the job status, counts and error text,
goes back to the control plane (F9).
"""

from __future__ import annotations

from collections.abc import Sequence

from actors.components.batch_job import job_decision
from actors.runtime import Decision, Inbound
from events.codec import CODEC, Codec
from events.jobs import MaterializationJob
from events.planes import Component
from events.topics import JOBS_EXTERNAL, TopicNames


class ExternalCompute:
    component = Component.EXTERNAL_COMPUTE

    def __init__(self, names: TopicNames, codec: Codec = CODEC) -> None:
        self._names = names
        self._codec = codec

    def subscriptions(self) -> Sequence[str]:
        return [self._names.name(JOBS_EXTERNAL)]

    async def handle(self, batch: Sequence[Inbound]) -> Decision:
        decision = Decision()
        for inbound in batch:
            if inbound.message is not None and isinstance(inbound.message.body, MaterializationJob):
                ran = await job_decision(self.component, self._codec, inbound.message)
                decision.outputs.extend(ran.outputs)
                decision.consumed_audits.extend(ran.consumed_audits)
        return decision
