"""Tests of the ``interactions`` explainer (Integrated Hessians and Friedman's H-statistic).

Ground truth: a hand-built encoder z0 = x1*x2 + x3, z1 = sin(x4)*x5, z2 = x6 + x7
(planted pairs, exact zeros for additive inputs); a finite-difference Hessian
path integral on a small MLP; interaction completeness against the gradients
plugin's integrated gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aeinterp_gradients.explainers import IntegratedGradients
from aeinterp_interactions.explainer import Interactions
from aeinterp_interactions.hessians import log_weight_rule
from torch import nn

from aeinterp import Explanation, TorchAutoencoder, explain
from aeinterp.data import ArrayDataset, FeatureGroup, element_names, make_groups, split_indices
from aeinterp.testing import ExplainerConformance


class TestIntegratedHessiansConformance(ExplainerConformance):
    explainer = Interactions
    params = {"steps": 4, "max_samples": 16}


class TestHStatisticConformance(ExplainerConformance):
    explainer = Interactions
    params = {"method": "h_statistic", "grid_samples": 12}


class PairsEncoder(nn.Module):
    """z0 = x1*x2 + x3, z1 = sin(x4)*x5, z2 = x6 + x7 (x0 unused); a linear decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = nn.Linear(3, 8)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 1] * x[:, 2] + x[:, 3], torch.sin(x[:, 4]) * x[:, 5], x[:, 6] + x[:, 7]], dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def _data(x: np.ndarray, groups=None) -> ArrayDataset:  # noqa: ANN001
    names = element_names("tabular", (x.shape[1],))
    fit, ex = split_indices(x.shape[0], seed=0)
    return ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=groups or make_groups("tabular", (x.shape[1],), feature_names=names),
        fit_index=fit,
        explain_index=ex,
        name="pairs",
    )


@pytest.fixture(scope="module")
def pairs() -> tuple[TorchAutoencoder, ArrayDataset]:
    x = np.random.default_rng(0).normal(size=(160, 8)).astype(np.float32)
    return TorchAutoencoder(PairsEncoder(), (8,)), _data(x)


@pytest.mark.parametrize("method", ["integrated_hessians", "h_statistic"])
def test_planted_pairs_and_additive_zeros(pairs, method: str) -> None:  # noqa: ANN001
    model, data = pairs
    result = explain(Interactions, model, data, params={"method": method, "grid_samples": 30})
    inter = result.arrays["interaction"]
    assert inter.shape == (3, 8, 8)
    np.testing.assert_allclose(inter, inter.transpose(0, 2, 1))
    scale = inter.max()
    for t, planted in enumerate([("x1", "x2"), ("x4", "x5")]):
        assert tuple(result.extras["top_pairs"][f"z{t}"][0]["pair"]) == planted
    # x3, x6, x7 enter additively: no interaction with anything, for any latent
    for j in (3, 6, 7):
        assert np.abs(inter[:, j, :]).max() <= 1e-5 * scale
    assert np.abs(inter[2]).max() <= 1e-5 * scale
    assert result.extras["top_pairs"]["z2"] == []
    assert "no interacting pair" in result.extras["summary"][2]
    # the only non-zero off-diagonal entries are the planted pairs
    mask = np.zeros_like(inter, dtype=bool)
    mask[0, 1, 2] = mask[0, 2, 1] = mask[1, 4, 5] = mask[1, 5, 4] = True
    assert np.abs(inter[~mask]).max() <= 1e-5 * scale and inter[mask].min() > 0.05 * scale
    # main effects: x3 for z0, x6 and x7 for z2; x0 drives nothing
    assert result.arrays["main_effect"][:, 0].max() <= 1e-6 and result.arrays["main_effect"][0, 3] > 0.1


def test_integrated_hessians_closed_form(pairs) -> None:  # noqa: ANN001
    """For z0 = x1 x2 with a zero baseline, G_12 = G_21 = x1 x2 / 4 and G_11 = G_22 = x1 x2 / 4."""
    model, data = pairs
    result = explain(Interactions, model, data, params={"max_samples": None, "steps": 4})
    full = result.arrays["local_interaction"]
    x = data.x_explain
    np.testing.assert_allclose(full[:, 0, 1, 2], x[:, 1] * x[:, 2] / 4, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full[:, 0, 1, 1], x[:, 1] * x[:, 2] / 4, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full[:, 0, 3, 3], x[:, 3], rtol=1e-5, atol=1e-6)


