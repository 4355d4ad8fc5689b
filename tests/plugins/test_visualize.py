"""Tests of the aeinterp-visualize plugin: feature_visualization, activation_atlas,
latent_traversal and component_contributions.

Ground truth comes from hand-built models (a linear encoder on a known feature
subset, the planted autoencoder's linear decoder), agreement with reference
computations (scikit-learn's Ledoit-Wolf precision, an explicit PPCA inverse),
and real small models trained here (conv AE on digits, MLP on breast_cancer,
LSTM on sines) run through every explainer and every figure.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import entry_points

import aeinterp_visualize
import numpy as np
import pytest
import torch
from aeinterp_visualize._penalties import Mahalanobis
from aeinterp_visualize.atlas import ActivationAtlas, bin_plane
from aeinterp_visualize.feature_visualization import FeatureVisualization
from aeinterp_visualize.traversal import ComponentContributions, LatentTraversal, traversal_codes
from torch import nn

from aeinterp import TorchAutoencoder, explain
from aeinterp.data import ArrayDataset, element_names, make_groups, split_indices
from aeinterp.explanation import Explanation
from aeinterp.io.datasets import load_dataset
from aeinterp.models.architectures import build_architecture
from aeinterp.models.training import TrainConfig, train_autoencoder
from aeinterp.plugins.registry import ExplainerRegistry
from aeinterp.testing import ExplainerConformance

ALL = (FeatureVisualization, ActivationAtlas, LatentTraversal, ComponentContributions)
FAST = {
    FeatureVisualization: {"steps": 60, "starts": 2},
    ActivationAtlas: {"grid": 4, "min_density": 3},
    LatentTraversal: {"steps": 5},
    ComponentContributions: {"max_samples": 64},
}


# --- conformance ------------------------------------------------------------------------
class TestFeatureVisualizationConformance(ExplainerConformance):
    explainer = FeatureVisualization
    params = FAST[FeatureVisualization]


class TestActivationAtlasConformance(ExplainerConformance):
    explainer = ActivationAtlas
    params = FAST[ActivationAtlas]


class TestLatentTraversalConformance(ExplainerConformance):
    explainer = LatentTraversal
    params = FAST[LatentTraversal]


class TestComponentContributionsConformance(ExplainerConformance):
    explainer = ComponentContributions
    params = FAST[ComponentContributions]


def test_entry_point_and_hook_register_all_four() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="aeinterp")}
    assert eps.get("visualize") == "aeinterp_visualize"
    registry = ExplainerRegistry()
    aeinterp_visualize.aeinterp_register_explainers(registry)
    for cls in ALL:
        assert cls.name in registry


# --- feature visualization: ground truth on a linear encoder -----------------------------
class _LinearAE(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.encoder = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.encoder.weight.data = weight.clone()
        self.decoder = nn.Linear(weight.shape[0], weight.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def _tabular(x: np.ndarray, seed: int = 0) -> ArrayDataset:
    names = element_names("tabular", x.shape[1:])
    fit, exp = split_indices(len(x), seed=seed)
    return ArrayDataset(
        x=x.astype(np.float32),
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", x.shape[1:], feature_names=names),
        fit_index=fit,
        explain_index=exp,
    )


def test_feature_visualization_pushes_exactly_the_used_features_to_their_box_edges() -> None:
    rng = np.random.default_rng(1)
    d = 8
    low, high = rng.uniform(-3, 0, size=d), rng.uniform(0.5, 4, size=d)  # a different box per feature
    x = rng.uniform(low, high, size=(500, d))
    subsets = {0: [0, 3], 1: [1, 5, 6], 2: [7]}
    w = np.zeros((3, d))
    w[0, [0, 3]] = [1.5, -0.7]
    w[1, [1, 5, 6]] = [-1.0, 2.0, 0.8]
    w[2, 7] = -1.2
    data = _tabular(x)
    model = TorchAutoencoder(_LinearAE(torch.tensor(w, dtype=torch.float32)), (d,))
    # light penalties: the optimum of the objective itself, a vertex of the box, is what is checked
    result = explain(FeatureVisualization, model, data, params={"steps": 250, "starts": 3, "l2": 0.05, "mahalanobis": 0.05}, seed=0)

    opt = result.arrays["optimized"]  # (latents, 2, starts, d)
    lo, hi, mean = result.arrays["box_lo"], result.arrays["box_hi"], result.arrays["data_mean"]
    np.testing.assert_allclose(lo, data.x_fit.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(hi, data.x_fit.max(axis=0), rtol=1e-6)
    assert np.all(opt >= lo - 1e-5) and np.all(opt <= hi + 1e-5)
    width = hi - lo
    for j, used in subsets.items():
        others = [i for i in range(d) if i not in used]
        for sign_row, sign in ((0, 1.0), (1, -1.0)):
            rows = opt[j, sign_row]  # (starts, d)
            edge = np.where(sign * w[j, used] > 0, hi[used], lo[used])
            assert np.all(np.abs(rows[:, used] - edge) <= 0.03 * width[used]), (j, sign_row, rows[:, used], edge)
            # the features z_j ignores are pulled to the data mean by the penalties, far from the edges
            assert np.all(np.abs(rows[:, others] - mean[others]) <= 0.1 * width[others])
        top = set(np.argsort(-result.importance[j])[: len(used)].tolist())
        assert top == set(used)
    # the data-driven view: top samples really have the largest codes
    z = data.x_explain @ w.T
    for j in subsets:
        np.testing.assert_allclose(np.sort(result.arrays["top_values"][j]), np.sort(z[:, j])[-5:], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result.arrays["bottom_values"][j], np.sort(z[:, j])[:5], rtol=1e-4, atol=1e-5)
        assert np.array_equal(result.arrays["top_indices"][j], np.argsort(z[:, j], kind="stable")[::-1][:5])
    # the achieved codes are the exact optima of a linear function over the box, up to the penalties' pull
    best = np.maximum(w * lo, w * hi).sum(axis=1)
    worst = np.minimum(w * lo, w * hi).sum(axis=1)
    achieved = result.arrays["achieved"]
    tol = 0.03 * (best - worst)[:, None]
    assert np.all(np.abs(achieved[:, 0] - best[:, None]) <= tol) and np.all(np.abs(achieved[:, 1] - worst[:, None]) <= tol)
    assert np.all(achieved[:, 0].min(axis=1) >= (data.x_fit @ w.T).max(axis=0) - tol[:, 0])


def test_feature_visualization_default_penalties_keep_the_used_features_and_their_signs() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 6))
    w = np.array([[2.0, -1.0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0, 0]])
    data = _tabular(x)
    model = TorchAutoencoder(_LinearAE(torch.tensor(w, dtype=torch.float32)), (6,))
    result = explain(FeatureVisualization, model, data, params={"steps": 150, "starts": 2})
    dev = result.arrays["optimized"][:, 0].mean(axis=1) - result.arrays["data_mean"]  # maximising rows
    assert np.all(np.sign(dev[0, :2]) == np.sign(w[0, :2])) and np.all(np.abs(dev[0, :2]) > 1.0)  # > 1 SD out, right side
    assert np.all(np.abs(dev[0, 2:]) < 0.2) and np.argmax(np.abs(dev[1])) == 4
    assert set(np.argsort(-result.importance[0])[:2]) == {0, 1} and np.argmax(result.importance[1]) == 4
    # the penalties pull inside the box: the optimum sits between the mean and the box edge
    assert np.all(result.arrays["optimized"][0, 0, :, 0] < result.arrays["box_hi"][0] - 0.05)


def test_feature_visualization_of_principal_directions_reaches_their_box_optima() -> None:
    """latent_pca: each direction is linear in x (v_j = components_j @ W); its optimum over the box is known."""
    from aeinterp.targets import with_latent_pca

    rng = np.random.default_rng(3)
    d = 6
    x = rng.uniform(-1.0, 2.0, size=(400, d)) * rng.uniform(0.5, 2.0, size=d)
    w = rng.normal(size=(3, d))
    data = _tabular(x)
    model = with_latent_pca(TorchAutoencoder(_LinearAE(torch.tensor(w, dtype=torch.float32)), (d,)), data)
    result = explain(
        FeatureVisualization, model, data, target="latent_pca", params={"steps": 250, "starts": 3, "l2": 0.05, "mahalanobis": 0.05}, seed=0
    )
    assert result.target_names == ["pc0", "pc1", "pc2"]
    lo, hi = result.arrays["box_lo"], result.arrays["box_hi"]
    v = model.latent_pca.components @ w  # (3, d): pc_j = x @ v_j - const
    const = model.latent_pca.components @ model.latent_pca.mean
    best, worst = np.maximum(v * lo, v * hi).sum(axis=1) - const, np.minimum(v * lo, v * hi).sum(axis=1) - const
    achieved = result.arrays["achieved"]
    tol = 0.03 * (best - worst)[:, None]
    assert np.all(np.abs(achieved[:, 0] - best[:, None]) <= tol) and np.all(np.abs(achieved[:, 1] - worst[:, None]) <= tol)


def test_feature_visualization_target_reconstruction_error(planted) -> None:  # noqa: ANN001
    result = explain(FeatureVisualization, planted.model, planted.data, target="reconstruction_error", params=FAST[FeatureVisualization])
    assert result.importance.shape == (1, planted.data.n_features)
    achieved = result.arrays["achieved"][0]  # (2, starts): maximised error above minimised error
    assert achieved[0].min() > achieved[1].max()


# --- the Mahalanobis penalty agrees with reference computations -----------------------
def test_mahalanobis_full_matches_ledoit_wolf() -> None:
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    maha = Mahalanobis(x, "full", dtype=torch.float64)
    assert maha.mode == "full"
    probe = rng.normal(size=(5, 6))
    c = probe - x.mean(axis=0)
    precision = LedoitWolf(assume_centered=True).fit(x - x.mean(axis=0)).precision_
    expected = np.einsum("nd,de,ne->n", c, precision, c) / 6
    np.testing.assert_allclose(maha(torch.as_tensor(probe)).numpy(), expected, rtol=1e-8)


def test_mahalanobis_lowrank_is_the_ppca_inverse_and_auto_picks_it_for_wide_data() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3)) @ rng.normal(size=(3, 40)) + 0.3 * rng.normal(size=(80, 40))
    maha = Mahalanobis(x, "auto", rank=3, max_full=20, dtype=torch.float64)
    assert maha.mode == "lowrank"
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    eig = s**2 / 79
    sigma2 = eig[3:].sum() / 37
    v = vt[:3].T
    cov = v @ np.diag(eig[:3] - sigma2) @ v.T + sigma2 * np.eye(40)
    probe = rng.normal(size=(4, 40))
    c = probe - x.mean(axis=0)
    expected = np.einsum("nd,de,ne->n", c, np.linalg.inv(cov), c) / 40
    np.testing.assert_allclose(maha(torch.as_tensor(probe)).numpy(), expected, rtol=1e-8)


def test_mahalanobis_ignores_constant_elements() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(100, 3)), np.zeros((100, 2))], axis=1)
    maha = Mahalanobis(x, "diagonal", dtype=torch.float64)
    probe = torch.as_tensor(np.concatenate([x[:3, :3], np.full((3, 2), 5.0)], axis=1))
    np.testing.assert_allclose(maha(probe).numpy(), ((x[:3, :3] - x[:, :3].mean(0)) ** 2 / x[:, :3].var(0)).sum(1) / 3)


# --- atlas binning -----------------------------------------------------------------------
def test_every_point_is_in_exactly_one_half_open_cell() -> None:
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(size=(500, 2)), rng.normal(scale=50, size=(10, 2))])  # with outliers
    grid = 7
    clipped, cell, ex, ey = bin_plane(pts, grid, (1.0, 99.0))
    assert np.all(clipped >= [ex[0], ey[0]]) and np.all(clipped <= [ex[-1], ey[-1]])
    for edges, axis, col in ((ex, 0, 1), (ey, 1, 0)):
        inside = np.stack(
            [
                (clipped[:, axis] >= edges[i]) & ((clipped[:, axis] < edges[i + 1]) | ((i == grid - 1) & (clipped[:, axis] <= edges[-1])))
                for i in range(grid)
            ],
            axis=1,
        )
        assert np.all(inside.sum(axis=1) == 1)
        assert np.array_equal(inside.argmax(axis=1), cell[:, col])
    assert np.bincount(cell[:, 0] * grid + cell[:, 1], minlength=grid * grid).sum() == len(pts)


def test_points_on_cell_edges_go_to_the_cell_on_their_right() -> None:
    edges = np.linspace(0.0, 1.0, 5)
    pts = np.stack([edges, edges[::-1]], axis=1)  # every edge, including both ends
    _, cell, ex, ey = bin_plane(pts, 4, (0.0, 100.0))
    np.testing.assert_allclose(ex, edges)
    assert cell[:, 1].tolist() == [0, 1, 2, 3, 3]  # [e_i, e_i+1); the last cell also holds its right edge
    assert cell[:, 0].tolist() == [3, 3, 2, 1, 0]


def test_atlas_importance_recovers_a_linear_decoder(planted) -> None:  # noqa: ANN001
    result = explain(ActivationAtlas, planted.model, planted.data, params={"grid": 5, "min_density": 2})
    a = result.arrays
    rendered = a["rendered"]
    assert a["counts"].sum() == result.extras["n_samples"] == len(planted.data.x_explain)
    codes, weights = a["mean_codes"][rendered], a["counts"][rendered].astype(float)
    w = weights / weights.sum()
    sd = np.sqrt((w[:, None] * (codes - w @ codes) ** 2).sum(axis=0))
    dec = planted.model.module.decoder.weight.detach().numpy()  # (D, K)
    expected = np.abs(dec.T) * sd[:, None] / a["data_scale"]
    np.testing.assert_allclose(result.importance, expected, rtol=1e-4, atol=1e-6)
    assert np.all(np.isnan(a["decoded"][~rendered])) and np.isfinite(a["decoded"][rendered]).all()


# --- traversal and contributions: exact on the planted (linear) decoder ---------------------
def test_traversal_codes_sweep_one_latent_and_hold_the_rest() -> None:
    refs = np.array([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]])
    values = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    codes = traversal_codes(refs, values)
    assert codes.shape == (2, 3, 4, 3)
    for r in range(2):
        for j in range(3):
            for s in range(4):
                expected = refs[r].copy()
                expected[j] = values[r, j, s]
                np.testing.assert_array_equal(codes[r, j, s], expected)


def test_traversal_importance_is_the_decoded_range_of_a_linear_decoder(planted) -> None:  # noqa: ANN001
    result = explain(
        LatentTraversal,
        planted.model,
        planted.data,
        params={"steps": 5, "reference": "samples", "n_references": 3, "normalize": "input_spread"},
    )
    dec = planted.model.module.decoder.weight.detach().numpy().astype(np.float64)
    codes = planted.model.encode(torch.as_tensor(planted.data.x_explain)).detach().numpy().astype(np.float64)
    q_lo, q_hi = np.quantile(codes, [0.05, 0.95], axis=0)
    expected = np.abs(dec.T) * (q_hi - q_lo)[:, None] / result.arrays["data_scale"]
    np.testing.assert_allclose(result.importance, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.std, 0.0, atol=1e-5)  # a linear decoder: the same range around every reference
    assert result.arrays["decoded"].shape == (3, 3, 5, 10)


def test_centred_sweep_sits_on_the_reference(planted) -> None:  # noqa: ANN001
    result = explain(
        LatentTraversal, planted.model, planted.data, params={"steps": 5, "reference": "samples", "n_references": 2, "sweep": "centred"}
    )
    refs, values = result.arrays["references"], result.arrays["sweep_values"]
    np.testing.assert_allclose(values[:, :, 2], refs, rtol=1e-6, atol=1e-6)  # the middle step (median) is the reference's own value


def test_component_contributions_are_exact_and_additive_for_a_linear_decoder(planted) -> None:  # noqa: ANN001
    result = explain(ComponentContributions, planted.model, planted.data, params={"max_samples": None, "normalize": "input_spread"})
    codes = planted.model.encode(torch.as_tensor(planted.data.x_explain)).detach().numpy().astype(np.float64)
    dec = planted.model.module.decoder.weight.detach().numpy().astype(np.float64)
    dev = np.abs(codes - codes.mean(axis=0)).mean(axis=0)
    expected = np.abs(dec.T) * dev[:, None] / result.arrays["data_scale"]
    np.testing.assert_allclose(result.importance, expected, rtol=1e-4, atol=1e-6)
    assert result.extras["nonadditivity"] < 1e-5
    assert result.local.shape == (len(codes), 3, 10)
    signed = (codes - codes.mean(axis=0))[:, :, None] * dec.T[None] / result.arrays["data_scale"]
    np.testing.assert_allclose(result.local, signed, rtol=1e-4, atol=1e-5)
    assert "non-linear" in result.extras["note"] and "reference-dependent" in result.extras["note"]


# --- real models: digits conv AE, breast_cancer MLP, sines LSTM ---------------------------
def _trained(builtin: str, arch: str, latent: int, epochs: int, **options: object) -> tuple[TorchAutoencoder, ArrayDataset]:
    data = load_dataset(builtin=builtin)
    module = build_architecture(arch, data.sample_shape, latent, **options)
    train_autoencoder(module, data.x_fit, TrainConfig(epochs=epochs, seed=0))
    return TorchAutoencoder(module, data.sample_shape), data


@pytest.fixture(scope="module")
def digits() -> tuple[TorchAutoencoder, ArrayDataset]:
    return _trained("digits", "conv2d", 6, 8)


def _roundtrip(result: Explanation, tmp_path) -> Explanation:  # noqa: ANN001
    """Save and reload the result as the runner does (JSON + npz), so figures are drawn from disk."""
    path = tmp_path / f"{result.explainer}.npz"
    result.save_arrays(path)
    return Explanation.from_json(json.loads(result.dumps()), path)


def test_digits_atlas_tiles_are_decoded_8x8_images_on_the_grid(digits, tmp_path) -> None:  # noqa: ANN001
    model, data = digits
    result = _roundtrip(explain(ActivationAtlas, model, data, params={"split": "all", "grid": 8, "min_density": 8}), tmp_path)
    a = result.arrays
    assert a["counts"].shape == (8, 8) and a["counts"].sum() == len(data.x)
    assert a["decoded"].shape == (8, 8, 1, 8, 8)
    rendered = a["rendered"]
    assert np.array_equal(rendered, a["counts"] >= 8) and rendered.sum() == result.extras["n_cells_rendered"] > 5
    with torch.no_grad():
        tiles = model.decode(torch.as_tensor(a["mean_codes"][rendered], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(a["decoded"][rendered], tiles, rtol=1e-5, atol=1e-6)
    assert a["label_majority"].shape == (8, 8) and result.extras["label_names"] == [str(i) for i in range(10)]
    fig = ActivationAtlas.figures(result)["atlas"]
    atlas_ax = fig.axes[0]
    assert len(atlas_ax.images) == rendered.sum()
    assert all(im.get_array().shape == (8, 8) for im in atlas_ax.images)
    fig.savefig(tmp_path / "atlas.png")


def test_digits_traversal_grid_has_latents_x_steps_tiles(digits, tmp_path) -> None:  # noqa: ANN001
    model, data = digits
    result = _roundtrip(explain(LatentTraversal, model, data, params={"steps": 5, "reference": "samples", "n_references": 2}), tmp_path)
    assert result.arrays["decoded"].shape == (2, 6, 5, 1, 8, 8)
    figs = LatentTraversal.figures(result)
    assert set(figs) == {"grid", "grid_ref1", "delta"}
    for key in figs:
        axes = figs[key].axes
        assert len(axes) == 6 * 5
        assert all(len(ax.images) == 1 and ax.images[0].get_array().shape == (8, 8) for ax in axes)
    # the tile in row j, column s is the decoding of the reference with z_j at the s-th sweep value
    code = result.arrays["references"][1].copy()
    code[4] = result.arrays["sweep_values"][1, 4, 3]
    with torch.no_grad():
        tile = model.decode(torch.as_tensor(code[None], dtype=torch.float32)).numpy()[0]
    np.testing.assert_allclose(result.arrays["decoded"][1, 4, 3], tile, rtol=1e-5, atol=1e-6)
    figs["grid"].savefig(tmp_path / "traversal.png")


def test_digits_feature_visualization_grid_and_box(digits, tmp_path) -> None:  # noqa: ANN001
    model, data = digits
    result = _roundtrip(explain(FeatureVisualization, model, data, params={"steps": 80, "starts": 3, "n_top": 4}), tmp_path)
    opt = result.arrays["optimized"]
    assert opt.shape == (6, 2, 3, 1, 8, 8)
    flat = opt.reshape(6, 2, 3, -1)
    assert np.all(flat >= result.arrays["box_lo"] - 1e-6) and np.all(flat <= result.arrays["box_hi"] + 1e-6)
    assert result.arrays["top_samples"].shape == (6, 4, 1, 8, 8)
    figs = FeatureVisualization.figures(result)
    assert len(figs["optimized"].axes) == 6 * 2 * 3 and len(figs["top_samples"].axes) == 6 * 2 * 4
    # every target was driven past the range its real samples reach, in the asked direction
    assert np.all(result.arrays["achieved"][:, 0].max(axis=1) > result.arrays["top_values"][:, 0])
    assert np.all(result.arrays["achieved"][:, 1].min(axis=1) < result.arrays["bottom_values"][:, 0])
    figs["optimized"].savefig(tmp_path / "featviz.png")
    contrib = _roundtrip(explain(ComponentContributions, model, data, params={"max_samples": 64}), tmp_path)
    maps = ComponentContributions.figures(contrib)
    assert len(maps["maps"].axes) == 2 * 6
    # the per-sample decomposition: original | reconstruction | each latent's contribution | that latent at its reference
    a = contrib.arrays
    rows = a["sample_index"][: len(a["example_original"])]
    np.testing.assert_array_equal(a["example_original"], data.x_explain[rows])
    with torch.no_grad():
        z = model.encode(torch.as_tensor(data.x_explain[rows[:1]]))
        np.testing.assert_allclose(a["example_reconstruction"][0], model.decode(z).numpy()[0], rtol=1e-4, atol=1e-5)
        z[0, 2] = float(a["baseline_code"][2])
        at_ref = model.decode(z).numpy()[0]
    np.testing.assert_allclose(a["example_reconstruction"][0] - a["example_contribution"][0, 2], at_ref, rtol=1e-4, atol=1e-5)
    fig = maps["decomposition"]
    drawn = [np.asarray(im.get_array()) for ax in fig.axes for im in ax.get_images()]
    assert all(d.shape == (8, 8) for d in drawn)
    assert len(drawn) == 4 * (2 + 2 * 6)  # 4 samples x (original, reconstruction, 6 contributions, 6 at reference)
    np.testing.assert_allclose(drawn[0], a["example_original"][0, 0])
    assert "non-linear and reference-dependent" in fig._suptitle.get_text()


@pytest.mark.parametrize(
    "builtin, arch, options",
    [("breast_cancer", "mlp", {"hidden": [16]}), ("sines", "lstm", {"hidden": 16})],
    ids=["tabular-mlp", "sequence-lstm"],
)
def test_tabular_and_sequence_models_run_through_every_explainer(builtin, arch, options, tmp_path) -> None:  # noqa: ANN001
    model, data = _trained(builtin, arch, 3, 5, **options)
    figures = {}
    for cls in ALL:
        result = _roundtrip(explain(cls, model, data, params=FAST[cls]), tmp_path)
        assert result.importance.shape == (3, len(data.groups))
        assert np.isfinite(result.importance).all() and (result.importance >= 0).all()
        figs = cls.figures(result)
        for key, fig in figs.items():
            fig.savefig(tmp_path / f"{cls.name}.{key}.png")
        figures[cls.name] = figs
    expected = {
        "feature_visualization": {"optimized", "top_samples"},
        "activation_atlas": {"atlas"},
        "latent_traversal": {"grid"},
        "component_contributions": {"over_time", "decomposition"} if data.kind == "sequence" else set(),
    }
    assert {k: set(v) for k, v in figures.items()} == expected
    if data.kind == "sequence":  # panels: rows = latents, columns = the 3 sequence features (+ the colour bar)
        assert len(figures["latent_traversal"]["grid"].axes) == 3 * 3 + 1
        assert len(figures["feature_visualization"]["optimized"].axes) == 3 * 3
    else:  # one small multiple per latent (+ the colour bar)
        assert len(figures["latent_traversal"]["grid"].axes) == 3 + 1


def test_atlas_projections_tsne_and_umap(planted) -> None:  # noqa: ANN001
    result = explain(ActivationAtlas, planted.model, planted.data, params={"method": "tsne", "grid": 4, "min_density": 3})
    assert result.extras["projection"] == "tsne" and result.arrays["counts"].sum() == len(planted.data.x_explain)
    if not os.environ.get("AEINTERP_SLOW_TESTS"):
        return  # UMAP's numba compilation takes ~10 s; run it with AEINTERP_SLOW_TESTS=1
    result = explain(ActivationAtlas, planted.model, planted.data, params={"method": "umap", "grid": 4, "min_density": 3})
    assert result.extras["projection"] == "umap"


def test_params_are_validated() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ActivationAtlas.Params(clip_percentiles=(99, 1))
    with pytest.raises(ValidationError):
        LatentTraversal.Params(quantiles=(0.9, 0.1))
    with pytest.raises(ValidationError):
        FeatureVisualization.Params(stepz=3)
