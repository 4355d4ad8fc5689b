"""The Explanation every explainer returns, and how it is saved without pickle.

``importance`` is a ``(targets, features)`` matrix where larger means more
important; ``features`` are the dataset's feature groups. Optional arrays:
``std`` (same shape, spread over repeats) and ``local`` (``(samples, targets,
features)`` per-sample attributions). ``arrays`` holds any other numeric
output an explainer wants kept (saved in the ``.npz``); ``extras`` holds small
JSON-able facts shown in reports and ``results.json``. ``extras["summary"]``,
a list of short human-readable lines (one formula or headline per target),
is printed as is by the terminal and HTML reports.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Explanation", "jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into plain Python, NaN/inf into None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class Explanation:
    """The result of one explainer on one target. Immutable."""

    importance: np.ndarray
    feature_names: list[str]
    target_names: list[str]
    target: str = "latent"
    std: np.ndarray | None = None
    local: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    # metadata, filled in by the runner (or by whoever calls explain directly)
    explainer: str = ""
    distribution: str = ""
    version: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    runtime_s: float | None = None
    library_versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        imp = np.asarray(self.importance, dtype=np.float64)
        object.__setattr__(self, "importance", imp)
        shape = (len(self.target_names), len(self.feature_names))
        if imp.shape != shape:
            raise ValueError(
                f"importance has shape {imp.shape}, expected (targets, features) = {shape}"
            )
        if self.std is not None:
            std = np.asarray(self.std, dtype=np.float64)
            if std.shape != shape:
                raise ValueError(f"std has shape {std.shape}, expected {shape}")
            object.__setattr__(self, "std", std)
        if self.local is not None:
            local = np.asarray(self.local)
            if local.ndim != 3 or local.shape[1:] != shape:
                raise ValueError(f"local has shape {local.shape}, expected (samples, {shape[0]}, {shape[1]})")
            object.__setattr__(self, "local", local)
        for key in self.arrays:
            if key in ("importance", "std", "local"):
                raise ValueError(f"extra array name {key!r} is reserved")

    def replace(self, **changes: Any) -> Explanation:
        return dataclasses.replace(self, **changes)

    # --- views -----------------------------------------------------------------
    def top_features(self, k: int = 5) -> dict[str, list[tuple[str, float]]]:
        """For each target, its ``k`` most important features with their importance."""
        order = np.argsort(-self.importance, axis=1, kind="stable")[:, :k]
        return {
            t: [(self.feature_names[i], float(self.importance[r, i])) for i in order[r]]
            for r, t in enumerate(self.target_names)
        }

    def normalized(self) -> np.ndarray:
        """Importance scaled so each target's non-negative values sum to 1 (rows of zeros stay 0)."""
        imp = np.clip(self.importance, 0.0, None)
        total = imp.sum(axis=1, keepdims=True)
        return np.divide(imp, total, out=np.zeros_like(imp), where=total > 0)

    @property
    def plot(self) -> Any:
        """The figures the reports draw, as methods returning matplotlib Figures: ``exp.plot.heatmap()``,
        ``.bar()``, ``.beeswarm(target, data=X)``, ``.waterfall(sample=0)``, ``.dependence(feature, data=X)``,
        ``.image()``, ``.sequence()``; ``exp.plot()`` draws the view that fits the data."""
        from .report.plotting import ExplanationPlots  # matplotlib only when plotting

        return ExplanationPlots(self)

    def _repr_html_(self) -> str:
        """Notebook display: a compact importance picture and a top-features table."""
        from .report.notebook import explanation_html

        return explanation_html(self)

    def _sample_ids(self) -> np.ndarray:
        """Row ids of ``local``'s samples: the explained rows' indices when the explainer recorded them."""
        assert self.local is not None
        ids = self.arrays.get("sample_index")
        return np.asarray(ids) if ids is not None and len(ids) == len(self.local) else np.arange(len(self.local))

    def to_pandas(self, kind: str = "importance") -> Any:
        """A pandas view.

        ``"importance"`` (default): a targets x features DataFrame;
        ``"std"``: the same for the spread; ``"local"``: the per-sample
        attributions in long form (columns ``sample``, ``target``,
        ``feature``, ``attribution``).
        """
        from .errors import require

        pd = require("pandas", "pandas", "to build DataFrames")
        if kind in ("importance", "std"):
            values = self.importance if kind == "importance" else self.std
            if values is None:
                raise ValueError(f"{self.explainer or 'this explanation'} has no std (no repeats or spread)")
            return pd.DataFrame(values, index=pd.Index(self.target_names, name="target"), columns=pd.Index(self.feature_names, name="feature"))
        if kind == "local":
            if self.local is None:
                raise ValueError(f"{self.explainer or 'this explanation'} has no per-sample attributions (local)")
            s, t, f = self.local.shape
            return pd.DataFrame({
                "sample": np.repeat(self._sample_ids(), t * f),
                "target": np.tile(np.repeat(np.asarray(self.target_names, dtype=object), f), s),
                "feature": np.tile(np.asarray(self.feature_names, dtype=object), s * t),
                "attribution": np.asarray(self.local).reshape(-1),
            })
        raise ValueError(f"kind must be 'importance', 'std' or 'local', got {kind!r}")

    def to_xarray(self) -> Any:
        """An ``xarray.Dataset`` with ``importance`` (and ``std``, ``local``) on named dims (needs xarray)."""
        from .errors import require

        xr = require("xarray", "xarray", "to build xarray datasets")
        coords: dict[str, Any] = {"target": list(self.target_names), "feature": list(self.feature_names)}
        variables: dict[str, Any] = {"importance": (("target", "feature"), self.importance)}
        if self.std is not None:
            variables["std"] = (("target", "feature"), self.std)
        if self.local is not None:
            variables["local"] = (("sample", "target", "feature"), np.asarray(self.local))
            coords["sample"] = self._sample_ids()
        attrs = {"explainer": self.explainer, "target_kind": self.target, "method": str(self.extras.get("method", self.explainer))}
        return xr.Dataset(variables, coords=coords, attrs=attrs)

    # --- serialisation ---------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The ``results.json`` entry for this explanation (arrays referenced, not embedded)."""
        return jsonable(
            {
                "name": self.explainer,
                "target": self.target,
                "feature_names": list(self.feature_names),
                "target_names": list(self.target_names),
                "importance": self.importance,
                "std": self.std,
                "runtime_s": self.runtime_s,
                "params": self.params,
                "extras": self.extras,
                "seed": self.seed,
                "distribution": self.distribution,
                "version": self.version,
                "library_versions": self.library_versions,
                "has_local": self.local is not None,
                "array_names": sorted(self.arrays),
            }
        )

    def save_arrays(self, path: str | Path) -> None:
        """Write ``importance``, ``std``, ``local`` and ``arrays`` to an ``.npz`` (atomically)."""
        path = Path(path)
        data: dict[str, np.ndarray] = {"importance": self.importance}
        if self.std is not None:
            data["std"] = self.std
        if self.local is not None:
            data["local"] = self.local
        data.update({k: np.asarray(v) for k, v in self.arrays.items()})
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **data)
        tmp.replace(path)

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], arrays_path: str | Path | None = None) -> Explanation:
        """Rebuild an explanation from its ``results.json`` entry and ``.npz`` (no pickle)."""
        std = entry.get("std")
        local = None
        arrays: dict[str, np.ndarray] = {}
        importance = np.asarray(entry["importance"], dtype=np.float64)
        if arrays_path is not None and Path(arrays_path).exists():
            with np.load(arrays_path, allow_pickle=False) as npz:
                importance = npz["importance"]
                std = npz["std"] if "std" in npz.files else std
                local = npz["local"] if "local" in npz.files else None
                arrays = {k: npz[k] for k in npz.files if k not in ("importance", "std", "local")}
        return cls(
            importance=importance,
            feature_names=list(entry["feature_names"]),
            target_names=list(entry["target_names"]),
            target=entry.get("target", "latent"),
            std=None if std is None else np.asarray(std, dtype=np.float64),
            local=local,
            arrays=arrays,
            extras=dict(entry.get("extras") or {}),
            explainer=entry.get("name", ""),
            distribution=entry.get("distribution", ""),
            version=entry.get("version", ""),
            params=dict(entry.get("params") or {}),
            seed=entry.get("seed"),
            runtime_s=entry.get("runtime_s"),
            library_versions=dict(entry.get("library_versions") or {}),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json())
