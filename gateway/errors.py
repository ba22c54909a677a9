"""The one place featureplane errors become HTTP statuses, with Tecton-shaped error bodies."""

from __future__ import annotations

from aiohttp import web

from events.errors import (
    BrokerUnavailable,
    DeadlineExceeded,
    DecodeError,
    FeatureplaneError,
    FlowDenied,
    InvalidRequest,
    MessageTooLarge,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

# Most specific first: the first family an error belongs to decides its status.
_STATUS: list[tuple[type[FeatureplaneError], int, str]] = [
    (InvalidRequest, 400, "INVALID_ARGUMENT"),
    (DecodeError, 400, "INVALID_ARGUMENT"),
    (NotFound, 404, "NOT_FOUND"),
    (Unauthenticated, 401, "UNAUTHENTICATED"),
    (PermissionDenied, 403, "PERMISSION_DENIED"),
    (FlowDenied, 403, "PERMISSION_DENIED"),
    (BrokerUnavailable, 503, "UNAVAILABLE"),  # Kafka is away: try again shortly, nothing hangs
    (DeadlineExceeded, 504, "DEADLINE_EXCEEDED"),
    # what the request would send is more than one Kafka message may carry (e.g. an ingest batch)
    (MessageTooLarge, 413, "PAYLOAD_TOO_LARGE"),
    (Unavailable, 503, "UNAVAILABLE"),
]


def error_response(status: int, error_type: str, message: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    body = {"requestError": {"errorMessage": message, "errorType": error_type}}
    return web.json_response(body, status=status, headers=headers)


def response_for(error: FeatureplaneError) -> web.Response:
    for family, status, error_type in _STATUS:
        if isinstance(error, family):
            return error_response(status, error_type, error.message)
    return error_response(500, "INTERNAL", error.message)
