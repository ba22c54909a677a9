"""The benchmarks that need a running deployment: ingest and freshness (bench/online.py) and online serving
(bench/serving.py), featureplane with its serving cache on and then off (two deployments on one broker),
then Feast's feature server on the same keys, never both servers at once."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from actors.settings import Settings
from bench import data, online, processes, profiling, serving
from bench.feast_peer import FeastPeer, online_body
from bench.loadgen import closed_loop, open_loop
from bench.logins import secure_broker_config
from deploy.cluster import Deployment, init_ray, shutdown_ray
from deploy.kafka import BrokerConfig, BrokerHandle, start_broker
from deploy.supervisor import start_on_local_broker
from stores.metadata_key import MetadataKey, write_key_file

BATCH = 100
FEAST_PORT = 16566
CACHED = b"CACHED_PRESENT"


@dataclass(frozen=True)
class OnlinePlan:
    selected: Sequence[str]
    users: int
    events_per_user: int
    concurrencies: tuple[int, ...]
    duration_s: float
    repeats: int
    ingest_events: int
    freshness_samples: int
    profile_s: float


async def _deploy(broker_cfg: BrokerConfig, handle: BrokerHandle, workdir: Path, cache_max_age_s: float) -> Deployment:
    key_file = workdir / "metadata.key"
    if not key_file.exists():
        write_key_file(key_file, MetadataKey.generate())
    settings = Settings(bootstrap_servers=handle.bootstrap, state_dir=workdir / "state", gateway_port=0,
                        topic_prefix=f"bench{int(time.time())}", metadata_key_file=key_file,
                        serving_cache_max_age_s=cache_max_age_s)
    return await start_on_local_broker(broker_cfg, settings)


async def component_pids(deployment: Deployment) -> dict[str, int]:
    """Each actor's process id, asked of the actor itself."""
    return {name: await handle.__ray_call__.remote(lambda _actor: os.getpid())
            for name, handle in deployment.handles.items()}


def component_rss(pids: dict[str, int], broker_pid: int) -> dict[str, float]:
    """RSS in MiB of each actor, the broker, and the rest of Ray (runtime processes) started by this process."""
    named = {pid: name.split("-", 1)[1] for name, pid in pids.items()}
    named[broker_pid] = "kafka broker"
    sums: dict[str, float] = {}
    for pid in processes.descendants(os.getpid()):
        kind = named.get(pid) or processes.kind_of(processes.command(pid))
        sums[kind] = sums.get(kind, 0.0) + processes.rss_mib(pid)
    result = {k: round(v, 1) for k, v in sorted(sums.items())}
    result["total"] = round(sum(sums.values()), 1)
    return result


async def _profile(url: str, bodies: list[bytes], key: str, pid: int, seconds: float,
                   out: Path) -> dict[str, Any] | None:
    recording = asyncio.create_task(asyncio.to_thread(profiling.record, pid, seconds, out))
    await closed_loop(url, bodies, 16, duration_s=seconds + 1, headers={"Authorization": f"Bearer {key}"})
    collapsed = await recording
    return profiling.hot_spots(collapsed) if collapsed else None


async def _serving(plan: OnlinePlan, deployment: Deployment, workdir: Path, events: list[dict[str, Any]],
                   user_ids: list[str], say: Callable[[str], None], label: str, key: str | None) -> dict[str, Any]:
    say(f"featureplane {label}: {len(events):,} events through the source topic ...")
    key = await serving.load_data(deployment, workdir, events, key)
    url = deployment.gateway_url
    single, batch = serving.single_bodies(user_ids, True), serving.batch_bodies(user_ids, BATCH)
    say(f"  warming (every key once, {BATCH} a request: batch reads fill the cache too), then single-key "
        f"load ({label}) ...")
    warm = await closed_loop(url + serving.GET_FEATURES_BATCH, batch, 2, duration_s=120, max_requests=len(batch),
                             headers={"Authorization": f"Bearer {key}"})
    if warm.errors:
        raise RuntimeError(f"warming failed: {warm.first_error}")
    points = await serving.measure(url + serving.GET_FEATURES, single, key, plan.concurrencies, plan.duration_s,
                                   plan.repeats, marker=CACHED)
    hit_rate = sum(p["marked"] for p in points) / max(1, sum(p["requests"] for p in points)) / \
        serving.FEATURES_PER_KEY
    peak = max(p["requests_per_s"] for p in points)
    say(f"  open loop at half the peak ({peak / 2:.0f} req/s) ...")
    half = await open_loop(url + serving.GET_FEATURES, single, peak / 2, duration_s=max(plan.duration_s, 3),
                           headers={"Authorization": f"Bearer {key}"})
    half_point = {**half.summary(), "rate_per_s": peak / 2}
    say(f"  cache hit rate {hit_rate * 100:.1f} %; batch of {BATCH} keys ({label}) ...")
    batch_points = await serving.measure(url + serving.GET_FEATURES_BATCH, batch, key, plan.concurrencies,
                                         plan.duration_s, plan.repeats, items_per_request=BATCH)
    pids = await component_pids(deployment)
    gateway_pid = next(pid for name, pid in pids.items() if "feature_server" in name)
    say(f"  profiling the gateway (py-spy, {plan.profile_s:.0f} s) ...")
    spots = await _profile(url + serving.GET_FEATURES, single, key, gateway_pid, plan.profile_s,
                           workdir / f"profile-{label.replace(' ', '-')}.txt")
    return {"single": points, "batch": batch_points, "hit_rate": hit_rate, "pids": pids, "profile": spots,
            "half_peak": half_point}


