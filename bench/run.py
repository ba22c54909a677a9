"""`make bench`: every benchmark on this machine, medians of repeated runs, results in bench/results/.

    python -m bench.run [--only ingest|freshness|offline] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.settings import Settings
from bench import offline, online
from deploy.cluster import init_ray, shutdown_ray, start_deployment
from deploy.kafka import REPO_ROOT, BrokerConfig, start_broker
from stores.metadata_key import MetadataKey, write_key_file

RESULTS = REPO_ROOT / "bench" / "results"
WORKDIR = REPO_ROOT / ".state" / "bench"


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "date": datetime.now(UTC).isoformat(timespec="seconds")}


async def _online(only: str | None, quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    folder = WORKDIR / "kafka-state"
    handle = start_broker(BrokerConfig(folder, port=19192, libs_dir=REPO_ROOT / ".state" / "kafka" / "libs-4.4.0"))
    init_ray(WORKDIR, log_to_driver=False)
    key_file = WORKDIR / "metadata.key"
    if not key_file.exists():
        write_key_file(key_file, MetadataKey.generate())
    settings = Settings(bootstrap_servers=handle.bootstrap, state_dir=WORKDIR / "state", gateway_port=0,
                        topic_prefix=f"bench{int(time.time())}", metadata_key_file=key_file)
    deployment = await start_deployment(settings)
    try:
        topic, key = await online.prepare(deployment, WORKDIR)
        if only in (None, "ingest"):
            print("ingest throughput ...", file=sys.stderr, flush=True)
            results["ingest"] = await online.ingest_throughput(deployment, topic, key, 5_000 if quick else 20_000,
                                                               3)
        if only in (None, "freshness"):
            print("freshness ...", file=sys.stderr, flush=True)
            results["freshness"] = await online.freshness(deployment, topic, key, 30 if quick else 200)
    finally:
        await deployment.stop()
        shutdown_ray()
        handle.stop()
    return results


def _markdown(report: dict[str, Any]) -> str:
    lines = ["# featureplane benchmarks", "", f"Machine: {report['machine']}", "",
             "| benchmark | result |", "|---|---|"]
    if "ingest" in report:
        r = report["ingest"]
        lines.append(f"| ingest, source topic → online store (tx + audit on) | {r['events_per_s_median']:.0f} events/s "
                     f"(median of {len(r['events_per_s_all'])} runs of {r['events_per_run']}) |")
    if "freshness" in report:
        r = report["freshness"]
        lines.append(f"| freshness, produced → served | p50 {r['p50_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms, "
                     f"p99 {r['p99_ms']:.1f} ms ({r['samples']} events, one at a time) |")
    if "offline" in report:
        r = report["offline"]
        lines.append(f"| offline get_features_for_events, {r['events']:,} events x {r['feature_rows']:,} rows | "
                     f"{r['seconds_median']:.2f} s median, peak RSS {r['peak_rss_mb']:.0f} MiB |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--only", choices=["ingest", "freshness", "offline"])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a quick look")
    args = parser.parse_args()
    WORKDIR.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine()}
    if args.only in (None, "ingest", "freshness"):
        report.update(asyncio.run(_online(args.only, args.quick)))
    if args.only in (None, "offline"):
        print("offline retrieval ...", file=sys.stderr, flush=True)
        events, rows = (100_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)
        report["offline"] = offline.run(WORKDIR / f"offline-{rows}", events, rows, max(rows // 10, 1), 3)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2, default=str))
    (RESULTS / "latest.md").write_text(_markdown(report))
    print(_markdown(report))
    shutil.rmtree(WORKDIR / "kafka-state", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
