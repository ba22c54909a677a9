"""The three planes, their components and the audited flows between them, as one inline SVG.

Pure: edges in, SVG text out (no scripts, no external resources), so the replay report and the gateway's
`/ui/lineage` page draw the same picture from the same kind of numbers (audit records grouped by route).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape

from events.planes import PLANE_OF, Component, Plane

WIDTH, HEIGHT = 960, 560
BOX_W, BOX_H = 150, 44
_BANDS: dict[Plane, tuple[int, str, str]] = {  # top y, fill, label
    Plane.CONTROL: (20, "#eef2ff", "control plane: metadata only"),
    Plane.DATA: (200, "#ecfdf5", "data plane: in flight, volatile cache only"),
    Plane.CUSTOMER: (380, "#fff7ed", "customer plane: every stored byte"),
}
_BAND_H = 160
_X: dict[Component, int] = {
    Component.OPERATOR: 150, Component.CONTROL_PLANE: 480, Component.AUDIT_LOG: 810,
    Component.FEATURE_SERVER: 300, Component.RIFT: 660,
    Component.CUSTOMER_APP: 110, Component.ONLINE_STORE: 360, Component.OFFLINE_STORE: 610,
    Component.EXTERNAL_COMPUTE: 850,
}


@dataclass(frozen=True, slots=True)
class Edge:
    """Audited messages on one route: `messages` of `flow` from one component to another."""

    flow: str
    source: str
    target: str
    outcome: str
    messages: int


def edges_from_records(records: Iterable[Mapping[str, object]]) -> list[Edge]:
    """Audit records (as the audit API returns them) grouped by flow, route and outcome."""
    counts: dict[tuple[str, str, str, str], int] = {}
    for r in records:
        key = (str(r["flow"]), str(r["from_component"]), str(r["to_component"]), str(r["outcome"]))
        counts[key] = counts.get(key, 0) + int(str(r["message_count"]))
    return [Edge(f, s, t, o, n) for (f, s, t, o), n in sorted(counts.items())]


def _centre(component: str) -> tuple[float, float]:
    kind = Component(component)
    top = _BANDS[PLANE_OF[kind]][0]
    return float(_X[kind]), top + _BAND_H / 2 + 10


def _edge_svg(edge: Edge, lane: int, lanes: int) -> str:
    (x1, y1), (x2, y2) = _centre(edge.source), _centre(edge.target)
    # The normal of the pair's canonical direction, so A->B and B->A take different lanes.
    (ax, ay), (bx, by) = sorted([(x1, y1), (x2, y2)])
    length = math.hypot(bx - ax, by - ay) or 1.0
    nx, ny = -(by - ay) / length, (bx - ax) / length
    shift = (lane - (lanes - 1) / 2) * 22
    x1, y1, x2, y2 = x1 + nx * shift, y1 + ny * shift, x2 + nx * shift, y2 + ny * shift
    # stop at the box's edge so the arrow head stays visible
    dx, dy = x2 - x1, y2 - y1
    trim = min(0.45, (BOX_H / 2 + 6) / abs(dy) if abs(dy) > 1 else (BOX_W / 2 + 6) / max(abs(dx), 1.0))
    ex, ey = x2 - (x2 - x1) * trim, y2 - (y2 - y1) * trim
    sx, sy = x1 + (x2 - x1) * trim, y1 + (y2 - y1) * trim
    denied = edge.outcome != "allowed"
    colour = "#dc2626" if denied else "#334155"
    dash = ' stroke-dasharray="6 4"' if denied else ""
    at = 0.5 if lanes == 1 else 0.3 + 0.4 * lane / (lanes - 1)  # labels of one pair apart along the line
    mx, my = sx + (ex - sx) * at, sy + (ey - sy) * at
    label = f"{edge.flow} \u00d7{edge.messages}" + (" DENIED" if denied else "")
    title = f"{edge.flow} {edge.source} \u2192 {edge.target}: {edge.messages} message(s), {edge.outcome}"
    return (f'<g class="flow" data-flow="{escape(edge.flow)}" data-outcome="{escape(edge.outcome)}">'
            f"<title>{escape(title)}</title>"
            f'<line x1="{sx:.1f}" y1="{sy:.1f}" x2="{ex:.1f}" y2="{ey:.1f}" stroke="{colour}" stroke-width="2"'
            f'{dash} marker-end="url(#{"deny" if denied else "arrow"})"/>'
            f'<rect x="{mx - 34:.1f}" y="{my - 9:.1f}" width="68" height="16" rx="3" fill="white" '
            f'stroke="{colour}" stroke-width="0.5"/>'
            f'<text x="{mx:.1f}" y="{my + 3:.1f}" text-anchor="middle" font-size="10" fill="{colour}">'
            f"{escape(label)}</text></g>")


def render_svg(edges: Iterable[Edge], title: str = "Audited flows between the planes") -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="planes" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}" '
             'font-family="sans-serif">',
             f"<title>{escape(title)}</title>",
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#334155"/></marker>'
             '<marker id="deny" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#dc2626"/></marker></defs>']
    for plane, (top, fill, label) in _BANDS.items():
        parts.append(f'<g class="plane" data-plane="{plane.value}"><rect x="10" y="{top}" width="{WIDTH - 20}" '
                     f'height="{_BAND_H}" rx="10" fill="{fill}" stroke="#94a3b8"/>'
                     f'<text x="24" y="{top + 20}" font-size="13" font-weight="bold" fill="#0f172a">'
                     f"{escape(label)}</text></g>")
    for component in _X:
        x, y = _centre(component)
        parts.append(f'<g class="component" data-component="{component.value}"><rect x="{x - BOX_W / 2:.0f}" '
                     f'y="{y - BOX_H / 2:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="white" '
                     f'stroke="#475569"/><text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle" font-size="12">'
                     f"{escape(component.value.replace('_', ' '))}</text></g>")
    grouped: dict[frozenset[str], list[Edge]] = {}
    for edge in edges:
        grouped.setdefault(frozenset((edge.source, edge.target)), []).append(edge)
    for pair in grouped.values():
        for lane, edge in enumerate(pair):
            parts.append(_edge_svg(edge, lane, len(pair)))
    parts.append("</svg>")
    return "".join(parts)
