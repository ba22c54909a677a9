"""The one frozen settings object each featureplane process runs with, validated at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from events.topics import TopicNames

SASL_MECHANISM = "SCRAM-SHA-256"


@dataclass(frozen=True, slots=True)
class KafkaCredentials:
    """One Kafka principal's SASL/SCRAM login. The password never shows in a repr, so a logged settings
    object or a traceback carries the user name only."""

    username: str
    password: str = field(repr=False)
    mechanism: str = SASL_MECHANISM

    def __post_init__(self) -> None:
        if not self.username or not self.password:
            raise ValueError("Kafka credentials need a user name and a password")


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap_servers: str
    state_dir: Path
    topic_prefix: str = "fp"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    # How long the feature server waits for the online store's answer before it gives up.
    read_timeout_s: float = 5.0
    log_json: bool = True
    # The customer-managed key that encrypts the control plane's metadata at rest (a 0600 file);
    # None: take it from $FEATUREPLANE_METADATA_KEY.
    metadata_key_file: Path | None = None
    # Serving cache: entries older than this are fetched again (at most 24 h); 0 turns the cache off.
    serving_cache_max_age_s: float = 60.0
    serving_cache_entries: int = 100_000
    # This process's own Kafka principal (SASL/SCRAM); None: the broker's listener is unauthenticated.
    # A component gets its plane's credentials only (deploy/cluster.py).
    kafka_credentials: KafkaCredentials | None = None
    # Backpressure: requests one gateway replica serves at once; more are refused at once with 429.
    gateway_max_in_flight: int = 64
    # Largest record accepted from a source topic or the ingest API (bigger ones are dead-lettered or refused).
    max_record_bytes: int = 256 * 1024
    # Largest message a producer hands to Kafka (its max_request_size): at most the broker's
    # message.max.bytes (1 MiB by default). A larger output is refused before it is sent.
    max_message_bytes: int = 1024 * 1024
    # The encoded answers one online-store reply carries; a larger reply goes as several parts. Well under
    # max_message_bytes, which also holds the envelope and the record's framing.
    online_reply_bytes: int = 512 * 1024

    def __post_init__(self) -> None:
        if not self.bootstrap_servers or ":" not in self.bootstrap_servers:
            raise ValueError(f"bootstrap_servers must be host:port[,host:port], got {self.bootstrap_servers!r}")
        if not 0 <= self.gateway_port <= 65535:
            raise ValueError(f"gateway_port {self.gateway_port} is not a TCP port")
        if not 0 <= self.serving_cache_max_age_s <= 24 * 3600:
            raise ValueError("serving_cache_max_age_s must be between 0 (off) and 86400 (24 h)")
        if self.read_timeout_s <= 0:
            raise ValueError("read_timeout_s must be positive")
        if self.gateway_max_in_flight < 1:
            raise ValueError("gateway_max_in_flight must be at least 1")
        if self.max_record_bytes < 1:
            raise ValueError("max_record_bytes must be at least 1")
        if not 1024 <= self.online_reply_bytes <= self.max_message_bytes // 2:
            raise ValueError("online_reply_bytes must be between 1024 and half of max_message_bytes")
        TopicNames(self.topic_prefix)  # validates the prefix

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix)

    def store_dir(self, component: str) -> Path:
        return store_dir(self.state_dir, self.topic_prefix, component)


def store_dir(state_dir: Path, topic_prefix: str, component: str) -> Path:
    """A component instance's own storage folder: components never share files."""
    return state_dir / "stores" / topic_prefix / component
