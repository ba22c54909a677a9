"""Authentication and authorization for the feature server, against the registry read model (F8).

A key is verified with its salted scrypt hash once; afterwards the gateway remembers a digest of the
verified secret, so later requests cost a dictionary lookup. The key's presence in the registry is
checked on every request, so a revocation takes effect on the next one.
"""

from __future__ import annotations

import asyncio
import hashlib

from actors.follower import RegistryFollower
from events.access import Action, PrincipalSpec, key_matches, parse_api_key
from events.errors import InvalidRequest, PermissionDenied, Unauthenticated

KEY_SYNC_TIMEOUT_S = 3.0


class Authenticator:
    def __init__(self, follower: RegistryFollower) -> None:
        self._follower = follower
        self._verified: dict[str, bytes] = {}  # key id -> sha256 of the secret that matched its hash

    async def principal(self, key_text: str | None) -> PrincipalSpec:
        if not key_text:
            raise Unauthenticated("an API key is required: Authorization: Bearer <key>")
        try:
            key_id, secret = parse_api_key(key_text)
        except InvalidRequest:
            raise Unauthenticated("the API key is malformed") from None
        registry = self._follower.registry
        spec = registry.keys.get(key_id)
        if spec is None and key_id not in self._verified:
            # Perhaps issued a moment ago: catch up once before refusing it.
            registry = await self._follower.sync(KEY_SYNC_TIMEOUT_S)
            spec = registry.keys.get(key_id)
        if spec is None:
            self._verified.pop(key_id, None)
            raise Unauthenticated("the API key is unknown or revoked")
        digest = hashlib.sha256(secret.encode()).digest()
        if self._verified.get(key_id) != digest:
            if not await asyncio.to_thread(key_matches, spec, secret):  # scrypt: keep it off the event loop
                raise Unauthenticated("the API key is unknown or revoked")
            self._verified[key_id] = digest
        principal = registry.principals.get(spec.principal_id)
        if principal is None:
            raise Unauthenticated("the API key's principal does not exist")
        return principal

    def require(self, principal: PrincipalSpec, action: Action, workspace: str) -> None:
        """PermissionDenied when the caller lacks the role; UnknownWorkspace (not a refusal) when the
        workspace does not exist, so a missing workspace reads the same to every authenticated caller."""
        registry = self._follower.registry
        if not registry.may(principal.principal_id, action, workspace):
            registry.workspace(workspace)
            raise PermissionDenied(f"'{principal.principal_id}' lacks a role that allows {action.value} "
                                   f"in workspace '{workspace}'")

    def require_admin(self, principal: PrincipalSpec) -> None:
        if not principal.is_admin:
            raise PermissionDenied(f"'{principal.principal_id}' is not an account admin")
