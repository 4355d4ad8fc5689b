"""The one-call Python API: your own ``nn.Module`` and arrays, no recipe.

>>> import aeinterp
>>> exp = aeinterp.explain(net, X_test, "deepshap", background=X_train)   # doctest: +SKIP
>>> exp.to_pandas()                                                       # doctest: +SKIP

:func:`explain` explains exactly the rows of ``X`` (all of them, in order);
the background / baseline rows an explainer needs come from ``background``
(default: ``X`` itself). :func:`explain_all` runs several explainers and
returns an :class:`Explanations` with the agreement summary the report shows
and ``.report(out_dir)`` for the same HTML/PNG/``results.json`` as the CLI.
Both validate like recipes (unknown method with the nearest name, params
checked by the explainer's ``Params``) and reach the same
:func:`aeinterp.run_explainer` path as the runner.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import ArrayDataset, element_names, make_groups
from .errors import AeinterpError, DataError, RecipeError
from .explanation import Explanation
from .io.checks import check_float32_range, check_unique_names
from .plugins.registry import ExplainerRegistry
from .progress import NullProgress, Progress, RichProgress, TextProgress
from .report import views as _views  # noqa: F401  (exp.plot and notebook display on every result)
from .run.dispatch import run_explainer
from .targets import Target

if TYPE_CHECKING:
    from rich.console import Console

    from .report.summary import Agreement

__all__ = [
    "explain",
    "explain_all",
    "Explanations",
    "as_dataset",
    "as_model",
    "find_explainer",
    "latent_page",
    "code_page",
    "load",
    "row_labels",
]

_KIND_BY_NDIM = {2: "tabular", 3: "sequence", 4: "image"}


# --- inputs ------------------------------------------------------------------------------
def _to_array(x: Any, what: str) -> tuple[np.ndarray, list[str] | None]:
    """A numpy array and, for a pandas DataFrame, its column names."""
    names = None
    if hasattr(x, "columns") and hasattr(x, "to_numpy"):  # pandas DataFrame, without importing pandas
        names = [str(c) for c in x.columns]
        text = [(str(c), t) for c, t in zip(x.columns, getattr(x, "dtypes", [])) if getattr(t, "kind", "O") not in "biuf"]
        if text:  # name the column, as the CSV reader does
            more = f" (and {len(text) - 1} more columns)" if len(text) > 1 else ""
            raise DataError(
                f"{what}'s column {text[0][0]!r} is not numeric (dtype {text[0][1]}){more}; encode categorical columns first or drop them"
            )
        x = x.to_numpy()
    elif hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{what} cannot be read as an array: {exc}") from None
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise DataError(f"{what} is not numeric (dtype {arr.dtype}); encode categorical columns first")
    if arr.ndim < 2:
        raise DataError(f"{what} has shape {arr.shape}; give a batch of samples, e.g. (samples, features)")
    return arr, names


def row_labels(X: Any, sample_names: Sequence[Any] | None = None) -> list[str] | None:
    """The labels of ``X``'s rows: ``sample_names`` when given, else a pandas DataFrame's index unless it is
    the default 0..n-1 (then positions say the same), else an AnnData's ``obs_names``; None otherwise."""
    n = len(X) if hasattr(X, "__len__") else None
    if sample_names is not None:
        labels = [str(v) for v in sample_names]
        if n is not None and len(labels) != n:
            raise DataError(f"sample_names has {len(labels)} labels for {n} rows of X")
        return labels
    index = getattr(X, "obs_names", None) if hasattr(X, "obs") else getattr(X, "index", None)
    if index is None or not hasattr(X, "shape") or callable(index):
        return None
    values = list(index)
    if len(values) != X.shape[0]:
        return None
    if type(index).__name__ == "RangeIndex" and list(values) == list(range(len(values))):
        return None
    return [str(v) for v in values]


