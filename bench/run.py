"""`make bench`: every benchmark on this machine, featureplane and Feast side by side in the same run;
results in bench/results/latest.json and latest.md. Progress goes to stderr.

    python -m bench.run [--only NAME ...] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import data, feast_peer, materialize, report, startup
from bench.feast_peer import FeastPeer
from bench.online_run import OnlinePlan, run_online
from deploy.kafka import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"
WORKDIR = REPO_ROOT / ".state" / "bench"
FEAST_VENV = REPO_ROOT / ".state" / "feast-venv"
BENCHMARKS = ("startup", "ingest", "freshness", "online", "materialize", "offline", "offline-feast")
FEAST_NEEDED = {"online", "materialize", "offline-feast"}


@dataclass(frozen=True)
class Sizes:
    online_users: int  # users whose events are streamed into featureplane and read by the load generator
    events_per_user: int
    history_users: int  # the feature table both systems get (Feast materializes all of it)
    rows_per_user: int
    concurrencies: tuple[int, ...]
    duration_s: float  # per load point and repeat
    repeats: int
    startup_repeats: int
    ingest_events: int
    freshness_samples: int
    offline_events: int  # offline at scale: events x rows
    offline_rows: int
    side_events: int  # offline side by side: events against the history table
    profile_s: float


QUICK = Sizes(online_users=1_000, events_per_user=2, history_users=4_000, rows_per_user=5, concurrencies=(1, 16),
              duration_s=1.5, repeats=1, startup_repeats=1, ingest_events=5_000, freshness_samples=30,
              offline_events=100_000, offline_rows=1_000_000, side_events=100_000, profile_s=3)
FULL = Sizes(online_users=10_000, events_per_user=3, history_users=40_000, rows_per_user=10,
             concurrencies=(1, 4, 16, 32), duration_s=4, repeats=3, startup_repeats=2, ingest_events=100_000,
             freshness_samples=200, offline_events=1_000_000, offline_rows=10_000_000, side_events=1_000_000,
             profile_s=8)


def say(text: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "date": datetime.now(UTC).isoformat(timespec="seconds")}


def _subprocess_json(argv: list[str]) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed:\n{done.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def run_startup(sizes: Sizes) -> dict[str, Any]:
    runs = []
    for i in range(sizes.startup_repeats):
        say(f"start-up: featureplane up → ready ({i + 1}/{sizes.startup_repeats}) ...")
        runs.append(startup.once(WORKDIR, gateway_port=18380, kafka_port=19392))
        say(f"  ready in {runs[-1]['ready_s']:.1f} s, {runs[-1]['rss_mib']['total']:.0f} MiB RSS")
    middle = sorted(runs, key=lambda r: r["ready_s"])[len(runs) // 2]
    return {"ready_s_median": statistics.median(r["ready_s"] for r in runs),
            "ready_s_all": [r["ready_s"] for r in runs], "rss_mib": middle["rss_mib"]}


def run_offline_scale(sizes: Sizes) -> dict[str, Any]:
    say(f"offline at scale: {sizes.offline_events:,} events x {sizes.offline_rows:,} rows (own process) ...")
    return _subprocess_json([sys.executable, "-m", "bench.offline", str(WORKDIR / f"offline-{sizes.offline_rows}"),
                             str(sizes.offline_events), str(sizes.offline_rows),
                             str(max(sizes.offline_rows // 10, 1)), "3"])


def run_offline_side(sizes: Sizes, peer: FeastPeer, history_path: Path) -> dict[str, Any]:
    events_path = WORKDIR / f"events-{sizes.side_events}.parquet"
    data.entity_events(sizes.side_events, sizes.history_users).write_parquet(events_path)
    repeats = 3 if sizes.side_events < 1_000_000 else 2
    say(f"offline side by side: featureplane, {sizes.side_events:,} events x {history_path.stem} (own process) ...")
    store = WORKDIR / f"offline-side-{sizes.history_users}x{sizes.rows_per_user}"
    shutil.rmtree(store, ignore_errors=True)
    ours = _subprocess_json([sys.executable, "-m", "bench.offline_side", str(store), str(history_path),
                             str(events_path), str(repeats)])
    say(f"  {ours['seconds_median']:.2f} s; Feast get_historical_features (its venv) ...")
    theirs = peer.historical(events_path, repeats)
    say(f"  {theirs['seconds_median']:.2f} s (+{theirs['import_s']:.1f} s import)")
    if ours["matched"] != theirs["matched"]:
        say(f"  note: featureplane matched {ours['matched']:,} events, Feast {theirs['matched']:,}")
    return {"history_rows": sizes.history_users * sizes.rows_per_user, "featureplane": ours, "feast": theirs}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="run only this one (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few minutes")
    args = parser.parse_args()
    selected = tuple(args.only or BENCHMARKS)
    sizes = QUICK if args.quick else FULL
    WORKDIR.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    result: dict[str, Any] = {"machine": machine(), "mode": "quick" if args.quick else "full",
                              "sizes": asdict(sizes), "load_before": round(os.getloadavg()[0], 2)}
    peer = history_path = history = None
    if FEAST_NEEDED & set(selected):
        result["feast_version"] = feast_peer.FEAST_VERSION
        peer = FeastPeer(FEAST_VENV, WORKDIR / "feast-repo")
        history = data.history(sizes.history_users, sizes.rows_per_user)
        history_path = peer.write_repo(history, data.FEATURES)
        say(f"feast apply ({history.height:,} feature rows) ...")
        result["feast_apply_s"] = peer.apply()
        say("feast materialize (all history rows into SQLite) ...")
        feast_mat = peer.materialize()
        say(f"  {feast_mat['rows_per_s']:,.0f} rows/s")
        if "materialize" in selected:
            say("featureplane materialize (the same rows into its online and offline stores, own broker) ...")
            result["materialize"] = {"feast": feast_mat, "featureplane": materialize.featureplane_rows_per_s(
                history_path, WORKDIR, say, profile=sizes.profile_s > 0)}
    if "startup" in selected:
        result["startup"] = run_startup(sizes)
    if {"ingest", "freshness", "online"} & set(selected):
        plan = OnlinePlan(selected, sizes.online_users, sizes.events_per_user, sizes.concurrencies, sizes.duration_s,
                          sizes.repeats, sizes.ingest_events, sizes.freshness_samples, sizes.profile_s)
        result.update(asyncio.run(run_online(plan, WORKDIR, say, history, peer)))
    if "offline" in selected:
        result["offline"] = run_offline_scale(sizes)
    if "offline-feast" in selected and peer is not None and history_path is not None:
        result["offline_vs_feast"] = run_offline_side(sizes, peer, history_path)
    result["load_after"] = round(os.getloadavg()[0], 2)
    result["seconds"] = round(time.perf_counter() - began, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2, default=str))
    (RESULTS / "latest.md").write_text(report.render(result))
    print(report.render(result))
    say(f"done in {result['seconds']:.0f} s: bench/results/latest.json, latest.md")
    shutil.rmtree(WORKDIR / "kafka-state", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
