"""One page per latent: what drives it, what it does, when it is high, and how it relates to the others.

Built from stored results only (every step's :class:`~aeinterp.explanation.Explanation`, the codes file
``latent_codes.npz`` and the feature values ``report_values.npz``), never from explainer names. Each
step lands in sections by what its result declares (documented in ``docs/latent-pages.md``):

* **drives** (input attribution): target ``latent``, inputs on the feature axis (``extras["feature_axis"]``
  absent or ``"input"``), the run's input feature groups as features. Ranked by the step's own importance;
  a per-sample ``local`` gives a signed beeswarm, still ordered by that importance (never a signed mean).
* **does** (output effect): ``arrays["output_effect"]`` or ``arrays["effect"]`` (latents x outputs, signed), or a latent step whose
  ``extras["feature_axis"] == "output"`` (its importance, unsigned); plus the decoder's two-point traversal
  from the codes file.
* **relations**: per-target summary lines (formulas, headlines: lines that start with the latent's name),
  ``extras["top_pairs"][latent]`` (interacting pairs), ``extras["table"][source][latent]`` (faithfulness
  rows), and the latents most correlated with it (Pearson and mutual information over the codes).

``extras["latent_section"]`` (``"drives"``, ``"does"``, ``"relations"`` or ``"none"``) overrides the rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from ..errors import AeinterpError
from ..explanation import Explanation
from .latent_store import LatentCodes, example_rows
from .summary import RELATIVE_FLOOR, explained_rows, measures_inputs, unit_of

__all__ = ["LatentSource", "LatentPage", "build_page", "build_pages", "section_of", "drives_steps", "TOP_FEATURES"]

TOP_FEATURES = 10
CORE_SHARE = 0.95  # the consensus core: fewest top inputs carrying this share of the mean importance (at most 5); variance shares concentrate, so 0.8 cut real drivers
CORRELATED = 5


@dataclass
class LatentSource:
    """Everything a latent page is built from; ``values``: explained rows x feature groups, with their names."""

    explanations: Mapping[str, Explanation]
    codes: LatentCodes | None = None
    values: tuple[np.ndarray, list[str]] | None = None
    data_info: Mapping[str, Any] = field(default_factory=dict)
    latent_names: list[str] = field(default_factory=list)
    dead_by_attribution: list[str] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def names(self) -> list[str]:
        if self.latent_names:
            return list(self.latent_names)
        if self.codes is not None:
            return list(self.codes.latent_names)
        best: list[str] = []
        for e in self.explanations.values():
            if e.target == "latent" and len(e.target_names) > len(best):
                best = list(e.target_names)
        return best

    def input_features(self) -> list[str] | None:
        if self.values is not None:
            return list(self.values[1])
        counts: dict[tuple[str, ...], int] = {}
        for e in self.explanations.values():
            if e.target == "latent" and measures_inputs(e):
                counts[tuple(e.feature_names)] = counts.get(tuple(e.feature_names), 0) + 1
        return list(max(counts, key=lambda k: counts[k])) if counts else None  # type: ignore[index]

    def correlation(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Pearson and pairwise MI of the codes (computed once per source)."""
        if self.codes is None:
            return None
        if "corr" not in self._cache:
            from ..toolkit.disentanglement import pairwise_mutual_info, pearson

            z = np.asarray(self.codes.codes, dtype=np.float64)
            self._cache["corr"] = (pearson(z), pairwise_mutual_info(z))
        return self._cache["corr"]


def section_of(e: Explanation, inputs: list[str] | None) -> str:
    """Which page section a step feeds: ``drives``, ``does``, ``relations`` (only) or ``none``."""
    declared = e.extras.get("latent_section")
    if declared in ("drives", "does", "relations", "none"):
        return str(declared)
    if e.target != "latent":
        return "none"
    if "output_effect" in e.arrays or str(e.extras.get("feature_axis", "input")) == "output":
        return "does"
    if measures_inputs(e) and (inputs is None or list(e.feature_names) == list(inputs)):
        return "drives"
    return "relations"


def drives_steps(src: LatentSource) -> dict[str, Explanation]:
    inputs = src.input_features()
    return {a: e for a, e in src.explanations.items() if section_of(e, inputs) == "drives"}


def _ranks(values: np.ndarray) -> np.ndarray:
    """1 = largest; ties share their mean rank."""
    from scipy.stats import rankdata

    return rankdata(-values, method="average")


