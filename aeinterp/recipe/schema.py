"""YAML recipes: data, not code, validated in two passes.

Pass one checks the recipe's shape against :class:`Recipe` (pydantic, unknown
keys refused); pass two checks each step's ``params`` against that explainer's
own ``Params``. Every problem is reported at once, each with its location
(``explainers[2].params.background``), the YAML line, and the nearest valid
name where a name was misspelled.
"""

from __future__ import annotations

import difflib
import json
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..data import DATA_KINDS
from ..errors import RecipeError, clip
from ..explainer import ExplainerParams, step_ref_fields
from ..plugins.registry import ExplainerRegistry, RegisteredExplainer
from ..targets import Target
from .locate import _format_loc, _line, _node_at, _problems
from .sections import (
    OUTPUT_FILES,
    RESERVED_OUTPUT_NAMES,
    SUPERVISED_MODELS,
    Recipe,
    StepSection,
    TargetName,
)
from .yamlsafe import SYNTAX_ERROR as _SYNTAX
from .yamlsafe import load_yaml

__all__ = ["Recipe", "PlannedStep", "load_recipe", "parse_recipe", "plan_steps", "apply_overrides", "recipe_schema"]


@dataclass(frozen=True)
class PlannedStep:
    alias: str
    index: int
    target: Target
    explainer: RegisteredExplainer
    params: ExplainerParams
    timeout: float | None = None


# --- loading ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedRecipe:
    recipe: Recipe
    raw: dict[str, Any]
    base_dir: Path
    source: str
    node: yaml.Node | None


def _override_value(value: str, where: str) -> Any:
    parsed = load_yaml(value, what=f"{where}: the value", syntax_errors="keep")[0]
    return value if parsed is _SYNTAX else parsed


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML; list items by index)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        where = f"--set {clip(item, 80)!r}"
        if not sep or not key.strip():
            raise RecipeError(f"{where}: expected key.path=value")
        names = key.strip().split(".")
        if not all(n.strip() for n in names):
            raise RecipeError(f"{where}: the key path {clip(key, 80)!r} has an empty part")
        parts: list[Any] = [int(n) if n.isascii() and n.isdigit() else n for n in names]
        parsed = _override_value(value, where)
        node: Any = raw
        for i, part in enumerate(parts):
            path = ".".join(names[: i + 1])
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise RecipeError(
                        f"{where}: {clip(path, 80)} is not an existing list item (that list has {len(node)} items, counted from 0)"
                    )
            elif isinstance(node, dict):
                part = str(part)
            else:
                above = ".".join(names[:i])
                raise RecipeError(
                    f"{where}: {clip(above, 80)} is a {type(node).__name__} value, not a section or a list, so it has no {clip(str(part), 40)!r}"
                )
            if i == len(parts) - 1:
                node[part] = parsed
            elif isinstance(node, dict) and part not in node:
                if isinstance(parts[i + 1], int):
                    raise RecipeError(f"{where}: there is no list {clip(path, 80)} to index into")
                node[part] = {}
                node = node[part]
            else:
                node = node[part]
    return raw


def parse_recipe(
    text: str,
    *,
    source: str = "<recipe>",
    base_dir: Path | None = None,
    overrides: Sequence[str] = (),
    registry: ExplainerRegistry | None = None,
) -> LoadedRecipe:
    """Pass one: YAML syntax and the recipe's shape. Raises :class:`RecipeError`.

    With ``registry``, a recipe that fails pass one also gets its steps checked
    (explainer names, params), so that every problem is reported in one round.
    """
    raw, node = load_yaml(text, source=source, what="the recipe")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"a recipe is a mapping of sections (data, model, explainers, ...), got a {type(raw).__name__}", source=source)
    try:
        raw = apply_overrides(raw, overrides)
    except RecipeError as exc:
        raise RecipeError(exc.problems, source=source) from None
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        problems = _problems(exc, node, Recipe)
        if registry is not None:
            problems += _raw_step_problems(raw, node, registry)
        raise RecipeError(problems, source=source) from None
    return LoadedRecipe(recipe=recipe, raw=raw, base_dir=base_dir or Path.cwd(), source=source, node=node)