def load(path: str | Path) -> Any:
    """Read a result back: a folder written by ``exp.save(path)`` gives the :class:`Explanation`; a run's
    output folder (``aeinterp run``, ``Explanations.report``) gives its ``RunResults`` (no pickle)."""
    from ._select import JSON_FILE
    from .run.results import RESULTS_FILE, load_results

    folder = Path(path)
    if (folder / JSON_FILE).is_file():
        return Explanation.load(folder)
    if (folder / RESULTS_FILE).is_file():
        return load_results(folder)
    raise AeinterpError(f"{folder} holds neither {JSON_FILE} (exp.save) nor {RESULTS_FILE} (a run's output folder)")


def as_dataset(
    X: Any,
    *,
    background: Any = None,
    feature_names: Sequence[str] | None = None,
    kind: str | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    dtype: Any = np.float32,
    sample_names: Sequence[Any] | None = None,
    layer: str | None = None,
    labels: str | None = None,
    split: str | None = None,
) -> ArrayDataset:
    """An :class:`ArrayDataset` whose explain split is exactly ``X`` and whose fit split is ``background``.

    An AnnData ``X`` is read by :func:`aeinterp.io.anndata.anndata_dataset` (``layer``: ``X``, ``raw``
    or a layer; ``labels`` / ``split``: ``obs`` columns); a scipy sparse matrix stays sparse
    (:func:`aeinterp.io.inputs.lazy_dataset`).

    ``X`` and ``background`` are numpy arrays, torch tensors or pandas
    DataFrames (feature names from the columns); ``kind`` is inferred from the
    number of dimensions (2: tabular, 3: sequence, 4: image; pass
    ``kind="image"`` for ``(N, H, W)`` images). Row labels (the dataset's
    ``row_names``) come from ``sample_names`` or a DataFrame's index (:func:`row_labels`).
    """
    from .io.inputs import lazy_dataset

    lazy = lazy_dataset(
        X, background=background, feature_names=feature_names, kind=kind, groups=groups, layer=layer, labels=labels, split=split
    )
    if lazy is not None:
        cells = getattr(X, "obs_names", None)
        if lazy.row_names is None and cells is not None and len(cells) == lazy.x.shape[0]:
            object.__setattr__(lazy, "row_names", [str(v) for v in cells])  # an AnnData's cell names label its rows
        return lazy
    rows = row_labels(X, sample_names)
    x, df_names = _to_array(X, "X")
    if kind == "image" and x.ndim == 3:
        x = x[:, None]
    kind = kind or _KIND_BY_NDIM.get(x.ndim)
    if kind is None:
        raise DataError(f"X has shape {x.shape}; pass kind='tabular' | 'sequence' | 'image'")
    names = list(feature_names) if feature_names is not None else df_names
    if names is not None:
        check_unique_names([str(v) for v in names], "feature_names" if feature_names is not None else "X's columns")
    n = len(x)
    if n == 0:
        raise DataError("X holds no samples")
    explain_index = np.arange(n)
    fit_index = explain_index
    if background is not None:
        b, b_names = _to_array(background, "background")
        if kind == "image" and b.ndim == 3:
            b = b[:, None]
        if b.shape[1:] != x.shape[1:]:
            raise DataError(f"background samples have shape {b.shape[1:]}, X's samples {x.shape[1:]}")
        if df_names is not None and b_names is not None and b_names != df_names:
            raise DataError("background's columns differ from X's columns; use the same columns in the same order")
        if len(b) == 0:
            raise DataError("background holds no samples")
        x = np.concatenate([x, b])
        fit_index = np.arange(n, n + len(b))
        if rows is not None:
            rows = rows + (row_labels(background) or [f"background:{i}" for i in range(len(b))])
    if np.dtype(dtype) == np.float32:
        check_float32_range(x, "X" if background is None else "X and background", names)
    x = np.ascontiguousarray(x, dtype=dtype)
    if not np.isfinite(x).all():
        where = "X" if not np.isfinite(x[:n]).all() else "background"
        bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
        raise DataError(f"{where} has NaN or infinite values (first in row {bad if where == 'X' else bad - n}); clean or drop those rows")
    if kind == "image" and names is not None:
        raise DataError("feature_names do not apply to image data (pixels are named by position)")
    try:
        element = element_names(kind, x.shape[1:], names)  # type: ignore[arg-type]
    except Exception as exc:
        raise DataError(f"feature names do not fit X of shape {(n, *x.shape[1:])}: {exc}") from None
    grp = make_groups(kind, x.shape[1:], groups, feature_names=element, x=x[fit_index], base_names=names)  # type: ignore[arg-type]
    return ArrayDataset(
        x=x,
        kind=kind,  # type: ignore[arg-type]
        feature_names=element,
        groups=grp,
        fit_index=fit_index,
        explain_index=explain_index,
        name="array",
        row_names=rows,  # type: ignore[arg-type]
    )  # type: ignore[arg-type]


