"""Tecton-compatible request and response shapes for `get-features` (snake_case or camelCase keys)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from actors.components.feature_server import FeatureRequest, ServedFeatures
from events.errors import InvalidRequest

_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class MetadataOptions:
    include_names: bool = True
    include_data_types: bool = False
    include_serving_status: bool = False
    include_effective_times: bool = False


def snake_or_camel(mapping: dict[str, Any], snake: str) -> Any:
    """A key in snake_case, or its camelCase spelling, as Tecton's clients send either."""
    if snake in mapping:
        return mapping[snake]
    head, *rest = snake.split("_")
    return mapping.get(head + "".join(word.title() for word in rest))


def _text(params: dict[str, Any], key: str) -> str:
    value = snake_or_camel(params, key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"params.{key} is required and must be a non-empty string")
    return value


def _scalar_map(params: dict[str, Any], key: str) -> dict[str, Any]:
    value = snake_or_camel(params, key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, _SCALARS) for v in value.values()):
        raise InvalidRequest(f"params.{key} must be an object of strings, numbers, booleans or nulls")
    return value


def parse_get_features(payload: bytes, principal: str) -> tuple[FeatureRequest, MetadataOptions]:
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    params = document.get("params") if isinstance(document, dict) else None
    if not isinstance(params, dict):
        raise InvalidRequest("the request body must be an object with a 'params' object")
    missing = [f"params.{key}" for key in ("workspace_name", "feature_service_name", "join_key_map")
               if not snake_or_camel(params, key)]
    if missing:
        raise InvalidRequest(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
    join_keys = _scalar_map(params, "join_key_map")
    options = snake_or_camel(params, "metadata_options") or {}
    if not isinstance(options, dict):
        raise InvalidRequest("params.metadata_options must be an object")
    flags = {name: bool(snake_or_camel(options, name)) for name in
             ("include_data_types", "include_serving_status", "include_effective_times")}
    names = snake_or_camel(options, "include_names")
    request = FeatureRequest(
        workspace=_text(params, "workspace_name"),
        feature_service=_text(params, "feature_service_name"),
        join_keys=join_keys,
        request_context=_scalar_map(params, "request_context_map"),
        principal=principal,
        payload=payload,
    )
    return request, MetadataOptions(include_names=True if names is None else bool(names), **flags)


def render_get_features(served: ServedFeatures, options: MetadataOptions) -> dict[str, Any]:
    metadata = []
    for feature in served.features:
        entry: dict[str, Any] = {}
        if options.include_names:
            entry["name"] = feature.name
        if options.include_data_types:
            entry["dataType"] = {"type": feature.dtype.value}
        if options.include_serving_status:
            entry["status"] = feature.status.value
        if options.include_effective_times and feature.event_time is not None:
            entry["effectiveTime"] = feature.event_time.isoformat().replace("+00:00", "Z")
        metadata.append(entry)
    return {"result": {"features": [f.value for f in served.features]}, "metadata": {"features": metadata}}
