"""Several explainers at once and what comes back: :func:`explain_all`, :class:`Explanations`, :func:`load`.

:class:`Explanations` holds one result per step with the agreement summary
the report shows, ``.report(out_dir)`` for the same HTML/PNG/``results.json``
as the CLI, ``.latent("z3")`` / ``.code()`` for the latent and code pages,
``.to_anndata(adata)`` and ``.save(dir)``; :func:`load` reads a saved result
or a run's output folder back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import ArrayDataset
from ..errors import AeinterpError, RecipeError
from ..explanation import Explanation
from ..plugins.registry import ExplainerRegistry
from ..progress import Progress
from ..report import views as _views  # noqa: F401  (exp.plot and notebook display on every result)
from ..run.dispatch import run_explainer

if TYPE_CHECKING:
    from rich.console import Console

    from ..report.summary import Agreement
from .explain import _params, _progress, _registry, _single_target
from .inputs import _inputs, _with_source

__all__ = ["load", "Explanations", "explain_all", "latent_page", "code_page"]


def load(path: str | Path) -> Any:
    """Read a result back: a folder written by ``exp.save(path)`` gives the :class:`Explanation`; a run's
    output folder (``aeinterp run``, ``Explanations.report``) gives its ``RunResults`` (no pickle)."""
    from .._select import JSON_FILE
    from ..run.results import RESULTS_FILE, load_results

    folder = Path(path)
    if (folder / JSON_FILE).is_file():
        return Explanation.load(folder)
    if (folder / RESULTS_FILE).is_file():
        return load_results(folder)
    raise AeinterpError(f"{folder} holds neither {JSON_FILE} (exp.save) nor {RESULTS_FILE} (a run's output folder)")


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
        from ..run.results import ResultsStore

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
        from ..report.summary import agreements

        return agreements(self.explanations)

    def agreement_frame(self) -> Any:
        """The agreement summary as a pandas DataFrame."""
        from ..errors import require

        pd = require("pandas", "pandas", "to build DataFrames")
        return pd.DataFrame([vars(a) for a in self.agreement], columns=["a", "b", "target", "spearman", "top1"])

    def to_anndata(self, adata: Any) -> Any:
        """Write every explanation into ``adata`` in place, keyed by alias (see :mod:`aeinterp.io.anndata_out`)."""
        from ..io.anndata_out import write_explanations

        return write_explanations(adata, self.explanations, run={"model": self.model_info, "failures": self.failures})

    def report(self, out_dir: str | Path, *, console: Console | None = None, top_k: int = 5) -> list[Path]:
        """Write ``results.json``, the npz arrays, PNG plots and the HTML report to ``out_dir``
        (what ``aeinterp run`` writes); print the terminal report to ``console`` when given."""
        from ..report import render_reports
        from ..run.results import RunResults

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
        from ..report.latent import build_page

        return build_page(self._latent_source(), name)

    def code(self, *, factors: Any = None, factor_names: Sequence[str] | None = None) -> Any:
        """How disentangled the code is: total correlation, pairwise MI, dead / duplicate latents, and MIG,
        DCI and SAP when ``factors`` (explained rows x factors) are given or the data has labels."""
        from ..report.code_page import build_code_page

        return build_code_page(self._latent_source(), factors=factors, factor_names=factor_names)

    def _latent_source(self) -> Any:
        from ..report.latent import LatentSource
        from ..report.latent_store import compute_codes
        from ..report.summary import verdicts

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
    from ..run.results import RunResults, load_results

    return results if isinstance(results, RunResults) else load_results(results)


def latent_page(results: Any, name: str) -> Any:
    """The page of latent ``name`` for a run folder, ``load_results(OUT)`` or :class:`Explanations`:
    what drives it, what it does, when it is high, its relations (``_repr_html_`` in a notebook)."""
    if isinstance(results, Explanations):
        return results.latent(name)
    from ..report import latent_page as page

    return page(_run_results(results), name)


def code_page(results: Any, *, factors: Any = None, factor_names: Sequence[str] | None = None) -> Any:
    """How disentangled the code of a run (folder, ``load_results(OUT)`` or :class:`Explanations`) is."""
    if isinstance(results, Explanations):
        return results.code(factors=factors, factor_names=factor_names)
    from ..report import latent_source
    from ..report.code_page import build_code_page

    return build_code_page(latent_source(_run_results(results)), factors=factors, factor_names=factor_names)
