"""How the benchmarks reach a deployment's broker as `featureplane up` runs it: with SASL logins and ACLs.

The logins live in the deployment's state folder (`kafka-credentials.json`), as they do for `up`; the
benchmark's own clients act as the operator (apply, admin key) or as the customer's application (producing
source topics, flow F5), never as a plane.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.kafka_bus import security_options
from deploy.client import Connection, customer_credentials
from deploy.cluster import Deployment
from deploy.kafka import REPO_ROOT, BrokerConfig
from deploy.kafka_sasl import ensure_users

LIBS = REPO_ROOT / ".state" / "kafka" / "libs-4.4.0"


def secure_broker_config(broker_dir: Path, state_dir: Path, port: int) -> BrokerConfig:
    """A broker in broker_dir whose SASL users' passwords are kept in the deployment's state_dir."""
    return BrokerConfig(broker_dir, port=port, libs_dir=LIBS, users=ensure_users(state_dir))


def operator_connection(deployment: Deployment) -> Connection:
    """The operator's connection (its login is in the settings start_on_local_broker returns)."""
    settings = deployment.settings
    return Connection(settings.bootstrap_servers, settings.topics, deployment.gateway_url,
                      settings.kafka_credentials)


def customer_producer_options(deployment: Deployment) -> dict[str, Any]:
    """bootstrap_servers and the login of the customer's application, for a plain aiokafka producer."""
    settings = deployment.settings
    return {"bootstrap_servers": settings.bootstrap_servers,
            **security_options(customer_credentials(settings.state_dir))}
