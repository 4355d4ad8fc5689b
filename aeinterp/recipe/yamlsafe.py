"""A YAML loader for recipes with limits: plain data only, no duplicate keys, bounded size and depth.

``yaml.safe_load`` already refuses Python tags, but it silently keeps the last
of two equal keys, expands aliases without limit (a 600-byte "billion laughs"
becomes millions of items) and recurses once per nesting level (a few thousand
``[`` end in ``RecursionError``). :func:`load_yaml` composes the document once,
checks it, then builds the Python value; every refusal is a
:class:`~aeinterp.errors.RecipeError` with the line.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import RecipeError

__all__ = ["load_yaml", "MAX_DEPTH", "MAX_NODES", "MAX_CHARS", "SYNTAX_ERROR"]

SYNTAX_ERROR = object()  # what load_yaml(..., syntax_errors="keep") returns for text that is not YAML

MAX_DEPTH = 100  # nesting levels of mappings and lists
MAX_NODES = 100_000  # values after alias expansion
MAX_CHARS = 2_000_000  # characters of recipe text

_T = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_T + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "merge")}


class _LimitError(Exception):
    def __init__(self, message: str, node: yaml.Node | None = None, mark: Any = None) -> None:
        self.message = message
        self.mark = mark if mark is not None else (node.start_mark if node is not None else None)
        super().__init__(message)


class _Loader(yaml.SafeLoader):
    """SafeLoader without timestamps (dates stay strings), with a nesting bound and no duplicate keys."""

    yaml_implicit_resolvers = {
        key: [(tag, regexp) for tag, regexp in resolvers if tag != _T + "timestamp"]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:  # type: ignore[override]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _LimitError(f"the recipe nests deeper than {MAX_DEPTH} levels", mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _T + "merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise _LimitError("a mapping key must be a plain value (a string or number), not a mapping or list", key_node) from None
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise _LimitError(
                    f"duplicate key {_short(key)} at lines {first} and {key_node.start_mark.line + 1}; "
                    "YAML would silently keep only the last one, remove or rename one of them",
                    key_node,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_graph(root: yaml.Node) -> None:
    """Plain tags only; expanded size bounded (aliases share nodes, so sizes are summed over a DAG)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_NODES:
                raise _LimitError(
                    f"the recipe expands to more than {MAX_NODES:,} values (YAML aliases repeat what they point at); "
                    "a recipe holds settings, not data",
                    node,
                )
            continue
        if key in sizes:
            continue
        if key in active:
            raise _LimitError("a YAML alias refers to a value that contains it (a recursive structure)", node)
        if node.tag not in _PLAIN_TAGS:
            tag = node.tag.replace(_T, "!!")
            raise _LimitError(
                f"unsupported YAML tag {tag}: recipes hold plain data only (mappings, lists, strings, numbers, booleans, null)",
                node,
            )
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml(text: str, *, source: str | None = None, what: str = "YAML", syntax_errors: str = "raise") -> tuple[Any, yaml.Node | None]:
    """Parse ``text`` into plain Python data and its node tree. Raises :class:`RecipeError` with the line.

    With ``syntax_errors="keep"`` text that is not YAML gives ``(SYNTAX_ERROR, None)``
    instead (the caller keeps it as a string); the limits still raise.
    """
    if len(text) > MAX_CHARS:
        raise RecipeError(
            f"{what} is {len(text):,} characters long; the limit is {MAX_CHARS:,} (a recipe holds settings, not data)", source=source
        )
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_graph(node)
        return loader.construct_document(node), node
    except _LimitError as exc:
        where = f" at line {exc.mark.line + 1}" if exc.mark is not None else ""
        raise RecipeError(f"{what}{where}: {exc.message}", source=source) from None
    except yaml.YAMLError as exc:
        if syntax_errors == "keep":
            return SYNTAX_ERROR, None
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"YAML syntax error{where}: {problem}", source=source) from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps the composer far from the limit
        raise RecipeError(f"{what} nests too deeply", source=source) from None
    finally:
        if loader is not None:
            loader.dispose()
