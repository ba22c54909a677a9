"""Seeded event generators: the same scenario always produces the same rows (given the same end time).

Event times are spaced 1/rate apart and end just before `end`, so a replay's windows see every event.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from typing import Any

from scenarios.spec import Generator, Stream, event_spacing


def key_weights(generator: Generator) -> list[float]:
    """Relative weights of keys 0 .. values-1: equal, or Zipf's 1/(k+1)^s (key 0 the most frequent)."""
    keys = generator.keys
    if keys.distribution == "zipf":
        return [1.0 / (k + 1) ** keys.exponent for k in range(keys.values)]
    return [1.0] * keys.values


def generate_rows(generator: Generator, end: datetime) -> list[dict[str, Any]]:
    rng = random.Random(generator.seed)
    keys = generator.keys
    names = [f"{keys.prefix}{k}" for k in range(keys.values)]
    chosen = rng.choices(names, weights=key_weights(generator), k=generator.count)
    spacing = event_spacing(generator)
    rows: list[dict[str, Any]] = []
    for i, key in enumerate(chosen):
        row: dict[str, Any] = {keys.field: key}
        for name, low, high in generator.numbers:
            row[name] = round(rng.uniform(low, high), 2)
        for name, values in generator.choices:
            row[name] = rng.choice(values)
        row.update(generator.constants)
        moment = end - spacing * (generator.count - i)
        row[generator.timestamp_field] = moment.isoformat().replace("+00:00", "Z")
        rows.append(row)
    return rows


_RELATIVE = re.compile(r"^now(?:-(\d+)([smhd]))?$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def resolve_time(value: Any, now: datetime) -> Any:
    """'now' or 'now-90s' / 'now-5m' / 'now-2h' / 'now-1d' as an ISO time before `now`; other values as they are.

    Inline rows use it for event times, so windowed aggregates see the rows whenever the replay runs."""
    match = _RELATIVE.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    amount, unit = match.groups()
    moment = now - timedelta(**{_UNITS[unit]: int(amount)}) if amount else now
    return moment.isoformat().replace("+00:00", "Z")


def stream_rows(stream: Stream, end: datetime) -> list[dict[str, Any]]:
    """The rows a stream step sends: its inline rows (relative times resolved), or its generator's."""
    if stream.generator is not None:
        return generate_rows(stream.generator, end)
    return [{k: resolve_time(v, end) for k, v in row.items()} for row in stream.rows]