def as_model(
    model: Any,
    data: ArrayDataset,
    *,
    encoder: str | None = None,
    decoder: str | None = None,
    code: int | str | None = None,
    device: str | None = None,
) -> Any:
    """``model`` as an :class:`aeinterp.Model`: an nn.Module or TorchScript module is adapted and checked
    against ``data``; anything that already satisfies the protocol is used as is."""
    from torch import nn

    from .model import Model
    from .models.loading import adapt

    if isinstance(model, nn.Module):
        return adapt(model, data, encoder=encoder, decoder=decoder, code=code, description=type(model).__name__, device=device)
    if isinstance(model, Model):
        return model
    raise AeinterpError(
        f"model is a {type(model).__name__}; give a torch.nn.Module (with encoder/decoder submodules or encode/decode "
        "methods), a TorchScript module, or an object with encode, decode, latent_dim and input_shape (aeinterp.Model)"
    )


def _params(method: str, params: Mapping[str, Any], registry: ExplainerRegistry, loc: str = "params") -> Any:
    from pydantic import ValidationError

    from .recipe.schema import _problems

    entry = registry.get(method) if isinstance(method, str) else None
    if entry is None:
        raise RecipeError(registry.unknown_message(str(method)), source=f"for {method!r}", what="method")
    try:
        return entry, entry.cls.Params.model_validate(dict(params))
    except ValidationError as exc:
        raise RecipeError(_problems(exc, None, entry.cls.Params, prefix=[loc]), source=f"of {method!r}", what="params") from None


def _progress(progress: bool | Progress | None) -> tuple[Any, Progress]:
    """(context manager, tracker): rich bars in a terminal or notebook, silent otherwise or when asked."""
    if progress is False:
        bar = NullProgress()
        return bar, bar
    if progress is None or progress is True:
        from rich.console import Console

        from .text import safe_console

        console = safe_console(Console(stderr=True))  # step names in the bars: control characters shown escaped
        if console.is_jupyter:  # rich's live bars need ipywidgets there and warn on every call without it
            text = TextProgress()
            return text, text
        if progress is True or console.is_terminal:
            bar = RichProgress(console)  # type: ignore[assignment]
            return bar, bar
        bar = NullProgress()
        return bar, bar
    return NullProgress(), progress


def _registry(registry: ExplainerRegistry | None) -> ExplainerRegistry:
    from .report.display import enable_figure_display

    enable_figure_display()  # figures returned to a notebook cell are drawn
    if registry is not None:
        return registry
    from .plugins.manager import PluginHost

    return PluginHost().registry


def _single_target(target: str | Target, targets: Any) -> Target:
    if targets is not None:
        if isinstance(targets, (list, tuple)):
            if len(targets) != 1:
                raise AeinterpError(
                    f"explain() runs one target, got {list(targets)}; use aeinterp.explain_all(..., targets=[...]) for several"
                )
            targets = targets[0]
        target = targets
    try:
        return Target(target)
    except ValueError:
        raise AeinterpError(f"unknown target {target!r}; use one of {', '.join(t.value for t in Target)}") from None


