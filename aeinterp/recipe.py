"""YAML recipes: data, not code, validated in two passes.

Pass one checks the recipe's shape against :class:`Recipe` (pydantic, unknown
keys refused); pass two checks each step's ``params`` against that explainer's
own ``Params``. Every problem is reported at once, each with its location
(``explainers[2].params.background``), the YAML line, and the nearest valid
name where a name was misspelled.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import RecipeError
from .explainer import ExplainerParams, step_ref_fields
from .registry import ExplainerRegistry, RegisteredExplainer
from .targets import Target

__all__ = ["Recipe", "PlannedStep", "load_recipe", "parse_recipe", "plan_steps", "apply_overrides", "recipe_schema"]

TargetName = Literal["latent", "reconstruction", "reconstruction_error", "prediction"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitSection(_Section):
    explain_fraction: float = Field(0.25, gt=0, lt=1, description="share of samples held out for explaining")
    explain_size: int | None = Field(None, ge=1, description="number of held-out samples (overrides explain_fraction)")
    seed: int = Field(0, description="seed of the shuffle that makes the split")


class DataSection(_Section):
    path: str | None = Field(None, description="CSV with a header row, .npy or .npz (relative to the recipe)")
    builtin: str | None = Field(None, description="breast_cancer | wine | digits | sines | synthetic_tabular")
    kind: Literal["tabular", "image", "sequence"] | None = Field(None, description="needed when the array shape is ambiguous")
    feature_names: list[str] | None = Field(None, description="names of the columns (tabular) or of the last axis (sequences)")
    label: str | None = Field(None, description="CSV column / .npz array holding labels (not a feature)")
    key: str | None = Field(None, description="which array of an .npz holds the samples (default x)")
    groups: str | dict[str, list[str]] = Field("auto", description="auto | elements | features | steps | pixels | channels | patches:K | correlation:R | {group: [features]}")
    split: SplitSection = Field(default_factory=SplitSection)
    standardize: bool | None = Field(None, description="scale by the fit split's mean/std (default: on for bundled tabular sets)")
    nan: Literal["error", "drop"] = Field("error", description="refuse NaN/inf values, or drop those samples with a warning")
    max_samples: int | None = Field(None, ge=2, description="use a random subset of this many samples")

    @model_validator(mode="after")
    def _one_source(self) -> DataSection:
        if (self.path is None) == (self.builtin is None):
            raise ValueError("give exactly one of `path` or `builtin`")
        return self


class TrainSection(_Section):
    epochs: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    beta: float = Field(1.0, ge=0, description="weight of the KL term for variational models")
    alpha: float = Field(1.0, ge=0, description="weight of the cross-entropy term for supervised models")


class ModelSection(_Section):
    path: str | None = Field(None, description="TorchScript file, aeinterp checkpoint, whole pickled model (trust), or state dict / training checkpoint / .safetensors (with factory)")
    format: Literal["auto", "torchscript", "checkpoint", "state_dict", "safetensors"] = "auto"
    factory: str | None = Field(None, description="import path package.module:Class building the module for a state dict")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the factory")
    builtin: str | None = Field(None, description="auto | mlp | conv2d | conv1d | lstm | supervised_vae: build and train on the fit split")
    latent_dim: int | None = Field(None, ge=1, description="latent size of a builtin model")
    options: dict[str, Any] = Field(default_factory=dict, description="options of the builtin architecture (hidden, channels, activation, variational...)")
    train: TrainSection = Field(default_factory=TrainSection)
    save: str | None = Field(None, description="save the trained builtin model here (relative to the output folder)")
    encoder: str | None = Field(None, description="attribute name of the encoder (default encode, then encoder)")
    decoder: str | None = Field(None, description="attribute name of the decoder (default decode, then decoder)")
    code: int | str | None = Field(None, description="which encoder output is the code (index or key; default the mean)")
    trust: bool = Field(False, description="allow torch.load to unpickle arbitrary objects (only for files you trust)")
    head: str | None = Field(None, description="supervised models: the classifier head, an attribute name or package.module:callable, fed z[:, task_dims]")
    task_dims: list[int] | None = Field(None, min_length=1, description="supervised models: the latent dims the head reads")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        if (self.path is None) == (self.builtin is None):
            raise ValueError("give exactly one of `path` or `builtin`")
        if self.builtin is not None and self.latent_dim is None:
            raise ValueError("a builtin model needs `latent_dim`")
        if self.factory is not None and self.path is None:
            raise ValueError("`factory` applies to a state dict given by `path`")
        if (self.head is None) != (self.task_dims is None):
            raise ValueError("a supervised model needs both `head` and `task_dims`")
        return self


class StepSection(_Section):
    name: str = Field(description="registered explainer name (see `aeinterp plugins`)")
    alias: str | None = Field(None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", description="result name, so one explainer can run twice")
    targets: list[TargetName] | None = Field(None, min_length=1, description="targets for this step (default: the recipe's targets)")
    params: dict[str, Any] = Field(default_factory=dict)


class ReportSection(_Section):
    terminal: bool = True
    plots: bool = True
    html: bool = True
    top_k: int = Field(5, ge=1, description="features shown per latent")


class Recipe(_Section):
    seed: int = Field(0, description="seed passed to every explainer")
    data: DataSection
    model: ModelSection
    explainers: list[StepSection] = Field(min_length=1)
    targets: list[TargetName] = Field(default_factory=lambda: ["latent"], min_length=1)
    output: str = Field("out", description="output folder (relative to the recipe); --out overrides it")
    report: ReportSection = Field(default_factory=ReportSection)


@dataclass(frozen=True)
class PlannedStep:
    alias: str
    index: int
    target: Target
    explainer: RegisteredExplainer
    params: ExplainerParams


# --- locating problems in the YAML ----------------------------------------------------
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


# --- loading ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedRecipe:
    recipe: Recipe
    raw: dict[str, Any]
    base_dir: Path
    source: str
    node: yaml.Node | None


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML; list items by index)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {item!r}: expected key.path=value")
        parts: list[Any] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise RecipeError(f"--set {item!r}: {'.'.join(map(str, parts[: i + 1]))} is not an existing list item")
                node = node[part]
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = [] if isinstance(nxt, int) else {}
                node = node[part]
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        last = parts[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last >= len(node):
                raise RecipeError(f"--set {item!r}: index {last} is out of range")
            node[last] = parsed
        else:
            node[last] = parsed
    return raw


def parse_recipe(text: str, *, source: str = "<recipe>", base_dir: Path | None = None, overrides: Sequence[str] = ()) -> LoadedRecipe:
    """Pass one: YAML syntax and the recipe's shape. Raises :class:`RecipeError`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"YAML syntax error{where}: {problem}", source=source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"a recipe is a mapping of sections (data, model, explainers, ...), got a {type(raw).__name__}", source=source)
    raw = apply_overrides(raw, overrides)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(_problems(exc, node, Recipe), source=source) from None
    return LoadedRecipe(recipe=recipe, raw=raw, base_dir=base_dir or Path.cwd(), source=source, node=node)


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> LoadedRecipe:
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from None
    return parse_recipe(text, source=str(path), base_dir=path.resolve().parent, overrides=overrides)