def load_recipe(path: str | Path, overrides: Sequence[str] = (), registry: ExplainerRegistry | None = None) -> LoadedRecipe:
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"recipe file not found: {path}")
    if path.is_dir():
        raise RecipeError(f"{path} is a folder; give the recipe's YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from None
    return parse_recipe(text, source=str(path), base_dir=path.resolve().parent, overrides=overrides, registry=registry)


def _supervised(model: Any) -> bool | None:
    """Whether the recipe's model is supervised: True, False, or None when only loading it tells."""
    if not isinstance(model, Mapping):
        return None
    if model.get("head") is not None or model.get("builtin") in SUPERVISED_MODELS:
        return True
    return False if model.get("builtin") is not None else None


def _data_kind(data: Any) -> str | None:
    """The data kind the recipe's data section states (``kind:``) or implies (a bundled dataset); None when only loading tells."""
    if not isinstance(data, Mapping):
        return None
    if data.get("kind") in DATA_KINDS:
        return str(data["kind"])
    from ..io.datasets import BUILTIN_KINDS

    return BUILTIN_KINDS.get(data.get("builtin")) if isinstance(data.get("builtin"), str) else None  # type: ignore[arg-type]


def _raw_step_problems(raw: Mapping[str, Any], node: yaml.Node | None, registry: ExplainerRegistry) -> list[str]:
    """Pass two on a recipe whose shape is wrong elsewhere: the steps that have a valid shape."""
    items = raw.get("explainers")
    if not isinstance(items, list):
        return []
    steps: list[StepSection | None] = []
    for item in items:
        try:
            steps.append(StepSection.model_validate(item))
        except ValidationError:  # reported by pass one already
            steps.append(None)
    targets = raw.get("targets", ["latent"])
    if not (isinstance(targets, list) and targets and all(t in typing.get_args(TargetName) for t in targets)):
        targets = ["latent"]
    return _check_steps(steps, node, registry, targets, _supervised(raw.get("model")), _data_kind(raw.get("data")))[1]


def _check_steps(
    steps: Sequence[StepSection | None],
    node: yaml.Node | None,
    registry: ExplainerRegistry,
    default_targets: Sequence[str],
    supervised: bool | None,
    kind: str | None = None,
) -> tuple[list[PlannedStep], list[str]]:
    problems: list[str] = []
    planned: list[PlannedStep] = []
    seen: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step is None:
            continue
        loc = ["explainers", i]
        entry = registry.get(step.name)
        if entry is None:
            line = _line(_node_at(node, [*loc, "name"]))
            problems.append(f"{_format_loc([*loc, 'name'])}{line}: {registry.unknown_message(step.name)}")
            continue
        try:
            params = entry.cls.Params.model_validate(step.params)
        except ValidationError as exc:
            problems += _problems(exc, node, entry.cls.Params, prefix=[*loc, "params"])
            continue
        for field in step_ref_fields(entry.cls.Params):
            value = getattr(params, field)
            many = isinstance(value, (list, tuple))  # list[StepRef]: check every alias, located by index
            for k, ref in enumerate(value if many else [value]):
                if ref is None or ref in seen:
                    continue
                where = [*loc, "params", field, *([k] if many else [])]
                line = _line(_node_at(node, where))
                close = difflib.get_close_matches(str(ref), list(seen), n=1)
                hint = (
                    f"; did you mean {close[0]!r}?"
                    if close
                    else (f" (earlier steps: {', '.join(seen)})" if seen else " (there are no earlier steps)")
                )
                problems.append(f"{_format_loc(where)}{line}: {ref!r} is not the alias of an earlier step{hint}")
        targets = step.targets or list(default_targets)  # type: ignore[arg-type]
        tloc = [*loc, "targets"] if step.targets else ["targets"]
        base = step.alias or step.name
        caps = entry.cls.capabilities
        if kind is not None and kind not in caps.data_kinds:
            line = _line(_node_at(node, [*loc, "name"]))
            problems.append(
                f"{_format_loc([*loc, 'name'])}{line}: {entry.name} works on {', '.join(sorted(caps.data_kinds))} data; the data section holds {kind} data"
            )
            continue
        for t in dict.fromkeys(targets):
            if t not in caps.targets:
                line = _line(_node_at(node, tloc))
                problems.append(
                    f"{_format_loc(tloc)}{line}: {entry.name} cannot explain target {t!r}; it supports {', '.join(sorted(caps.targets))}"
                )
                continue
            if t == Target.PREDICTION.value and supervised is False:
                line = _line(_node_at(node, tloc))
                problems.append(
                    f"{_format_loc(tloc)}{line}: target 'prediction' needs a supervised model: give the model section "
                    "`head:` and `task_dims:`, or use `builtin: supervised_vae`"
                )
                continue
            alias = base if len(targets) == 1 else f"{base}-{t}"
            if alias in seen:
                line = _line(_node_at(node, loc))
                problems.append(
                    f"{_format_loc(loc)}{line}: result name {alias!r} is already used by explainers[{seen[alias]}]; give this step an `alias:`"
                )
                continue
            seen[alias] = i
            planned.append(PlannedStep(alias=alias, index=i, target=Target(t), explainer=entry, params=params, timeout=step.timeout))
    for alias, i in seen.items():  # <alias>.<figure>.png of one step must not be another step's file
        for cut in (k for k, ch in enumerate(alias) if ch == "."):
            other = alias[:cut]
            if other in seen and seen[other] != i:
                line = _line(_node_at(node, ["explainers", i]))
                problems.append(
                    f"explainers[{i}]{line}: result name {alias!r} starts with {other + '.'!r}, where the files of "
                    f"explainers[{seen[other]}] ({other}.<figure>.png) go; choose an alias without that prefix"
                )
    return planned, problems


def plan_steps(loaded: LoadedRecipe, registry: ExplainerRegistry) -> list[PlannedStep]:
    """Pass two: every step's explainer exists, supports its targets and its params validate; result names are unique."""
    recipe = loaded.recipe
    planned, problems = _check_steps(
        recipe.explainers, loaded.node, registry, recipe.targets, _supervised(loaded.raw.get("model")), _data_kind(loaded.raw.get("data"))
    )
    out = resolve(loaded.base_dir, recipe.output)
    if out is not None and out.exists() and not out.is_dir():
        problems.append(f"output{_line(_node_at(loaded.node, ['output']))}: {out} is a file, not a folder; name a folder for the results")
    for step in planned:  # <alias>.npz / .png beside aeinterp's own files: never one of them
        if step.alias.lower() in RESERVED_OUTPUT_NAMES:
            loc = ["explainers", step.index, "alias"] if recipe.explainers[step.index].alias else ["explainers", step.index, "name"]
            problems.append(
                f"{_format_loc(loc)}{_line(_node_at(loaded.node, loc))}: result name {step.alias!r} is reserved (aeinterp writes "
                f"{', '.join(sorted(OUTPUT_FILES))} in the output folder); give this step another `alias:`"
            )
    if recipe.model.save:
        save = Path(recipe.model.save).as_posix()
        taken = [a for s in planned for a in (s.alias,) if save.startswith(a + ".")]
        if save.lower() in RESERVED_OUTPUT_NAMES or taken:
            what = f"the files of step {taken[0]!r}" if taken else "aeinterp's own output"
            problems.append(
                f"model.save{_line(_node_at(loaded.node, ['model', 'save']))}: {save!r} would overwrite {what}; choose another file name"
            )
    if problems:
        raise RecipeError(problems, source=loaded.source)
    return planned


def recipe_schema(registry: ExplainerRegistry) -> dict[str, Any]:
    """JSON Schema of a recipe, with each installed explainer's params.

    An explainer whose params cannot be put in a JSON Schema gets an open
    params object (and a warning naming it); the others are unaffected.
    """
    from ..io.datasets import BUILTIN_DATASETS

    schema = Recipe.model_json_schema()
    defs = schema.setdefault("$defs", {})
    builtin = defs.get("DataSection", {}).get("properties", {}).get("builtin")
    if builtin is not None:  # completion and hover docs for the bundled sets in editors
        builtin["anyOf"] = [
            {"enum": sorted(BUILTIN_DATASETS), "description": "; ".join(f"{k}: {v}" for k, v in BUILTIN_DATASETS.items())},
            {"type": "null"},
        ]
    variants = []
    for entry in registry:
        try:
            params_schema = entry.cls.Params.model_json_schema()
            json.dumps(params_schema)
        except Exception as exc:  # one plugin's odd params must not break the schema of the others
            warnings.warn(
                f"explainer {entry.name!r} ({entry.distribution} {entry.version}): its params have no JSON Schema ({type(exc).__name__}: {clip(str(exc), 200)})",
                stacklevel=2,
            )
            params_schema = {"type": "object", "description": f"params of {entry.name} (no JSON Schema available)"}
        defs.update(params_schema.pop("$defs", {}))
        key = f"Params_{entry.name}"
        defs[key] = params_schema
        variants.append(
            {
                "type": "object",
                "description": f"{entry.summary} ({entry.distribution} {entry.version})",
                "properties": {
                    "name": {"const": entry.name},
                    "alias": {"type": "string"},
                    "targets": {"type": "array", "items": {"enum": sorted(entry.cls.capabilities.targets)}},
                    "params": {"$ref": f"#/$defs/{key}"},
                    "timeout": {"type": "number", "exclusiveMinimum": 0},
                },
                "required": ["name"],
                "additionalProperties": False,
            }
        )
    if variants:
        schema["properties"]["explainers"]["items"] = {"anyOf": variants}
    return schema


def resolve(base: Path, value: str | None) -> Path | None:
    """A recipe path: relative ones resolve against the recipe's folder."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def dump_recipe(recipe: Recipe) -> Mapping[str, Any]:
    return recipe.model_dump(mode="json", exclude_none=True)