@dataclass
class StepView:
    alias: str
    explainer: str
    label: str
    unit: str
    top: list[tuple[str, float]]
    rank: dict[str, float]
    signed: np.ndarray | None = None  # (samples, shown features) per-sample attributions of ``top``'s features
    colour: np.ndarray | None = None  # (samples, shown features) feature values, for the beeswarm's colour


@dataclass
class LatentPage:
    """The page of one latent. ``_repr_html_`` shows it in a notebook; ``aeinterp show OUT --latent`` prints it."""

    name: str
    index: int
    consensus: list[tuple[str, float, float]] = field(default_factory=list)  # (feature, mean normalised rank, mean share)
    core: list[str] = field(default_factory=list)
    agreement: float | None = None  # share of the steps' top-|core| inputs that are in the core, averaged over steps
    weighted_tau: float | None = None  # mean pairwise weighted Kendall tau of the steps' importance
    steps: list[StepView] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    values: np.ndarray | None = None
    stats: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    top_rows: list[dict[str, Any]] = field(default_factory=list)
    quantile_rows: list[dict[str, Any]] = field(default_factory=list)
    row_features: list[str] = field(default_factory=list)
    correlated: list[tuple[str, float, float]] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)
    pairs: list[tuple[str, str, str, float]] = field(default_factory=list)
    faithfulness: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    data_kind: str = "tabular"
    sample_shape: list[int] = field(default_factory=list)
    examples: dict[int, np.ndarray] = field(default_factory=dict)

    def top_inputs(self, k: int = 3) -> list[str]:
        return [f for f, _, _ in self.consensus[:k]]

    def _repr_html_(self) -> str:
        from .latent_render import page_document

        return page_document(self)

    def __rich__(self) -> Any:
        from .latent_render import page_rich

        return page_rich(self)


def _signed_rows(e: Explanation, r: int, order: np.ndarray) -> np.ndarray | None:
    """Per-sample signed attributions of the features ``order`` for target ``r``: from ``local``, or from the
    per-sample top-K arrays (``local_top_index`` / ``local_top_value``; NaN where a feature was not in a
    sample's top K, so it is not drawn)."""
    if e.local is not None:
        return np.asarray(e.local[:, r, :][:, order], dtype=np.float64)
    idx, val = e.arrays.get("local_top_index"), e.arrays.get("local_top_value")
    if idx is None or val is None or np.ndim(idx) != 3 or np.shape(idx) != np.shape(val) or np.shape(idx)[1] <= r:
        return None
    idx_r, val_r = np.asarray(idx[:, r, :]), np.asarray(val[:, r, :], dtype=np.float64)
    out = np.full((idx_r.shape[0], len(order)), np.nan)
    for col, f in enumerate(order):
        hit = idx_r == f
        rows = hit.any(axis=1)
        out[rows, col] = val_r[hit]  # a feature appears at most once per sample's top K
    return out


def _colours(e: Explanation, values: np.ndarray, n: int, order: np.ndarray) -> np.ndarray | None:
    """Feature values of the step's per-sample rows (matched through ``arrays["sample_index"]``, else by position)."""
    ids = e.arrays.get("sample_index")
    if ids is not None and len(ids) == n and (len(ids) == 0 or int(np.max(ids)) < len(values)):
        return np.asarray(values, dtype=np.float64)[np.asarray(ids, dtype=np.int64)][:, order]
    return np.asarray(values, dtype=np.float64)[:, order] if len(values) == n else None


