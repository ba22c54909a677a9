"""`GET /ui/lineage`: the planes, components and audited flows with their counts, as an HTML page.

Authenticated like the other read routes (an API key in the Authorization header). With
`?workspace=W` a viewer of W sees W's flows; without it, an account admin sees every flow.
"""

from __future__ import annotations

import dataclasses
from html import escape

from aiohttp import web

from events.access import Action
from gateway.auth import SERVER_KEY, caller
from gateway.picture import edges_from_records, render_svg

MAX_RECORDS = 10_000


async def lineage_page(request: web.Request) -> web.Response:
    principal = await caller(request)
    server = request.app[SERVER_KEY]
    workspace = request.query.get("workspace", "")
    if workspace:
        server.auth.require(principal, Action.READ_METADATA, workspace)
    else:
        server.auth.require_admin(principal)
    answer = await server.recent_audit(MAX_RECORDS, principal.principal_id,
                                       **({"workspace": workspace} if workspace else {}))
    edges = edges_from_records(dataclasses.asdict(r) for r in answer.records)
    scope = f"workspace <code>{escape(workspace)}</code>" if workspace else "every workspace"
    rows = "".join(f"<tr><td>{escape(e.flow)}</td><td>{escape(e.source)}</td><td>{escape(e.target)}</td>"
                   f"<td>{escape(e.outcome)}</td><td>{e.messages}</td></tr>" for e in edges)
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>featureplane: audited flows</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #cbd5e1;padding:3px 8px}"
            "table{border-collapse:collapse}</style></head><body>"
            f"<h1>Audited flows, {scope}</h1>"
            f"<p>From the newest {len(answer.records)} of {answer.total} audit records.</p>"
            f"{render_svg(edges)}<table><tr><th>flow</th><th>from</th><th>to</th><th>outcome</th>"
            f"<th>messages</th></tr>{rows}</table></body></html>")
    return web.Response(text=page, content_type="text/html")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ui/lineage", lineage_page)
