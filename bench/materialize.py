"""Batch materialization: source rows/s from a Parquet batch source into the online AND offline stores.

Feast's side (`feast_peer.FeastPeer.materialize`) runs `FeatureStore.materialize` over the whole history
file into its SQLite online store: ten plain columns (`data.FEATURES`, the three aggregates included as
precomputed columns), entity user_id, timestamp ts. featureplane's side gets the same file and the same
ten columns as attributes of a `BatchFeatureView`, once per compute (Rift in the data plane, then
ExternalCompute in the customer plane: two views of one repo). Without a `feature_start_time` nothing
materializes on its own; one manual trigger covers every row, and the clock runs from the trigger until
the job succeeded, the last user's last row is served and the offline store holds every row. A third,
untimed run repeats the Rift job under py-spy (Rift, the online and the offline store) to show where
the time goes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import polars as pl

from actors.settings import Settings
from bench import data, profiling
from bench.logins import operator_connection, secure_broker_config
from bench.online_run import component_pids
from deploy.client import apply_repo, bootstrap_admin
from deploy.cluster import Deployment, init_ray, shutdown_ray
from deploy.kafka import start_broker
from deploy.supervisor import start_on_local_broker
from stores.metadata_key import MetadataKey, write_key_file
from stores.offline import ParquetOfflineStore

T = TypeVar("T")
WORKSPACE = "materialize"
GET_FEATURES = "/api/v1/feature-service/get-features"
KAFKA_PORT = 19292
TIMEOUT_S = 900.0
# view name -> compute; the profiled run is a third view so that it reads the rows afresh
VIEWS = {"mat_rift": "rift", "mat_external": "external"}
PROFILED_VIEW = "mat_profiled"
PROFILED = ("rift", "online_store", "offline_store")

REPO = '''from datetime import timedelta
from sdk import Attribute, BatchFeatureView, BatchSource, Entity, FeatureService, Field

user = Entity(name="user", join_keys=["user_id"])
history = BatchSource(name="history", path="{path}", timestamp_field="ts", schema=[
    Field("user_id", "string"), Field("ts", "timestamp"), {fields}])
FEATURES = [{attributes}]
'''
VIEW = '''{name} = BatchFeatureView(name="{name}", source=history, entities=[user], features=FEATURES,
                            batch_schedule=timedelta(days=1), compute="{compute}")
svc_{name} = FeatureService(name="svc_{name}", features=[{name}])
'''


def repo_text(history_parquet: Path, views: dict[str, str]) -> str:
    """A repo with one batch view per (name, compute) over the history file: every feature column of
    `data.FEATURES` as an attribute, no `feature_start_time` (nothing is backfilled at apply)."""
    fields = ", ".join(f'Field("{name}", "{dtype}")' for name, dtype in data.FEATURES)
    attributes = ", ".join(f'Attribute("{name}", "{dtype}")' for name, dtype in data.FEATURES)
    text = REPO.format(path=history_parquet.resolve(), fields=fields, attributes=attributes)
    return text + "".join(VIEW.format(name=name, compute=compute) for name, compute in views.items())


def whole_range(history: pl.DataFrame) -> tuple[datetime, datetime]:
    """[start, end) holding every row's ts: the first second, and one second past the last row."""
    first, last = history["ts"].min(), history["ts"].max()
    if not isinstance(first, datetime) or not isinstance(last, datetime):
        raise TypeError("the history's ts column is not a datetime column")
    return first.replace(microsecond=0), last.replace(microsecond=0) + timedelta(seconds=1)


def trigger_body(view: str, window: tuple[datetime, datetime]) -> dict[str, str]:
    return {"workspace": WORKSPACE, "feature_view": view, "start": window[0].isoformat(),
            "end": window[1].isoformat()}


def last_row(history: pl.DataFrame) -> tuple[str, list[Any]]:
    """The user whose row comes last (history is sorted by user_id, ts) and that row's feature values:
    what get-features serves once every row of a job is online."""
    row = history.row(history.height - 1, named=True)
    return row["user_id"], [row[name] for name, _ in data.FEATURES]


