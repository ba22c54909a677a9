"""Batch materialization jobs and their status: metadata only (flows F8 and F9, never feature values).

The control plane sends a `MaterializationJob` to the compute that runs it (Rift in the data plane or
ExternalCompute in the customer plane); the worker answers with a `JobStatusReported`; the control plane
folds it into its job table and publishes each change as `JobUpdated` on the control-events topic, so any
follower of that topic (the gateway, the control plane after a restart) can list the jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from events.specs import BatchSourceSpec, FeatureViewSpec


class Compute(StrEnum):
    RIFT = "rift"
    EXTERNAL = "external"


class JobTrigger(StrEnum):
    BACKFILL = "backfill"
    SCHEDULE = "schedule"
    MANUAL = "manual"


class JobState(StrEnum):
    # No "running": a worker runs a job inside the Kafka transaction that commits its writes and its
    # status, so nothing it reported before that commit could be seen before the result.
    QUEUED = "queued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # this attempt failed; the scheduler retries it after a backoff
    ABANDONED = "abandoned"  # failed on every attempt: no more retries

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.ABANDONED)


@dataclass(frozen=True, slots=True)
class MaterializationJob:
    """Materialize `feature_view` from the rows of `source` with start <= timestamp < end.

    The specs travel with the job (metadata, F8) so a worker needs no registry of its own and runs exactly
    the definition the control plane scheduled.
    """

    job_id: str
    workspace: str
    feature_view: FeatureViewSpec
    source: BatchSourceSpec
    join_keys: tuple[str, ...]
    start: datetime
    end: datetime
    attempt: int
    compute: Compute
    trigger: JobTrigger


@dataclass(frozen=True, slots=True)
class JobStatusReported:
    """Worker -> control plane (F9): counts and error text, never values."""

    job_id: str
    feature_view: str
    attempt: int
    state: JobState
    source_rows: int = 0
    rows_written: int = 0
    tiles_written: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as the control plane's job table holds it (the latest attempt)."""

    job_id: str
    workspace: str
    feature_view: str
    start: datetime
    end: datetime
    attempt: int
    compute: Compute
    trigger: JobTrigger
    state: JobState
    updated_at: datetime
    source_rows: int = 0
    rows_written: int = 0
    tiles_written: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class JobUpdated:
    """Control plane -> control events (F8): a job was queued, retried or reported on."""

    job: JobRecord
