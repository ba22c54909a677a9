"""The Markdown table of a benchmark report (pure: the report dict in, text out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.stats import ratio

REFERENCE_CONCURRENCY = 16


def _num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _times(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}x" if value < 1 else f"{value:.1f}x"


def point_at(points: Sequence[dict[str, Any]], concurrency: int) -> dict[str, Any] | None:
    """The load point at `concurrency`, else the one at the highest concurrency measured."""
    if not points:
        return None
    exact = [p for p in points if p["concurrency"] == concurrency]
    return exact[0] if exact else max(points, key=lambda p: p["concurrency"])


def _field(point: dict[str, Any] | None, name: str) -> float | None:
    return None if point is None else point.get(name)


def _latency(point: dict[str, Any] | None) -> str:
    if point is None or "p50_ms" not in point:
        return "—"
    return f"p50 {point['p50_ms']:.2f} / p99 {point['p99_ms']:.2f} ms"


def _serving_row(label: str, ours: list[dict[str, Any]], theirs: list[dict[str, Any]], unit: str, field: str,
                 target: str) -> str:
    mine = point_at(ours, REFERENCE_CONCURRENCY)
    peer = point_at(theirs, mine["concurrency"]) if mine else None
    c = f" (c={mine['concurrency']})" if mine else ""
    return (f"| {label}{c} | {_num(_field(mine, field))} {unit}, {_latency(mine)} | "
            f"{_num(_field(peer, field))} {unit}, {_latency(peer)} | "
            f"{_times(ratio(_field(mine, field), _field(peer, field)))} | {target} |")


def summary_rows(report: dict[str, Any]) -> list[str]:
    rows = ["| workload | featureplane | Feast (same run) | ratio | target |", "|---|---|---|---|---|"]
    online = report.get("online")
    if online:
        rows.append(_serving_row("online single key, cache on", online["single_cache_on"],
                                 online["feast_single"], "req/s", "requests_per_s", "≥ 10x req/s"))
        rows.append(_serving_row("online single key, cache off", online["single_cache_off"],
                                 online["feast_single"], "req/s", "requests_per_s", "p50 ≤ 5 ms, p99 ≤ 20 ms"))
        rows.append(_serving_row(f"online batch of {online['batch_size']} keys", online["batch_cache_off"],
                                 online["feast_batch"], "entities/s", "items_per_s", "≥ 5x entities/s"))
    for label, name, target in (("cache on", "half_peak_cache_on", "p50 ≤ 1 ms, p99 ≤ 5 ms"),
                                ("cache off", "half_peak_cache_off", "p50 ≤ 5 ms, p99 ≤ 20 ms")):
        point = online.get(name) if online else None
        if point:
            rows.append(f"| online single key, {label}, open loop at half our peak ({point['rate_per_s']:,.0f} req/s) "
                        f"| {_latency(point)} | — | — | {target} |")
    if "ingest" in report:
        rows.append(f"| ingest, source topic → online store (tx + audit) | "
                    f"{_num(report['ingest']['events_per_s_median'])} events/s | — | — | ≥ 50,000 events/s |")
    if "freshness" in report:
        r = report["freshness"]
        rows.append(f"| freshness, produced → served | p50 {r['p50_ms']:.0f} / p99 {r['p99_ms']:.0f} ms | — | — | "
                    "p50 ≤ 50 ms, p99 ≤ 150 ms |")
    if "materialize" in report:
        rows += materialize_rows(report["materialize"])
    if "offline" in report:
        r = report["offline"]
        rows.append(f"| offline, {r['events']:,} events x {r['feature_rows']:,} rows | {r['seconds_median']:.2f} s, "
                    f"peak RSS {r['peak_rss_mb']:,.0f} MiB | — | — | ≤ 5 s |")
    if "offline_vs_feast" in report:
        r = report["offline_vs_feast"]
        ours, peer = r["featureplane"], r["feast"]
        rows.append(f"| offline, {ours['events']:,} events x {r['history_rows']:,} rows (Feast's data) | "
                    f"{ours['seconds_median']:.2f} s (+{ours['import_s']:.1f} s import), "
                    f"{ours['peak_rss_mb']:,.0f} MiB | {peer['seconds_median']:.2f} s (+{peer['import_s']:.1f} s "
                    f"import), {peer['peak_rss_mb']:,.0f} MiB | "
                    f"{_times(ratio(peer['seconds_median'], ours['seconds_median']))} faster | ≥ 5x faster |")
    if "startup" in report:
        r = report["startup"]
        rows.append(f"| start-up, `featureplane up` → ready | {r['ready_s_median']:.1f} s, "
                    f"{r['rss_mib']['total'] / 1024:.2f} GiB RSS in all | — | — | ≤ 30 s, ≤ 3 GiB |")
    return rows


COMPUTES = (("rift", "Rift"), ("external", "ExternalCompute"))


def materialize_rows(result: dict[str, Any]) -> list[str]:
    """Summary rows: one per compute, featureplane's rows/s (trigger → every row online and offline)
    against Feast's (materialize into SQLite online) on the same source rows."""
    ours, peer = result["featureplane"], result["feast"]
    measured = [(name, label, ours[name]) for name, label in COMPUTES if name in ours]
    if not measured:
        return [f"| batch materialization, {peer['source_rows']:,} source rows | "
                f"{ours.get('status', 'not measured')} | {_num(peer['rows_per_s'])} rows/s | — | ≥ 10x rows/s |"]
    return [f"| batch materialization on {label}, {mine['source_rows']:,} source rows → online + offline | "
            f"{_num(mine['rows_per_s'])} rows/s ({mine['seconds']:.2f} s; online alone "
            f"{_num(mine.get('online_rows_per_s'))} rows/s) | {_num(peer['rows_per_s'])} rows/s "
            f"({peer['seconds']:.2f} s, online only) | {_times(ratio(mine['rows_per_s'], peer['rows_per_s']))} | "
            "≥ 10x rows/s |" for _, label, mine in measured]


