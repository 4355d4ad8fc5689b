"""Feature visualization: the inputs that drive each latent up and down.

For every target ``t`` (each latent dimension, or the reconstruction error),
both signs and ``starts`` starting points, one optimisation tensor of
``targets x 2 x starts`` inputs is optimized together with one Adam loop
(each row's loss only depends on its own input, so the rows do not
interact). Row ``(t, s, k)`` maximises ``s * f_t(x) / sd(f_t)``, where
``sd(f_t)`` is the target's spread on the fit split, minus penalties that keep
``x`` plausible:

* a box: ``x = lo + (hi - lo) * sigmoid(u)`` optimizes ``u``, so every
  element stays inside the fit split's per-element range (or its inner
  ``box_quantile`` .. ``1 - box_quantile`` quantiles);
* ``l2``: mean squared standardized deviation from the fit mean;
* ``tv`` (images): total variation, mean absolute neighbour difference;
* ``smoothness`` (sequences): mean squared step-to-step change;
* ``mahalanobis``: squared Mahalanobis distance to the fit split per element
  (regularised covariance, see :mod:`aeinterp_visualize._penalties`).

The data-driven view comes with it: the explain-split samples with the
highest and lowest value of each target.

Importance (targets x feature groups): per target, the mean over both signs
and all starts of ``|x_opt - mean| / scale`` (the optimized input's deviation
from the fit mean in units of the data's kind-aware SD), averaged within each
feature group. ``std`` is its spread over signs and starts.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from aeinterp import Capabilities, ExplainerParams, Explanation
from aeinterp.model import as_tensor, evaluate
from aeinterp.targets import Target, evaluate_target, target_names
from aeinterp.toolkit.chunks import ChunkedExplainer, Partial
from aeinterp.toolkit.perturb import subsample, subsample_indices

from ._common import Geometry, columns_to_show, fit_stats, group_mean, rows_to_show, torch_seed
from ._penalties import CovarianceMode, Mahalanobis, time_smoothness, total_variation
from ._plots import DIVERGING_CMAP, heatmap, image_grid, new_figure, panel_grid

__all__ = ["FeatureVisualization"]

MAX_FIGURE_ROWS = 16
MAX_FIGURE_COLUMNS = 40
MAX_KEPT_SAMPLE_VALUES = 5_000_000  # top/bottom samples kept in the npz up to this many numbers


class FeatureVisualization(ChunkedExplainer):
    """Optimize inputs that maximise and minimise every latent at once, plus the top/bottom real samples."""

    name = "feature_visualization"

    class Params(ExplainerParams):
        steps: int = Field(200, ge=1, description="Adam steps of the input optimisation")
        lr: float = Field(0.1, gt=0, description="Adam learning rate, in the unconstrained (pre-sigmoid) space")
        starts: int = Field(4, ge=1, description="starting points per target and sign (the same starts for every target)")
        init: Literal["samples", "mean", "uniform"] = Field(
            "samples", description="starts: random fit samples, the fit mean plus small noise, or uniform in the box"
        )
        l2: float = Field(0.5, ge=0, description="weight of the mean squared standardized deviation from the fit mean")
        tv: float = Field(0.5, ge=0, description="weight of the total-variation penalty (images only)")
        smoothness: float = Field(0.5, ge=0, description="weight of the squared step-to-step change penalty (sequences only)")
        mahalanobis: float = Field(0.5, ge=0, description="weight of the squared Mahalanobis distance to the fit split, per element")
        covariance: CovarianceMode = Field(
            "auto",
            description="covariance for the Mahalanobis penalty: Ledoit-Wolf full, low-rank PPCA, diagonal, or auto (full up to 512 elements)",
        )
        covariance_rank: int = Field(64, ge=1, description="principal directions kept by the low-rank covariance")
        box_quantile: float = Field(0.0, ge=0, lt=0.5, description="box = fit split's [q, 1-q] quantiles per element; 0 = its min and max")
        n_top: int = Field(5, ge=1, description="top- and bottom-activating real samples recorded per target")
        max_samples: int | None = Field(
            None,
            ge=2,
            description="explain-split samples scanned for top/bottom samples (random subset, indices refer to the explain split)",
        )
        max_fit_samples: int | None = Field(2000, ge=2, description="fit-split samples used for the target scale and the covariance")
        batch_size: int = Field(1024, ge=1, description="rows per forward pass when scanning samples")

    capabilities = Capabilities(
        targets=frozenset({"latent", "latent_pca", "reconstruction_error"}),
        needs_gradients=True,
        deterministic=True,
        local=False,
        splits="targets",
        chunk_invariant=True,
    )

    def prepare(self, model: Any, data: Any, *, target: Target, rng: np.random.Generator) -> dict[str, Any]:
        """What every target's optimisation shares: the fit statistics and scale, the starting points, the scanned rows."""
        p = self.params
        stats = fit_stats(data, p.box_quantile)
        x_fit = subsample(np.asarray(data.x_fit), p.max_fit_samples, rng)
        fit_values = evaluate(lambda xb: evaluate_target(model, target, xb), x_fit, batch_size=p.batch_size, model=model).double().numpy()
        spread = fit_values.std(axis=0)
        dead = spread <= 1e-12
        gen = torch_seed(rng)
        flat_fit = x_fit.reshape(len(x_fit), -1)
        if p.init == "samples":
            x0 = flat_fit[rng.choice(len(flat_fit), size=p.starts, replace=len(flat_fit) < p.starts)]
        elif p.init == "mean":
            x0 = (stats.mean + 0.1 * stats.scale * torch.randn(p.starts, flat_fit.shape[1], generator=gen).numpy()).astype(flat_fit.dtype)
        else:
            x0 = (stats.lo + (stats.hi - stats.lo) * torch.rand(p.starts, flat_fit.shape[1], generator=gen).numpy()).astype(flat_fit.dtype)
        explain_idx = subsample_indices(len(data.x_explain), p.max_samples, rng)
        return {
            "geo": Geometry.of(data),
            "stats": stats,
            "x_fit": x_fit,
            "spread": np.where(dead, 1.0, spread),
            "dead": dead,
            "x0": x0,
            "explain_idx": explain_idx,
        }

    def units(self, model: Any, data: Any, state: dict[str, Any], *, target: Target) -> tuple[np.ndarray, int]:
        """The targets, all in one chunk (a parallel executor cuts them: the rows of one Adam loop do not interact)."""
        n = len(state["spread"])
        return np.arange(n), n

    def explain_chunk(
        self, model: Any, data: Any, state: dict[str, Any], units: np.ndarray, *, target: Target, rng: np.random.Generator
    ) -> Partial:
        """Optimize the inputs of the chunk's targets: rows ``(target, sign, start)`` in target order, and the loss summed per step."""
        x_opt, achieved, trace = self._optimize(model, target, state, np.asarray(units))
        return Partial(rows={"x_opt": x_opt, "achieved": achieved}, sums={"trace": trace}, count=len(units))

    def finish(self, model: Any, data: Any, state: dict[str, Any], total: Partial, *, target: Target) -> Explanation:
        p = self.params
        geo, stats, explain_idx = state["geo"], state["stats"], state["explain_idx"]
        n_targets = len(state["spread"])
        x_opt, achieved = total.rows["x_opt"], total.rows["achieved"]
        trace = total.sums["trace"] / x_opt.shape[0]

        # the data-driven view: top and bottom real samples of the explain split
        x_exp = np.asarray(data.x_explain)[explain_idx]
        exp_values = evaluate(lambda xb: evaluate_target(model, target, xb), x_exp, batch_size=p.batch_size, model=model).double().numpy()
        k = min(p.n_top, len(explain_idx))
        order = np.argsort(exp_values, axis=0, kind="stable")  # (N, T), ascending
        top = order[::-1][:k].T  # (T, k)
        bottom = order[:k].T
        cols = np.arange(n_targets)[:, None]

        dev = np.abs(x_opt.reshape(n_targets, 2, p.starts, -1) - stats.mean) / stats.scale  # (T, 2, S, D)
        dev_groups = group_mean(dev, data.groups)  # (T, 2, S, G)
        importance = dev_groups.mean(axis=(1, 2))
        std = dev_groups.reshape(n_targets, 2 * p.starts, -1).std(axis=1, ddof=1)  # over signs and starts

        arrays: dict[str, np.ndarray] = {
            "optimized": x_opt.reshape(n_targets, 2, p.starts, *geo.sample_shape).astype(np.float32),
            "achieved": achieved.reshape(n_targets, 2, p.starts),
            "objective_trace": trace,
            "top_indices": explain_idx[top],
            "top_values": exp_values[top, cols],
            "bottom_indices": explain_idx[bottom],
            "bottom_values": exp_values[bottom, cols],
            "data_mean": stats.mean,
            "data_scale": stats.scale,
            "box_lo": stats.lo,
            "box_hi": stats.hi,
        }
        if 2 * n_targets * k * geo.n_elements <= MAX_KEPT_SAMPLE_VALUES:
            arrays["top_samples"] = x_exp[top].astype(np.float32)  # (T, k, *shape)
            arrays["bottom_samples"] = x_exp[bottom].astype(np.float32)
        extras = {
            **geo.to_extras(),
            "importance": "mean |optimized input - fit mean| / data scale over both signs and all starts, averaged per feature group",
            "rows": "optimized[t, 0] maximises target t, optimized[t, 1] minimises it; top/bottom indices refer to the explain split",
            "dead_targets": [int(i) for i in np.flatnonzero(state["dead"])],
            "n_rows_optimized": int(x_opt.shape[0]),
            "final_objective": float(trace[-1]),
            "box_quantile": p.box_quantile,
        }
        return Explanation(
            importance=importance,
            std=std,
            feature_names=list(data.group_names),
            target_names=target_names(target, n_targets, list(data.feature_names)),
            target=target.value,
            arrays=arrays,
            extras=extras,
        )

    def _optimize(
        self, model: Any, target: Target, state: dict[str, Any], targets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One Adam loop over the rows of ``targets``: inputs ``(rows, D)``, target values ``(rows,)``, loss summed per step."""
        p = self.params
        geo, stats = state["geo"], state["stats"]
        starts, d = p.starts, geo.n_elements
        rows = len(targets) * 2 * starts
        lo = as_tensor(stats.lo, model)
        width = as_tensor(stats.hi - stats.lo, model)
        mean = as_tensor(stats.mean, model)
        scale = as_tensor(stats.scale, model)
        x0 = as_tensor(state["x0"], model)
        safe = torch.where(width > 0, width, torch.ones_like(width))
        frac = ((x0 - lo) / safe).clamp(0.02, 0.98)
        u = torch.logit(frac).unsqueeze(0).expand(len(targets) * 2, starts, d).reshape(rows, d).clone().requires_grad_(True)

        row_target = torch.as_tensor(targets, dtype=torch.long).repeat_interleave(2 * starts)
        row_sign = torch.tensor([1.0, -1.0]).repeat_interleave(starts).repeat(len(targets)).to(lo)
        row_spread = as_tensor(state["spread"], model)[row_target]
        maha = Mahalanobis(state["x_fit"], p.covariance, rank=p.covariance_rank, dtype=lo.dtype) if p.mahalanobis > 0 else None
        shape = (rows, *geo.sample_shape)
        opt = torch.optim.Adam([u], lr=p.lr)
        trace = np.empty(p.steps)

        def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            values = evaluate_target(model, target, x.reshape(shape))
            value = values[torch.arange(rows), row_target]
            loss = -row_sign * value / row_spread
            xs = x / scale
            if p.l2 > 0:
                loss = loss + p.l2 * (xs - mean / scale).pow(2).mean(dim=1)
            if p.tv > 0 and geo.kind == "image":
                loss = loss + p.tv * total_variation(xs.reshape(shape))
            if p.smoothness > 0 and geo.kind == "sequence":
                loss = loss + p.smoothness * time_smoothness(xs.reshape(shape))
            if maha is not None:
                loss = loss + p.mahalanobis * maha(x)
            return loss, value

        with torch.enable_grad():
            for step in self.progress.track(range(p.steps), total=p.steps, description=f"feature visualization ({target})"):
                opt.zero_grad()
                loss, _ = objective(lo + width * torch.sigmoid(u))
                total = loss.sum()
                total.backward()
                opt.step()
                trace[step] = float(total.detach())
        with torch.no_grad():
            x = lo + width * torch.sigmoid(u)
            _, value = objective(x)
        return x.detach().double().cpu().numpy(), value.detach().double().cpu().numpy(), trace

    # --- figures -----------------------------------------------------------------------
    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Any]:
        """Image grids (targets x starts), tabular heatmaps or sequence line plots of the optimized
        inputs, and the same for the top/bottom real samples."""
        arrays, geo = explanation.arrays, Geometry.from_extras(explanation.extras)
        if "optimized" not in arrays:
            return {}
        shown = rows_to_show(explanation.importance, MAX_FIGURE_ROWS)
        names = [explanation.target_names[i] for i in shown]
        opt = np.asarray(arrays["optimized"])[shown]  # (T, 2, S, *shape)
        t, _, s = opt.shape[:3]
        opt = opt.reshape(t, 2, s, -1)
        mean, scale = np.asarray(arrays["data_mean"]), np.asarray(arrays["data_scale"])
        lo, hi = np.asarray(arrays["box_lo"]), np.asarray(arrays["box_hi"])
        have_samples = "top_samples" in arrays
        if have_samples:
            top = np.asarray(arrays["top_samples"])[shown].reshape(t, -1, geo.n_elements)
            bottom = np.asarray(arrays["bottom_samples"])[shown].reshape(t, -1, geo.n_elements)
        figs: dict[str, Any] = {}
        if geo.kind == "image":
            vmin, vmax = float(lo.min()), float(hi.max())
            tiles = np.concatenate([opt[:, 0], opt[:, 1]], axis=1)
            cols = [f"max {k + 1}" for k in range(s)] + [f"min {k + 1}" for k in range(s)]
            fig = new_figure(0.85 * len(cols) + 1.0, 0.85 * t + 1.0)
            image_grid(fig, tiles, geo.sample_shape, row_labels=names, col_labels=cols, vmin=vmin, vmax=vmax)
            fig.suptitle("Optimized inputs: maximising (left) and minimising (right) each target", fontsize=10)
            figs["optimized"] = fig
            if have_samples:
                k = top.shape[1]
                cols = [f"top {i + 1}" for i in range(k)] + [f"bottom {i + 1}" for i in range(k)]
                fig = new_figure(0.85 * len(cols) + 1.0, 0.85 * t + 1.0)
                image_grid(
                    fig, np.concatenate([top, bottom], axis=1), geo.sample_shape, row_labels=names, col_labels=cols, vmin=vmin, vmax=vmax
                )
                fig.suptitle("Real samples with the highest (left) and lowest (right) value of each target", fontsize=10)
                figs["top_samples"] = fig
        elif geo.kind == "tabular":
            std_opt = (opt.mean(axis=2) - mean) / scale  # (T, 2, D)
            cols_idx = columns_to_show(np.abs(std_opt).max(axis=(0, 1)), MAX_FIGURE_COLUMNS)
            labels = [geo.element_names[i] if i < len(geo.element_names) else f"x{i}" for i in cols_idx]
            rows = [f"{n} {w}" for n in names for w in ("max", "min")]
            figs["optimized"] = _tabular_heatmap(
                std_opt.reshape(2 * t, -1)[:, cols_idx],
                rows,
                labels,
                "Optimized inputs (mean over starts), standardized: (x - mean) / SD",
            )
            if have_samples:
                profile = np.stack([(top.mean(axis=1) - mean) / scale, (bottom.mean(axis=1) - mean) / scale], axis=1)
                rows = [f"{n} {w}" for n in names for w in ("top", "bottom")]
                figs["top_samples"] = _tabular_heatmap(
                    profile.reshape(2 * t, -1)[:, cols_idx],
                    rows,
                    labels,
                    f"Mean of the {top.shape[1]} real samples with the highest / lowest value of each target, standardized",
                )
        elif geo.kind == "sequence":
            figs["optimized"] = _sequence_lines(
                geo,
                names,
                opt[:, 0],
                opt[:, 1],
                mean,
                lo,
                hi,
                "maximising",
                "minimising",
                "Optimized inputs per feature: maximising (red) and minimising (blue); grey band = box, dashed = fit mean",
            )
            if have_samples:
                figs["top_samples"] = _sequence_lines(
                    geo,
                    names,
                    top,
                    bottom,
                    mean,
                    lo,
                    hi,
                    "top",
                    "bottom",
                    "Real samples with the highest (red) and lowest (blue) value of each target",
                )
        return figs


def _tabular_heatmap(matrix: np.ndarray, rows: list[str], cols: list[str], title: str) -> Any:
    fig = new_figure(0.22 * len(cols) + 3.0, 0.28 * len(rows) + 2.2)
    ax = fig.add_subplot()
    heatmap(
        fig,
        ax,
        matrix,
        row_labels=rows,
        col_labels=cols,
        colorbar_label="standardized value",
        limit=max(1.0, float(np.nanpercentile(np.abs(matrix), 98))),
        cmap=DIVERGING_CMAP,
    )
    for y in range(1, len(rows) // 2):
        ax.axhline(2 * y - 0.5, color="0.3", linewidth=0.6)
    ax.set_title(title, fontsize=10)
    return fig


def _sequence_lines(
    geo: Geometry,
    names: list[str],
    up: np.ndarray,
    down: np.ndarray,
    mean: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    up_label: str,
    down_label: str,
    title: str,
) -> Any:
    """Rows = targets, columns = sequence features; ``up`` / ``down`` are ``(T, n_lines, D)``."""
    steps, n_feat = geo.sample_shape
    feats = geo.sequence_features or [f"f{j}" for j in range(n_feat)]
    shape = (steps, n_feat)
    up = up.reshape(up.shape[0], up.shape[1], *shape)
    down = down.reshape(down.shape[0], down.shape[1], *shape)
    mean_s, lo_s, hi_s = mean.reshape(shape), lo.reshape(shape), hi.reshape(shape)
    time = np.arange(steps)

    def draw(ax: Any, i: int, j: int) -> None:
        ax.fill_between(time, lo_s[:, j], hi_s[:, j], color="0.92", linewidth=0)
        ax.plot(time, mean_s[:, j], color="0.4", linestyle="--", linewidth=0.8)
        for lines, colour, label in ((up, "tab:red", up_label), (down, "tab:blue", down_label)):
            for k in range(lines.shape[1]):
                ax.plot(time, lines[i, k, :, j], color=colour, alpha=0.35, linewidth=0.8)
            ax.plot(time, lines[i, :, :, j].mean(axis=0), color=colour, linewidth=1.8, label=label)
        if i == 0 and j == 0:
            ax.legend(fontsize=7, loc="upper right")

    fig = new_figure(2.6 * n_feat + 1.0, 1.5 * len(names) + 1.0)
    panel_grid(fig, names, feats, draw, xlabel="time step")
    fig.suptitle(title, fontsize=10)
    return fig
