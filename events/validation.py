"""Validation of a feature repository's specs: every problem as a sentence that names the object.

Pure: no I/O and no polars, so the control plane runs the same checks as the SDK. That an expression
carries no code is read from its JSON here (events.expressions). Whether SQL parses or an expression
deserializes can only be checked with polars: the SDK does that when it compiles a
transformation and records the output's columns in the spec, which is what these checks read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from events.expressions import expression_problem
from events.jobs import Compute
from events.specs import (
    AGGREGATION_PARAMS,
    NUMERIC,
    NUMERIC_FUNCTIONS,
    AggregateSpec,
    AggregationFunction,
    BatchSourceSpec,
    DType,
    EntitySpec,
    FeatureServiceSpec,
    FeatureViewKind,
    FeatureViewSpec,
    FieldSpec,
    PushSourceSpec,
    RepoSpec,
    SourceSpec,
    StreamSourceSpec,
    TimeWindowSeriesSpec,
    TimeWindowSpec,
    TransformationMode,
    duration_text,
)

# Names are unique per namespace; the three kinds of source share one.
ENTITY, SOURCE, VIEW, SERVICE = "entity", "source", "feature view", "feature service"
_KINDS: Mapping[type, str] = {
    EntitySpec: ENTITY, BatchSourceSpec: "batch source", StreamSourceSpec: "stream source",
    PushSourceSpec: "push source", FeatureViewSpec: VIEW, FeatureServiceSpec: SERVICE,
}
_FUNCTIONS = frozenset(f.value for f in AggregationFunction)
_MAX_N = 1000
_PRECISION = {"approx_count_distinct": (4, 16), "approx_percentile": (20, 500)}
MAX_CACHE_AGE_S = 24 * 3600  # the data plane keeps nothing longer (DESIGN: the serving cache)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


@dataclass(frozen=True, slots=True)
class Problem:
    """One sentence about one object; `namespace` and `name` let the SDK point at the declaring file."""

    namespace: str
    name: str
    text: str

    def __str__(self) -> str:
        return self.text


class _Report:
    def __init__(self, namespace: str, kind: str, name: str) -> None:
        self.namespace, self.where, self.name = namespace, f"{kind} '{name}'", name
        self.problems: list[Problem] = []

    def add(self, text: str, sep: str = ": ") -> None:
        self.problems.append(Problem(self.namespace, self.name, f"{self.where}{sep}{text}"))


def kind_of(obj: object) -> str:
    """How sentences call an object: `stream source`, `feature view`, ..."""
    return _KINDS.get(type(obj), type(obj).__name__)


def repo_errors(repo: RepoSpec) -> list[str]:
    """What is wrong with a repository, as sentences naming the object; empty if it is valid."""
    return [p.text for p in repo_problems(repo)]


def repo_problems(repo: RepoSpec) -> list[Problem]:
    problems = _name_problems(repo)
    # The first of two same-named objects is the one others refer to; the second is reported above.
    entities = _first_by_name(repo.entities)
    sources = _first_by_name(repo.sources())
    views = _first_by_name(repo.feature_views)
    for entity in repo.entities:
        problems.extend(_entity_problems(entity))
    for source in repo.sources():
        problems.extend(_source_problems(source, sources))
    for view in repo.feature_views:
        problems.extend(_view_problems(view, entities, sources, views))
    for service in repo.feature_services:
        report = _Report(SERVICE, SERVICE, service.name)
        if not service.feature_views:
            report.add("lists no feature views")
        for name in service.feature_views:
            if name not in views:
                report.add(f"unknown feature view '{name}'")
        problems.extend(report.problems)
    return problems


def _first_by_name(objects: Iterable[N]) -> dict[str, N]:
    found: dict[str, N] = {}
    for obj in objects:
        found.setdefault(obj.name, obj)
    return found


def _name_problems(repo: RepoSpec) -> list[Problem]:
    groups: list[tuple[str, Iterable[_Named]]] = [
        (ENTITY, repo.entities), (SOURCE, repo.sources()), (VIEW, repo.feature_views),
        (SERVICE, repo.feature_services),
    ]
    problems: list[Problem] = []
    for namespace, objects in groups:
        seen: set[str] = set()
        for obj in objects:
            name = obj.name
            report = _Report(namespace, kind_of(obj), name)
            if not name.isidentifier():
                report.add("name must be a Python identifier")
            if name in seen:
                report.add("is declared twice", sep=" ")
            seen.add(name)
            problems.extend(report.problems)
    return problems


def _entity_problems(entity: EntitySpec) -> list[Problem]:
    report = _Report(ENTITY, ENTITY, entity.name)
    if not entity.join_keys:
        report.add("has no join keys")
    for key in entity.join_keys:
        if not key.isidentifier():
            report.add(f"join key '{key}' is not a Python identifier")
    return report.problems


def _schema_problems(schema: tuple[FieldSpec, ...], report: _Report, what: str = "field") -> None:
    seen: set[str] = set()
    for f in schema:
        if not f.name.isidentifier():
            report.add(f"{what} '{f.name}' is not a Python identifier")
        if f.name in seen:
            report.add(f"{what} '{f.name}' is declared twice")
        seen.add(f.name)


def _source_problems(source: SourceSpec, sources: Mapping[str, SourceSpec]) -> list[Problem]:
    report = _Report(SOURCE, kind_of(source), source.name)
    _schema_problems(source.schema, report)
    ts = source.field(source.timestamp_field)
    if ts is None:
        report.add(f"timestamp field '{source.timestamp_field}' is not in its schema")
    elif ts.dtype is not DType.TIMESTAMP:
        report.add(f"timestamp field '{ts.name}' is {ts.dtype.value}, not timestamp")
    if isinstance(source, BatchSourceSpec):
        if not source.path.strip():
            report.add("has no path")
        return report.problems
    if isinstance(source, StreamSourceSpec) and not source.topic.strip():
        report.add("has no topic")
    if source.batch_source:
        backfill = sources.get(source.batch_source)
        if not isinstance(backfill, BatchSourceSpec):
            report.add(f"unknown batch source '{source.batch_source}'")
            return report.problems
        for f in source.schema:
            if backfill.field(f.name) != f:
                report.add(f"batch source '{backfill.name}' has no {f.dtype.value} field '{f.name}'")
    return report.problems


def _view_problems(view: FeatureViewSpec, entities: Mapping[str, EntitySpec], sources: Mapping[str, SourceSpec],
                   views: Mapping[str, FeatureViewSpec]) -> list[Problem]:
    report = _Report(VIEW, VIEW, view.name)
    _setting_problems(view, report)
    _transformation_problems(view, report)
    if view.kind is FeatureViewKind.REALTIME:
        _realtime_problems(view, views, report)
        t = view.transformation
        columns = _columns(t.output_schema) if t and t.output_schema else None
        origin = "the transformation's output"
    else:
        columns, origin = _materialized_problems(view, entities, sources, report)
    _feature_problems(view, columns, origin, report)
    return report.problems


def _setting_problems(view: FeatureViewSpec, report: _Report) -> None:
    for label, seconds in (("ttl", view.ttl_s), ("batch_schedule", view.batch_schedule_s),
                           ("aggregation_interval", view.aggregation_interval_s)):
        if seconds is not None and seconds <= 0:
            report.add(f"{label} must be positive, got {seconds}s")
    age = view.serving_cache_max_age_s
    if age is not None and not 0 < age <= MAX_CACHE_AGE_S:
        report.add(f"cache_max_age must be more than 0s and at most 24h, got {duration_text(age)}")
    if age is not None and view.kind is FeatureViewKind.REALTIME:
        report.add("a realtime feature view is computed per request and never cached: it has no cache_max_age")
    if view.feature_start_time is not None and view.feature_start_time.tzinfo is None:
        report.add("feature_start_time must be timezone-aware (UTC)")
    if view.kind is FeatureViewKind.BATCH and view.batch_schedule_s is None:
        report.add("a batch feature view needs a batch_schedule")
    if view.aggregation_interval_s is not None and not view.aggregates:
        report.add("has an aggregation_interval but no aggregates")
    if view.kind is FeatureViewKind.BATCH and view.aggregates and view.aggregation_interval_s is None:
        report.add("batch aggregates need an aggregation_interval: only stream views aggregate continuously")
    if view.features and view.aggregates:
        report.add("mixes attributes and aggregates: a view serves one or the other")
    _compute_problems(view, report)


COMPUTES = tuple(c.value for c in Compute)


def _compute_problems(view: FeatureViewSpec, report: _Report) -> None:
    """Where a batch view's jobs run; other views are materialized (or computed) by the data plane."""
    if view.compute not in COMPUTES:
        report.add(f"compute must be one of {list(COMPUTES)}, got '{view.compute}'")
    elif view.kind is not FeatureViewKind.BATCH and view.compute != "rift":
        report.add(f"only batch feature views choose their compute, got compute='{view.compute}'")