def materialize_details(ours: dict[str, Any]) -> list[str]:
    """When each stage finished (seconds after the trigger) and the profiled run's hot spots."""
    lines = ["| compute | job succeeded | last row online | all rows offline | rows/s |", "|---|---|---|---|---|"]
    for name, label in COMPUTES:
        if name in ours:
            marks = ours[name]["marks_s"]
            lines.append(f"| {label} | {marks['job_succeeded']:.2f} s | {marks['online_complete']:.2f} s | "
                         f"{marks['offline_complete']:.2f} s | {_num(ours[name]['rows_per_s'])} |")
    profile = ours.get("profile") or {}
    for process, spots in profile.get("hot_spots", {}).items():
        lines += ["", f"Profile of {process} during one more Rift job (py-spy, {spots['samples']} samples; "
                  "self time, then featureplane functions including callees):", "",
                  "| self time | % |", "|---|---|", *(f"| `{s['function']}` | {s['percent']} |" for s in spots["self"]),
                  "", "| inclusive | % |", "|---|---|",
                  *(f"| `{s['function']}` | {s['percent']} |" for s in spots["project_inclusive"])]
    return lines


def online_rows(online: dict[str, Any]) -> list[str]:
    rows = ["| workload | clients | req/s | entities/s | p50 ms | p90 ms | p99 ms | vs Feast |",
            "|---|---|---|---|---|---|---|---|"]
    pairs = [("featureplane single, cache on", "single_cache_on", "feast_single"),
             ("featureplane single, cache off", "single_cache_off", "feast_single"),
             ("Feast single", "feast_single", None),
             (f"featureplane batch {online['batch_size']}, cache on", "batch_cache_on", "feast_batch"),
             (f"featureplane batch {online['batch_size']}, cache off", "batch_cache_off", "feast_batch"),
             (f"Feast batch {online['batch_size']}", "feast_batch", None)]
    for label, name, peer_name in pairs:
        for point in online.get(name, []):
            peer = point_at(online[peer_name], point["concurrency"]) if peer_name else None
            vs = _times(ratio(point["items_per_s"], _field(peer, "items_per_s"))) if peer_name else ""
            rows.append(f"| {label} | {point['concurrency']} | {_num(point['requests_per_s'])} | "
                        f"{_num(point['items_per_s'])} | {_num(point.get('p50_ms'), 2)} | "
                        f"{_num(point.get('p90_ms'), 2)} | {_num(point.get('p99_ms'), 2)} | {vs} |")
    return rows


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = ["# featureplane benchmarks", "",
             f"{m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, {m['date']}; "
             f"mode {report.get('mode', 'full')}; load average before the run {report.get('load_before', '?')}; "
             f"Feast {report.get('feast_version', '?')} (SQLite online store, file offline store, `feast serve`).",
             "", "## Summary", "", *summary_rows(report)]
    online = report.get("online")
    if online:
        lines += ["", "## Online serving (closed loop, medians of repeated runs)", "",
                  f"Cache hit rate during the cache-on single-key load: {online['cache_hit_rate'] * 100:.1f} % "
                  "(share of CACHED_PRESENT serving statuses).", "", *online_rows(online)]
        if online.get("component_rss_mib"):
            lines += ["", "## Resident memory per component (after the load)", "", "| process | RSS MiB |",
                      "|---|---|", *(f"| {k} | {v:,.0f} |" for k, v in online["component_rss_mib"].items())]
        for name, spots in (online.get("profile") or {}).items():
            lines += ["", f"## Gateway profile, {name} (py-spy, {spots['samples']} samples)", "",
                      "| self time | % |", "|---|---|", *(f"| `{s['function']}` | {s['percent']} |"
                                                          for s in spots["self"])]
    ours = (report.get("materialize") or {}).get("featureplane") or {}
    if any(name in ours for name, _ in COMPUTES):
        lines += ["", "## Batch materialization: seconds after the trigger", "", *materialize_details(ours)]
    if "startup" in report:
        lines += ["", "## Start-up RSS by process kind (`featureplane up`)", "", "| process | RSS MiB |", "|---|---|",
                  *(f"| {k} | {v:,.0f} |" for k, v in report["startup"]["rss_mib"].items())]
    return "\n".join(lines) + "\n"