def explain(
    model: Any,
    X: Any,
    method: str,
    *,
    target: str | Target = "latent",
    targets: str | Sequence[str] | None = None,
    background: Any = None,
    feature_names: Sequence[str] | None = None,
    kind: str | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    seed: int = 0,
    progress: bool | Progress | None = None,
    encoder: str | None = None,
    decoder: str | None = None,
    code: int | str | None = None,
    registry: ExplainerRegistry | None = None,
    device: str | None = None,
    executor: Any = None,
    sample_names: Sequence[Any] | None = None,
    layer: str | None = None,
    labels: str | None = None,
    split: str | None = None,
    **params: Any,
) -> Explanation:
    """Explain every target (all latent dims by default) of ``model`` on exactly the rows of ``X``.

    Parameters
    ----------
    model:
        a ``torch.nn.Module`` (encoder/decoder submodules or encode/decode
        methods; VAE outputs as a tuple, dict or distribution — the mean is
        the code unless ``code=`` says otherwise), a TorchScript module, or an
        :class:`aeinterp.Model`.
    X:
        the samples to explain: numpy array, torch tensor or pandas DataFrame
        (feature names from its columns, row labels from its index: the
        result's ``sample_names``, ``to_pandas("local")``'s index and
        ``exp.sel(sample=...)``).
    method:
        a registered explainer name (``aeinterp plugins`` lists them), e.g.
        ``"deepshap"``, ``"permutation"``, ``"integrated_gradients"``.
    target / targets:
        ``latent`` (default), ``reconstruction``, ``reconstruction_error``
        (``prediction`` for supervised models).
    background:
        the rows that form the background / baseline / fit split (default: ``X``).
    progress:
        ``None`` shows a progress bar in a terminal (rich) or a notebook (a text line
        per loop, no widgets needed), ``False`` never.
    device:
        ``auto | cpu | cuda[:i] | mps``: move the model there first (``None``: where it is).
    executor:
        where the work runs: ``None``/``"local"`` (this process) or ``"ray"`` /
        an ``executor:`` mapping (see :func:`aeinterp.run.executors.make_executor`).
    sample_names:
        labels of ``X``'s rows (default: a DataFrame's index when it is not 0..n-1, an AnnData's ``obs_names``).
    layer, labels, split:
        for an AnnData ``X``: which matrix (``X``, ``raw`` or a layer name), the ``obs`` column of
        labels, and an ``obs`` column whose value ``test`` marks the cells to explain (the others
        are the background). See ``docs/singlecell.md``.
    **params:
        the explainer's parameters, checked by its ``Params``.
    """
    from .explainer import Explainer

    if isinstance(model, Explainer) or (isinstance(model, type) and issubclass(model, Explainer)):
        # the plugin author's form, explain(ExplainerClass, model, dataset, ...): the same as run_explainer
        passed: dict[str, Any] = {"progress": progress} if progress is not None and not isinstance(progress, bool) else {}
        return run_explainer(model, X, method, target=target, seed=seed, executor=executor, **passed, **params)  # type: ignore[arg-type]
    reg = _registry(registry)
    entry, p = _params(method, params, reg)
    tgt = _single_target(target, targets)
    data, adapted = _inputs(
        model,
        X,
        background=background,
        feature_names=feature_names,
        kind=kind,
        groups=groups,
        sample_names=sample_names,
        encoder=encoder,
        decoder=decoder,
        code=code,
        device=device,
        layer=layer,
        labels=labels,
        split=split,
    )
    bar, tracker = _progress(progress)
    with bar:
        result = run_explainer(
            entry.cls(p, progress=tracker),
            adapted,
            data,
            target=tgt,
            seed=seed,
            distribution=entry.distribution,
            version=entry.version,
            executor=executor,
        )
    return _with_source(result, data)


def _inputs(model: Any, X: Any, **kw: Any) -> tuple[ArrayDataset, Any]:
    """The dataset and the adapted model (an scvi-tools model reads its own registered matrix and covariates)."""
    from .models.scvi import is_scvi_model

    if is_scvi_model(model):
        from .io.inputs import adapter_dataset
        from .models.scvi import ScviAutoencoder

        adapter = ScviAutoencoder(model, device=kw["device"])
        return adapter_dataset(adapter, X, **{k: kw[k] for k in ("layer", "labels", "split", "groups", "background")}), adapter
    model_kw = {k: kw.pop(k) for k in ("encoder", "decoder", "code", "device")}
    data = as_dataset(X, dtype=_float_dtype(model), **kw)
    return data, as_model(model, data, **model_kw)


