"""Tecton-compatible request and response shapes for `get-features` (snake_case or camelCase keys)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from actors.components.serving import FeatureRequest, ServedBatch, ServedFeatures
from events.errors import InvalidRequest
from events.registry import Workspace
from events.specs import FeatureServiceSpec

_SCALARS = (str, int, float, bool, type(None))
_INT64 = range(-(2**63), 2**63)
MAX_LATENCY_BUDGET_MS = 60_000


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
    if any(isinstance(v, int) and v not in _INT64 for v in value.values()):
        raise InvalidRequest(f"params.{key} has an integer outside the 64-bit range")
    return value


def _latency_budget_ms(params: dict[str, Any]) -> int | None:
    options = snake_or_camel(params, "request_options")
    if options is None:
        return None
    if not isinstance(options, dict):
        raise InvalidRequest("params.request_options must be an object")
    budget = snake_or_camel(options, "latency_budget_ms")
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_LATENCY_BUDGET_MS:
        raise InvalidRequest(f"params.request_options.latency_budget_ms must be a whole number of milliseconds "
                             f"from 1 to {MAX_LATENCY_BUDGET_MS}")
    return budget


def parse_get_features(payload: bytes, principal: str) -> tuple[FeatureRequest, MetadataOptions]:
    document = json_document(payload)
    params = document.get("params") if isinstance(document, dict) else None
    if not isinstance(params, dict):
        raise InvalidRequest("the request body must be an object with a 'params' object")
    # A service of realtime views over request data alone has no join keys: the context is enough then.
    required = ("workspace_name", "feature_service_name") if snake_or_camel(params, "request_context_map") \
        else ("workspace_name", "feature_service_name", "join_key_map")
    missing = [f"params.{key}" for key in required if not snake_or_camel(params, key)]
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
        latency_budget_ms=_latency_budget_ms(params),
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
        if feature.error is not None:  # a feature served ERROR (a realtime view failed, a reply too large) says why
            entry["errorMessage"] = feature.error
        metadata.append(entry)
    return {"result": {"features": [f.value for f in served.features]}, "metadata": {"features": metadata}}


MAX_BATCH_KEYS = 1000


def parse_get_features_batch(payload: bytes, principal: str,
                             ) -> tuple[FeatureRequest, list[dict[str, Any]], list[dict[str, Any]], MetadataOptions]:
    """Tecton's get-features-batch: `params.request_data` is a list of {"join_key_map", "request_context_map"};
    the key maps and request contexts come back in request order (an entry without a context gets
    `params.request_context_map`)."""
    document = json_document(payload)
    params = document.get("params") if isinstance(document, dict) else None
    if not isinstance(params, dict):
        raise InvalidRequest("the request body must be an object with a 'params' object")
    items = snake_or_camel(params, "request_data")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("params.request_data must be a non-empty list of {\"join_key_map\": {...}}")
    if len(items) > MAX_BATCH_KEYS:
        raise InvalidRequest(f"params.request_data has {len(items)} entries; at most {MAX_BATCH_KEYS}")
    shared = _scalar_map(params, "request_context_map")
    key_maps, contexts = [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequest(f"params.request_data[{index}] must be an object")
        keys = _scalar_map(item, "join_key_map")
        context = _scalar_map(item, "request_context_map") if snake_or_camel(item, "request_context_map") \
            is not None else shared
        if not keys and not context:
            raise InvalidRequest(f"params.request_data[{index}].join_key_map is required")
        key_maps.append(keys)
        contexts.append(context)
    first = {**params, "join_key_map": key_maps[0], "request_context_map": contexts[0]}
    request, options = parse_get_features(json.dumps({"params": first}).encode(), principal)
    return FeatureRequest(request.workspace, request.feature_service, key_maps[0], request.request_context,
                          principal, payload, request.latency_budget_ms), key_maps, contexts, options


def json_document(payload: bytes) -> Any:
    """The JSON body; InvalidRequest for anything that is not JSON the platform can carry on: too deeply
    nested, or with strings that are not Unicode text (lone surrogates cannot be encoded downstream)."""
    try:
        document = json.loads(payload)
        json.dumps(document, ensure_ascii=False).encode()
    except (ValueError, UnicodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply") from None
    return document


def render_get_features_batch(served: ServedBatch, options: MetadataOptions) -> dict[str, Any]:
    if not served.rows:
        return {"result": [], "metadata": {"features": []}}
    shape = render_get_features(ServedFeatures(served.rows[0], served.request, served.service), options)
    results = []
    for row in served.rows:
        entry: dict[str, Any] = {"features": [f.value for f in row]}
        if options.include_serving_status:
            entry["statuses"] = [f.status.value for f in row]
        if any(f.error is not None for f in row):  # features served ERROR say why
            entry["errorMessages"] = [f.error for f in row]
        results.append(entry)
    metadata = [{k: v for k, v in f.items() if k in ("name", "dataType")} for f in shape["metadata"]["features"]]
    return {"result": results, "metadata": {"features": metadata}}


def render_metadata(ws: Workspace, service: FeatureServiceSpec) -> dict[str, Any]:
    """Tecton's feature-service metadata: the join keys and request fields it needs, the features it serves."""
    join_keys: dict[str, str] = {}
    context: dict[str, str] = {}
    values: list[dict[str, Any]] = []
    for view_name in service.feature_views:
        view = ws.feature_views[view_name]
        # a realtime view needs the join keys of the views it reads
        for keyed in [view] if view.entities else [ws.feature_views[i] for i in view.inputs if i in ws.feature_views]:
            source = ws.stream_sources.get(keyed.source) or ws.push_sources.get(keyed.source) or \
                ws.batch_sources.get(keyed.source)
            for key in ws.join_keys(keyed):
                found = source.field(key) if source is not None else None
                join_keys[key] = found.dtype.value if found is not None else "string"
        for request_field in view.request_schema:
            context[request_field.name] = request_field.dtype.value
        values += [{"name": f"{view.name}.{f.name}", "dataType": {"type": f.dtype.value}} for f in view.features]
        values += [{"name": f"{view.name}.{a.name}", "dataType": {"type": _aggregate_type(a.function)}}
                   for a in view.aggregates]
    return {
        "featureServiceName": service.name,
        "inputJoinKeys": [{"name": k, "dataType": {"type": t}} for k, t in join_keys.items()],
        "inputRequestContextKeys": [{"name": k, "dataType": {"type": t}} for k, t in context.items()],
        "featureValues": values,
    }


def _aggregate_type(function: str) -> str:
    return "int64" if function in ("count", "approx_count_distinct") else "float64"
