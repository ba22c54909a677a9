"""Who is calling: the API key from the Authorization header, checked against the registry."""

from __future__ import annotations

from aiohttp import web

from actors.components.feature_server import FeatureServer
from events.access import PrincipalSpec

SERVER_KEY = web.AppKey("feature_server", FeatureServer)

# `Tecton-key` is accepted too, so existing Tecton HTTP clients work unchanged.
_SCHEMES = ("bearer", "tecton-key")


def key_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, key = value.strip().partition(" ")
    return key.strip() if scheme.lower() in _SCHEMES and key.strip() else None


async def caller(request: web.Request) -> PrincipalSpec:
    server = request.app[SERVER_KEY]
    return await server.auth.principal(key_from_header(request.headers.get("Authorization")))
