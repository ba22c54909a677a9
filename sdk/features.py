"""The features a view serves: attributes (a column as it is) and aggregates over time windows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from events.specs import (
    AGGREGATION_PARAMS,
    AggregateSpec,
    AggregationFunction,
    DType,
    FeatureSpec,
    LifetimeWindowSpec,
    TimeWindowSeriesSpec,
    TimeWindowSpec,
    WindowSpec,
    duration_text,
)
from sdk import _checks as check

_FUNCTIONS = frozenset(f.value for f in AggregationFunction)


@dataclass(frozen=True)
class Attribute:
    """A column served as it is; `name` defaults to the column's."""

    column: str
    dtype: DType | str
    name: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        owner = check.name_of("attribute", self.name or self.column)
        check.text(owner, "column", self.column)
        if self.name is not None:
            check.text(owner, "name", self.name)
        check.member(owner, "dtype", self.dtype, DType)
        check.text(owner, "description", self.description)

    def spec(self) -> FeatureSpec:
        return FeatureSpec(self.name or self.column, self.column, DType(self.dtype), self.description)


@dataclass(frozen=True)
class TimeWindow:
    """The `size` before the feature time, shifted back by `offset` (zero or negative)."""

    size: timedelta
    offset: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        check.duration("time window", "size", self.size)
        check.duration("time window", "offset", self.offset)

    def spec(self) -> TimeWindowSpec:
        return TimeWindowSpec(int(self.size.total_seconds()), int(self.offset.total_seconds()))


@dataclass(frozen=True)
class LifetimeWindow:
    """Every event since the view's feature_start_time."""

    def spec(self) -> LifetimeWindowSpec:
        return LifetimeWindowSpec()


@dataclass(frozen=True)
class TimeWindowSeries:
    """Windows of `window_size` (default: `step_size`) ending every `step_size` from `series_start` to
    `series_end`, both relative to the feature time and zero or negative: one value per window.
    """

    series_start: timedelta
    series_end: timedelta
    step_size: timedelta
    window_size: timedelta | None = None

    def __post_init__(self) -> None:
        for label in ("series_start", "series_end", "step_size"):
            check.duration("time window series", label, getattr(self, label))
        check.duration("time window series", "window_size", self.window_size, optional=True)

    def spec(self) -> TimeWindowSeriesSpec:
        size = self.window_size if self.window_size is not None else self.step_size
        return TimeWindowSeriesSpec(int(self.series_start.total_seconds()), int(self.series_end.total_seconds()),
                                    int(self.step_size.total_seconds()), int(size.total_seconds()))


Window = TimeWindow | LifetimeWindow | TimeWindowSeries


@dataclass(frozen=True)
class Aggregate:
    """`function` of `column` over `time_window`, e.g. `Aggregate("amount", "sum", TimeWindow(timedelta(hours=1)))`.

    Functions: count, sum, mean, min, max, last, stddev_pop, stddev_samp, var_pop, var_samp; last_n,
    first_n, last_distinct_n and first_distinct_n with `params={"n": 10}` (1..1000);
    approx_count_distinct with an optional `precision` (4..16, default 8); approx_percentile with
    `percentile` in (0, 1) and an optional `precision` (20..500, default 100).

    The name defaults to `{column}_{function}[_{param}]_{window}_{interval}`:

    - param: `n` for the *_n functions (`merchant_last_distinct_n_5_...`), `p` and the percentile in
      percent for approx_percentile (`p50`, `p99_9`); precision is not part of the name;
    - window: the size in the largest whole unit of d/h/m/s (`1h`, `90s`), `_offset_{offset}` when it is
      offset (`1d_offset_1d`), `lifetime`, or `{size}_series_{start}_to_{end}_by_{step}` for a series
      (start and end as durations before the feature time, e.g. `1d_series_7d_to_0s_by_1d`);
    - interval: the view's aggregation interval (`10m`) or `continuous` without one.

    So `amount_sum_1h_continuous`, `amount_sum_1h_10m`, `amount_approx_percentile_p95_1d_1h`.
    """

    column: str
    function: AggregationFunction | str
    time_window: Window
    name: str | None = None
    params: Mapping[str, int | float] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        owner = check.name_of("aggregate", self.name) if self.name is not None else \
            f"aggregate {self.function}({self.column})"
        check.text(owner, "column", self.column)
        check.text(owner, "function", self.function)  # an unknown one is reported by validation, with the rest
        check.expect(owner, "time_window", self.time_window, (TimeWindow, LifetimeWindow, TimeWindowSeries),
                     "a TimeWindow, LifetimeWindow or TimeWindowSeries")
        if not isinstance(self.params, Mapping) or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                for k, v in self.params.items()):
            raise check.SpecTypeError(f"{owner}: params must map names to numbers, got {self.params!r}")
        check.text(owner, "description", self.description)

    def spec(self, interval_s: int | None) -> AggregateSpec:
        """The spec within a view whose aggregation interval is `interval_s` (None: continuous)."""
        function = str(self.function)
        params = dict(self.params)
        if function in _FUNCTIONS:  # an unknown function is reported by validation
            defaults = AGGREGATION_PARAMS.get(AggregationFunction(function), {})
            params |= {p: d for p, d in defaults.items() if d is not None and p not in params}
        window = self.time_window.spec()
        name = self.name or default_name(self.column, function, params, window, interval_s)
        return AggregateSpec(name, self.column, function, window, params, self.description)


def default_name(column: str, function: str, params: Mapping[str, int | float], window: WindowSpec,
                 interval_s: int | None) -> str:
    """The Tecton-style name described in `Aggregate`'s docstring."""
    suffix = ""
    if "n" in params and function.endswith("_n"):
        suffix = f"_{params['n']}"
    elif "percentile" in params and function == AggregationFunction.APPROX_PERCENTILE:
        suffix = "_p" + f"{round(params['percentile'] * 100, 4):g}".replace(".", "_")
    interval = "continuous" if interval_s is None else duration_text(interval_s)
    return f"{column}_{function}{suffix}_{_window_text(window)}_{interval}"


def _window_text(window: WindowSpec) -> str:
    if isinstance(window, TimeWindowSpec):
        offset = f"_offset_{duration_text(-window.offset_s)}" if window.offset_s else ""
        return f"{duration_text(window.size_s)}{offset}"
    if isinstance(window, TimeWindowSeriesSpec):
        return (f"{duration_text(window.window_s)}_series_{duration_text(-window.series_start_s)}"
                f"_to_{duration_text(-window.series_end_s)}_by_{duration_text(window.step_s)}")
    return "lifetime"
