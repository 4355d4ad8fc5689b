"""The recipe's shape: one pydantic model per section (data, split, model, train, steps, report), unknown keys refused.

Pass one of validation (:mod:`.schema` runs it and pass two, each step's
params against its explainer's ``Params``). The names a run writes into its
output folder are reserved here, so an alias or ``model.save`` cannot take them.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..explainer import reject_bool_numbers
from .executor import ExecutorConfig

TargetName = Literal["latent", "latent_pca", "reconstruction", "reconstruction_error", "prediction"]
#: files every run writes in its output folder (the run lock, results, the split's rows, the values the reports draw)
OUTPUT_FILES = frozenset({"results.json", "report.html", "split.npz", "report_values.npz", ".aeinterp.lock"})
#: names no step alias and no model.save may take: those files, and the stems of the .npz ones (a step writes <alias>.npz)
RESERVED_OUTPUT_NAMES = OUTPUT_FILES | {"split", "report_values"}
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds both accept 0 .. 2**32 - 1
SUPERVISED_MODELS = ("supervised_vae",)


def _builtin_data() -> list[str]:
    from ..io.datasets import BUILTIN_DATASETS

    return list(BUILTIN_DATASETS)


def _builtin_models() -> list[str]:
    from ..models.architectures import ARCHITECTURES

    return ["auto", *ARCHITECTURES]


def _name_check(value: str | None, valid: Sequence[str], what: str) -> str | None:
    if value is not None and value not in valid:
        close = difflib.get_close_matches(value, list(valid), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {what} {value!r}{hint} (available: {', '.join(valid)})")
    return value


def _inside(value: str | None, what: str) -> str | None:
    """A path relative to the output folder that stays inside it."""
    if value is None:
        return None
    p = Path(value)
    if not value.strip() or p.is_absolute() or value.startswith("~") or ".." in p.parts:
        raise ValueError(f"{what} {value!r} must be a relative path inside the output folder (no absolute path, `~` or `..`)")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _no_bool_numbers = field_validator("*", mode="before")(classmethod(reject_bool_numbers))  # `seed: true` is no seed


class SplitSection(_Section):
    explain_fraction: float = Field(0.25, gt=0, lt=1, description="share of samples held out for explaining (random split)")
    explain_size: int | None = Field(None, ge=1, description="number of held-out samples (overrides explain_fraction)")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of the shuffle that makes the random split")
    column: str | None = Field(
        None,
        description="your own split: a column (CSV/Parquet column, .h5ad / .zarr obs column, .npz array) whose values say which rows are explained",
    )
    explain: str | list[str] = Field("test", description="with `column`: the value(s) marking the rows to explain")
    fit: str | list[str] | None = Field(
        None, description="with `column`: the value(s) marking the fit/background rows (default: every other row)"
    )
    explain_rows: str | list[int] | None = Field(
        None, description="your own split: 0-based row indices to explain, a list or an index file (.npy, or .txt with one per line)"
    )
    fit_rows: str | list[int] | None = Field(None, description="with `explain_rows`: the fit/background rows (default: every other row)")

    @model_validator(mode="after")
    def _one_kind(self) -> SplitSection:
        if self.column is not None and (self.explain_rows is not None or self.fit_rows is not None):
            raise ValueError("give either `column` or `explain_rows` for your own split, not both")
        if self.fit_rows is not None and self.explain_rows is None:
            raise ValueError("`fit_rows` needs `explain_rows`")
        return self

    def values(self, which: str) -> list[str] | None:
        v = getattr(self, which)
        return None if v is None else ([v] if isinstance(v, str) else list(v))


class DataSection(_Section):
    path: str | None = Field(
        None,
        description="CSV with a header row, Parquet, AnnData .h5ad or .zarr store, .npy (memory-mapped) or .npz (relative to the recipe)",
    )
    explain_path: str | None = Field(
        None, description="your own split: a file of the rows to explain (the fit rows come from `path` or `fit_path`)"
    )
    fit_path: str | None = Field(None, description="with `explain_path`: the file of the fit/background rows")
    encoding: str = Field("utf-8", description="text encoding of a CSV file, e.g. latin-1")
    builtin: str | None = Field(None, description="breast_cancer | wine | digits | sines | synthetic_tabular")
    kind: Literal["tabular", "image", "sequence"] | None = Field(None, description="needed when the array shape is ambiguous")
    feature_names: list[str] | None = Field(None, description="names of the columns (tabular) or of the last axis (sequences)")
    label: str | None = Field(None, description="CSV column / .npz array holding labels (not a feature)")
    factors: list[str] | None = Field(
        None,
        description="CSV columns / .npz arrays holding known generating factors (not features, numeric or categorical): "
        "the code page scores the latents against them (MIG, DCI, SAP); default: the label, if any, as one factor",
    )
    index: int | str | None = Field(
        None,
        description="CSV column holding row labels (not a feature): its name, or its position (0: the first, e.g. the unnamed index pandas' df.to_csv() writes)",
    )
    key: str | None = Field(
        None, description="which array of an .npz holds the samples (default x), or which layer of an .h5ad / .zarr (default X)"
    )
    layer: str | None = Field(
        None,
        description="which matrix of an .h5ad or .zarr: X (default), raw (adata.raw.X) or a layer name; the results say which was read",
    )
    groups: str | dict[str, list[str]] = Field(
        "auto", description="auto | elements | features | steps | pixels | channels | patches:K | correlation:R | {group: [features]}"
    )
    split: SplitSection = Field(default_factory=SplitSection)
    standardize: bool | None = Field(None, description="scale by the fit split's mean/std (default: on for bundled tabular sets)")
    nan: Literal["error", "drop"] = Field("error", description="refuse NaN/inf values, or drop those samples with a warning")
    max_samples: int | None = Field(None, ge=2, description="use a random subset of this many samples")

    @field_validator("builtin")
    @classmethod
    def _known_builtin(cls, v: str | None) -> str | None:
        return _name_check(v, _builtin_data(), "builtin dataset")

    @model_validator(mode="after")
    def _one_source(self) -> DataSection:
        if self.fit_path is not None and self.explain_path is None:
            raise ValueError("`fit_path` needs `explain_path`")
        if sum(v is not None for v in (self.path, self.builtin, self.fit_path)) != 1:
            raise ValueError("give exactly one of `path` or `builtin` (or `fit_path` with `explain_path`)")
        if self.layer is not None and self.key is not None:
            raise ValueError("give the .h5ad matrix once: `layer:` (or the older `key:`), not both")
        return self


class TrainSection(_Section):
    epochs: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    beta: float = Field(1.0, ge=0, description="weight of the KL term for variational models")
    alpha: float = Field(1.0, ge=0, description="weight of the cross-entropy term for supervised models")


class ModelSection(_Section):
    path: str | None = Field(
        None,
        description="TorchScript file, aeinterp checkpoint, whole pickled model (trust), or state dict / training checkpoint / .safetensors (with factory)",
    )
    format: Literal["auto", "torchscript", "checkpoint", "state_dict", "safetensors"] = "auto"
    factory: str | None = Field(None, description="import path package.module:Class building the module for a state dict")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the factory")
    builtin: str | None = Field(None, description="auto | mlp | conv2d | conv1d | lstm | supervised_vae: build and train on the fit split")
    latent_dim: int | None = Field(None, ge=1, description="latent size of a builtin model")
    options: dict[str, Any] = Field(
        default_factory=dict, description="options of the builtin architecture (hidden, channels, activation, variational...)"
    )
    train: TrainSection = Field(default_factory=TrainSection)
    save: str | None = Field(None, description="save the trained builtin model here (relative to the output folder)")
    encoder: str | None = Field(None, description="attribute name of the encoder (default encode, then encoder)")
    decoder: str | None = Field(None, description="attribute name of the decoder (default decode, then decoder)")
    code: int | str | None = Field(None, description="which encoder output is the code (index or key; default the mean)")
    trust: bool = Field(False, description="allow torch.load to unpickle arbitrary objects (only for files you trust)")
    head: str | None = Field(
        None, description="supervised models: the classifier head, an attribute name or package.module:callable, fed z[:, task_dims]"
    )
    task_dims: list[int] | None = Field(None, min_length=1, description="supervised models: the latent dims the head reads")

    @field_validator("builtin")
    @classmethod
    def _known_builtin(cls, v: str | None) -> str | None:
        return _name_check(v, _builtin_models(), "builtin model")

    @field_validator("save")
    @classmethod
    def _save_inside(cls, v: str | None) -> str | None:
        return _inside(v, "model.save")

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
    timeout: float | None = Field(
        None, gt=0, description="seconds after which the step is abandoned and recorded as failed (default: --timeout, else none)"
    )


class ReportSection(_Section):
    terminal: bool = True
    plots: bool = True
    html: bool = True
    top_k: int = Field(5, ge=1, description="features shown per latent")


class Recipe(_Section):
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed passed to every explainer")
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        description="where the model trains and the explainers run: auto | cpu | cuda | cuda:<index> | mps; --device overrides it",
    )
    cache: bool | str = Field(
        True,
        description="reuse trained built-in models and finished steps whose inputs are unchanged: true (folder $AEINTERP_CACHE_DIR or ~/.cache/aeinterp), false, or a folder; --no-cache / --cache-dir override it",
    )
    data: DataSection
    model: ModelSection
    explainers: list[StepSection] = Field(min_length=1)
    targets: list[TargetName] = Field(default_factory=lambda: ["latent"], min_length=1)  # type: ignore[arg-type]
    output: str = Field("out", description="output folder (relative to the recipe); --out overrides it")
    report: ReportSection = Field(default_factory=ReportSection)
    executor: ExecutorConfig = Field(
        default_factory=ExecutorConfig, description="where steps run: {kind: local | ray, address, num_cpus, num_gpus, max_retries}"
    )