def _transformation_problems(view: FeatureViewSpec, report: _Report) -> None:
    t = view.transformation
    if t is None:
        return
    if t.mode is TransformationMode.SQL and not t.sql.strip():
        report.add("its SQL transformation is empty")
    if t.mode is TransformationMode.EXPRESSIONS and not t.expressions:
        report.add("its expression transformation has no expressions")
    if t.mode is TransformationMode.EXPRESSIONS:
        # No pickled code crosses a plane: refused here, before the control plane stores or broadcasts it.
        for position, text in enumerate(t.expressions, 1):
            problem = expression_problem(text)
            if problem is not None:
                report.add(f"expression {position} of its transformation {problem}")
    if not t.output_schema:
        report.add("its transformation produces no columns")
    _schema_problems(t.output_schema, report, "output column")


def _realtime_problems(view: FeatureViewSpec, views: Mapping[str, FeatureViewSpec], report: _Report) -> None:
    if view.source:
        report.add(f"a realtime feature view reads no source, got '{view.source}'")
    if view.entities:
        report.add("a realtime feature view takes its entities from its input feature views")
    if view.transformation is None:
        report.add("a realtime feature view needs a transformation")
    if not view.inputs and not view.request_schema:
        report.add("a realtime feature view needs request fields or input feature views")
    if view.aggregates:
        report.add("a realtime feature view cannot aggregate")
    for label, value in (("ttl", view.ttl_s), ("batch_schedule", view.batch_schedule_s)):
        if value is not None:
            report.add(f"a realtime feature view has no {label}")
    _schema_problems(view.request_schema, report, "request field")
    for name in view.inputs:
        upstream = views.get(name)
        if upstream is None:
            report.add(f"unknown input feature view '{name}'")
        elif upstream.kind is FeatureViewKind.REALTIME:
            report.add(f"input '{name}' is a realtime feature view; realtime views read batch and stream views")


