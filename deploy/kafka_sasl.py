"""SASL/SCRAM logins and ACLs for the local broker: each plane is its own Kafka principal.

The passwords are made once per state folder and kept in a file only its owner may read
(`kafka-credentials.json`, like `admin.key`). The SCRAM users are created when the storage is formatted
(`kafka-storage format --add-scram`); the broker authenticates itself with SCRAM on its client listener and
with PLAIN on its controller listener (KRaft controllers cannot check SCRAM before the metadata is loaded).
The ACLs (deploy/acls.py) are created after the broker starts, by deploy/kafka/AclSetup.java through
Kafka's own Admin client, as the operator.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from actors.settings import SASL_MECHANISM, KafkaCredentials
from deploy.acls import BROKER_USER, OPERATOR_USER, PLANE_USERS, AclBinding
from events.planes import Plane

CREDENTIALS_FILE = "kafka-credentials.json"
# Where the logins are when the broker's set-up made them elsewhere (docker compose: a read-only volume).
CREDENTIALS_ENV_VAR = "FEATUREPLANE_KAFKA_CREDENTIALS"
ACL_SETUP = Path(__file__).resolve().parent / "kafka" / "AclSetup.java"


class KafkaSecurityError(RuntimeError):
    """The broker's logins or ACLs could not be set up."""


@dataclass(frozen=True, slots=True)
class KafkaUsers:
    """The password of every Kafka principal of one deployment (never printed: no repr of the values)."""

    passwords: tuple[tuple[str, str], ...]

    def __repr__(self) -> str:
        return f"KafkaUsers({', '.join(user for user, _ in self.passwords)})"

    def credentials(self, user: str) -> KafkaCredentials:
        return KafkaCredentials(user, dict(self.passwords)[user])

    @property
    def operator(self) -> KafkaCredentials:
        return self.credentials(OPERATOR_USER)

    def plane(self, plane: Plane) -> KafkaCredentials:
        return self.credentials(PLANE_USERS[plane])

    def secrets(self) -> list[str]:
        """Every password, for tests that check none of them leaked."""
        return [password for _, password in self.passwords]


ALL_USERS = (BROKER_USER, OPERATOR_USER, *PLANE_USERS.values())


def credentials_path(state_dir: Path) -> Path:
    override = os.environ.get(CREDENTIALS_ENV_VAR)
    return Path(override) if override else state_dir / CREDENTIALS_FILE


def load_users(state_dir: Path) -> KafkaUsers | None:
    """The deployment's Kafka users, or None if it runs without SASL (no credentials file)."""
    try:
        document = json.loads(credentials_path(state_dir).read_text())
    except FileNotFoundError:
        return None
    return KafkaUsers(tuple((user, str(document[user])) for user in ALL_USERS))


def ensure_users(state_dir: Path) -> KafkaUsers:
    """The deployment's Kafka users; made (with fresh random passwords) the first time."""
    existing = load_users(state_dir)
    if existing is not None:
        return existing
    # URL-safe letters only: the passwords go into JAAS strings and `--add-scram name=..,password=..`.
    document = {user: secrets.token_urlsafe(24) for user in ALL_USERS}
    write_private(credentials_path(state_dir), json.dumps(document, indent=2) + "\n")
    return KafkaUsers(tuple(document.items()))


def write_private(path: Path, text: str) -> None:
    """Create the file readable by its owner only, from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _jaas(module: str, user: str, password: str, extra: str = "") -> str:
    return f'org.apache.kafka.common.security.{module} required username="{user}" password="{password}"{extra};'


def server_properties(users: KafkaUsers, host: str, port: int, controller_port: int) -> dict[str, str]:
    """Broker settings for SASL on both listeners and ACLs enforced by KRaft's StandardAuthorizer."""
    broker = users.credentials(BROKER_USER)
    plain_users = f' user_{broker.username}="{broker.password}"'
    return {
        "listeners": f"SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"SASL_PLAINTEXT://{host}:{port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": SASL_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SASL_MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config":
            _jaas("scram.ScramLoginModule", broker.username, broker.password),
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            _jaas("plain.PlainLoginModule", broker.username, broker.password, plain_users),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{BROKER_USER};User:{OPERATOR_USER}",
    }


def format_arguments(users: KafkaUsers) -> list[str]:
    """`kafka-storage format` arguments that create every SCRAM user in the bootstrap metadata."""
    return [arg for user, password in users.passwords
            for arg in ("--add-scram", f"{SASL_MECHANISM}=[name={user},password={password}]")]


def client_properties(credentials: KafkaCredentials) -> str:
    """A Java client's properties for one principal (written 0600: it holds the password)."""
    return (f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism={credentials.mechanism}\n"
            f"sasl.jaas.config={_jaas('scram.ScramLoginModule', credentials.username, credentials.password)}\n")


def create_acls(java: str, libs: Path, folder: Path, bootstrap: str, users: KafkaUsers,
                bindings: Sequence[AclBinding], timeout_s: float = 120) -> None:
    """Create the bindings through Kafka's Admin client as the operator (creating one twice is a no-op)."""
    props, spec = folder / "operator-client.properties", folder / "acls.txt"
    write_private(props, client_properties(users.operator))
    spec.write_text("".join(b.line() + "\n" for b in bindings))
    cmd = [java, "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={folder / 'log4j2.properties'}",
           str(ACL_SETUP), bootstrap, str(props), str(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout_s)
    if done.returncode != 0:
        raise KafkaSecurityError(f"creating the ACLs failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
