"""Messages that carry feature data between the data plane and the customer plane."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Scalar = str | int | float | bool | None
EntityKey = tuple[Scalar, ...]


@dataclass(frozen=True, slots=True, order=True)
class Coordinates:
    """Where one message sits in Kafka; stores keep the applied ones to make replays idempotent."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class SourceRange:
    """The source records (Kafka coordinates) that a batch of rows came from: lineage."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """One entity's feature values as of `event_time`."""

    entity_key: EntityKey
    event_time: datetime
    values: Mapping[str, Scalar]


@dataclass(frozen=True, slots=True)
class WriteOnlineRows:
    """Rift → online store (F7)."""

    feature_view: str
    rows: tuple[FeatureRow, ...]
    source: SourceRange


# The event-time column of a WriteOfflineColumns table (the offline store's own name for it).
OFFLINE_EVENT_TIME = "event_time"


@dataclass(frozen=True, slots=True)
class WriteOfflineColumns:
    """Batch job → offline store (F7): rows as one Arrow IPC stream, so that neither end builds a Python
    object per row. Its columns: the join keys, `OFFLINE_EVENT_TIME` (timestamps with a time zone), then
    the features by name; `row_count` is the table's number of rows."""

    feature_view: str
    join_keys: tuple[str, ...]
    arrow_ipc: bytes
    row_count: int
    source: SourceRange


@dataclass(frozen=True, slots=True)
class WriteOfflineRows:
    """Rift → offline store (F7). `join_keys` name the entity-key columns of the Parquet rows."""

    feature_view: str
    join_keys: tuple[str, ...]
    rows: tuple[FeatureRow, ...]
    source: SourceRange


@dataclass(frozen=True, slots=True)
class TileState:
    """Partial aggregate states of one entity for one tile (its start, or the event time in continuous
    mode), one encoded state per aggregate of the feature view, in declaration order."""

    tile: float
    states: tuple[Any, ...]
    # the online write that stored these states (lineage); set by the store when it reads a delta back
    written_by: str = ""


@dataclass(frozen=True, slots=True)
class TileDelta:
    entity_key: EntityKey
    tile: TileState


@dataclass(frozen=True, slots=True)
class WriteTiles:
    """Rift → online store (F7): partial aggregates to add to the stored ones (they merge associatively)."""

    feature_view: str
    tiles: tuple[TileDelta, ...]
    source: SourceRange


@dataclass(frozen=True, slots=True)
class Lookup:
    feature_view: str
    entity_key: EntityKey
    # For aggregated views: the tiles lower <= tile <= upper (lower None: from the first one).
    tile_range: tuple[float | None, float] | None = None


@dataclass(frozen=True, slots=True)
class ReadOnlineRows:
    """Feature server → online store (F2). Replies go to `reply_to`, the asking replica."""

    request_id: str
    lookups: tuple[Lookup, ...]
    reply_to: str


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A row as the online store holds it, with the write that produced it (lineage)."""

    row: FeatureRow
    written_by: str


@dataclass(frozen=True, slots=True)
class OnlineRowsRead:
    """Online store → feature server (F3): one entry per lookup, None where nothing is stored."""

    request_id: str
    reply_to: str
    rows: tuple[StoredRow | None, ...]
    # aligned with the lookups: the tiles of lookups with a tile range, else None
    tiles: tuple[tuple[TileState, ...] | None, ...] = ()
    # A reply too large for one Kafka message goes as `parts` messages (part 0.. parts-1); each answers the
    # lookups from index `first` on, so the feature server joins them back in lookup order.
    part: int = 0
    parts: int = 1
    first: int = 0
    # aligned with `rows` (empty: none failed): why a lookup was not answered (e.g. its answer alone is
    # larger than one reply may carry); its row and tiles are None
    errors: tuple[str | None, ...] = ()


@dataclass(frozen=True, slots=True)
class IngestRecords:
    """Records pushed through the ingest API for one push source, gateway → Rift (inside the data plane;
    the gateway audited them as they arrived, flow F5)."""

    request_id: str
    source: str
    records: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class OnlineRowsWritten:
    """Online store changelog (F3): a write was applied; its correlation id is that of the write."""

    feature_view: str
    row_count: int
    written_by: str
    # the keys the write changed: serving caches drop exactly these
    entity_keys: tuple[EntityKey, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordDeadLettered:
    """A source record that could not be processed, kept with the customer's data (F7)."""

    reason: str
    source: SourceRange
    payload: bytes