def _with_source(result: Explanation, data: ArrayDataset) -> Explanation:
    """Say which matrix was explained (AnnData / sparse input), and which rows (for ``to_anndata``)."""
    if "matrix" not in data.info:
        return result
    arrays = dict(result.arrays)
    arrays.setdefault("explain_index", np.asarray(data.explain_index, dtype=np.int64))
    return result.replace(extras={**result.extras, "data": {k: v for k, v in data.info.items()}}, arrays=arrays)


def find_explainer(name: str) -> Any:
    """The installed explainer registered as ``name`` (its ``cls``, ``distribution`` and ``version``), or None.

    For explainers that run another one (faithfulness re-runs the explainer it
    checks): the same plugin discovery as a run, with the ``AEINTERP_*`` switches.
    """
    from .plugins.manager import PluginHost

    return PluginHost().registry.get(name)


def _float_dtype(model: Any) -> Any:
    """float64 data for a float64 model, float32 otherwise."""
    import torch

    params = getattr(model, "parameters", None)
    if callable(params):
        for prm in params():
            if prm.is_floating_point():
                return np.float64 if prm.dtype == torch.float64 else np.float32
    return np.float32


# --- several explainers -------------------------------------------------------------
@dataclass
class Explanations(Mapping[str, Explanation]):
    """The results of :func:`explain_all`, by alias, with what the report shows."""

    explanations: dict[str, Explanation]
    failures: list[dict[str, Any]] = field(default_factory=list)
    data: ArrayDataset | None = field(default=None, repr=False)
    model_info: dict[str, Any] = field(default_factory=dict)
    registry: ExplainerRegistry | None = field(default=None, repr=False)
    model: Any = field(default=None, repr=False)
    _pages: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, alias: str) -> Explanation:
        return self.explanations[alias]

    def __iter__(self) -> Iterator[str]:
        return iter(self.explanations)

    def __len__(self) -> int:
        return len(self.explanations)

    def __repr__(self) -> str:
        """One line per result (at most 12), never arrays."""
        lines = [f"Explanations({len(self.explanations)} results, {len(self.failures)} failed)"]
        for alias, e in list(self.explanations.items())[:12]:
            lines.append(f"  {alias[:40]}: {e!r}"[:220])
        if len(self.explanations) > 12:
            lines.append(f"  ... and {len(self.explanations) - 12} more")
        return "\n".join(lines)

    def save(self, path: str | Path) -> list[Path]:
        """Write every result to the folder ``path`` as ``aeinterp run`` does (``results.json`` + npz, no pickle,
        no figures); ``aeinterp.load(path)`` reads it back."""
        out = Path(path)
        self._store(out)
        return [out / "results.json"]

    def _store(self, out: Path) -> Any:
        from .run.results import ResultsStore

        data = self.data.describe() if self.data is not None else {}
        store = ResultsStore(out, recipe={"source": "aeinterp.explain_all"}, model=self.model_info, data=data, plugins=[])
        for alias, e in self.explanations.items():
            store.add(alias, e)
        for f in self.failures:
            store.doc["explainers"].append(f)
        store.finish("failed" if self.failures else "complete")
        return store

    @property
    def agreement(self) -> list[Agreement]:
        """Rank agreement between every pair of explanations of the same target (as the report shows)."""
        from .report.summary import agreements

        return agreements(self.explanations)

    def agreement_frame(self) -> Any:
        """The agreement summary as a pandas DataFrame."""
        from .errors import require

        pd = require("pandas", "pandas", "to build DataFrames")
        return pd.DataFrame([vars(a) for a in self.agreement], columns=["a", "b", "target", "spearman", "top1"])

    def to_anndata(self, adata: Any) -> Any:
        """Write every explanation into ``adata`` in place, keyed by alias (see :mod:`aeinterp.io.anndata_out`)."""
        from .io.anndata_out import write_explanations

        return write_explanations(adata, self.explanations, run={"model": self.model_info, "failures": self.failures})

    def report(self, out_dir: str | Path, *, console: Console | None = None, top_k: int = 5) -> list[Path]:
        """Write ``results.json``, the npz arrays, PNG plots and the HTML report to ``out_dir``
        (what ``aeinterp run`` writes); print the terminal report to ``console`` when given."""
        from .report import render_reports
        from .run.results import RunResults

        out = Path(out_dir)
        results = RunResults(out_dir=out, doc=self._store(out).doc, explanations=dict(self.explanations))
        options = _ReportOptions(terminal=console is not None, top_k=top_k)
        return [
            out / "results.json",
            *render_reports(results, self.registry, console=console, options=options, data=self.data, model=self.model),
        ]

    def latent(self, name: str) -> Any:
        """The page of latent ``name`` ("z3"): what drives it, what it does, when it is high, its relations.
        Shows itself in a notebook; ``rich.print`` it in a terminal. See docs/latent-pages.md."""
        from .report.latent import build_page

        return build_page(self._latent_source(), name)

    def code(self, *, factors: Any = None, factor_names: Sequence[str] | None = None) -> Any:
        """How disentangled the code is: total correlation, pairwise MI, dead / duplicate latents, and MIG,
        DCI and SAP when ``factors`` (explained rows x factors) are given or the data has labels."""
        from .report.code_page import build_code_page

        return build_code_page(self._latent_source(), factors=factors, factor_names=factor_names)

    def _latent_source(self) -> Any:
        from .report.latent import LatentSource
        from .report.latent_store import compute_codes
        from .report.summary import verdicts

        if "source" not in self._pages:
            names = next((list(e.target_names) for e in self.explanations.values() if e.target == "latent"), None)
            codes = compute_codes(self.model, self.data, names) if self.model is not None and self.data is not None else None
            values = None
            if self.data is not None:
                x = np.asarray(self.data.x_explain).reshape(len(self.data.explain_index), -1)
                values = (
                    np.stack([x[:, np.asarray(g.indices)].mean(axis=1) for g in self.data.groups], axis=1),
                    [g.name for g in self.data.groups],
                )
            dim = self.model_info.get("latent_dim")
            verdict = verdicts(self.explanations, dim if isinstance(dim, int) else None)
            info = self.data.describe() if self.data is not None else {}
            self._pages["source"] = LatentSource(
                self.explanations,
                codes=codes,
                values=values,
                data_info=info,
                latent_names=list(codes.latent_names) if codes is not None else list(verdict.latents),
                dead_by_attribution=list(verdict.dead),
            )
        return self._pages["source"]


