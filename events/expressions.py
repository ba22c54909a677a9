"""Serialized polars expressions read as plain JSON: does one carry code?

Polars pickles Python functions into an expression's JSON (`map_elements`, `map_batches`, `name.map`) and
can load native plugins; deserializing such an expression would run that code. This check reads only the
JSON tree, never polars, so the control plane refuses such a repository before it is stored and broadcast,
and the SDK and Rift refuse it again before they deserialize anything.
"""

from __future__ import annotations

import json
from typing import Any

# Parts of node names in serialized expressions that carry code: pickled Python functions (anonymous
# functions, `name.map`'s "Map", Python objects) or native plugins loaded from a library path.
_CODE_MARKERS = ("Anonymous", "Python", "Plugin", "Udf", "Object")
_PICKLED = list(b"PLPYFN")  # polars' marker in front of a pickled Python function


def expression_problem(text: str) -> str | None:
    """Why a serialized expression may not cross a plane, as a phrase; None if its JSON carries no code."""
    try:
        tree = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return f"is not a serialized polars expression: {exc}"
    carrier = _code_node(tree)
    if carrier is None:
        return None
    return f"runs Python or native code ({carrier}); only built-in polars expressions may cross a plane"


def _code_node(tree: Any) -> str | None:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key.startswith("Map") or any(marker in key for marker in _CODE_MARKERS):
                    return str(key)
                stack.append(value)
        elif isinstance(node, list):
            if node[:len(_PICKLED)] == _PICKLED:
                return "a pickled Python function"
            stack.extend(node)
    return None
