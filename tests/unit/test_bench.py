"""The pure pieces of the benchmark harness: percentiles, the seeded data, the report table, the profile
summary, and the repositories both systems get."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench import data, feast_peer, materialize, processes, profiling, report, serving
from bench.loadgen import LoadResult, arrival_offsets
from bench.stats import latency_summary, percentile, ratio
from sdk.repo import load_repo


def test_percentile_interpolates_between_ranks_like_numpy() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 90) == pytest.approx(4.6)
    assert percentile([1.0, 2.0], 99) == pytest.approx(1.99)


def test_percentile_refuses_no_samples_and_bad_ranks() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="not in"):
        percentile([1.0], 101)


def test_latency_summary_and_ratio() -> None:
    summary = latency_summary([float(i) for i in range(1, 101)])
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["max_ms"] == 100.0
    assert ratio(30.0, 10.0) == 3.0
    assert ratio(None, 10.0) is None
    assert ratio(1.0, 0.0) is None


def test_load_result_summary_counts_only_answered_requests() -> None:
    result = LoadResult(concurrency=4, seconds=2.0, latencies_ms=[1.0, 2.0, 3.0, 4.0], errors=1, marked=20)
    summary = result.summary(items_per_request=100)
    assert summary["requests_per_s"] == 2.0
    assert summary["items_per_s"] == 200.0
    assert summary["errors"] == 1
    assert summary["marked"] == 20
    assert summary["p50_ms"] == 2.5


def test_history_is_deterministic_for_a_seed_and_has_every_feature_column() -> None:
    first, again, other = data.history(50, 4, seed=3), data.history(50, 4, seed=3), data.history(50, 4, seed=4)
    assert first.equals(again)
    assert not first.equals(other)
    assert first.height == 200
    assert first.columns == ["user_id", "ts", *(name for name, _ in data.FEATURES)]
    assert first["user_id"].n_unique() == 50
    assert len(data.FEATURES) >= 10
    assert len(data.AGGREGATES) == 3


def test_stream_events_keep_each_users_last_row_last_and_recent() -> None:
    history = data.history(20, 5)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    events = data.stream_events(history, 10, 3, now)
    assert len(events) == 30
    assert {e["user_id"] for e in events} == {data.user_id(i) for i in range(10)}
    times = [datetime.fromisoformat(e["ts"]) for e in events]
    assert times == sorted(times)
    assert all((now - t).total_seconds() <= 600 for t in times)
    last_u3 = [e for e in events if e["user_id"] == "u3"][-1]
    assert last_u3["amount"] == history.filter(history["user_id"] == "u3")["amount"][-1]
    assert data.stream_events(history, 10, 3, now) == events


def test_entity_events_are_deterministic() -> None:
    assert data.entity_events(1000, 30).equals(data.entity_events(1000, 30))
    assert not data.entity_events(1000, 30).equals(data.entity_events(1000, 30, seed=12))


def test_featureplane_serving_repo_has_ten_features_three_of_them_windowed(tmp_path: Path) -> None:
    (tmp_path / "features.py").write_text(serving.repo_text("bench-topic"))
    repo = load_repo(tmp_path)
    (service,) = repo.feature_services
    views = {v.name: v for v in repo.feature_views if v.name in service.feature_views}
    features = sum(len(v.features) + len(v.aggregates) for v in views.values())
    assert features == serving.FEATURES_PER_KEY == 10
    assert sorted(a.name for v in views.values() for a in v.aggregates) == sorted(n for n, _ in data.AGGREGATES)


def test_request_bodies_of_both_systems() -> None:
    users = [data.user_id(i) for i in range(250)]
    batches = serving.batch_bodies(users, 100)
    assert len(batches) == 2
    assert batches[0].count(b"join_key_map") == 100
    assert b'"include_serving_status": true' in serving.single_bodies(["u1"], True)[0]
    assert feast_peer.online_body(["u1", "u2"]) == b'{"feature_service": "svc", "entities": {"user_id": ["u1", "u2"]}}'


def test_feast_repo_declares_the_same_feature_columns(tmp_path: Path) -> None:
    store_yaml, features_py = feast_peer.feature_repo_text(tmp_path, data.FEATURES)
    assert "type: sqlite" in store_yaml
    assert "type: file" in store_yaml
    for name, _ in data.FEATURES:
        assert f'Field(name="{name}"' in features_py
    compile(features_py, "features.py", "exec")


def test_median_point_takes_each_fields_median_and_sums_errors() -> None:
    runs = [{"concurrency": 4, "requests_per_s": r, "p99_ms": p, "errors": e}
            for r, p, e in ((10.0, 9.0, 0), (30.0, 1.0, 1), (20.0, 5.0, 2))]
    point = serving.median_point(runs)
    assert point["requests_per_s"] == 20.0
    assert point["p99_ms"] == 5.0
    assert point["errors"] == 3
    assert point["repeats"] == 3
    assert point["concurrency"] == 4


def test_hot_spots_from_collapsed_stacks() -> None:
    collapsed = "\n".join([
        "main (x.py:1);handle (gateway/app.py:10);write (asyncio/selector_events.py:5) 6",
        "main (x.py:1);handle (gateway/app.py:12);serve (actors/components/feature_server.py:3) 3",
        "main (x.py:1);select (selectors.py:9) 1",
        "garbage line",
    ])
    spots = profiling.hot_spots(collapsed, top=2)
    assert spots["samples"] == 10
    assert spots["self"] == [{"function": "write (asyncio/selector_events.py)", "percent": 60.0},
                             {"function": "serve (actors/components/feature_server.py)", "percent": 30.0}]
    assert spots["project_inclusive"][0] == {"function": "handle (gateway/app.py)", "percent": 90.0}


def test_process_kinds() -> None:
    assert processes.kind_of("java -Xmx512m ... kafka.Kafka server.properties") == "kafka broker"
    assert processes.kind_of("ray::ComponentHost.start") == "ray actor ComponentHost"
    assert processes.kind_of("/x/ray/core/src/ray/gcs/gcs_server --port") == "ray runtime"
    assert processes.kind_of("python app.py") == "other"


def _points(rates: dict[int, float], items: int = 1) -> list[dict[str, Any]]:
    return [{"concurrency": c, "requests_per_s": r, "items_per_s": r * items, "errors": 0, "p50_ms": 1.0,
             "p90_ms": 2.0, "p99_ms": 3.0} for c, r in rates.items()]


def _report() -> dict[str, Any]:
    return {
        "machine": {"cpus": 2, "cpu": "test cpu", "memory_gib": 4.0, "python": "3.11", "date": "2026-01-01"},
        "mode": "quick", "load_before": 0.5, "feast_version": "0.67.0",
        "online": {"batch_size": 100, "cache_hit_rate": 0.99, "cache_off_hit_rate": 0.0,
                   "single_cache_on": _points({1: 500.0, 16: 4000.0}), "single_cache_off": _points({16: 800.0}),
                   "batch_cache_on": _points({16: 90.0}, 100), "batch_cache_off": _points({16: 45.0}, 100),
                   "feast_single": _points({1: 100.0, 16: 400.0}), "feast_batch": _points({16: 90.0}, 100),
                   "component_rss_mib": {"feature_server-0": 170.0, "total": 170.0}, "profile": {}},
        "materialize": {"feast": {"source_rows": 1000, "rows_per_s": 2000.0, "seconds": 0.5},
                        "featureplane": {"status": "pending"}},
    }


def test_report_shows_ratios_to_feast_at_the_same_concurrency() -> None:
    text = report.render(_report())
    assert "| online single key, cache on (c=16) | 4,000 req/s, p50 1.00 / p99 3.00 ms | 400 req/s" in text
    assert "| 10.0x | >= 10x req/s |" in text.replace("≥", ">=")
    assert "online batch of 100 keys (c=16) | 4,500 entities/s" in text
    assert "0.50x" in text  # batch, cache off: 4,500 against Feast's 9,000 entities/s
    assert "99.0 %" in text
    assert "| batch materialization, 1,000 source rows | pending | 2,000 rows/s | — |" in text
    assert "| featureplane single, cache on | 1 | 500 | 500 | 1.00 | 2.00 | 3.00 | 5.0x |" in text


def test_point_at_falls_back_to_the_highest_concurrency() -> None:
    points = _points({1: 1.0, 32: 2.0})
    assert report.point_at(points, 16) == points[1]
    assert report.point_at(points, 1) == points[0]
    assert report.point_at([], 16) is None


def test_open_loop_arrivals_are_evenly_spaced_at_the_rate() -> None:
    offsets = arrival_offsets(4.0, 2.0)
    assert offsets == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    with pytest.raises(ValueError, match="positive"):
        arrival_offsets(0.0, 1.0)


def test_report_shows_the_half_peak_latency_against_its_target() -> None:
    full = _report()
    full["online"]["half_peak_cache_on"] = {**_points({0: 2000.0})[0], "rate_per_s": 2000.0}
    text = report.render(full)
    assert "open loop at half our peak (2,000 req/s) | p50 1.00 / p99 3.00 ms" in text


def test_materialize_repo_has_a_batch_view_per_compute_with_every_feature_and_no_start_time(tmp_path: Path) -> None:
    history = tmp_path / "history.parquet"
    data.history(3, 2).write_parquet(history)
    (tmp_path / "features.py").write_text(materialize.repo_text(history, materialize.VIEWS))
    repo = load_repo(tmp_path)
    views = {v.name: v for v in repo.feature_views}
    assert set(views) == set(materialize.VIEWS)
    for name, compute in materialize.VIEWS.items():
        view = views[name]
        assert view.compute == compute
        assert view.feature_start_time is None  # nothing backfills at apply: the trigger starts the clock
        assert [(f.name, f.dtype.value) for f in view.features] == list(data.FEATURES)  # Feast's ten columns
        assert not view.aggregates
    assert {s.name: s.feature_views for s in repo.feature_services} == {f"svc_{n}": (n,) for n in materialize.VIEWS}


def test_materialize_trigger_covers_every_row_and_the_last_row_is_the_last_users_latest() -> None:
    history = data.history(20, 3)
    start, end = materialize.whole_range(history)
    assert history.filter((history["ts"] < start) | (history["ts"] >= end)).height == 0
    assert end - start <= data.HISTORY_SPAN + timedelta(seconds=1)
    body = materialize.trigger_body("mat_rift", (start, end))
    assert body == {"workspace": materialize.WORKSPACE, "feature_view": "mat_rift", "start": start.isoformat(),
                    "end": end.isoformat()}
    user, values = materialize.last_row(history)
    mine = history.filter(history["user_id"] == user)
    assert user == max(history["user_id"])
    assert values[0] == mine.sort("ts")["amount"][-1]
    assert len(values) == len(data.FEATURES)


def test_materialize_job_progress_and_rates() -> None:
    assert materialize.job_progress([]) is None
    assert materialize.job_progress([{"state": "queued"}]) is None
    assert materialize.job_progress([{"state": "failed"}]) is None  # retried: keep waiting
    assert materialize.job_progress([{"state": "succeeded", "source_rows": 5}]) == {"state": "succeeded",
                                                                                    "source_rows": 5}
    with pytest.raises(RuntimeError, match="abandoned: boom"):
        materialize.job_progress([{"state": "abandoned", "error": "boom"}])
    result = materialize.rates(1000, {"job_succeeded": 0.5, "online_complete": 1.0, "offline_complete": 2.0})
    assert result["seconds"] == 2.0
    assert result["rows_per_s"] == 500.0
    assert result["online_rows_per_s"] == 1000.0


def test_report_shows_each_computes_materialization_ratio_and_stages() -> None:
    full = _report()
    stages = {"job_succeeded": 1.0, "online_complete": 1.5, "offline_complete": 2.0}
    full["materialize"]["featureplane"] = {
        "source_rows": 1000,
        "rift": {"source_rows": 1000, "seconds": 2.0, "rows_per_s": 500.0, "online_rows_per_s": 666.7,
                 "marks_s": stages},
        "external": {"source_rows": 1000, "seconds": 0.25, "rows_per_s": 4000.0, "marks_s": stages},
        "profile": {"hot_spots": {"rift": {"samples": 10, "self": [{"function": "f (a.py)", "percent": 60.0}],
                                           "project_inclusive": [{"function": "run_job (actors/x.py)",
                                                                  "percent": 90.0}]}}},
    }
    text = report.render(full)
    assert "| batch materialization on Rift, 1,000 source rows → online + offline | 500 rows/s (2.00 s; " \
           "online alone 667 rows/s) | 2,000 rows/s (0.50 s, online only) | 0.25x |" in text
    assert "| batch materialization on ExternalCompute, 1,000 source rows → online + offline | 4,000 rows/s" in text
    assert "| 2.0x | ≥ 10x rows/s |" in text
    assert "| Rift | 1.00 s | 1.50 s | 2.00 s | 500 |" in text
    assert "| `run_job (actors/x.py)` | 90.0 |" in text


def test_until_returns_the_first_answer_and_gives_up_after_its_timeout() -> None:
    answers = iter([None, None, "done"])

    async def check() -> str | None:
        return next(answers)

    assert asyncio.run(materialize.until(check, 0.001, "x")) == "done"

    async def never() -> None:
        return None

    with pytest.raises(TimeoutError, match="never: not within 0 s"):
        asyncio.run(materialize.until(never, 0.001, "never", timeout_s=0.01))
