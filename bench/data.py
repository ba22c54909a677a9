"""The seeded data both systems get: one entity (`user_id`) and the same ten feature columns.

`history` is a feature table with several rows per user: seven attributes of a card transaction and three
windowed aggregates of its amount. Feast reads it as its file source (materialize, offline retrieval);
featureplane's offline store gets the same rows; featureplane's online path gets each user's rows as
stream events and computes the three aggregates itself (`stream_events`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
HISTORY_SPAN = timedelta(days=90)
ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("amount", "float64"), ("country", "string"), ("merchant_id", "string"), ("category", "string"),
    ("channel", "string"), ("is_online", "bool"), ("quantity", "int64"),
)
AGGREGATES: tuple[tuple[str, str], ...] = (
    ("amount_count_1h", "int64"), ("amount_sum_1h", "float64"), ("amount_mean_24h", "float64"),
)
FEATURES = ATTRIBUTES + AGGREGATES
COUNTRIES = ("DE", "FR", "US", "GB", "NL", "ES", "IT", "PL")
CATEGORIES = ("grocery", "travel", "fuel", "electronics", "fashion", "dining")
CHANNELS = ("pos", "web", "app")


def user_id(index: int) -> str:
    return f"u{index}"


def history(users: int, rows_per_user: int, seed: int = 7) -> pl.DataFrame:
    """`users * rows_per_user` feature rows spread over 90 days, sorted by (user_id, ts)."""
    rng = np.random.default_rng(seed)
    n = users * rows_per_user
    ids = np.repeat(np.arange(users), rows_per_user)
    seconds = rng.integers(0, int(HISTORY_SPAN.total_seconds()), n)
    amounts = np.round(rng.gamma(2.0, 40.0, n), 2)
    frame = pl.DataFrame({
        "user_id": [user_id(int(i)) for i in ids],
        "ts": pl.Series(np.datetime64(BASE_TIME.replace(tzinfo=None), "us") + seconds.astype("timedelta64[s]"))
              .dt.replace_time_zone("UTC"),
        "amount": amounts,
        "country": np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), n)],
        "merchant_id": [f"m{int(m)}" for m in rng.integers(0, 5_000, n)],
        "category": np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), n)],
        "channel": np.array(CHANNELS)[rng.integers(0, len(CHANNELS), n)],
        "is_online": rng.random(n) < 0.4,
        "quantity": rng.integers(1, 10, n),
        "amount_count_1h": rng.integers(1, 20, n),
        "amount_sum_1h": np.round(amounts * rng.uniform(1, 10, n), 2),
        "amount_mean_24h": np.round(amounts * rng.uniform(0.5, 1.5, n), 2),
    })
    return frame.sort(["user_id", "ts"])


def stream_events(frame: pl.DataFrame, users: int, per_user: int, now: datetime) -> list[dict[str, Any]]:
    """The last `per_user` rows of the first `users` users as stream events (attributes only), their
    times shifted into the 10 minutes before `now` so every aggregate window holds them."""
    wanted = {user_id(i) for i in range(users)}
    rows = (frame.filter(pl.col("user_id").is_in(list(wanted))).group_by("user_id", maintain_order=True)
            .tail(per_user))
    events = []
    step = 600 / max(rows.height, 1)  # increasing times, so each user's last row is its latest event
    for index, row in enumerate(rows.iter_rows(named=True)):
        event = {name: row[name] for name, _ in ATTRIBUTES}
        event["user_id"] = row["user_id"]
        event["ts"] = (now - timedelta(seconds=600 - index * step)).isoformat()
        events.append(event)
    return events


def entity_events(count: int, users: int, seed: int = 11) -> pl.DataFrame:
    """`count` (user_id, ts) training events over the same 90 days, for point-in-time retrieval."""
    rng = np.random.default_rng(seed)
    seconds = rng.integers(0, int(HISTORY_SPAN.total_seconds()), count)
    return pl.DataFrame({
        "user_id": [user_id(int(i)) for i in rng.integers(0, users, count)],
        "ts": pl.Series(np.datetime64(BASE_TIME.replace(tzinfo=None), "us") + seconds.astype("timedelta64[s]"))
              .dt.replace_time_zone("UTC"),
    })
