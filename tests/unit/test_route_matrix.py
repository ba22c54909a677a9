"""The roles-by-routes matrix of tests/integration/test_access.py covers every route the gateway registers:
a new route without a row there fails here, not silently."""

from __future__ import annotations

from actors.components.feature_server import FeatureServer
from actors.memory_bus import MemoryBus
from events.topics import TopicNames
from gateway.app import create_app
from tests.integration.route_matrix import ADMIN, ANY_KEY, CALLERS, CASES, PUBLIC, ROLES


def _registered() -> set[tuple[str, str]]:
    app = create_app(FeatureServer(MemoryBus(), TopicNames("t"), "fs-0", read_timeout_s=1.0))
    return {(r.method, r.resource.canonical) for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None}


def test_every_registered_route_but_the_public_ones_is_in_the_matrix() -> None:
    registered, in_matrix = _registered(), {(c.method, c.path) for c in CASES}
    assert registered - PUBLIC - in_matrix == set(), "routes missing from tests/integration/route_matrix.py"
    assert in_matrix - registered == set(), "route_matrix.py lists routes the gateway does not register"
    assert registered >= PUBLIC
    assert len(in_matrix) >= 20


def test_case_names_are_unique_and_each_needs_a_known_role() -> None:
    assert len({c.name for c in CASES}) == len(CASES)
    assert all(c.needs in (*ROLES, ADMIN, ANY_KEY) for c in CASES)


def test_the_roles_nest_as_tecton_defines_them() -> None:
    by_name = {c.name: c for c in CASES}
    assert [r for r in CALLERS if by_name["materialize"].allows(r)] == ["admin", "operator", "editor", "owner"]
    assert [r for r in CALLERS if by_name["get-features"].allows(r)] == [
        "admin", "consumer", "operator", "editor", "owner"]
    assert [r for r in CALLERS if by_name["revoke-key"].allows(r)] == ["admin"]
    assert all(by_name["list-workspaces"].allows(r) for r in CALLERS)