def test_log_weight_rule_is_exact_to_degree_2m_minus_1() -> None:
    for m in (1, 4, 8, 16):
        t, w = log_weight_rule(m)
        assert (t > 0).all() and (t < 1).all() and (w > 0).all()
        for n in range(2 * m):  # int_0^1 t^n (-ln t) dt = 1 / (n + 1)^2
            assert abs(float((w * t**n).sum()) - 1.0 / (n + 1) ** 2) < 1e-12


class SmallMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Softplus(), nn.Linear(5, 2)).double()
        for p in self.encoder.parameters():
            p.data = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        self.decoder = nn.Linear(2, 4).double()


def _fd_reference(f, x: torch.Tensor, base: torch.Tensor, n: int = 24, h: float = 1e-4) -> torch.Tensor:  # noqa: ANN001
    """G for one sample by a product Gauss-Legendre grid in (a, b) and central finite differences of autograd gradients."""
    g, w = np.polynomial.legendre.leggauss(n)
    g, w = (g + 1) / 2, w / 2
    a, b = np.meshgrid(g, g, indexing="ij")
    ab = torch.as_tensor((a * b).ravel(), dtype=torch.float64)
    wab = torch.as_tensor(np.outer(w, w).ravel(), dtype=torch.float64)
    d = x - base
    e = x.numel()

    def grads(points: torch.Tensor) -> torch.Tensor:  # (P, E) -> (P, T, E)
        points = points.clone().requires_grad_(True)
        out = f(points)
        return torch.stack([torch.autograd.grad(out[:, t].sum(), points, retain_graph=True)[0] for t in range(out.shape[1])], dim=1)

    points = base + ab[:, None] * d
    grad = grads(points)  # (P, T, E)
    hess = torch.stack(
        [
            (grads(points + h * torch.eye(e, dtype=torch.float64)[i]) - grads(points - h * torch.eye(e, dtype=torch.float64)[i])) / (2 * h)
            for i in range(e)
        ],
        dim=-1,
    )
    h_int = torch.einsum("p,p,ptij->tij", wab, ab, hess)
    g_int = torch.einsum("p,pti->ti", wab, grad)
    out = h_int * torch.outer(d, d)
    out += torch.diag_embed(g_int * d)
    return out


def test_integrated_hessians_equal_finite_difference_path_integral() -> None:
    module = SmallMLP()
    model = TorchAutoencoder(module, (4,), encoder="encoder", decoder="decoder")
    x = np.random.default_rng(1).normal(size=(24, 4))
    data = _data(x)
    result = explain(Interactions, model, data, params={"max_samples": None, "steps": 12, "baseline": "mean"})
    full = result.arrays["local_interaction"]
    base = torch.as_tensor(data.x_fit.mean(axis=0))
    with torch.enable_grad():
        for k in (0, 5):
            ref = _fd_reference(module.encoder, torch.as_tensor(data.x_explain[k]), base).numpy()
            np.testing.assert_allclose(full[k], ref, rtol=2e-3, atol=2e-5)


def test_completeness_rows_sum_to_integrated_gradients() -> None:
    module = SmallMLP()
    model = TorchAutoencoder(module, (4,), encoder="encoder", decoder="decoder")
    data = _data(np.random.default_rng(2).normal(size=(40, 4)))
    ih = explain(Interactions, model, data, params={"max_samples": None, "steps": 12})
    ig = explain(
        IntegratedGradients, model, data, params={"steps": 64, "factorize": "off", "baseline": "zero"}
    )  # the Hessians start at zero too
    full = ih.arrays["local_interaction"]  # (N, T, G, G), signed
    np.testing.assert_allclose(full.sum(axis=-1), ig.local, rtol=1e-3, atol=1e-5)
    # Explanation.local is the interaction part: IG attribution minus the main effect
    diag = np.diagonal(full, axis1=-2, axis2=-1)
    np.testing.assert_allclose(ih.local, ig.local - diag, rtol=1e-3, atol=1e-5)
    with torch.no_grad():
        x = torch.as_tensor(data.x_explain)
        delta = (module.encoder(x) - module.encoder(torch.zeros_like(x))).numpy()
    np.testing.assert_allclose(full.sum(axis=(-1, -2)), delta, rtol=1e-4, atol=1e-6)
    assert max(ih.extras["completeness_gap"]) < 1e-5


