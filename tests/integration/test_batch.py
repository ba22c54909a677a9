"""Batch materialization through the real Kafka + Ray path: backfill at apply, a manual trigger, and a
view whose jobs run on ExternalCompute in the customer plane."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
import pytest

from deploy import cli
from deploy.cluster import Deployment
from tests.integration.helpers import apply, auth, eventually, get_features, operator_connection

pytestmark = pytest.mark.integration

REPO = '''
from datetime import UTC, datetime, timedelta
from sdk import Attribute, BatchFeatureView, BatchSource, Entity, FeatureService, Field

user = Entity(name="user", join_keys=["user_id"])
purchases = BatchSource(name="purchases", path="{path}", timestamp_field="ts",
                        schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "float64")])
START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
SQL = "SELECT user_id, ts, amount * 2 AS doubled FROM source"
spend = BatchFeatureView(name="spend", source=purchases, entities=[user],
                         features=[Attribute("doubled", "float64")], transformation=SQL,
                         batch_schedule=DAY, feature_start_time=START)
spend_ext = BatchFeatureView(name="spend_ext", source=purchases, entities=[user],
                             features=[Attribute("amount", "float64", name="ext_amount")],
                             batch_schedule=DAY, feature_start_time=START, compute="external")
spend_manual = BatchFeatureView(name="spend_manual", source=purchases, entities=[user],
                                features=[Attribute("amount", "float64", name="manual_amount")], batch_schedule=DAY)
svc = FeatureService(name="spend_svc", features=[spend, spend_ext, spend_manual])
'''

ROWS = [("u1", datetime(2026, 1, 1, 10, tzinfo=UTC), 5.0), ("u1", datetime(2026, 1, 2, 10, tzinfo=UTC), 7.5),
        ("u2", datetime(2026, 1, 3, 9, tzinfo=UTC), 1.25)]


def write_source(folder: Path) -> Path:
    path = folder / "purchases.parquet"
    pl.DataFrame({"user_id": [r[0] for r in ROWS], "ts": [r[1] for r in ROWS], "amount": [r[2] for r in ROWS]}
                 ).write_parquet(path)
    return path


async def jobs_of(session: aiohttp.ClientSession, url: str, key: str, workspace: str, view: str) -> list[Any]:
    async with session.get(f"{url}/api/v1/jobs", params={"workspace": workspace, "feature_view": view},
                           headers=auth(key)) as resp:
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["jobs"])


async def all_succeeded(session: aiohttp.ClientSession, url: str, key: str, workspace: str,
                        view: str) -> list[Any] | None:
    jobs = await jobs_of(session, url, key, workspace, view)
    failed = [j for j in jobs if j["state"] in ("failed", "abandoned")]
    assert not failed, failed
    return jobs if jobs and all(j["state"] == "succeeded" for j in jobs) else None


def offline_rows(deployment: Deployment, workspace: str, view: str) -> pl.DataFrame:
    root = deployment.settings.store_dir("offline_store-0") / "data" / f"workspace={workspace}"
    return pl.read_parquet(root / f"feature_view={view}" / "**" / "*.parquet").sort("event_time")


async def test_backfill_manual_trigger_and_external_compute(deployment: Deployment, admin_key: str,
                                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conn = operator_connection(deployment)
    url, workspace = deployment.gateway_url, "batchws"
    repo = tmp_path / "repo"
    repo.mkdir()
    source_path = write_source(tmp_path)
    (repo / "features.py").write_text(REPO.format(path=source_path))
    await apply(conn, repo, workspace, admin_key)

    async with aiohttp.ClientSession() as session:
        # The backfill from feature_start_time is split into jobs that all succeed, on both computes.
        for view in ("spend", "spend_ext"):
            jobs = await eventually(lambda v=view: all_succeeded(session, url, admin_key, workspace, v), 120,
                                    f"the backfill jobs of {view}")
            assert {j["trigger"] for j in jobs} == {"backfill"}
            assert {j["compute"] for j in jobs} == {"rift" if view == "spend" else "external"}
            assert sum(j["source_rows"] for j in jobs) == len(ROWS)
            ordered = sorted(jobs, key=lambda j: j["start"])
            assert ordered[0]["start"] == "2026-01-01T00:00:00+00:00"
            assert all(a["end"] == b["start"] for a, b in itertools.pairwise(ordered))  # no gaps
        assert await jobs_of(session, url, admin_key, workspace, "spend_manual") == []  # no start time: manual

        # A manual trigger over HTTP, then the same range again is refused (it would write twice).
        body = {"workspace": workspace, "feature_view": "spend_manual", "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-03T00:00:00Z"}
        async with session.post(f"{url}/api/v1/materialize", data=json.dumps(body), headers=auth(admin_key)) as resp:
            assert resp.status == 202, await resp.text()
            assert [j["state"] for j in (await resp.json())["jobs"]] == ["queued"]
        manual = await eventually(lambda: all_succeeded(session, url, admin_key, workspace, "spend_manual"), 60,
                                  "the manual job")
        assert [(j["trigger"], j["source_rows"], j["rows_written"]) for j in manual] == [("manual", 2, 2)]
        async with session.post(f"{url}/api/v1/materialize", data=json.dumps(body), headers=auth(admin_key)) as resp:
            assert resp.status == 400
            assert "overlaps" in (await resp.json())["requestError"]["errorMessage"]

        status, answer = await get_features(session, url, workspace, "spend_svc", {"user_id": "u1"}, admin_key)
        assert status == 200, answer
        served = dict(zip([f["name"] for f in answer["metadata"]["features"]], answer["result"]["features"],
                          strict=True))
        assert served == {"spend.doubled": 15.0, "spend_ext.ext_amount": 7.5, "spend_manual.manual_amount": 7.5}
        status, answer = await get_features(session, url, workspace, "spend_svc", {"user_id": "u2"}, admin_key)
        assert answer["result"]["features"] == [2.5, 1.25, None]  # u2's row is after the manual range

        # Lineage of a value a Rift job wrote: the batch file and the rows the job read (F6).
        lineage = {"params": {"workspace_name": workspace, "feature_service_name": "spend_svc",
                              "join_key_map": {"user_id": "u1"}}}
        async with session.post(f"{url}/api/v1/lineage", json=lineage, headers=auth(admin_key)) as resp:
            assert resp.status == 200, await resp.text()
            chains = {c["feature_view"]: c for c in (await resp.json())["lineage"]}
        reads = chains["spend"]["sources"]  # the backfill's jobs that read rows (they share a correlation)
        assert reads
        assert {(r["flow"], r["topic"]) for r in reads} == {("F6", str(source_path))}
        assert all(0 <= r["first_offset"] <= r["last_offset"] < len(ROWS) and r["rows"] > 0 for r in reads)

        # The CLI triggers the next range and waits for it; `featureplane jobs` lists both manual jobs.
        cli_args = ["--gateway", url, "--api-key", admin_key]
        code = await asyncio.to_thread(cli.main, [*cli_args, "materialize", "spend_manual", "--start", "2026-01-03",
                                                  "--end", "2026-01-05", "--workspace", workspace, "--wait",
                                                  "--timeout", "60"])
        printed = capsys.readouterr().out
        assert code == 0, printed
        assert "SUCCEEDED" in printed
        assert "read 1 rows, wrote 1 rows" in printed
        status, answer = await get_features(session, url, workspace, "spend_svc", {"user_id": "u2"}, admin_key)
        assert answer["result"]["features"] == [2.5, 1.25, 1.25]
        assert await asyncio.to_thread(cli.main, [*cli_args, "jobs", "--workspace", workspace,
                                                  "--feature-view", "spend_manual"]) == 0
        listed = capsys.readouterr()
        assert listed.out.count("spend_manual") == 2
        assert "2 job(s) in workspace 'batchws': 2 succeeded" in listed.err

    # Offline: every source row once, transformed, through the same writes as stream materialization.
    offline = await eventually(lambda: _rows_when(deployment, workspace, "spend", len(ROWS)), 60, "offline rows")
    assert offline["user_id"].to_list() == ["u1", "u1", "u2"]
    assert offline["doubled"].to_list() == [10.0, 15.0, 2.5]


async def _rows_when(deployment: Deployment, workspace: str, view: str, count: int) -> pl.DataFrame | None:
    try:
        rows = offline_rows(deployment, workspace, view)
    except (FileNotFoundError, pl.exceptions.ComputeError):
        return None
    return rows if rows.height >= count else None
