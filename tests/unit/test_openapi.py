"""The gateway's OpenAPI document describes every registered route and is valid OpenAPI 3; the edge's
limits (in-flight, body size) answer at once in the Tecton error shape."""

from __future__ import annotations

import asyncio
import io

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from actors.components.feature_server import FeatureServer
from actors.memory_bus import MemoryBus
from events.topics import TopicNames
from gateway.app import MAX_BODY_BYTES, create_app
from gateway.limits import RETRY_AFTER_S, InFlight, limits_middleware
from gateway.openapi import document


def _app() -> web.Application:
    return create_app(FeatureServer(MemoryBus(), TopicNames("t"), "fs-0", read_timeout_s=1.0))


def test_every_registered_route_is_described() -> None:
    routes = {(r.method.lower(), r.resource.canonical) for r in _app().router.routes()
              if r.method != "HEAD" and r.resource is not None}
    described = {(method, path) for path, ops in document()["paths"].items() for method in ops}
    assert routes - described == set(), "routes missing from gateway/openapi.py"
    assert described - routes == set(), "gateway/openapi.py describes routes that do not exist"
    assert len(routes) >= 20


def test_the_document_is_valid_openapi_3() -> None:
    validate(document())  # raises on any violation of the OpenAPI 3.0 schema


def test_every_operation_documents_the_error_shape_and_the_limits() -> None:
    for ops in document()["paths"].values():
        for op in ops.values():
            assert {"400", "413", "429"} <= set(op["responses"])


def test_the_in_flight_gate_refuses_beyond_its_limit_and_counts() -> None:
    gate = InFlight(2)
    assert gate.try_enter()
    assert gate.try_enter()
    assert not gate.try_enter()
    gate.leave()
    assert gate.try_enter()
    assert (gate.current, gate.refused) == (2, 1)


async def _limited_client(gate: InFlight, release: asyncio.Event,
                          full: asyncio.Event | None = None) -> TestClient[web.Request, web.Application]:
    async def slow(request: web.Request) -> web.Response:
        if full is not None and gate.current == gate.limit:
            full.set()
        await release.wait()
        return web.json_response({"ok": True})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(middlewares=[limits_middleware(gate, 1000)])
    app.router.add_post("/slow", slow)
    app.router.add_delete("/slow", slow)
    app.router.add_get("/healthz", healthz)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_requests_beyond_the_limit_get_429_at_once_and_health_still_answers() -> None:
    release = asyncio.Event()
    gate, full = InFlight(2), asyncio.Event()
    client = await _limited_client(gate, release, full)
    try:
        held = [asyncio.create_task(client.post("/slow")) for _ in range(2)]
        await asyncio.wait_for(full.wait(), 5)  # both held requests are inside the handler
        refused = await asyncio.wait_for(client.post("/slow"), 5)
        assert refused.status == 429
        assert refused.headers["Retry-After"] == str(RETRY_AFTER_S)
        assert (await refused.json())["requestError"]["errorType"] == "RESOURCE_EXHAUSTED"
        assert (await client.get("/healthz")).status == 200
        release.set()
        assert [(await t).status for t in held] == [200, 200]
        assert (await client.post("/slow")).status == 200
    finally:
        release.set()
        await client.close()


async def test_a_body_over_the_limit_is_413_even_on_a_route_that_does_not_read_it() -> None:
    release = asyncio.Event()
    release.set()
    client = await _limited_client(InFlight(2), release)
    try:
        for method in ("POST", "DELETE"):
            response = await client.request(method, "/slow", data=b"x" * 1001)
            assert response.status == 413
            assert (await response.json())["requestError"]["errorType"] == "PAYLOAD_TOO_LARGE"
        assert (await client.post("/slow", data=b"x" * 1000)).status == 200
    finally:
        await client.close()


async def test_the_gateway_app_serves_its_document_and_refuses_big_bodies() -> None:
    client = TestClient(TestServer(_app()))
    await client.start_server()
    try:
        response = await client.get("/api/openapi.json")
        assert response.status == 200
        assert (await response.json())["paths"].keys() == document()["paths"].keys()
        big = await client.post("/api/v1/feature-service/get-features", data=io.BytesIO(b"{" * (MAX_BODY_BYTES + 1)))
        assert big.status == 413
    finally:
        await client.close()
