"""A stream view backfilled from its stream source's batch source through the real Kafka + Ray path: the
automatic backfill at apply, a manual one from the CLI, refusals over HTTP, and the stream taking over at
the cutoff without counting an archived event a second time."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
import pytest

from deploy import cli
from deploy.cluster import Deployment
from tests.integration.helpers import apply, auth, eventually, get_features, operator_connection, produce_plain
from tests.integration.test_batch import all_succeeded

pytestmark = pytest.mark.integration

WS = "streamfill"
REPO = '''
from datetime import UTC, datetime, timedelta
from sdk import Aggregate, Attribute, BatchSource, Entity, FeatureService, Field, StreamFeatureView, StreamSource
from sdk import TimeWindow

FIELDS = [Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "float64")]
user = Entity(name="user", join_keys=["user_id"])
archive = BatchSource(name="archive", path="{path}", timestamp_field="ts", schema=FIELDS)
tx = StreamSource(name="tx", topic="{topic}", timestamp_field="ts", schema=FIELDS, batch_source=archive)
clicks = StreamSource(name="clicks", topic="{topic}-clicks", timestamp_field="ts", schema=FIELDS)
tx_count = StreamFeatureView(name="tx_count", source=tx, entities=[user],
                             features=[Aggregate("amount", "count", TimeWindow(timedelta(days=30)), name="n_30d")],
                             batch_schedule=timedelta(days=1), feature_start_time=datetime.fromisoformat("{start}"))
tx_last = StreamFeatureView(name="tx_last", source=tx, entities=[user],
                            features=[Attribute("amount", "float64", name="last_amount")],
                            batch_schedule=timedelta(days=1))
click_last = StreamFeatureView(name="click_last", source=clicks, entities=[user],
                               features=[Attribute("amount", "float64", name="click_amount")])
svc = FeatureService(name="svc", features=[tx_count, tx_last])
'''


async def _served(session: aiohttp.ClientSession, url: str, key: str) -> dict[str, Any]:
    status, answer = await get_features(session, url, WS, "svc", {"user_id": "u1"}, key)
    assert status == 200, answer
    return dict(zip([f["name"] for f in answer["metadata"]["features"]], answer["result"]["features"], strict=True))


async def _materialize(session: aiohttp.ClientSession, url: str, key: str, view: str, start: datetime,
                       end: datetime) -> tuple[int, Any]:
    body = {"workspace": WS, "feature_view": view, "start": start.isoformat(), "end": end.isoformat()}
    async with session.post(f"{url}/api/v1/materialize", data=json.dumps(body), headers=auth(key)) as resp:
        return resp.status, await resp.json()


async def test_a_stream_view_is_backfilled_from_its_batch_source_and_the_stream_takes_over(
        deployment: Deployment, admin_key: str, kafka_bootstrap: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    before_apply = datetime.now(UTC)
    start = (before_apply - timedelta(days=10)).replace(hour=0, minute=0, second=0, microsecond=0)
    archived = [before_apply - timedelta(days=3), before_apply - timedelta(days=2)]
    path = tmp_path / "archive.parquet"
    pl.DataFrame({"user_id": ["u1", "u1"], "ts": archived, "amount": [5.0, 7.5]}).write_parquet(path)
    topic = f"{deployment.settings.topic_prefix}-tx-{uuid.uuid4().hex[:6]}"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "features.py").write_text(REPO.format(path=path, topic=topic, start=start.isoformat()))
    await apply(operator_connection(deployment), repo, WS, admin_key)
    url = deployment.gateway_url

    async with aiohttp.ClientSession() as session:
        # The backfill at apply: feature_start_time up to the apply, from the archive, then served.
        jobs = await eventually(lambda: all_succeeded(session, url, admin_key, WS, "tx_count"), 120,
                                "the backfill jobs of tx_count")
        assert {j["trigger"] for j in jobs} == {"backfill"}
        assert sum(j["source_rows"] for j in jobs) == len(archived)
        assert min(j["start"] for j in jobs) == start.isoformat()
        assert max(datetime.fromisoformat(j["end"]) for j in jobs) >= before_apply  # up to the apply time
        assert (await _served(session, url, admin_key))["tx_count.n_30d"] == 2

        # Refusals: beyond the cutoff (the stream's), over the automatic backfill, without a batch source.
        status, answer = await _materialize(session, url, admin_key, "tx_last", start, datetime.now(UTC)
                                            + timedelta(hours=1))
        assert status == 400
        assert "materializes events from" in answer["requestError"]["errorMessage"]
        status, answer = await _materialize(session, url, admin_key, "tx_count", start, before_apply)
        assert status == 400
        assert "overlaps" in answer["requestError"]["errorMessage"]
        status, answer = await _materialize(session, url, admin_key, "click_last", start, before_apply)
        assert status == 400
        assert answer["requestError"]["errorMessage"] == (
            "'click_last' is a stream feature view whose source 'clicks' has no batch source to backfill from")

        # A manual backfill of the attribute view from the CLI.
        code = await asyncio.to_thread(cli.main, [
            "--gateway", url, "--api-key", admin_key, "materialize", "tx_last", "--start", start.isoformat(),
            "--end", before_apply.isoformat(), "--workspace", WS, "--wait", "--timeout", "60"])
        printed = capsys.readouterr().out
        assert code == 0, printed
        assert "SUCCEEDED" in printed
        assert (await _served(session, url, admin_key))["tx_last.last_amount"] == 7.5

        # The stream: an archived event again (the backfill's: dropped) and a new one (counted once).
        again = {"user_id": "u1", "ts": archived[0].isoformat(), "amount": 5.0}
        new = {"user_id": "u1", "ts": datetime.now(UTC).isoformat(), "amount": 1.0}
        await produce_plain(kafka_bootstrap, topic, [json.dumps(again).encode(), json.dumps(new).encode()])

        async def stream_seen() -> dict[str, Any] | None:
            served = await _served(session, url, admin_key)
            # both views' writes of the new event are visible (the count moved off the backfill's 2)
            return served if served["tx_last.last_amount"] == 1.0 and served["tx_count.n_30d"] != 2 else None

        served = await eventually(stream_seen, 60, "the new stream event")
        # One partition, in order: the archived copy was handled before the new event, and not counted.
        assert served["tx_count.n_30d"] == 3
