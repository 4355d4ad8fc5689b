"""``mutual_information``: how much each target (latent) knows about each feature group.

A statistical view, independent of the model's internals: the model is only
evaluated once on the samples, then the dependence between every feature
group and every target column is estimated in one matrix computation:

``method: ksg`` (default)
    Kraskov's k-nearest-neighbour MI in nats, identical to scikit-learn's
    ``mutual_info_regression`` on single features (same preprocessing, same
    noise when given the same seed, same counts), discrete features handled
    with Ross' estimator as scikit-learn does; multi-element groups (a
    sequence feature over its steps, an image patch) with the multivariate KSG
    estimator (max-norm over the group's standardised elements).
``method: hsic``
    normalised HSIC in [0, 1] with Gaussian kernels (median heuristic), on at
    most :data:`aeinterp_dependence.hsic.DEFAULT_CAP` samples unless
    ``max_samples`` says otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation
from aeinterp.errors import DataError, ModelError
from aeinterp.explainer import ALL_TARGETS
from aeinterp.model import evaluate
from aeinterp.targets import Target, evaluate_target, target_names_for
from aeinterp.toolkit.perturb import subsample

__all__ = ["MutualInformation"]


class MutualInformation(Explainer):
    """Mutual information (KSG) or normalised HSIC between every feature group and every target."""

    name = "mutual_information"

    class Params(ExplainerParams):
        method: Literal["ksg", "hsic"] = Field(
            "ksg",
            description="ksg: Kraskov k-NN mutual information in nats (as scikit-learn); hsic: normalised HSIC in [0, 1] with Gaussian kernels",
        )
        n_neighbors: int = Field(3, ge=1, description="k of the KSG estimator (scikit-learn's n_neighbors)")
        split: Literal["explain", "fit", "all"] = Field(
            "explain", description="samples to use: the explain split (default, as every explainer), the fit split, or all of them"
        )
        max_samples: int | None = Field(
            None, ge=5, description="use at most this many samples (random, seeded); hsic uses at most 500 unless set"
        )
        discrete_features: Literal["auto", "none"] | list[str] = Field(
            "auto",
            description="auto: single features with at most discrete_max_levels distinct values are discrete; none; or a list of feature names",
        )
        discrete_max_levels: int = Field(20, ge=1, description="most distinct values a feature may have to be detected as discrete")
        threshold: float = Field(0.05, ge=0, description="dependence below which a feature / latent counts as uninformative (nats for ksg)")
        top: int = Field(5, ge=1, description="top features per target listed in the extras")
        backend: Literal["auto", "numba", "torch"] = Field(
            "auto", description="KSG kernels: numba (compiled, fast) if installed, else torch brute force (O(N^2) per pair)"
        )
        memory_mb: float = Field(256.0, gt=0, description="bound on the work arrays, in MiB")
        batch_size: int = Field(2048, ge=1, description="rows per forward pass when evaluating the model")

    capabilities = Capabilities(targets=ALL_TARGETS | {"prediction"}, deterministic=True, needs_gradients=False, local=False)

    def explain(self, model, data, *, target, rng):  # noqa: ANN001 - signature fixed by Explainer
        from .hsic import DEFAULT_CAP, hsic_matrix
        from .ksg import entropy_discrete, mi_matrix, prepare
        from .summary import summarise

        p = self.params
        target = Target(target)
        cap = p.max_samples if p.max_samples is not None else (DEFAULT_CAP if p.method == "hsic" else None)
        if p.split == "all":
            x = getattr(data, "x", None)
            if x is None:  # a Dataset protocol object without the full array
                x = np.concatenate([data.x_fit, data.x_explain])
            x = subsample(np.asarray(x), cap, rng)
        else:
            x = np.asarray(self.take_rows(data, p.split, cap, rng))  # recorded in the npz
        n = x.shape[0]
        if p.method == "ksg" and n <= p.n_neighbors + 1:
            raise DataError(f"mutual_information needs more than {p.n_neighbors + 1} samples for n_neighbors={p.n_neighbors}, got {n}")
        names = target_names_for(model, data, target)
        values = evaluate(lambda xb: evaluate_target(model, target, xb), x, batch_size=p.batch_size, model=model).double().numpy()
        if values.shape != (n, len(names)):
            raise ModelError(f"the model gave targets of shape {values.shape[1:]}, expected {len(names)} ({target})")
        flat = x.reshape(n, -1).astype(np.float64)
        groups = [g.indices for g in data.groups]
        constant = np.ptp(values, axis=0) == 0
        extras: dict[str, Any] = {"method": p.method, "n_samples": n, "split": p.split}
        entropy = np.full(len(groups), np.nan)
        if p.method == "ksg":
            discrete = self._discrete_mask(flat, data, groups)
            noise_seed = int(rng.integers(0, 2**31 - 1))
            prepared = prepare(flat, values, discrete, noise_seed)
            kernels: dict[str, Any] = {}
            dep, backend = mi_matrix(
                prepared, groups, p.n_neighbors, backend=p.backend, progress=self.progress, memory_mb=p.memory_mb, status=kernels
            )
            if kernels:
                extras["numba_kernels"] = kernels
                # facts about this run, not the result: a cached copy of it must not repeat them
                extras["run_facts"] = {"keys": ["numba_kernels"], "summary": []}
                if kernels["compiled"]:  # the one run on this machine that pays for compiling says so
                    extras["summary"] = [kernels["note"]]
                    extras["run_facts"]["summary"] = [kernels["note"]]
            for gi, g in enumerate(groups):
                if len(g) == 1 and discrete[g[0]]:
                    entropy[gi] = entropy_discrete(prepared.codes[g[0]])
            extras.update(
                unit="mutual information (nats)",
                n_neighbors=p.n_neighbors,
                backend=backend,
                noise_seed=noise_seed,
                discrete_features=[data.feature_names[i] for i in np.flatnonzero(discrete)],
                multivariate_groups=int(sum(len(g) > 1 for g in groups)),
            )
        else:
            dep = hsic_matrix(flat, values, groups, progress=self.progress, memory_mb=p.memory_mb)
            extras.update(unit="normalised HSIC (Gaussian kernels, median heuristic)", sample_cap=cap)
        importance = dep.T.copy()
        importance[constant] = 0.0  # a constant target shares no information (the estimators return ~1e-14 from the tie-breaking noise)
        facts, arrays = summarise(
            importance, data.group_names, names, threshold=p.threshold, top=p.top, entropy=entropy, constant_targets=constant
        )
        extras.update(threshold=p.threshold, **facts)
        arrays["feature_entropy"] = entropy
        return Explanation(
            importance=importance,
            feature_names=data.group_names,
            target_names=names,
            target=target.value,
            arrays=arrays,
            extras=extras,
        )

    def _discrete_mask(self, flat: np.ndarray, data, groups: list[np.ndarray]) -> np.ndarray:  # noqa: ANN001
        """Which elements are discrete: only single-element groups can be."""
        from .ksg import detect_discrete

        p = self.params
        single = np.zeros(flat.shape[1], dtype=bool)
        for g in groups:
            if len(g) == 1:
                single[g[0]] = True
        if p.discrete_features == "none":
            return np.zeros(flat.shape[1], dtype=bool)
        if p.discrete_features == "auto":
            return detect_discrete(flat, p.discrete_max_levels) & single
        position = {name: i for i, name in enumerate(data.feature_names)}
        unknown = [f for f in p.discrete_features if f not in position]
        if unknown:
            raise DataError(f"discrete_features names unknown features: {', '.join(unknown)}")
        mask = np.zeros(flat.shape[1], dtype=bool)
        mask[[position[f] for f in p.discrete_features]] = True
        not_single = [f for f in p.discrete_features if not single[position[f]]]
        if not_single:
            raise DataError(f"discrete_features must be single-feature groups; these are inside larger groups: {', '.join(not_single)}")
        return mask

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Any]:
        """A bar chart of each target's strongest dependence and its gap to the runner-up."""
        gap = explanation.arrays.get("gap_per_target")
        if gap is None or len(explanation.target_names) > 60:
            return {}
        from matplotlib.figure import Figure

        top = explanation.importance.max(axis=1)
        import textwrap

        fig = Figure(figsize=(max(6.0, 0.35 * len(top) + 2), 3.8), layout="constrained")
        ax = fig.add_subplot()
        pos = np.arange(len(top))
        ax.bar(pos, top, color="#bbbbbb", label="strongest dependence")
        ax.bar(pos, gap, color="#cc5500", label="gap to the second feature")
        ax.set_xticks(pos, explanation.target_names, rotation=90 if len(top) > 12 else 0, fontsize=9)
        ax.set_ylabel(textwrap.fill(str(explanation.extras.get("unit", "dependence")), 40), fontsize=9)
        # the legend sits under the axes (never over a bar), the title above them, wrapped to the figure's width
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=9, frameon=False)
        fig.suptitle(textwrap.fill(f"{explanation.explainer or cls.name}: top dependence and gap per target", 70), fontsize=10)
        return {"gaps": fig}