def _materialized_problems(view: FeatureViewSpec, entities: Mapping[str, EntitySpec],
                           sources: Mapping[str, SourceSpec],
                           report: _Report) -> tuple[dict[str, DType] | None, str]:
    """Checks of a batch or stream view's entities and source; the columns its features may read."""
    if not view.entities:
        report.add("has no entities")
    for name in view.entities:
        if name not in entities:
            report.add(f"unknown entity '{name}'")
    source = sources.get(view.source)
    if source is None:
        report.add(f"unknown source '{view.source}'")
        return None, ""
    if view.kind is FeatureViewKind.BATCH and not isinstance(source, BatchSourceSpec):
        report.add(f"a batch feature view reads a batch source, but '{source.name}' is a {kind_of(source)}")
    if view.kind is FeatureViewKind.STREAM and isinstance(source, BatchSourceSpec):
        report.add(f"a stream feature view reads a stream or push source, but '{source.name}' is a batch source")
    elif (view.kind is FeatureViewKind.STREAM and not isinstance(source, BatchSourceSpec)
          and view.batch_schedule_s is not None and not source.batch_source):
        report.add(f"batch_schedule needs source '{source.name}' to have a batch source for backfills")
    columns, origin = _columns(source.schema), f"source '{source.name}'"
    if view.transformation is not None and not view.transformation.output_schema:
        return None, origin  # reported by the transformation's checks: its columns are unknown
    if view.transformation is not None:
        columns, origin = _columns(view.transformation.output_schema), "the transformation's output"
        if source.timestamp_field not in columns:
            report.add(f"its transformation drops the timestamp field '{source.timestamp_field}'")
    join_keys = [k for e in view.entities if e in entities for k in entities[e].join_keys]
    for key in join_keys:
        if key not in columns:
            report.add(f"join key '{key}' is not a column of {origin}")
    return columns, origin


def _columns(schema: tuple[FieldSpec, ...]) -> dict[str, DType]:
    return {f.name: f.dtype for f in schema}


def _feature_problems(view: FeatureViewSpec, columns: Mapping[str, DType] | None, origin: str,
                      report: _Report) -> None:
    """Names, columns and types of the attributes and aggregates; `columns` None means unknown."""
    if not view.features and not view.aggregates:
        report.add("declares no features")
    seen: set[str] = set()
    for name in view.feature_names():
        if not name.isidentifier():
            report.add(f"feature '{name}': name must be a Python identifier")
        if name in seen:
            report.add(f"feature '{name}' is declared twice")
        seen.add(name)
    for feature in view.features:
        if columns is None:
            break
        dtype = columns.get(feature.column)
        if dtype is None:
            report.add(f"feature '{feature.name}' reads column '{feature.column}', which {origin} does not have")
        elif dtype is not feature.dtype:
            report.add(f"feature '{feature.name}' is declared {feature.dtype.value} "
                       f"but column '{feature.column}' is {dtype.value}")
    for aggregate in view.aggregates:
        _aggregate_problems(aggregate, view.aggregation_interval_s, columns, origin, report)