def test_groups_are_block_sums_and_memory_bound_changes_nothing(pairs) -> None:  # noqa: ANN001
    model, data = pairs
    groups = (
        FeatureGroup("g12", np.array([1, 2])),
        FeatureGroup("g3", np.array([3])),
        FeatureGroup("g45", np.array([4, 5])),
        FeatureGroup("g67", np.array([6, 7])),
    )
    grouped = ArrayDataset(
        x=data.x,
        kind="tabular",
        feature_names=data.feature_names,
        groups=groups,
        fit_index=data.fit_index,
        explain_index=data.explain_index,
    )
    elem = explain(Interactions, model, data, params={"max_samples": None, "steps": 4})
    g = explain(Interactions, model, grouped, params={"max_samples": None, "steps": 4, "memory_mb": 0.01})  # one sample per block
    full = elem.arrays["local_interaction"]
    blocks = [[1, 2], [3], [4, 5], [6, 7]]
    ref = np.stack([np.stack([full[..., a, :][..., b].sum(axis=(-1, -2)) for b in blocks], axis=-1) for a in blocks], axis=-2)
    np.testing.assert_allclose(g.arrays["local_interaction"], ref, rtol=1e-5, atol=1e-6)
    assert g.feature_names == ["g12", "g3", "g45", "g67"]
    # the H-statistic between groups: only g12 and g3 share a latent, and they add
    h = explain(Interactions, model, grouped, params={"method": "h_statistic", "grid_samples": 20, "memory_mb": 0.05})
    assert np.abs(h.arrays["interaction"]).max() <= 1e-5 * max(1.0, float(h.arrays["main_effect"].max()))


def test_h_statistic_pairs_only_among_strongest_groups(pairs) -> None:  # noqa: ANN001
    model, data = pairs
    result = explain(Interactions, model, data, params={"method": "h_statistic", "grid_samples": 20, "pair_groups": 7})
    assert result.extras["n_pairs"] == 21
    assert result.extras["paired_groups"] == ["x1", "x2", "x3", "x4", "x5", "x6", "x7"]  # x0 drives nothing
    assert result.extras["copies"] == 20 * (8 + 21)
    assert tuple(result.extras["top_pairs"]["z0"][0]["pair"]) == ("x1", "x2")


def test_figures_from_saved_explanation(pairs, tmp_path) -> None:  # noqa: ANN001
    model, data = pairs
    result = explain(Interactions, model, data, params={"steps": 4})
    result.save_arrays(tmp_path / "i.npz")
    again = Explanation.from_json(result.to_json(), tmp_path / "i.npz")
    figures = Interactions.figures(again)
    assert set(figures) == {"heatmap", "top_pairs"}
    labels = [t.get_text() for t in figures["top_pairs"].axes[0].get_yticklabels()]
    assert labels == ["x1 x x2", "x4 x x5"]
    assert len([ax for ax in figures["heatmap"].axes if ax.get_title()]) == 3


@pytest.mark.parametrize("activation", ["tanh", "softplus", "sigmoid"])
@pytest.mark.parametrize("target", ["latent", "latent_pca"])
def test_factorised_path_equals_torch_func_hessians(activation: str, target: str) -> None:
    """Linear-activation-Linear encoders skip autodiff: same matrices as the generic torch.func path."""
    from aeinterp.models.architectures import build_architecture

    torch.manual_seed(0)
    module = build_architecture("mlp", (6,), 3, hidden=[5], activation=activation)
    model = TorchAutoencoder(module, (6,))
    data = _data(np.random.default_rng(4).normal(size=(40, 6)).astype(np.float32))
    params = {"max_samples": None, "steps": 6, "baseline": "mean"}
    fast = explain(Interactions, model, data, target=target, params=params)
    slow = explain(Interactions, model, data, target=target, params={**params, "factorize": "off"})
    assert fast.extras["path"] == "factorised" and slow.extras["path"] == "generic"
    np.testing.assert_allclose(fast.arrays["local_interaction"], slow.arrays["local_interaction"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast.importance, slow.importance, rtol=1e-4, atol=1e-6)