def _drives(page: LatentPage, src: LatentSource) -> None:
    steps = {a: e for a, e in drives_steps(src).items() if page.name in e.target_names}
    shares: dict[str, list[float]] = {}
    ranks: dict[str, list[float]] = {}
    vectors = []
    for alias, e in steps.items():
        r = e.target_names.index(page.name)
        if r not in explained_rows(e):
            continue
        imp = np.asarray(e.importance[r], dtype=np.float64)
        if not np.any(np.abs(imp) > 0):
            continue
        rk = _ranks(imp)
        n = len(imp)
        norm = 1.0 - (rk - 1) / max(n - 1, 1)
        share = e.normalized()[r]
        for i, f in enumerate(e.feature_names):
            ranks.setdefault(f, []).append(float(norm[i]))
            shares.setdefault(f, []).append(float(share[i]))
        vectors.append(imp)
        order = np.argsort(-imp, kind="stable")[:TOP_FEATURES]
        order = order[np.abs(imp[order]) > 0] if np.any(np.abs(imp[order]) > 0) else order[:1]  # no zero rows
        kind = e.extras.get("importance_summary", "mean_abs" if e.local is not None else "")
        label = f"{e.explainer or alias}: importance" + (f" ({kind})" if kind else "")
        view = StepView(
            alias,
            e.explainer,
            label,
            unit_of(e),
            [(e.feature_names[i], float(imp[i])) for i in order],
            {e.feature_names[i]: float(rk[i]) for i in range(n)},
        )
        local = _signed_rows(e, r, order)
        if local is not None:
            view.signed = local
            if src.values is not None and list(src.values[1]) == list(e.feature_names):
                view.colour = _colours(e, src.values[0], len(local), order)
        page.steps.append(view)
    if not ranks:
        return
    feats = list(ranks)
    score = {f: (float(np.mean(ranks[f])), float(np.mean(shares[f]))) for f in feats}
    ordered = sorted(feats, key=lambda f: (-score[f][0], -score[f][1], f))
    page.consensus = [(f, *score[f]) for f in ordered]
    by_share = sorted(feats, key=lambda f: -score[f][1])
    core, carried = [], 0.0
    for f in by_share[:5]:
        core.append(f)
        carried += score[f][1]
        if carried >= CORE_SHARE:
            break
    core = [f for f in ordered if f in core]
    page.core = core
    k = len(core)
    hits = []
    for view in page.steps:
        mine = sorted(view.rank, key=lambda f: view.rank[f])[:k]
        hits.append(len(set(mine) & set(core)) / k if k else 0.0)
    page.agreement = float(np.mean(hits)) if hits else None
    if len(vectors) >= 2:
        from scipy.stats import weightedtau

        taus = [weightedtau(a, b).statistic for a, b in combinations(vectors, 2)]
        taus = [t for t in taus if np.isfinite(t)]
        page.weighted_tau = float(np.mean(taus)) if taus else None


def _signed_list(names: list[str], v: np.ndarray, k: int = 6) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    peak = float(np.abs(v).max()) if v.size else 0.0
    floor = RELATIVE_FLOOR * peak
    up = [(names[i], float(v[i])) for i in np.argsort(-v, kind="stable")[:k] if v[i] > floor]
    down = [(names[i], float(v[i])) for i in np.argsort(v, kind="stable")[:k] if v[i] < -floor]
    return up, down


def _does(page: LatentPage, src: LatentSource) -> None:
    c = src.codes
    if c is not None and c.effects is not None and c.effect_range is not None and page.name in c.latent_names:
        j = c.latent_names.index(page.name)
        up, down = _signed_list(list(c.output_names), np.asarray(c.effects[j], dtype=np.float64))
        lo, hi = (float(x) for x in c.effect_range[j])
        page.effects.append(
            {
                "source": "decoder",
                "signed": True,
                "up": up,
                "down": down,
                "unit": f"change of the decoded output (mean over the group's elements) when {page.name} moves from {lo:.3g} to {hi:.3g} (its 10 % and 90 % quantiles), other latents as in each row",
            }
        )
    inputs = src.input_features()
    for alias, e in src.explanations.items():
        if section_of(e, inputs) != "does" or page.name not in e.target_names:
            continue
        r = e.target_names.index(page.name)
        signed_effect = _signed_effect(e)
        if signed_effect is not None:
            up, down = _signed_list(list(e.feature_names), signed_effect[r])
            page.effects.append(
                {"source": alias, "signed": True, "up": up, "down": down, "unit": str(e.extras.get("output_effect_unit", unit_of(e)))}
            )
        else:
            v = np.asarray(e.importance[r], dtype=np.float64)
            signed = bool(np.any(v < 0))
            up, down = (
                _signed_list(list(e.feature_names), v)
                if signed
                else ([(e.feature_names[i], float(v[i])) for i in np.argsort(-v, kind="stable")[:6] if v[i] > 0], [])
            )
            page.effects.append({"source": alias, "signed": signed, "up": up, "down": down, "unit": unit_of(e)})


def _signed_effect(e: Explanation) -> np.ndarray | None:
    """The step's signed effect per latent and output (``arrays["output_effect"]``, or the ``effect`` that
    ``output_effects``, ``latent_traversal`` and ``component_contributions`` store), as targets x features."""
    for key in ("output_effect", "effect"):
        if key in e.arrays:
            v = np.asarray(e.arrays[key], dtype=np.float64)
            if v.size == e.importance.size and v.shape[0] == e.importance.shape[0]:
                return v.reshape(e.importance.shape)
    return None


