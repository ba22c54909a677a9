"""The replay report as one self-contained HTML page: the picture of the planes, then the tables.

No scripts, no external resources: the page opens from a file, in a browser without network.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from gateway.picture import Edge, render_svg

_STYLE = """
body{font-family:sans-serif;margin:2em;color:#0f172a;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #cbd5e1;padding:4px 8px;text-align:left;
vertical-align:top;font-size:13px}th{background:#f1f5f9}.ok{color:#15803d;font-weight:bold}
.bad{color:#b91c1c;font-weight:bold}.muted{color:#64748b}code{font-size:12px}
"""


def _mark(ok: bool | None, yes: str = "met", no: str = "NOT MET") -> str:
    if ok is None:
        return '<span class="muted">unchecked</span>'
    return f'<span class="{"ok" if ok else "bad"}">{yes if ok else no}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _code(value: Any) -> str:
    return f"<code>{escape(json.dumps(value, default=str))}</code>"


def _status(status: str) -> bool | None:
    return None if status == "unchecked" else status == "held"


def edges_of(report: Mapping[str, Any]) -> list[Edge]:
    return [Edge(e["flow"], e["source"], e["target"], e["outcome"], e["messages"]) for e in report["edges"]]


def render_html(report: Mapping[str, Any]) -> str:
    r = report
    verdict = _mark(r["passed"], "PASSED", "FAILED")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>featureplane replay: {escape(r['scenario'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Scenario <code>{escape(r['scenario'])}</code>: {verdict}</h1>",
        f"<p>{escape(r['description'])}</p>",
        f"<p class='muted'>{escape(r['deployment']['mode'])} deployment, gateway "
        f"{escape(r['deployment']['gateway'])}, topic prefix <code>{escape(r['deployment']['topic_prefix'])}</code>, "
        f"workspace <code>{escape(r['deployment']['workspace'])}</code>; {escape(r['started_at'])} .. "
        f"{escape(r['finished_at'])}; digest <code>{escape(r['digest'])}</code></p>",
        "<h2>Flows between the planes</h2>", render_svg(edges_of(r)),
        "<h2>Flows by type</h2>",
        _table(["flow", "outcome", "what", "records", "messages", "rows", "bytes", "principals", "routes"],
               ([escape(f["flow"]), _mark(f["outcome"] == "allowed", "allowed", f["outcome"]),
                 escape(f["description"]), str(f["records"]), str(f["messages"]), str(f["rows"]), str(f["bytes"]),
                 escape(", ".join(f["principals"])), "<br>".join(escape(x) for x in f["routes"])]
                for f in r["flows"])),
        "<h2>Invariants</h2>",
        _table(["invariant", "status", "detail", "findings"],
               ([escape(i["name"]), _mark(_status(i["status"]), "held", "BROKEN"), escape(i["detail"]),
                 "<br>".join(escape(f["detail"]) + (f" <em>(misuse '{escape(f['claimed_by'])}')</em>"
                                                    if "claimed_by" in f else "") for f in i["findings"])]
                for i in r["invariants"])),
        "<h2>Expectations</h2>",
        _table(["expectation", "result"], ([escape(e["what"]), _mark(e["met"])] for e in r["expectations"])),
        "<h2>Queries</h2>",
        _table(["service", "keys", "principal", "HTTP", "features", "checks"],
               ([escape(q["service"]), _code(q["keys"]), escape(q["principal"]), str(q["status"]),
                 _code(q["features"]) if q["features"] else escape(q["error"]),
                 "<br>".join(f"{escape(c['feature'])}: expected {_code(c['expected'])}, got {_code(c['actual'])} "
                             f"{_mark(c['met'])}" for c in q["checks"])] for q in r["queries"])),
    ]
    parts += _batch_parts(r)
    if r["misuse"]:
        parts += ["<h2>Misuse</h2>", _table(["step", "kind", "flagged", "evidence"], (
            [escape(m["name"]), escape(m["kind"]), _mark(m["flagged"], "flagged", "NOT FLAGGED"),
             "<br>".join(escape(e) for e in m["evidence"])] for m in r["misuse"]))]
    parts += ["<h2>Lineage of sampled served values</h2>",
              _table(["feature view", "entity", "online write", "source records"], (
                  [escape(c["feature_view"]), _code(c["entity_key"]), _code(c.get("online_write")),
                   "<br>".join(_code(s) for s in c.get("sources", []))] for c in r["lineage"])),
              "<h2>Steps</h2>", _table(["step", "detail"], ([escape(s["step"]), escape(s["detail"])]
                                                           for s in r["steps"])),
              "</body></html>"]
    return "".join(parts)


def _batch_parts(r: Mapping[str, Any]) -> list[str]:
    """Materialize steps, the workspace's batch jobs and the training data, when the scenario has them."""
    parts = []
    if r.get("materialize"):
        headers = ["feature view", "range", "principal", "HTTP", "jobs", "result"]
        parts += ["<h2>Materialize steps</h2>", _table(headers, (
            [escape(m["feature_view"]), escape(f"[{m['start']}, {m['end']})"), escape(m["principal"]),
             str(m["status"]), escape(", ".join(j["state"] for j in m["jobs"]) or m["error"]), _mark(m["met"])]
            for m in r["materialize"]))]
    if r.get("jobs"):
        parts += ["<h2>Batch jobs</h2>", _table(
            ["feature view", "range", "trigger", "compute", "state", "attempt", "rows read", "rows written",
             "tiles written", "error"],
            ([escape(j["feature_view"]), escape(f"[{j['start']}, {j['end']})"), escape(j["trigger"]),
              escape(j["compute"]), _mark(j["state"] == "succeeded", j["state"], j["state"].upper()), str(j["attempt"]),
              str(j["source_rows"]), str(j["rows_written"]), str(j["tiles_written"]), escape(j["error"] or "")]
             for j in r["jobs"]))]
    for t in r.get("training", []):
        parts += [f"<h2>Training data: <code>{escape(t['service'])}</code></h2>",
                  f"<p class='bad'>{escape(t['error'])}</p>" if t["error"] else "",
                  _table(["event", "features"], ([str(i), _code(row)] for i, row in enumerate(t["rows"]))),
                  _table(["event", "feature", "expected", "actual", "result"], (
                      ["" if c["event"] is None else str(c["event"]), escape(c["feature"]), _code(c["expected"]),
                       _code(c["actual"]), _mark(c["met"])] for c in t["checks"]))]
    return parts
