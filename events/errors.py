"""The error tree of featureplane.

    FeatureplaneError (retriable: bool)
    ├── DecodeError                 bytes that are not a featureplane message
    │   ├── UnknownEventType        a type tag that no class is registered for
    │   └── SchemaVersionError      a schema version newer than this code knows
    ├── InvalidRequest              a request or record that breaks the contract (HTTP 400)
    │   └── InvalidSpec             a feature repository that does not compile
    ├── NotFound                    a workspace, feature service or feature view that does not exist (404)
    │   ├── UnknownWorkspace
    │   ├── UnknownFeatureService
    │   └── UnknownFeatureView
    ├── Unauthenticated             no API key, or one that is unknown, revoked or wrong (401)
    ├── PermissionDenied            a valid principal without the role for the action (403)
    ├── FlowDenied                  a message on a cross-plane flow its sender may not use
    ├── MessageTooLarge             a message larger than Kafka takes (the producer's max_request_size)
    ├── Unavailable (retriable)     a dependency (Kafka, a store) did not answer in time (503/504)
    │   ├── BrokerUnavailable       Kafka is unreachable: a message could not be handed to it (503)
    │   └── DeadlineExceeded        the answer did not come within the deadline (504)
    └── StoreError                  a store refused or failed an operation

Only the gateway maps these to HTTP statuses.
"""

from __future__ import annotations


class FeatureplaneError(Exception):
    """Root of every error featureplane raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retriable is not None:
            self.retriable = retriable


class DecodeError(FeatureplaneError):
    """The bytes are not a well-formed featureplane message."""


class UnknownEventType(DecodeError):
    """A type tag that no class is registered for (never resolved from a dotted path)."""


class SchemaVersionError(DecodeError):
    """A message written by newer code than this process runs."""


class InvalidRequest(FeatureplaneError):
    """A request or record that breaks the contract."""


class InvalidSpec(InvalidRequest):
    """A feature repository that does not compile to valid specs."""


class NotFound(FeatureplaneError):
    """Something named by the caller does not exist."""


class UnknownWorkspace(NotFound):
    pass


class UnknownFeatureService(NotFound):
    pass


class UnknownFeatureView(NotFound):
    pass


class Unauthenticated(FeatureplaneError):
    """The caller did not prove who it is."""


class PermissionDenied(FeatureplaneError):
    """The caller is known but lacks the role for what it asked."""


class FlowDenied(FeatureplaneError):
    """A component tried to send a message on a flow its plane may not use; `flow` names the flow (the
    nearest one between the two planes when the route is not declared at all)."""

    def __init__(self, message: str, *, flow: str) -> None:
        super().__init__(message)
        self.flow = flow


class MessageTooLarge(FeatureplaneError):
    """A message is larger than Kafka takes: sending it again will not help. `by_broker`: the broker
    refused it (its limit is lower than the client's), not the client before sending."""

    def __init__(self, message: str, *, by_broker: bool = False) -> None:
        super().__init__(message)
        self.by_broker = by_broker


class Unavailable(FeatureplaneError):
    """A dependency did not answer; trying again later may succeed."""

    retriable = True


class BrokerUnavailable(Unavailable):
    """Kafka did not take a message in time: the broker is down or unreachable (the clients reconnect by
    themselves once it is back)."""


class DeadlineExceeded(Unavailable):
    """The answer did not arrive within the caller's latency budget."""


class StoreError(FeatureplaneError):
    """A store refused or failed an operation."""
