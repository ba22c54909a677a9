"""Hypothesis strategies for requests to the gateway, derived from its OpenAPI document.

Each case is one operation of the document with path and query parameters, a body and an API key drawn
from: values the schema allows (often with names the deployment really has, so requests get past the
first lookup), any JSON at all, or random bytes; keys valid, unknown or malformed.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import strategies as st

Schema = dict[str, Any]

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                  max_size=4), max_leaves=12)


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: bytes | None
    content_type: str
    authorization: str | None

    def describe(self) -> str:
        return f"{self.method} {self.path} auth={self.authorization!r} body={self.body!r:.300}"


def names(known: list[str]) -> st.SearchStrategy[str]:
    """Names: the deployment's own ones most of the time, else any text."""
    return st.sampled_from(known) | st.text(max_size=30) | st.text(string.ascii_lowercase + "_-.", min_size=1,
                                                                   max_size=12)


def from_schema(schema: Schema, known: list[str]) -> st.SearchStrategy[Any]:
    """Values shaped by `schema` (the subset of JSON schema the document uses), occasionally off it."""
    return st.one_of(_shaped(schema, known), JSON) if schema.get("type") != "object" else _shaped(schema, known)


def _shaped(schema: Schema, known: list[str]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        return st.one_of([_shaped(s, known) for s in schema["oneOf"]] + ([st.none()] if schema.get("nullable")
                                                                          else []))
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, known)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), known), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4))
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.datetimes().map(lambda d: d.isoformat()) | st.text(max_size=20)
        return names(known)
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**70)), schema.get("maximum", 2**70)) | st.integers()
    if kind == "number":
        return st.floats()
    if kind == "boolean":
        return st.booleans()
    return JSON


def _object(schema: Schema, known: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Schema] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    extra = schema.get("additionalProperties")

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for name, sub in properties.items():
            # required fields are left out now and then, optional ones often
            if draw(st.integers(0, 9)) < (9 if name in required else 5):
                value[name] = draw(from_schema(sub, known))
        if isinstance(extra, dict):
            value.update(draw(st.dictionaries(names(known), from_schema(extra, known), max_size=3)))
        return value

    return build()


def _parameters(op: Schema, path: str, known: list[str]) -> st.SearchStrategy[str]:
    @st.composite
    def build(draw: st.DrawFn) -> str:
        filled = path
        query: dict[str, str] = {}
        for param in op.get("parameters", []):
            value = str(draw(from_schema(param["schema"], known)))
            if param["in"] == "path":
                filled = filled.replace("{" + param["name"] + "}", quote(value, safe="") or "x")
            elif param.get("required") or draw(st.booleans()):
                query[param["name"]] = value
        return filled + (f"?{urlencode(query)}" if query else "")

    return build()


def _body(op: Schema, known: list[str]) -> st.SearchStrategy[tuple[bytes | None, str]]:
    content = op.get("requestBody", {}).get("content", {})
    random_bytes = st.binary(max_size=200).map(lambda b: (b, "application/json"))
    if "application/json" in content:
        shaped = from_schema(content["application/json"]["schema"], known)
        return st.one_of(shaped.map(lambda v: (json.dumps(v).encode(), "application/json")),
                         JSON.map(lambda v: (json.dumps(v).encode(), "application/json")), random_bytes)
    if content:  # a compiled repository: msgpack, here never a valid one
        return st.binary(max_size=200).map(lambda b: (b, "application/x-msgpack")) | random_bytes
    return st.just((None, "application/json")) | random_bytes


def cases(document: Schema, known: list[str], valid_key: str) -> st.SearchStrategy[Case]:
    operations = [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
    keys = st.sampled_from([None, f"Bearer {valid_key}", f"Tecton-key {valid_key}", "Bearer fp_unknown",
                            "Basic abc"]) | printable.map(lambda t: f"Bearer {t}".strip())

    @st.composite
    def build(draw: st.DrawFn) -> Case:
        path, method, op = draw(st.sampled_from(operations))
        body, content_type = draw(_body(op, known))
        return Case(method.upper(), draw(_parameters(op, path, known)), body, content_type, draw(keys))

    return build()