def job_progress(jobs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The view's one manual job once it succeeded; None while it runs; raises if it was abandoned."""
    for job in jobs:
        if job["state"] == "abandoned":
            raise RuntimeError(f"materialization job abandoned: {job.get('error')}")
        if job["state"] == "succeeded":
            return job
    return None


def rates(source_rows: int, marks: dict[str, float]) -> dict[str, Any]:
    """rows/s over the whole run (the last of the marks, seconds since the trigger), rows/s until the
    online store alone had them, and the marks."""
    seconds = max(marks.values())
    result = {"source_rows": source_rows, "seconds": round(seconds, 3), "rows_per_s": source_rows / seconds,
              "marks_s": {name: round(value, 3) for name, value in marks.items()}}
    if "online_complete" in marks:  # what Feast's materialize covers: the online store alone
        result["online_rows_per_s"] = source_rows / marks["online_complete"]
    return result


@dataclass
class _Run:
    deployment: Deployment
    http: aiohttp.ClientSession
    key: str
    offline: ParquetOfflineStore
    history: pl.DataFrame

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}

    async def trigger(self, view: str) -> None:
        body = json.dumps(trigger_body(view, whole_range(self.history)))
        async with self.http.post(f"{self.deployment.gateway_url}/api/v1/materialize", data=body,
                                  headers=self._headers()) as resp:
            if resp.status != 202:
                raise RuntimeError(f"materialize {view}: {resp.status} {await resp.text()}")

    async def job_done(self, view: str) -> dict[str, Any] | None:
        async with self.http.get(f"{self.deployment.gateway_url}/api/v1/jobs", headers=self._headers(),
                                 params={"workspace": WORKSPACE, "feature_view": view}) as resp:
            return job_progress((await resp.json())["jobs"]) if resp.status == 200 else None

    async def served(self, view: str) -> bool | None:
        user, values = last_row(self.history)
        body = json.dumps({"params": {"workspace_name": WORKSPACE, "feature_service_name": f"svc_{view}",
                                      "join_key_map": {"user_id": user}}})
        async with self.http.post(f"{self.deployment.gateway_url}{GET_FEATURES}", data=body,
                                  headers=self._headers()) as resp:
            return True if resp.status == 200 and (await resp.json())["result"]["features"] == values else None

    async def offline_complete(self, view: str) -> bool | None:
        rows = await asyncio.to_thread(lambda: self.offline.scan(WORKSPACE, view).select(pl.len()).collect().item())
        return True if rows >= self.history.height else None

    async def timed(self, view: str) -> dict[str, Any]:
        """Trigger, then seconds since the trigger until each of: job succeeded, served, offline complete."""
        began = time.perf_counter()
        await self.trigger(view)
        marks: dict[str, float] = {}
        job = await until(lambda: self.job_done(view), 0.05, f"{view}'s job")
        marks["job_succeeded"] = time.perf_counter() - began
        online, offline = until(lambda: self.served(view), 0.02, f"{view}'s last row online"), \
            until(lambda: self.offline_complete(view), 0.05, f"{view}'s rows offline")

        async def mark(name: str, waiting: Awaitable[Any]) -> None:
            await waiting
            marks[name] = time.perf_counter() - began

        await asyncio.gather(mark("online_complete", online), mark("offline_complete", offline))
        result = rates(self.history.height, marks)
        result["job"] = {k: job[k] for k in ("source_rows", "rows_written", "attempt", "compute")}
        return result


async def until(check: Callable[[], Awaitable[T | None]], every_s: float, what: str,
                timeout_s: float = TIMEOUT_S) -> T:
    """`check`'s first answer that is not None. It waits at least as long as the last check took between
    checks, so polling (an offline scan of thousands of files at full size) never takes more than half a
    core from the system it measures."""
    deadline = time.monotonic() + timeout_s
    while True:
        began = time.monotonic()
        if (found := await check()) is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        await asyncio.sleep(max(every_s, time.monotonic() - began))


async def _profiled(run: _Run, workdir: Path) -> dict[str, Any]:
    """The Rift job once more (untimed) with py-spy on the processes it keeps busy; hot spots of each."""
    pids = await component_pids(run.deployment)
    wanted = {kind: next(pid for name, pid in pids.items() if name.endswith(f"-{kind}-0")) for kind in PROFILED}
    outs = {kind: workdir / f"profile-materialize-{kind}.txt" for kind in wanted}
    recordings = {kind: profiling.start_recording(pid, outs[kind]) for kind, pid in wanted.items()}
    try:
        timing = await run.timed(PROFILED_VIEW)
    finally:
        collapsed = {kind: profiling.stop_recording(rec, outs[kind]) for kind, rec in recordings.items()}
    spots = {kind: profiling.hot_spots(text) for kind, text in collapsed.items() if text}
    return {"timing_under_profiler": timing, "hot_spots": spots}


async def _measure(history_parquet: Path, workdir: Path, say: Callable[[str], None], profile: bool) -> dict[str, Any]:
    history = pl.read_parquet(history_parquet)
    broker_cfg = secure_broker_config(workdir / "kafka-state-materialize", workdir / "state", KAFKA_PORT)
    broker = start_broker(broker_cfg)
    init_ray(workdir, log_to_driver=False)
    try:
        key_file = workdir / "metadata.key"
        if not key_file.exists():
            write_key_file(key_file, MetadataKey.generate())
        settings = Settings(bootstrap_servers=broker.bootstrap, state_dir=workdir / "state", gateway_port=0,
                            topic_prefix=f"benchmat{int(time.time())}", metadata_key_file=key_file)
        deployment = await start_on_local_broker(broker_cfg, settings)
        try:
            conn = operator_connection(deployment)
            key = await bootstrap_admin(conn, None)
            folder = workdir / f"materialize-repo-{settings.topic_prefix}"
            folder.mkdir(parents=True, exist_ok=True)
            views = {**VIEWS, PROFILED_VIEW: "rift"} if profile else dict(VIEWS)
            (folder / "features.py").write_text(repo_text(history_parquet, views))
            await asyncio.to_thread(apply_repo, conn, folder, WORKSPACE, key)
            results: dict[str, Any] = {"source_rows": history.height}
            with ParquetOfflineStore(settings.store_dir("offline_store-0"), readonly=True) as offline:
                async with aiohttp.ClientSession() as http:
                    run = _Run(deployment, http, key, offline, history)
                    for view, compute in VIEWS.items():
                        say(f"  featureplane materialize on {compute} ({history.height:,} rows) ...")
                        results[compute] = await run.timed(view)
                        say(f"    {results[compute]['rows_per_s']:,.0f} rows/s ({results[compute]['marks_s']})")
                    if profile:
                        say("  once more on rift under py-spy (rift, online store, offline store) ...")
                        results["profile"] = await _profiled(run, workdir)
            return results
        finally:
            await deployment.stop()
    finally:
        shutdown_ray()
        broker.stop()
        shutil.rmtree(workdir / "kafka-state-materialize", ignore_errors=True)


def featureplane_rows_per_s(history_parquet: Path, workdir: Path, say: Callable[[str], None] = print,
                            profile: bool = True) -> dict[str, Any]:
    """{"source_rows", "rift": {...}, "external": {...}, "profile": {...}}: each compute's seconds from the
    trigger until online and offline hold every row, rows/s, and when each stage finished."""
    return asyncio.run(_measure(history_parquet, workdir, say, profile))
