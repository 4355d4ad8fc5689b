"""``latent_size_law``: the recipe option for :func:`aeinterp_symbolic.law.latent_size_law`.

It does not explain the recipe's model: it trains an autoencoder at each of
``sizes`` on the fit split (with the recipe's seed) — the built-in one for the
data, or the user's own (``factory: package.module:Class`` called with
``kwargs`` plus the size under ``latent_kwarg``, trained by the built-in
trainer or ``trainer: package.module:fn``) — measures held-out reconstruction
error, and fits ``error = f(latent_size)`` on log error, with
leave-one-size-out fit quality per size (:mod:`.lawfit`).

Result: target ``reconstruction_error``; one column per latent size
(``latent=K``); importance = the share of the smallest model's held-out error
removed at that size, ``(e_min_size - e_K) / e_min_size``, so larger means the
size reconstructs better. The law, its in-sample R^2 and each size's error are
in ``extras`` (and the report's summary lines); ``arrays`` hold ``sizes``,
``errors``, ``fitted`` and ``loso_ratio``. Its columns are latent sizes, not
input features (``extras["feature_axis"]``), so no redundant-feature verdict
applies to it.
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
        factory: str | None = Field(
            None,
            pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
            description="your own model instead: package.module:Class (importable), called with kwargs plus the latent size under latent_kwarg",
        )
        kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the factory (besides the latent size)")
        latent_kwarg: str = Field(
            "latent_dim", pattern=r"^[A-Za-z_]\w*$", description="the factory's keyword argument that sets the latent size"
        )
        trainer: str = Field(
            "builtin",
            pattern=r"^(builtin|[A-Za-z_][\w.]*:[A-Za-z_][\w.]*)$",
            description="builtin, or package.module:fn called as fn(module, x_fit, epochs=, lr=, batch_size=, seed=) to train your factory's model in place",
        )
        encoder: str | None = Field(None, description="attribute name of the factory model's encoder (default encode/encoder)")
        decoder: str | None = Field(None, description="attribute name of the factory model's decoder (default decode/decoder)")
        symbolic: bool = Field(True, description="also search a symbolic formula for log(error) beside the parametric families")
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
        from aeinterp.models.training import TrainConfig

        from .law import latent_size_law

        p = self.params
        seed = int(rng.integers(0, 2**31 - 1))
        search = {
            "backend": p.backend,
            "generations": p.generations,
            "population_size": p.population_size,
            "time_budget": p.time_budget,
            "threads": p.threads,
            "seed": seed,
        }
        if p.operators is not None:
            search["operators"] = list(p.operators)
        law = latent_size_law(
            data,
            sizes=p.sizes,
            architecture=p.architecture,
            options=p.options,
            factory=p.factory,
            kwargs=p.kwargs,
            latent_kwarg=p.latent_kwarg,
            trainer=p.trainer,
            encoder=p.encoder,
            decoder=p.decoder,
            train=TrainConfig(epochs=p.epochs, lr=p.lr, seed=seed),
            params=search,
            symbolic=p.symbolic,
            seed=seed,
            progress=self.progress,
        )
        errors = np.asarray(law.errors)
        gain = (errors[0] - errors) / errors[0] if errors[0] > 0 else np.zeros_like(errors)
        loso = np.asarray([np.nan if r is None else r for r in law.loso_ratio], dtype=np.float64)
        return Explanation(
            importance=gain[None, :],
            feature_names=[f"latent={k}" for k in law.sizes],
            target_names=["reconstruction_error"],
            target=Target(target).value,
            arrays={"sizes": np.asarray(law.sizes, dtype=np.int64), "errors": errors, "fitted": np.asarray(law.fitted), "loso_ratio": loso},
            extras={
                "unit": "share of the smallest latent size's held-out error removed",
                "feature_axis": "latent size",
                "summary": law.lines(),
                "law": law.formula,
                "law_latex": law.latex,
                "law_family": law.family,
                "fitted_on": "log error (relative-error weights)",
                "r2_in_sample": law.r2_in_sample,
                "r2_log": law.r2_in_sample,
                "r2_raw": law.r2_displayed,
                "plateau": law.plateau,
                "plateau_above": law.plateau_above,
                "fit_ratio": law.fit_ratio,
                "loso_ratio": law.loso_ratio,
                "loso_rms_log": law.loso_rms_log,
                "law_warnings": law.warnings,
                "candidates": law.candidates,
                "architecture": law.architecture,
                "trainer": law.trainer,
                "backend": law.backend,
                "note": "trains its own models at each size; the recipe's model is not used",
            },
        )

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Figure]:
        """Measured errors and the law on log-log axes, with the plateau and the leave-one-size-out predictions."""
        from matplotlib.figure import Figure

        sizes, errors = np.asarray(explanation.arrays["sizes"], dtype=float), np.asarray(explanation.arrays["errors"], dtype=float)
        fig = Figure(figsize=(5.5, 3.8), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(sizes, errors, "o", color="black", label="held-out MSE")
        loso = explanation.arrays.get("loso_ratio")
        if loso is not None and np.isfinite(loso).any():
            ax.plot(sizes, errors * loso, "x", color="tab:red", label="predicted with that size left out")
        grid = np.geomspace(float(sizes.min()), float(sizes.max()), 200)
        try:  # draw the law itself where sympy can read it back
            import sympy

            k = sympy.Symbol("latent_size")
            f = sympy.lambdify(k, sympy.sympify(explanation.extras["law"], locals={"latent_size": k}), "numpy")
            with np.errstate(all="ignore"):
                ax.plot(
                    grid,
                    np.broadcast_to(f(grid), grid.shape),
                    "-",
                    label=f"law ({explanation.extras.get('law_family', '')}, log R$^2$ {explanation.extras.get('r2_in_sample', float('nan')):.3f})",
                )
        except Exception:  # noqa: BLE001 - the points alone are still worth drawing
            pass
        plateau = explanation.extras.get("plateau")
        if plateau:
            above = bool(explanation.extras.get("plateau_above"))
            ax.axhline(
                plateau,
                color="tab:red" if above else "gray",
                linestyle=":",
                linewidth=1,
                label=f"plateau {plateau:.3g}" + (" (above measured errors)" if above else ""),
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("latent size")
        ax.set_ylabel("held-out reconstruction MSE (log)")
        ax.set_title("Latent-size law")
        ax.legend(fontsize=7)
        return {"law": fig}