def plan_steps(loaded: LoadedRecipe, registry: ExplainerRegistry) -> list[PlannedStep]:
    """Pass two: every step's explainer exists and its params validate; aliases are unique."""
    problems: list[str] = []
    planned: list[PlannedStep] = []
    seen: dict[str, int] = {}
    for i, step in enumerate(loaded.recipe.explainers):
        loc = ["explainers", i]
        entry = registry.get(step.name)
        if entry is None:
            line = _line(_node_at(loaded.node, [*loc, "name"]))
            problems.append(f"{_format_loc([*loc, 'name'])}{line}: {registry.unknown_message(step.name)}")
            continue
        try:
            params = entry.cls.Params.model_validate(step.params)
        except ValidationError as exc:
            problems += _problems(exc, loaded.node, entry.cls.Params, prefix=[*loc, "params"])
            continue
        for field in step_ref_fields(entry.cls.Params):
            ref = getattr(params, field)
            if ref is not None and ref not in seen:
                line = _line(_node_at(loaded.node, [*loc, "params", field]))
                close = difflib.get_close_matches(str(ref), list(seen), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else (f" (earlier steps: {', '.join(seen)})" if seen else " (there are no earlier steps)")
                problems.append(f"{_format_loc([*loc, 'params', field])}{line}: {ref!r} is not the alias of an earlier step{hint}")
        targets = step.targets or loaded.recipe.targets
        base = step.alias or step.name
        for t in dict.fromkeys(targets):
            alias = base if len(targets) == 1 else f"{base}-{t}"
            if alias in seen:
                line = _line(_node_at(loaded.node, loc))
                problems.append(f"{_format_loc(loc)}{line}: result name {alias!r} is already used by explainers[{seen[alias]}]; give this step an `alias:`")
                continue
            seen[alias] = i
            planned.append(PlannedStep(alias=alias, index=i, target=Target(t), explainer=entry, params=params))
    if problems:
        raise RecipeError(problems, source=loaded.source)
    return planned


def recipe_schema(registry: ExplainerRegistry) -> dict[str, Any]:
    """JSON Schema of a recipe, with each installed explainer's params."""
    from .datasets import BUILTIN_DATASETS

    schema = Recipe.model_json_schema()
    defs = schema.setdefault("$defs", {})
    builtin = defs.get("DataSection", {}).get("properties", {}).get("builtin")
    if builtin is not None:  # completion and hover docs for the bundled sets in editors
        builtin["anyOf"] = [{"enum": sorted(BUILTIN_DATASETS), "description": "; ".join(f"{k}: {v}" for k, v in BUILTIN_DATASETS.items())}, {"type": "null"}]
    variants = []
    for entry in registry:
        params_schema = entry.cls.Params.model_json_schema()
        defs.update(params_schema.pop("$defs", {}))
        key = f"Params_{entry.name}"
        defs[key] = params_schema
        variants.append({
            "type": "object",
            "description": f"{entry.summary} ({entry.distribution} {entry.version})",
            "properties": {
                "name": {"const": entry.name},
                "alias": {"type": "string"},
                "targets": {"type": "array", "items": {"enum": sorted(entry.cls.capabilities.targets)}},
                "params": {"$ref": f"#/$defs/{key}"},
            },
            "required": ["name"],
            "additionalProperties": False,
        })
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
