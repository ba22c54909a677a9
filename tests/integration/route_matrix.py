"""Who may call each gateway route, written down from Tecton's meaning of the roles, not from the code.

Roles in a workspace: owner ⊃ editor (apply, ingest) ⊃ operator (trigger jobs) ⊃ consumer (read online
features) ⊃ viewer (read metadata); the account admin may do everything, in every workspace. A principal
with no role in the workspace may use only the routes any valid key may use.

tests/integration/test_access.py calls every case with every role; tests/unit/test_route_matrix.py checks
that the cases cover every route the gateway registers, so a new route cannot go unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass

# Lowest to highest: each role includes every role before it.
ROLES = ("viewer", "consumer", "operator", "editor", "owner")
# The callers of every case: the account admin, each role, and a principal with no role in the workspace.
CALLERS = ("admin", *ROLES, "none")

ADMIN = "admin"  # account admins only
ANY_KEY = "any key"  # any valid key (the answer is filtered to what the caller may see)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    method: str
    path: str  # as registered (aiohttp's canonical form, with {placeholders})
    needs: str  # the lowest role that may call it, or ADMIN, or ANY_KEY

    def allows(self, caller: str) -> bool:
        if caller == "admin" or self.needs == ANY_KEY:
            return True
        if self.needs == ADMIN or caller == "none":
            return False
        return ROLES.index(caller) >= ROLES.index(self.needs)


CASES: tuple[Case, ...] = (
    Case("get-features", "POST", "/api/v1/feature-service/get-features", "consumer"),
    Case("get-features-batch", "POST", "/api/v1/feature-service/get-features-batch", "consumer"),
    Case("service-metadata", "POST", "/api/v1/feature-service/metadata", "viewer"),
    Case("ingest", "POST", "/ingest", "editor"),
    Case("lineage", "POST", "/api/v1/lineage", "viewer"),
    Case("lineage-of-write", "GET", "/api/v1/lineage/writes/{write_id}", ADMIN),  # reads the audit log
    Case("audit-flows", "GET", "/api/v1/audit/flows", ADMIN),
    Case("materialize", "POST", "/api/v1/materialize", "operator"),
    Case("jobs", "GET", "/api/v1/jobs", "viewer"),
    Case("plan", "POST", "/api/v1/workspaces/{workspace}/plan", "viewer"),
    Case("apply", "POST", "/api/v1/workspaces/{workspace}/apply", "editor"),
    Case("list-workspaces", "GET", "/api/v1/workspaces", ANY_KEY),
    Case("create-workspace", "POST", "/api/v1/workspaces", ADMIN),
    Case("describe-workspace", "GET", "/api/v1/workspaces/{workspace}", "viewer"),
    Case("assign-role", "POST", "/api/v1/workspaces/{workspace}/roles", "owner"),
    Case("unassign-role", "DELETE", "/api/v1/workspaces/{workspace}/roles", "owner"),
    Case("create-service-account", "POST", "/api/v1/service-accounts", ADMIN),
    Case("create-user", "POST", "/api/v1/users", ADMIN),
    Case("list-keys", "GET", "/api/v1/keys", ANY_KEY),  # an admin sees every key, others their own
    Case("issue-key", "POST", "/api/v1/principals/{principal}/keys", ADMIN),
    Case("revoke-key", "DELETE", "/api/v1/keys/{key_id}", ADMIN),
    Case("ui-lineage-of-workspace", "GET", "/ui/lineage", "viewer"),  # ?workspace=W
    Case("ui-lineage-of-all", "GET", "/ui/lineage", ADMIN),  # no workspace: every flow
)

# Routes that need no key: for orchestrators' probes and for client generators.
PUBLIC: frozenset[tuple[str, str]] = frozenset({("GET", "/healthz"), ("GET", "/api/openapi.json")})
