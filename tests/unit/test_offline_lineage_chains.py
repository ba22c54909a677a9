"""`featureplane lineage --at`: one chain per offline view of the service, traced from the row in effect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from deploy.lineage import offline_lineage
from events.data import Coordinates, FeatureRow, SourceRange, WriteOfflineRows
from events.errors import InvalidRequest, NotFound
from sdk.offline import workspace_of
from stores.offline import OfflineWrite, ParquetOfflineStore
from tests.unit.fixtures import REPO

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _store_with_one_row(root: Path) -> None:
    row = FeatureRow(("u1",), T0, {"last_amount": 1.0, "last_merchant": "m"})
    body = WriteOfflineRows("user_last", ("user_id",), (row,), SourceRange("transactions", 0, 7, 7))
    with ParquetOfflineStore(root) as store:
        store.append([OfflineWrite(Coordinates("offline.writes", 0, 0), "prod", body, "write-1")])


def test_the_row_in_effect_is_traced_through_its_write(tmp_path: Path) -> None:
    _store_with_one_row(tmp_path)
    traced: list[str] = []

    def trace(write_id: str) -> dict[str, Any]:
        traced.append(write_id)
        return {"write": {"event_id": write_id}, "sources": [{"topic": "transactions", "first_offset": 7}]}

    ws = workspace_of(REPO, "prod")
    (chain,) = offline_lineage(ws, "fraud", {"user_id": "u1"}, T0 + timedelta(hours=1), tmp_path, trace)
    assert traced == ["write-1"]
    assert chain["event_time"] == T0.isoformat()
    assert chain["sources"] == [{"topic": "transactions", "first_offset": 7}]
    (before,) = offline_lineage(ws, "fraud", {"user_id": "u1"}, T0 - timedelta(hours=1), tmp_path, trace)
    assert "write" not in before
    assert traced == ["write-1"]  # nothing in effect: nothing traced


def test_unknown_services_and_missing_keys_are_named(tmp_path: Path) -> None:
    _store_with_one_row(tmp_path)
    ws = workspace_of(REPO, "prod")
    with pytest.raises(NotFound, match="nope"):
        offline_lineage(ws, "nope", {"user_id": "u1"}, T0, tmp_path, lambda _: {})
    with pytest.raises(InvalidRequest, match="user_id"):
        offline_lineage(ws, "fraud", {"account": "u1"}, T0, tmp_path, lambda _: {})
