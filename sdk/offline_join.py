"""The polars plans behind offline retrieval: a view's rows as stored, and one as-of join per view.

Point in time: an event sees, per view, the latest row of its entity with `event_time <=` the event's
timestamp, never a later one; of rows with the same key and time, the last written wins (the store scans
in commit order and the sorts here are stable). A row older than the event's timestamp minus the view's
TTL has expired: the features are null, as they are for an event no row matches.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import polars as pl

from events.errors import InvalidRequest
from events.specs import FeatureSpec
from sdk.transforms import polars_type
from stores.offline import EVENT_TIME, WRITTEN_BY

# Working columns of the join; an event frame may not use these names.
ROW = "__fp_row"  # the event's position, to give the rows back in the caller's order
TS = "__fp_ts"  # the event's timestamp in UTC microseconds, the unit the store keeps
FEATURE_TIME = "__fp_feature_time"
RESERVED = (ROW, TS, FEATURE_TIME)


class Keyed(Protocol):
    """A plan of a view's retrieval: attributes (`ViewPlan`) or aggregates (`sdk.offline_aggregates`)."""

    @property
    def name(self) -> str: ...

    @property
    def join_keys(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class ViewPlan:
    """What the joins need of one feature view."""

    name: str
    join_keys: tuple[str, ...]
    features: tuple[FeatureSpec, ...]
    ttl: timedelta | None

    def output(self, feature: str) -> str:
        """Tecton's name for a feature in training data."""
        return f"{self.name}__{feature}"


def view_rows(scan: pl.LazyFrame, view: ViewPlan) -> pl.LazyFrame:
    """The stored rows with every column the view declares: keys, event_time, features, lineage.

    A view not written yet has no key or feature columns, and a feature never written or only ever null
    has none or a Null one: such columns become nulls (of the declared type for features), so callers
    always get the same columns.
    """
    schema = scan.collect_schema()

    def typed(name: str, dtype: pl.DataType) -> pl.Expr:
        known = name in schema and schema[name] != pl.Null()
        return pl.col(name) if known else pl.lit(None, dtype=dtype).alias(name)

    return scan.select(
        *(typed(k, pl.Null()) for k in view.join_keys), pl.col(EVENT_TIME),
        *(typed(f.name, polars_type(f.dtype)) for f in view.features), pl.col(WRITTEN_BY),
    )


def utc_micros(column: str, dtype: pl.DataType) -> pl.Expr:
    """The timestamp column in UTC microseconds; a naive one is taken as UTC already.

    Rows are stored in microseconds, so flooring a finer timestamp (the cast floors) changes no
    comparison with them.
    """
    if not isinstance(dtype, pl.Datetime):
        raise InvalidRequest(f"timestamp column '{column}' is {dtype}, not a datetime: cast it first "
                             f"(e.g. with str.to_datetime)")
    expr = pl.col(column)
    expr = expr.dt.replace_time_zone("UTC") if dtype.time_zone is None else expr.dt.convert_time_zone("UTC")
    return expr.dt.cast_time_unit("us")


def keys_comparable(asked: pl.Schema, stored: pl.Schema, view: Keyed, what: str) -> bool:
    """Whether the caller's keys (`what`: "events", "entities") can match stored ones; False when a key
    column is null throughout on either side. Integer keys of other widths compare after a non-strict cast
    (a value that does not fit the other type equals nothing there); any other difference is an error.
    """
    for key in view.join_keys:
        theirs, ours = asked[key], stored[key]
        if pl.Null() in (theirs, ours):
            return False
        if theirs != ours and not (theirs.is_integer() and ours.is_integer()):
            raise InvalidRequest(f"join key '{key}' is {theirs} in the {what} but {ours} in feature view "
                                 f"'{view.name}'")
    return True


def join_view(
    left: pl.LazyFrame, events: pl.Schema, rows: pl.LazyFrame, view: ViewPlan,
    span: tuple[datetime, datetime] | None,
) -> pl.LazyFrame:
    """`left` (sorted by TS) with the view's features as of each event.

    `span` is the events' earliest and latest timestamps (None: no event has one): rows outside what any
    event can see are filtered before the sort, which Parquet statistics can push into the scan.
    """
    stored = rows.collect_schema()
    outputs = {f.name: view.output(f.name) for f in view.features}
    if span is None or not keys_comparable(events, stored, view, "events"):
        return left.with_columns(pl.lit(None, dtype=stored[f]).alias(out) for f, out in outputs.items())
    right = (
        rows.filter(_visible(span, view.ttl))
        .select(*(pl.col(k).cast(events[k], strict=False) for k in view.join_keys),
                pl.col(EVENT_TIME).alias(FEATURE_TIME), *(pl.col(f).alias(o) for f, o in outputs.items()))
        .filter(*(pl.col(k).is_not_null() for k in view.join_keys))  # a null key is no entity
        # Stable: of rows with the same time the last written stays last, and a backward as-of join
        # takes the last of equal times.
        .sort(FEATURE_TIME, maintain_order=True)
    )
    joined = left.join_asof(
        right, left_on=TS, right_on=FEATURE_TIME, by=list(view.join_keys), strategy="backward",
        check_sortedness=False,  # both sides are sorted (left by the caller); polars cannot check within `by`
    )
    if view.ttl is not None:
        fresh = pl.col(FEATURE_TIME) >= pl.col(TS) - view.ttl
        joined = joined.with_columns(pl.when(fresh).then(pl.col(o)).alias(o) for o in outputs.values())
    return joined.drop(FEATURE_TIME)


def _visible(span: tuple[datetime, datetime], ttl: timedelta | None) -> pl.Expr:
    """The rows some event of `span` may see: none later than the last event, and with a TTL none that
    has expired for the first."""
    earliest, latest = span
    visible = pl.col(EVENT_TIME) <= latest
    if ttl is not None:
        with contextlib.suppress(OverflowError):  # a TTL reaching before year 1 bounds nothing
            visible &= pl.col(EVENT_TIME) >= earliest - ttl
    return visible


VALID_FROM, VALID_TO = "_valid_from", "_valid_to"
_WRITE_ORDER = "__write_order"


def with_validity(rows: pl.LazyFrame, view: ViewPlan) -> pl.LazyFrame:
    """Each row's validity: from its event time to the entity's next row (computed before any range
    filter, so a next row after the range still ends it), cut short by the ttl."""
    # Rows keep their order; "next" is by event time, then by write order (the later write wins a tie).
    indexed = rows.with_row_index(_WRITE_ORDER)
    until = pl.col(EVENT_TIME).shift(-1).over(view.join_keys, order_by=[EVENT_TIME, _WRITE_ORDER])
    if view.ttl is not None:
        until = pl.min_horizontal(until, pl.col(EVENT_TIME) + view.ttl)
    return indexed.with_columns(pl.col(EVENT_TIME).alias(VALID_FROM), until.alias(VALID_TO)).drop(_WRITE_ORDER)