def _row(c: LatentCodes, i: int, z: np.ndarray, values: np.ndarray | None, cols: list[int]) -> dict[str, Any]:
    return {
        "row": int(i),
        "sample": int(c.sample_index[i]) if i < len(c.sample_index) else int(i),
        "z": float(z[i]),
        "values": [float(values[i, k]) for k in cols] if values is not None else [],
    }


def _when_high(page: LatentPage, src: LatentSource) -> None:
    c = src.codes
    if c is None or page.name not in c.latent_names:
        if page.name in src.dead_by_attribution:
            page.flags.append(f"dead: no input above {RELATIVE_FLOOR:.0%} of the explainer's peak in every explainer")
        return
    from ..toolkit.disentanglement import dead_latents

    z = c.column(page.name)
    j = c.latent_names.index(page.name)
    page.values = z
    q = np.quantile(z, [0.05, 0.5, 0.95])
    page.stats = {
        "mean": float(z.mean()),
        "sd": float(z.std()),
        "min": float(z.min()),
        "q05": float(q[0]),
        "median": float(q[1]),
        "q95": float(q[2]),
        "max": float(z.max()),
        "n": float(len(z)),
    }
    if dead_latents(np.asarray(c.codes, dtype=np.float64))[j]:
        page.flags.append("dead: no spread over the explained rows (SD below 0.1 % of the largest latent's SD)")
        return  # no sample is more "high" than another
    elif page.name in src.dead_by_attribution:
        page.flags.append(f"dead by attribution: no input above {RELATIVE_FLOOR:.0%} of the explainer's peak in every explainer")
    values = None
    if src.values is not None and len(src.values[0]) == len(z):
        values = np.asarray(src.values[0], dtype=np.float64)
        names = list(src.values[1])
        wanted = [f for f, _, _ in page.consensus[:6] if f in names] or names[:6]
        cols = [names.index(f) for f in wanted]
        page.row_features = wanted
    else:
        cols = []
    top, quant = example_rows(np.asarray(c.codes)[:, [j]])
    page.top_rows = [_row(c, i, z, values, cols) for i in top[0]]
    page.quantile_rows = [_row(c, i, z, values, cols) for i in quant[0]]
    for r in page.top_rows + page.quantile_rows:
        ex = c.example(r["row"])
        if ex is not None:
            page.examples[r["row"]] = ex


def _relations(page: LatentPage, src: LatentSource) -> None:
    got = src.correlation()
    if got is not None and src.codes is not None and page.name in src.codes.latent_names:
        corr, mi = got
        names = src.codes.latent_names
        j = names.index(page.name)
        order = [i for i in np.argsort(-np.abs(corr[j]), kind="stable") if i != j][:CORRELATED]
        page.correlated = [(names[i], float(corr[j, i]), float(mi[j, i])) for i in order]
    for alias, e in src.explanations.items():
        if e.extras.get("latent_section") == "none":
            continue
        for line in e.extras.get("summary") or []:
            head = str(line).split(" ", 1)[0].rstrip(":=,")
            if head == page.name:
                page.lines.append((alias, str(line)))
        pairs = e.extras.get("top_pairs")
        if isinstance(pairs, Mapping) and isinstance(pairs.get(page.name), list):
            for p in pairs[page.name][:5]:
                if isinstance(p, Mapping) and isinstance(p.get("pair"), (list, tuple)) and len(p["pair"]) == 2:
                    page.pairs.append((alias, str(p["pair"][0]), str(p["pair"][1]), float(p.get("value", float("nan")))))
        table = e.extras.get("table")
        if isinstance(table, Mapping):
            for source, rows in table.items():
                if isinstance(rows, Mapping) and isinstance(rows.get(page.name), Mapping):
                    page.faithfulness.append((alias, str(source), dict(rows[page.name])))


def build_page(src: LatentSource, name: str) -> LatentPage:
    """The page of latent ``name`` (e.g. ``"z3"``); a clear error for an unknown name."""
    names = src.names()
    if name not in names:
        raise AeinterpError(
            f"no latent {name!r} in these results; the latents are {', '.join(names[:20]) or 'none'}" + (" …" if len(names) > 20 else "")
        )
    page = LatentPage(
        name=name,
        index=names.index(name),
        data_kind=str(src.data_info.get("kind", "tabular")),
        sample_shape=list(src.data_info.get("sample_shape") or []),
    )
    _drives(page, src)
    _does(page, src)
    _when_high(page, src)
    _relations(page, src)
    return page


def build_pages(src: LatentSource) -> list[LatentPage]:
    return [build_page(src, n) for n in src.names()]
