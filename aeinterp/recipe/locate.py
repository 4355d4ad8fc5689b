"""Locating validation problems in a recipe's YAML: ``explainers[2].params.repeats (line 9): ...``.

pydantic says *what* is wrong and *where* in the data (a ``loc`` tuple); these
helpers find the YAML node at that place for its line, and the valid keys
nearby for a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

__all__: list[str] = []  # internal to the recipe validator (and api's params checks)


def _node_at(node: yaml.Node | None, loc: Sequence[Any]) -> yaml.Node | None:
    """The deepest YAML node along ``loc``: where the path stops existing, the last node found."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return node
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _line(node: yaml.Node | None) -> str:
    return f" (line {node.start_mark.line + 1})" if node is not None else ""


def _key_node(node: yaml.Node | None, loc: Sequence[Any]) -> yaml.Node | None:
    parent = _node_at(node, loc[:-1])
    if isinstance(parent, yaml.MappingNode):
        return next((k for k, _ in parent.value if k.value == str(loc[-1])), parent)
    return parent


def _format_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<recipe>"


def _unwrap_model(tp: Any) -> type[BaseModel] | None:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            found = _unwrap_model(arg)
            if found:
                return found
        return None
    if origin in (list, Sequence):
        return _unwrap_model(typing.get_args(tp)[0])
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        current = _unwrap_model(field.annotation) if field else None
    return list(current.model_fields) if current else []


def _problems(exc: ValidationError, root: yaml.Node | None, model: type[BaseModel], prefix: Sequence[Any] = ()) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = [*prefix, *err["loc"]]
        if err["type"] == "extra_forbidden":
            node = _key_node(root, loc)
            valid = _fields_at(model, err["loc"][:-1])
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (f" (valid keys: {', '.join(valid)})" if valid else "")
            msg = f"unknown key {str(loc[-1])!r}{hint}"
        elif err["type"] == "missing":
            node = _node_at(root, loc[:-1]) if len(loc) > 1 else None
            msg = "required key is missing"
        else:
            node = _node_at(root, loc)
            msg = err["msg"]
            if err["type"] == "literal_error":
                msg = f"{msg}, got {err.get('input')!r}"
        problems.append(f"{_format_loc(loc)}{_line(node)}: {msg}")
    return problems
