"""Each error family's HTTP status and Tecton-shaped body (gateway/errors.py is the only place they map)."""

from __future__ import annotations

import json

import pytest

from events.errors import (
    BrokerUnavailable,
    DeadlineExceeded,
    FeatureplaneError,
    InvalidRequest,
    MessageTooLarge,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from gateway.errors import response_for


@pytest.mark.parametrize(("error", "status", "error_type"), [
    (InvalidRequest("bad"), 400, "INVALID_ARGUMENT"),
    (NotFound("gone"), 404, "NOT_FOUND"),
    (Unauthenticated("who"), 401, "UNAUTHENTICATED"),
    (PermissionDenied("no"), 403, "PERMISSION_DENIED"),
    (BrokerUnavailable("away"), 503, "UNAVAILABLE"),
    (DeadlineExceeded("late"), 504, "DEADLINE_EXCEEDED"),
    (MessageTooLarge("the ingest batch is 2 MB, Kafka takes 1 MiB"), 413, "PAYLOAD_TOO_LARGE"),
    (FeatureplaneError("unexpected"), 500, "INTERNAL"),
])
def test_statuses_and_bodies(error: FeatureplaneError, status: int, error_type: str) -> None:
    response = response_for(error)
    assert response.status == status
    assert response.text is not None
    assert json.loads(response.text) == {"requestError": {"errorMessage": error.message, "errorType": error_type}}