@dataclass(frozen=True)
class _ReportOptions:
    terminal: bool = False
    plots: bool = True
    html: bool = True
    top_k: int = 5


def _steps(methods: Any) -> list[tuple[str, str | None, dict[str, Any], list[str] | None]]:
    """(name, alias, params, targets) from names, (name, params) pairs, or recipe-style step dicts."""
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, Mapping):  # {alias: {name:..., params:...}} or {name: params}
        methods = [
            ({"alias": k, **v} if "name" in v else {"name": k, "params": dict(v)}) if isinstance(v, Mapping) else {"name": k}
            for k, v in methods.items()
        ]
    out: list[tuple[str, Any, dict[str, Any], list[str] | None]] = []
    for m in methods:
        if isinstance(m, str):
            out.append((m, None, {}, None))
        elif isinstance(m, tuple) and len(m) == 2:
            out.append((str(m[0]), None, dict(m[1]), None))
        elif isinstance(m, Mapping) and "name" in m:
            unknown = set(m) - {"name", "alias", "params", "targets"}
            if unknown:
                raise RecipeError(
                    f"step {dict(m)!r}: unknown keys {sorted(unknown)} (a step has name, alias, params, targets)",
                    source="of explain_all",
                    what="methods",
                )
            out.append((str(m["name"]), m.get("alias"), dict(m.get("params") or {}), list(m["targets"]) if m.get("targets") else None))
        else:
            raise RecipeError(
                f"cannot read method {m!r}: give a name, a (name, params) pair or {{name:, alias:, params:, targets:}}",
                source="of explain_all",
                what="methods",
            )
    return out