def _aggregate_problems(agg: AggregateSpec, interval_s: int | None, columns: Mapping[str, DType] | None,
                        origin: str, report: _Report) -> None:
    where = f"aggregate '{agg.name}'"
    if columns is not None and agg.column not in columns:
        report.add(f"{where} reads column '{agg.column}', which {origin} does not have")
    if agg.function not in _FUNCTIONS:
        report.add(f"{where}: unknown aggregation function '{agg.function}'")
    else:
        function = AggregationFunction(agg.function)
        dtype = None if columns is None else columns.get(agg.column)
        if function in NUMERIC_FUNCTIONS and dtype is not None and dtype not in NUMERIC:
            report.add(f"{where}: function '{function}' needs a numeric column, but '{agg.column}' is {dtype.value}")
        for text in _param_problems(function, agg.params):
            report.add(f"{where}: {text}")
    for text in _window_problems(agg, interval_s):
        report.add(f"{where}: {text}")


def _param_problems(function: AggregationFunction, params: Mapping[str, int | float]) -> list[str]:
    accepted = AGGREGATION_PARAMS.get(function, {})
    problems = [f"function '{function}' takes no parameter '{p}'" for p in params if p not in accepted]
    problems.extend(f"function '{function}' needs parameter '{p}'"
                    for p, default in accepted.items() if default is None and p not in params)
    n, percentile, precision = params.get("n"), params.get("percentile"), params.get("precision")
    if "n" in accepted and n is not None and not (_is_int(n) and 1 <= n <= _MAX_N):
        problems.append(f"parameter n must be an integer from 1 to {_MAX_N}, got {n!r}")
    if "percentile" in accepted and percentile is not None and not (
            isinstance(percentile, int | float) and not isinstance(percentile, bool) and 0 < percentile < 1):
        problems.append(f"parameter percentile must be between 0 and 1 (exclusive), got {percentile!r}")
    low, high = _PRECISION.get(function, (0, 0))
    if "precision" in accepted and precision is not None and not (_is_int(precision) and low <= precision <= high):
        problems.append(f"parameter precision must be an integer from {low} to {high}, got {precision!r}")
    return problems


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _window_problems(agg: AggregateSpec, interval_s: int | None) -> list[str]:
    window = agg.window
    if isinstance(window, TimeWindowSpec):
        problems = [] if window.size_s > 0 else [f"window size must be positive, got {window.size_s}s"]
        if window.offset_s > 0:
            problems.append(f"window offset must be zero or negative, got {window.offset_s}s")
        return problems + _fits_interval([("window", window.size_s), ("window offset", window.offset_s)],
                                         interval_s)
    if isinstance(window, TimeWindowSeriesSpec):
        problems = [f"series {label} must be positive, got {value}s"
                    for label, value in (("step", window.step_s), ("window size", window.window_s)) if value <= 0]
        if not window.series_start_s < window.series_end_s <= 0:
            problems.append(f"series must start before it ends, both at or before the feature time: "
                            f"start {window.series_start_s}s, end {window.series_end_s}s")
        return problems + _fits_interval([("series window", window.window_s), ("series step", window.step_s),
                                          ("series start", window.series_start_s),
                                          ("series end", window.series_end_s)], interval_s)
    return []


def _fits_interval(lengths: list[tuple[str, int]], interval_s: int | None) -> list[str]:
    """Tiles are `interval_s` long, so every boundary of a window must fall on a tile boundary."""
    if not interval_s or interval_s <= 0:
        return []
    interval = duration_text(interval_s)
    problems: list[str] = []
    for label, seconds in lengths:
        is_length = label in ("window", "series window", "series step")
        if is_length and seconds <= 0:
            continue  # reported as not positive
        if is_length and seconds < interval_s:
            problems.append(f"{label} {duration_text(seconds)} is smaller than the aggregation interval {interval}")
        elif seconds % interval_s:
            problems.append(f"{label} {duration_text(abs(seconds))} is not a multiple of the aggregation "
                            f"interval {interval}")
    return problems


# Workspace names: a letter, then letters, digits, '_' or '-' (Tecton's workspaces are often "prod-fraud"),
# at most 63 characters; never '/', '.', spaces or anything else a path or a log line would mangle.
_WORKSPACE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")


def workspace_name_problem(name: str) -> str | None:
    """Why `name` cannot name a workspace, or None."""
    if _WORKSPACE_NAME.fullmatch(name):
        return None
    return (f"workspace name '{name}' must start with a letter and hold only letters, digits, '_' and '-' "
            f"(at most 63 characters)")