async def _feast(plan: OnlinePlan, peer: FeastPeer, user_ids: list[str],
                 say: Callable[[str], None]) -> dict[str, Any]:
    single = [online_body([u]) for u in user_ids]
    batch = [online_body(user_ids[i:i + BATCH]) for i in range(0, len(user_ids) - BATCH + 1, BATCH)]
    with peer.serve(FEAST_PORT) as (url, _pid):
        say("Feast single-key load (feast serve) ...")
        points = await serving.measure(url + "/get-online-features", single, None, plan.concurrencies,
                                       plan.duration_s, plan.repeats)
        say(f"Feast batch of {BATCH} entities ...")
        batch_points = await serving.measure(url + "/get-online-features", batch, None, plan.concurrencies,
                                             plan.duration_s, plan.repeats, items_per_request=BATCH)
    return {"single": points, "batch": batch_points}


async def run_online(plan: OnlinePlan, workdir: Path, say: Callable[[str], None], history: pl.DataFrame | None,
                     peer: FeastPeer | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    # A fresh broker each run (one left by an interrupted run may have been formatted without SASL users).
    shutil.rmtree(workdir / "kafka-state", ignore_errors=True)
    broker_cfg = secure_broker_config(workdir / "kafka-state", workdir / "state", 19192)
    handle = start_broker(broker_cfg)
    init_ray(workdir, log_to_driver=False)
    serving_on = serving_off = key = None
    user_ids = [data.user_id(i) for i in range(plan.users)]
    try:
        deployment = await _deploy(broker_cfg, handle, workdir, 60.0)
        try:
            if {"ingest", "freshness"} & set(plan.selected):
                topic, key = await online.prepare(deployment, workdir)
                if "ingest" in plan.selected:
                    say(f"ingest throughput ({plan.ingest_events:,} events x 3) ...")
                    results["ingest"] = await online.ingest_throughput(deployment, topic, key, plan.ingest_events, 3)
                if "freshness" in plan.selected:
                    say(f"freshness ({plan.freshness_samples} events, one at a time) ...")
                    results["freshness"] = await online.freshness(deployment, topic, key, plan.freshness_samples)
            if "online" in plan.selected and history is not None:
                events = data.stream_events(history, plan.users, plan.events_per_user, datetime.now(UTC))
                serving_on = await _serving(plan, deployment, workdir, events, user_ids, say, "cache on", key)
                serving_on["rss"] = component_rss(serving_on.pop("pids"), handle.pid)
        finally:
            await deployment.stop()
        if serving_on is not None and history is not None:
            deployment = await _deploy(broker_cfg, handle, workdir, 0.0)
            try:
                events = data.stream_events(history, plan.users, plan.events_per_user, datetime.now(UTC))
                serving_off = await _serving(plan, deployment, workdir, events, user_ids, say, "cache off", None)
            finally:
                await deployment.stop()
    finally:
        shutdown_ray()
        handle.stop()
    if serving_on is not None and serving_off is not None and peer is not None:
        feast = await _feast(plan, peer, user_ids, say)
        results["online"] = {
            "concurrencies": list(plan.concurrencies), "batch_size": BATCH, "users": plan.users,
            "single_cache_on": serving_on["single"], "single_cache_off": serving_off["single"],
            "batch_cache_on": serving_on["batch"], "batch_cache_off": serving_off["batch"],
            "feast_single": feast["single"], "feast_batch": feast["batch"],
            "half_peak_cache_on": serving_on["half_peak"], "half_peak_cache_off": serving_off["half_peak"],
            "cache_hit_rate": serving_on["hit_rate"], "cache_off_hit_rate": serving_off["hit_rate"],
            "component_rss_mib": serving_on["rss"],
            "profile": {k: v for k, v in (("cache on", serving_on["profile"]),
                                          ("cache off", serving_off["profile"])) if v},
        }
    return results
