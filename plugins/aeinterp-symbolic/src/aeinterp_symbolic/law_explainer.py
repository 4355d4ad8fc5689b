"""``latent_size_law``: the recipe option for :func:`aeinterp_symbolic.law.latent_size_law`.

It does not explain the recipe's model: it trains the built-in autoencoder
for the data at each of ``sizes`` on the fit split (with the recipe's seed),
measures held-out reconstruction error, and fits ``error = f(latent_size)``.

Result: target ``reconstruction_error``; one column per latent size
(``latent=K``); importance = the share of the smallest model's held-out error
removed at that size, ``(e_min_size - e_K) / e_min_size``, so larger means the
size reconstructs better. The law, its in-sample R^2 and each size's error are
in ``extras`` (and the report's summary lines); ``arrays`` hold ``sizes`` and
``errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation
from aeinterp.targets import Target

from .backends import Operator

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LatentSizeLawExplainer"]


class LatentSizeLawExplainer(Explainer):
    """Train the built-in autoencoder at several latent sizes; fit a symbolic law error = f(size)."""

    name = "latent_size_law"

    class Params(ExplainerParams):
        sizes: list[int] = Field(default_factory=lambda: [2, 4, 8, 16, 32], min_length=3, description="latent sizes to train (at least 3)")
        architecture: str | None = Field(None, description="built-in architecture (default: the one for the data's kind)")
        options: dict[str, Any] = Field(default_factory=dict, description="architecture options, e.g. {hidden: [32]}")
        epochs: int = Field(60, ge=1, description="training epochs per size")
        lr: float = Field(3e-3, gt=0, description="learning rate")
        backend: str = Field("pyoperon", pattern="^(pyoperon|pysr)$", description="symbolic regression backend for the law")
        operators: list[Operator] | None = Field(None, description="operators of the law (default add, sub, mul, div, exp, log, sqrt)")
        generations: int = Field(50, ge=1)
        population_size: int = Field(300, ge=10)
        time_budget: float | None = Field(20.0, gt=0, description="seconds for the law's search")
        threads: int | None = Field(None, ge=1)

    capabilities = Capabilities(targets=frozenset({"reconstruction_error"}), deterministic=True, features="own")  # columns: latent sizes

    def explain(self, model, data, *, target, rng):  # noqa: ANN001 - signature fixed by Explainer
        from aeinterp.training import TrainConfig

        from .law import latent_size_law

        p = self.params
        seed = int(rng.integers(0, 2**31 - 1))
        search = {"backend": p.backend, "generations": p.generations, "population_size": p.population_size, "time_budget": p.time_budget, "threads": p.threads, "seed": seed}
        if p.operators is not None:
            search["operators"] = list(p.operators)
        law = latent_size_law(
            data, sizes=p.sizes, architecture=p.architecture, options=p.options,
            train=TrainConfig(epochs=p.epochs, lr=p.lr, seed=seed), params=search, seed=seed, progress=self.progress,
        )
        errors = np.asarray(law.errors)
        gain = (errors[0] - errors) / errors[0] if errors[0] > 0 else np.zeros_like(errors)
        return Explanation(
            importance=gain[None, :],
            feature_names=[f"latent={k}" for k in law.sizes],
            target_names=["reconstruction_error"],
            target=Target(target).value,
            arrays={"sizes": np.asarray(law.sizes, dtype=np.int64), "errors": errors},
            extras={
                "unit": "share of the smallest latent size's held-out error removed",
                "summary": law.lines(),
                "law": law.formula,
                "law_latex": law.latex,
                "r2_in_sample": law.r2_in_sample,
                "architecture": law.architecture,
                "backend": law.backend,
                "note": "trains its own models at each size; the recipe's model is not used",
            },
        )

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Figure]:
        from matplotlib.figure import Figure

        sizes, errors = explanation.arrays["sizes"], explanation.arrays["errors"]
        fig = Figure(figsize=(5, 3.5), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(sizes, errors, "o", label="held-out MSE")
        try:  # draw the law itself where sympy can read it back
            import sympy

            k = sympy.Symbol("latent_size")
            f = sympy.lambdify(k, sympy.sympify(explanation.extras["law"], locals={"latent_size": k}), "numpy")
            grid = np.linspace(float(sizes.min()), float(sizes.max()), 200)
            ax.plot(grid, np.broadcast_to(f(grid), grid.shape), "-", label=f"law (R$^2$ {explanation.extras.get('r2_in_sample', float('nan')):.3f})")
        except Exception:  # noqa: BLE001 - the points alone are still worth drawing
            pass
        ax.set_xscale("log", base=2)
        ax.set_xlabel("latent size")
        ax.set_ylabel("held-out reconstruction MSE")
        ax.set_title("Latent-size law")
        ax.legend(fontsize=8)
        return {"law": fig}
