"""Backpressure and size limits at the edge: refuse at once what the replica cannot take.

A replica serves at most `max_in_flight` requests at a time; one more is answered 429 with a
Retry-After at once, never queued, so a burst beyond capacity costs the caller one round trip and the
replica no memory. Bodies larger than the limit are refused with 413 before any handler reads them.
Health and the API description stay reachable when the replica is full.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.errors import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RETRY_AFTER_S = 1
UNLIMITED_PATHS = frozenset({"/healthz", "/api/openapi.json"})


class InFlight:
    """How many requests a replica is serving now, against its limit (one event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        self.limit = limit
        self.current = 0
        self.refused = 0

    def try_enter(self) -> bool:
        if self.current >= self.limit:
            self.refused += 1
            return False
        self.current += 1
        return True

    def leave(self) -> None:
        self.current -= 1


def too_large(max_body_bytes: int) -> web.Response:
    return error_response(413, "PAYLOAD_TOO_LARGE", f"the request body exceeds {max_body_bytes} bytes")


def limits_middleware(in_flight: InFlight, max_body_bytes: int) -> Middleware:
    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A declared length over the limit is refused on every route, whether or not it reads the body;
        # a chunked body is stopped by the app's client_max_size when read.
        if request.content_length is not None and request.content_length > max_body_bytes:
            return too_large(max_body_bytes)
        if request.path in UNLIMITED_PATHS:
            return await handler(request)
        if not in_flight.try_enter():
            return error_response(429, "RESOURCE_EXHAUSTED",
                                  f"this gateway replica is serving its limit of {in_flight.limit} requests; "
                                  f"retry after {RETRY_AFTER_S}s", headers={"Retry-After": str(RETRY_AFTER_S)})
        try:
            return await handler(request)
        finally:
            in_flight.leave()

    return limit