def explain_all(
    model: Any,
    X: Any,
    methods: Any,
    *,
    targets: Sequence[str] = ("latent",),
    background: Any = None,
    feature_names: Sequence[str] | None = None,
    kind: str | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    seed: int = 0,
    progress: bool | Progress | None = None,
    encoder: str | None = None,
    decoder: str | None = None,
    code: int | str | None = None,
    registry: ExplainerRegistry | None = None,
    raise_errors: bool = False,
    device: str | None = None,
    executor: Any = None,
    sample_names: Sequence[Any] | None = None,
    layer: str | None = None,
    labels: str | None = None,
    split: str | None = None,
) -> Explanations:
    """Run several explainers on every target in ``targets``; one failing step does not lose the others.

    ``methods`` is a list of names (``["deepshap", "permutation"]``), of
    ``(name, params)`` pairs, or of recipe-style steps
    (``{"name": "permutation", "alias": "perm5", "params": {"repeats": 5}}``).
    Results are keyed by alias (``name`` or ``alias``, suffixed ``-<target>``
    when a step has several targets), as in a recipe. Failures are kept in
    ``.failures`` (or raised with ``raise_errors=True``). Row labels as in
    :func:`explain` (``sample_names`` or the DataFrame's index).
    """
    reg = _registry(registry)
    planned: list[Any] = []
    problems: list[str] = []
    for i, (name, alias, params, step_targets) in enumerate(_steps(methods)):
        try:
            entry, p = _params(name, params, reg, loc=f"methods[{i}].params")
        except RecipeError as exc:
            problems += exc.problems if hasattr(exc, "problems") else [str(exc)]
            continue
        tlist = list(dict.fromkeys(step_targets or targets))
        for t in tlist:
            key = (alias or name) if len(tlist) == 1 else f"{alias or name}-{t}"
            if any(k == key for k, *_ in planned):
                problems.append(f"methods[{i}]: result name {key!r} is already used; give this step an alias")
            planned.append((key, entry, p, _single_target(t, None)))
    if problems:
        raise RecipeError(problems, source="of explain_all", what="methods")
    data, adapted = _inputs(
        model,
        X,
        background=background,
        feature_names=feature_names,
        kind=kind,
        groups=groups,
        sample_names=sample_names,
        encoder=encoder,
        decoder=decoder,
        code=code,
        device=device,
        layer=layer,
        labels=labels,
        split=split,
    )
    out: dict[str, Explanation] = {}
    failures: list[dict[str, Any]] = []
    bar, tracker = _progress(progress)
    with bar:
        for key, entry, p, tgt in planned:
            try:
                out[key] = _with_source(
                    run_explainer(
                        entry.cls(p, progress=tracker, results=out),
                        adapted,
                        data,
                        target=tgt,
                        seed=seed,
                        distribution=entry.distribution,
                        version=entry.version,
                        executor=executor,
                    ),
                    data,
                )
            except AeinterpError as exc:
                if raise_errors:
                    raise
                failures.append(
                    {
                        "name": entry.name,
                        "alias": key,
                        "target": tgt.value,
                        "status": "error",
                        "error": str(exc),
                        "error_type": type(exc.__cause__ or exc).__name__,
                    }
                )
    info = {
        "description": getattr(adapted, "description", type(model).__name__),
        "latent_dim": int(adapted.latent_dim),
        "input_shape": list(adapted.input_shape),
    }
    return Explanations(out, failures, data=data, model_info=info, registry=reg, model=adapted)


def _run_results(results: Any) -> Any:
    from .run.results import RunResults, load_results

    return results if isinstance(results, RunResults) else load_results(results)


def latent_page(results: Any, name: str) -> Any:
    """The page of latent ``name`` for a run folder, ``load_results(OUT)`` or :class:`Explanations`:
    what drives it, what it does, when it is high, its relations (``_repr_html_`` in a notebook)."""
    if isinstance(results, Explanations):
        return results.latent(name)
    from .report import latent_page as page

    return page(_run_results(results), name)


def code_page(results: Any, *, factors: Any = None, factor_names: Sequence[str] | None = None) -> Any:
    """How disentangled the code of a run (folder, ``load_results(OUT)`` or :class:`Explanations`) is."""
    if isinstance(results, Explanations):
        return results.code(factors=factors, factor_names=factor_names)
    from .report import latent_source
    from .report.code_page import build_code_page

    return build_code_page(latent_source(_run_results(results)), factors=factors, factor_names=factor_names)
