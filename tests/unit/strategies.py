"""Hypothesis strategies for featureplane values."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from events import access, audit, control, data, jobs, specs
from events.flows import Flow
from events.planes import PLANE_OF, Component

names = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
text = st.text(max_size=20)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False), text,
)
# hypothesis wants naive bounds and adds the zone itself
times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),  # noqa: DTZ001
                     timezones=st.just(UTC))
dtypes = st.sampled_from(specs.DType)

fields = st.builds(specs.FieldSpec, names, dtypes)
schemas = st.lists(fields, max_size=4).map(tuple)
tags = st.dictionaries(names, text, max_size=2)
durations = st.integers(-(10**8), 10**8)
numbers = st.one_of(st.integers(-1000, 1000), st.floats(allow_nan=False))
entities = st.builds(specs.EntitySpec, names, st.lists(names, min_size=1, max_size=3).map(tuple), text, tags, text,
                     st.booleans())
sources = st.builds(specs.StreamSourceSpec, names, names, names, schemas, st.sampled_from(specs.RecordFormat), text,
                    names | st.just(""), tags, text, st.booleans())
batch_sources = st.builds(specs.BatchSourceSpec, names, text, st.sampled_from(specs.FileFormat), names, schemas, text,
                          tags, text, st.booleans())
push_sources = st.builds(specs.PushSourceSpec, names, names, schemas, text, names | st.just(""), tags, text,
                         st.booleans())
features = st.builds(specs.FeatureSpec, names, names, dtypes, text)
windows = st.one_of(
    st.builds(specs.TimeWindowSpec, durations, durations), st.just(specs.LifetimeWindowSpec()),
    st.builds(specs.TimeWindowSeriesSpec, durations, durations, durations, durations),
)
aggregates = st.builds(specs.AggregateSpec, names, names, st.sampled_from(specs.AggregationFunction).map(str) | names,
                       windows, st.dictionaries(names, numbers, max_size=2), text)
transformations = st.builds(specs.TransformationSpec, st.sampled_from(specs.TransformationMode), text,
                            st.lists(text, max_size=2).map(tuple), schemas)
views = st.builds(specs.FeatureViewSpec, names, st.lists(names, max_size=2).map(tuple), names,
                  st.lists(features, max_size=3).map(tuple), st.booleans(), st.booleans(), text,
                  st.sampled_from(specs.FeatureViewKind), st.lists(aggregates, max_size=2).map(tuple),
                  st.none() | transformations, st.none() | durations, st.none() | durations, st.none() | durations,
                  st.none() | times, schemas, st.lists(names, max_size=2).map(tuple), tags, text, st.booleans(),
                  st.none() | durations, st.sampled_from(jobs.Compute).map(str), st.none() | times)
services = st.builds(specs.FeatureServiceSpec, names, st.lists(names, max_size=3).map(tuple), text, tags, text,
                     st.booleans())
repos = st.builds(specs.RepoSpec, st.lists(entities, max_size=2).map(tuple),
                  st.lists(sources, max_size=2).map(tuple), st.lists(views, max_size=2).map(tuple),
                  st.lists(services, max_size=2).map(tuple), st.lists(batch_sources, max_size=2).map(tuple),
                  st.lists(push_sources, max_size=2).map(tuple))

rows = st.builds(data.FeatureRow, st.lists(scalars, min_size=1, max_size=3).map(tuple), times,
                 st.dictionaries(names, scalars, max_size=4))
ranges = st.builds(data.SourceRange, names, st.integers(0, 100), st.integers(0, 2**40), st.integers(0, 2**40))
lookups = st.builds(data.Lookup, names, st.lists(scalars, min_size=1, max_size=3).map(tuple))
stored = st.builds(data.StoredRow, rows, names)
tile_states = st.builds(data.TileState, st.floats(allow_nan=False, allow_infinity=False),
                        st.lists(numbers, max_size=3).map(tuple), names)
components = st.sampled_from(Component)


@st.composite
def audit_records(draw: st.DrawFn) -> audit.AuditRecord:
    sender, receiver = draw(components), draw(components)
    return audit.AuditRecord(
        draw(names), draw(st.sampled_from(Flow)), draw(st.sampled_from(audit.Outcome)),
        sender, PLANE_OF[sender], receiver, PLANE_OF[receiver], draw(text), draw(text), draw(text),
        draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6)), draw(st.integers(0, 10**9)),
        draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)), draw(names),
        draw(st.integers(-1, 100)), draw(st.integers(-1, 2**40)), draw(st.integers(-1, 2**40)),
        draw(names), draw(names), draw(times),
    )


bodies = st.one_of(
    st.builds(control.ApplyRepo, names, repos),
    st.builds(control.EntityApplied, entities),
    st.builds(control.StreamSourceApplied, sources),
    st.builds(control.FeatureViewApplied, views),
    st.builds(control.FeatureServiceApplied, services),
    st.builds(control.RepoApplied, names, st.integers(0, 1000)),
    st.builds(control.RepoRejected, names, st.lists(text, max_size=3).map(tuple)),
    st.builds(data.WriteOnlineRows, names, st.lists(rows, max_size=3).map(tuple), ranges),
    st.builds(data.WriteOfflineRows, names, st.lists(names, max_size=2).map(tuple),
              st.lists(rows, max_size=3).map(tuple), ranges),
    st.builds(data.WriteOfflineColumns, names, st.lists(names, max_size=2).map(tuple), st.binary(max_size=64),
              st.integers(0, 10_000), ranges),
    st.builds(data.ReadOnlineRows, names, st.lists(lookups, max_size=3).map(tuple), names),
    st.builds(data.OnlineRowsRead, names, names, st.lists(st.none() | stored, max_size=3).map(tuple)),
    # a part of a split reply: tiles and per-lookup errors too
    st.builds(data.OnlineRowsRead, names, names, st.lists(st.none() | stored, max_size=3).map(tuple),
              st.lists(st.none() | st.lists(tile_states, max_size=2).map(tuple), max_size=3).map(tuple),
              st.integers(0, 10), st.integers(1, 10), st.integers(0, 1000),
              st.lists(st.none() | text, max_size=3).map(tuple)),
    st.builds(data.RecordDeadLettered, text, ranges, st.binary(max_size=64)),
    audit_records(),
    st.builds(audit.QueryAuditLog, names, names, st.integers(0, 10_000)),
    st.builds(audit.AuditLogAnswered, names, names, st.lists(audit_records(), max_size=2).map(tuple),
              st.integers(0, 10**6)),
)

counts = st.integers(0, 10**9)
job_records = st.builds(jobs.JobRecord, names, names, names, times, times, st.integers(1, 10),
                        st.sampled_from(jobs.Compute), st.sampled_from(jobs.JobTrigger),
                        st.sampled_from(jobs.JobState), times, counts, counts, counts, text)
job_bodies = st.one_of(
    st.builds(jobs.MaterializationJob, names, names, views, batch_sources, st.lists(names, max_size=2).map(tuple),
              times, times, st.integers(1, 10), st.sampled_from(jobs.Compute), st.sampled_from(jobs.JobTrigger)),
    st.builds(jobs.JobStatusReported, names, names, st.integers(1, 10), st.sampled_from(jobs.JobState),
              counts, counts, counts, text),
    st.builds(jobs.JobUpdated, job_records),
    st.builds(control.TriggerMaterialization, names, names, times, times),
    st.builds(control.TickSchedules, times),
)

principals = st.builds(access.PrincipalSpec, names, st.sampled_from(access.PrincipalKind), text, text, names,
                       st.booleans(), text)
api_keys = st.builds(access.ApiKeySpec, st.text(alphabet="0123456789abcdef", min_size=16, max_size=16), names,
                     st.binary(max_size=16), st.binary(max_size=32), text, names, st.none() | times)
grants = st.builds(access.RoleGrant, names, names, st.sampled_from(access.Role))
access_bodies = st.one_of(
    st.builds(control.BootstrapAdmin, names, principals, api_keys),
    st.builds(control.CreateWorkspace, names, names, st.booleans()),
    st.builds(control.CreateServiceAccount, names, principals, api_keys),
    st.builds(control.CreateUser, names, principals, api_keys),
    st.builds(control.IssueApiKey, names, api_keys),
    st.builds(control.RevokeApiKey, names, names),
    st.builds(control.AssignRole, names, grants),
    st.builds(control.UnassignRole, names, grants),
    st.builds(control.WorkspaceCreated, names, st.booleans()),
    st.builds(control.PrincipalCreated, principals),
    st.builds(control.ApiKeyIssued, api_keys),
    st.builds(control.ApiKeyRevoked, names),
    st.builds(control.RoleAssigned, grants),
    st.builds(control.RoleUnassigned, grants),
    st.builds(control.CommandSucceeded, names),
    st.builds(control.CommandRejected, names, text),
)
