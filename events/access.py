"""Principals, API keys and roles: who may do what, decided without I/O.

An API key reads `fpk_<key id>_<secret>`. Only a salted scrypt hash of the secret is ever stored or
published; the key itself is shown once, to whoever created it. Roles are per workspace and have
Tecton's meaning; an account admin may do everything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from events.errors import InvalidRequest

KEY_PREFIX = "fpk"
_KEY_PATTERN = re.compile(r"fpk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
# scrypt cost: slow enough to make a stolen hash expensive to attack, ~30 ms here; verified keys are
# cached by the gateway so the cost is paid once per key, not per request.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class PrincipalKind(StrEnum):
    USER = "user"
    SERVICE_ACCOUNT = "service_account"


class Role(StrEnum):
    VIEWER = "viewer"
    CONSUMER = "consumer"
    OPERATOR = "operator"
    EDITOR = "editor"
    OWNER = "owner"


class Action(StrEnum):
    READ_METADATA = "read_metadata"
    READ_FEATURES = "read_features"
    TRIGGER_JOBS = "trigger_jobs"
    INGEST = "ingest"
    APPLY = "apply"
    MANAGE_ROLES = "manage_roles"


# Each role includes the ones before it in Role's order (Tecton: owner ⊃ editor ⊃ operator ⊃ consumer ⊃ viewer).
_ROLE_ADDS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ_METADATA}),
    Role.CONSUMER: frozenset({Action.READ_FEATURES}),
    Role.OPERATOR: frozenset({Action.TRIGGER_JOBS}),
    Role.EDITOR: frozenset({Action.APPLY, Action.INGEST}),
    Role.OWNER: frozenset({Action.MANAGE_ROLES}),
}


# A control-plane refusal because the caller lacks the right (not because the command is wrong) starts with
# this, so whoever waits for the outcome can answer 403 rather than 400: the gateway's own check normally
# refuses first, but the control plane decides, on its newer registry (a role just revoked).
DENIED_PREFIX = "permission denied: "


def denial(reason: str) -> str:
    """A refusal for lack of permission, as the control plane records it."""
    return DENIED_PREFIX + reason


def is_denial(reason: str) -> bool:
    return reason.startswith(DENIED_PREFIX)


def actions_of(role: Role) -> frozenset[Action]:
    roles = list(Role)
    granted: frozenset[Action] = frozenset()
    for r in roles[: roles.index(role) + 1]:
        granted |= _ROLE_ADDS[r]
    return granted


@dataclass(frozen=True, slots=True)
class PrincipalSpec:
    principal_id: str
    kind: PrincipalKind
    name: str
    description: str
    created_by: str
    is_admin: bool = False
    email: str = ""  # users only; service accounts have none


@dataclass(frozen=True, slots=True)
class ApiKeySpec:
    """What is kept of a key: never the secret, only its salted slow hash."""

    key_id: str
    principal_id: str
    salt: bytes
    key_hash: bytes
    description: str
    created_by: str
    created_at: datetime | None = None  # None: issued before keys recorded their time


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly made key: `secret_text` is shown once and then forgotten; `spec` is what is stored."""

    secret_text: str
    spec: ApiKeySpec


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)


def new_api_key(principal_id: str, description: str, created_by: str) -> NewApiKey:
    key_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    salt = secrets.token_bytes(16)
    spec = ApiKeySpec(key_id, principal_id, salt, _hash(secret, salt), description, created_by, datetime.now(UTC))
    return NewApiKey(f"{KEY_PREFIX}_{key_id}_{secret}", spec)


def rehash_key(key_id: str, secret: str, principal_id: str, description: str, created_by: str) -> ApiKeySpec:
    """A stored form of an existing key, with a new salt (the key itself is unchanged): for a key whose
    owner kept it while the platform's record of it was lost (a fresh broker). Dated now: its first
    registration's time went with that record."""
    salt = secrets.token_bytes(16)
    return ApiKeySpec(key_id, principal_id, salt, _hash(secret, salt), description, created_by, datetime.now(UTC))


def without_secret_hash(spec: ApiKeySpec) -> ApiKeySpec:
    """What is kept of a revoked key: its metadata, for listing; the hash has no use any more."""
    return ApiKeySpec(spec.key_id, spec.principal_id, b"", b"", spec.description, spec.created_by, spec.created_at)


def parse_api_key(text: str) -> tuple[str, str]:
    """(key id, secret) of a key's text; InvalidRequest if it is not shaped like a featureplane key."""
    match = _KEY_PATTERN.fullmatch(text.strip())
    if match is None:
        raise InvalidRequest("not a featureplane API key")
    return match.group(1), match.group(2)


def key_matches(spec: ApiKeySpec, secret: str) -> bool:
    return hmac.compare_digest(_hash(secret, spec.salt), spec.key_hash)


@dataclass(frozen=True, slots=True)
class RoleGrant:
    principal_id: str
    workspace: str
    role: Role
