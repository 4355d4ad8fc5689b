"""deepshap: native DeepLIFT-rescale rules against shap, additivity, reused modules, fallback, ground truth."""

from __future__ import annotations

import dataclasses
import warnings
from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from aeinterp_deepshap.explainer import DeepShap
from torch import nn

from aeinterp import ArrayDataset, TorchAutoencoder, explain
from aeinterp.data import element_names, make_groups, split_indices
from aeinterp.errors import CapabilityError, ExplainerError
from aeinterp.explanation import Explanation
from aeinterp.models.architectures import build_architecture
from aeinterp.models.training import TrainConfig, train_autoencoder
from aeinterp.testing import ExplainerConformance, model_state

FAST = {"n_background": 16, "max_samples": 12}


class TestDeepShapConformance(ExplainerConformance):
    explainer = DeepShap
    params = {"n_background": 20, "max_samples": 40}
    ground_truth = True


# --- helpers ---------------------------------------------------------------------------------


class SeqAE(nn.Module):
    """An autoencoder from explicit encoder / decoder modules."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


def tabular(n_features: int = 8, n: int = 160, seed: int = 0) -> ArrayDataset:
    x = np.random.default_rng(seed).normal(size=(n, n_features)).astype(np.float32)
    names = element_names("tabular", (n_features,))
    fit, exp = split_indices(n, seed=seed)
    return ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (n_features,), feature_names=names),
        fit_index=fit,
        explain_index=exp,
    )


def trained_mlp(data: ArrayDataset, activation: str, hidden: list[int], latent: int = 4) -> TorchAutoencoder:
    module = build_architecture("mlp", data.sample_shape, latent, hidden=hidden, activation=activation)
    train_autoencoder(module, data.x_fit, TrainConfig(epochs=3, lr=3e-3))
    return TorchAutoencoder(module, data.sample_shape)


def both(model, data, target: str = "latent", **params):  # noqa: ANN001, ANN201
    """native and shap backends in float64, same seed."""
    common = {**FAST, "dtype": "float64", **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native = explain(DeepShap, model, data, target=target, params={**common, "backend": "native"})
        ref = explain(DeepShap, model, data, target=target, params={**common, "backend": "shap"})
    return native, ref


def phi(result: Explanation) -> np.ndarray:
    return result.arrays["phi"].reshape(*result.arrays["phi"].shape[:2], -1) if "phi" in result.arrays else result.local


# --- agreement with shap.DeepExplainer ----------------------------------------------------------


@pytest.mark.parametrize("hidden", [[16], [16, 12]], ids=["one-hidden", "two-hidden"])
def test_native_equals_shap_on_relu_mlp(hidden: list[int]) -> None:
    data = tabular()
    model = trained_mlp(data, "relu", hidden)
    native, ref = both(model, data)
    assert native.extras["method"] == ref.extras["method"] == "deeplift_rescale"
    assert native.local.shape == (FAST["max_samples"], 4, 8)
    assert np.abs(native.local).max() > 1e-2
    np.testing.assert_allclose(native.local, ref.local, atol=1e-5, rtol=0)
    np.testing.assert_allclose(native.importance, ref.importance, atol=1e-5, rtol=0)
    # the first-layer factorisation (one hidden layer) and the contraction (two) both ran
    assert native.extras["factorised_nonlinearities"] + native.extras["contracted_values"] >= 1


def test_native_equals_shap_on_reconstruction(tabular_model) -> None:  # noqa: ANN001
    model, data = tabular_model
    native, ref = both(model, data, target="reconstruction")
    assert native.importance.shape == (30, 30)
    np.testing.assert_allclose(native.local, ref.local, atol=1e-5, rtol=0)


def test_native_equals_shap_on_conv_autoencoder(image_model) -> None:  # noqa: ANN001
    model, data = image_model
    patches = dataclasses.replace(data, groups=make_groups("image", (1, 8, 8), "patches:4", feature_names=data.feature_names))
    native, ref = both(model, patches)
    assert native.local.shape == (FAST["max_samples"], 5, 4)  # 4 x 4 patches
    assert native.arrays["phi"].shape == (FAST["max_samples"], 5, 1, 8, 8)  # per pixel
    np.testing.assert_allclose(
        native.local,
        native.arrays["phi"].reshape(FAST["max_samples"], 5, 2, 4, 2, 4).sum(axis=(3, 5)).reshape(FAST["max_samples"], 5, 4),
        atol=1e-6,
    )
    np.testing.assert_allclose(phi(native), phi(ref), atol=1e-5, rtol=0)
    assert native.extras["additivity"]["max_rel"] < 1e-8


def test_native_equals_shap_with_maxpool_and_batchnorm() -> None:
    torch.manual_seed(0)
    enc = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ELU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(16, 3),
    )
    enc[1].running_mean.normal_()
    enc[1].running_var.uniform_(0.5, 2.0)
    model = TorchAutoencoder(SeqAE(enc, nn.Sequential(nn.Linear(3, 64), nn.Unflatten(1, (1, 8, 8)))), (1, 8, 8))
    x = np.random.default_rng(1).normal(size=(60, 1, 8, 8)).astype(np.float32)
    fit, exp = split_indices(60)
    names = element_names("image", (1, 8, 8))
    data = ArrayDataset(
        x=x,
        kind="image",
        feature_names=names,
        groups=make_groups("image", (1, 8, 8), feature_names=names),
        fit_index=fit,
        explain_index=exp,
    )
    native, ref = both(model, data, max_samples=5, n_background=8)
    assert native.extras["rules"]["max_pool2d"] == 2
    np.testing.assert_allclose(phi(native), phi(ref), atol=1e-5, rtol=0)


# --- additivity --------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["silu", "gelu", "tanh"])
def test_additivity_on_smooth_activations(activation: str) -> None:
    data = tabular(seed=2)
    model = trained_mlp(data, activation, [16, 12])
    native, ref = both(model, data)
    add = native.extras["additivity"]
    assert native.extras["method"] == "deeplift_rescale"
    assert add["max_rel"] < 1e-5 and add["ok"]
    assert native.arrays["additivity_max_rel"].shape == (4,)
    np.testing.assert_allclose(
        native.local.sum(axis=2), native.arrays["target_values"] - native.arrays["expected_value"], rtol=1e-5, atol=1e-8
    )
    if activation == "silu":  # shap has no SiLU rule, falls back to gradients and loses additivity
        assert ref.extras["additivity"]["max_rel"] > 1e-3


def test_reconstruction_error_is_additive(tabular_model) -> None:  # noqa: ANN001
    model, data = tabular_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = explain(DeepShap, model, data, target="reconstruction_error", params={**FAST, "dtype": "float64"})
    assert result.importance.shape == (1, 30)
    assert result.extras["additivity"]["max_rel"] < 1e-8
    assert result.extras["rules"]["pow"] == 1  # the squared error, by the rescale rule


def test_layer_norm_is_decomposed_exactly() -> None:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(8, 12), nn.LayerNorm(12), nn.GELU(), nn.Linear(12, 3))
    model = TorchAutoencoder(SeqAE(enc, nn.Linear(3, 8)), (8,))
    result = explain(DeepShap, model, tabular(), params={**FAST, "dtype": "float64"})
    assert result.extras["method"] == "deeplift_rescale"
    assert {"rsqrt", "mul", "mean"} <= set(result.extras["rules"])
    assert result.extras["additivity"]["max_rel"] < 1e-8


# --- reused modules and in-place ops -----------------------------------------------------------------


class Reused(nn.Module):
    """One ReLU module called twice."""

    def __init__(self, first: nn.Linear, second: nn.Linear, third: nn.Linear) -> None:
        super().__init__()
        self.l1, self.l2, self.l3, self.act = first, second, third, nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l3(self.act(self.l2(self.act(self.l1(x)))))


def test_reused_relu_module_is_correct() -> None:
    torch.manual_seed(3)
    l1, l2, l3 = nn.Linear(8, 10), nn.Linear(10, 6), nn.Linear(6, 3)
    reused = TorchAutoencoder(SeqAE(Reused(l1, l2, l3), nn.Linear(3, 8)), (8,))
    separate = TorchAutoencoder(SeqAE(nn.Sequential(l1, nn.ReLU(), l2, nn.ReLU(), l3), nn.Linear(3, 8)), (8,))
    data = tabular()
    ours = explain(DeepShap, reused, data, params={**FAST, "dtype": "float64"})
    _, shap_separate = both(separate, data)
    assert ours.extras["rules"]["relu"] == 2
    assert ours.extras["additivity"]["max_rel"] < 1e-10
    np.testing.assert_allclose(ours.local, shap_separate.local, atol=1e-5, rtol=0)
    # shap keys its rule on the module object: the second call overwrites the first one's saved input
    with pytest.raises(ExplainerError, match="must match"):
        explain(DeepShap, reused, data, params={**FAST, "dtype": "float64", "backend": "shap"})


def test_inplace_relu_matches_out_of_place() -> None:
    torch.manual_seed(4)
    l1, l2 = nn.Linear(8, 10), nn.Linear(10, 3)
    inplace = TorchAutoencoder(SeqAE(nn.Sequential(l1, nn.ReLU(inplace=True), l2), nn.Linear(3, 8)), (8,))
    plain = TorchAutoencoder(SeqAE(nn.Sequential(l1, nn.ReLU(), l2), nn.Linear(3, 8)), (8,))
    data = tabular()
    a = explain(DeepShap, inplace, data, params={**FAST, "dtype": "float64"})
    b = explain(DeepShap, plain, data, params={**FAST, "dtype": "float64"})
    np.testing.assert_allclose(a.local, b.local, atol=1e-12)


# --- fallback: expected gradients -------------------------------------------------------------------


def test_lstm_expected_gradients_match_shap(sequence_model) -> None:  # noqa: ANN001
    """Forced expected gradients (the fallback) reproduce shap.GradientExplainer's draws; the layout of sequence results."""
    model, data = sequence_model
    params = {"n_background": 10, "max_samples": 4, "eg_samples": 30}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native = explain(DeepShap, model, data, params={**params, "backend": "native", "method": "expected_gradients"})
        ref = explain(DeepShap, model, data, params={**params, "backend": "shap"})
        exact = explain(DeepShap, model, data, params=params)
    assert native.extras["method"] == "expected_gradients"
    assert ref.extras["method"] == "expected_gradients" and "LSTM" in ref.extras["method_reason"]  # shap has no LSTM rule
    assert exact.extras["method"] == "deeplift_rescale"
    t, f = data.sample_shape
    n, k = 4, 3
    assert native.feature_names == ["sine", "cosine", "walk"]
    assert native.local.shape == (n, k, f)  # per feature group, over all time steps
    assert native.arrays["phi"].shape == (n, k, t, f)
    assert native.arrays["phi_steps"].shape == (n, k, t)  # per time step, over all features
    assert native.arrays["importance_steps"].shape == (k, t)
    np.testing.assert_allclose(native.local, native.arrays["phi"].sum(axis=2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(native.arrays["phi_steps"], native.arrays["phi"].sum(axis=3), rtol=1e-5, atol=1e-6)
    # same draws as shap.GradientExplainer, so the same numbers
    np.testing.assert_allclose(native.arrays["phi"], ref.arrays["phi"], atol=1e-5, rtol=0)
    assert set(DeepShap.figures(native)) == {"additivity", "steps"}


def test_rescale_only_refuses_an_op_without_a_rule() -> None:
    class Sorted(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sort(x, dim=1).values[:, :3]

    model = TorchAutoencoder(SeqAE(Sorted(), nn.Linear(3, 8)), (8,))
    with pytest.raises(CapabilityError, match="sort"):
        explain(DeepShap, model, tabular(), params={**FAST, "method": "rescale"})


def test_unsupported_op_is_named_and_falls_back() -> None:
    class Sorted(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sort(x, dim=1).values[:, :3]

    model = TorchAutoencoder(SeqAE(Sorted(), nn.Linear(3, 8)), (8,))
    with pytest.warns(UserWarning, match="expected gradients is approximate"):
        result = explain(DeepShap, model, tabular(), params={**FAST, "eg_samples": 5, "tolerance": 1e-9})
    assert result.extras["method"] == "expected_gradients"
    assert "sort" in result.extras["method_reason"]


# --- ground truth --------------------------------------------------------------------------------


def test_linear_encoder_exact_values() -> None:
    """For z = W x + c every DeepSHAP value is W[k, d] (x_d - mean background_d)."""
    torch.manual_seed(5)
    enc = nn.Linear(8, 3)
    model = TorchAutoencoder(SeqAE(enc, nn.Linear(3, 8)), (8,))
    data = tabular()
    result = explain(DeepShap, model, data, params={"background": "all", "dtype": "float64"})
    w = enc.weight.detach().double().numpy()
    expected = w[None] * (data.x_explain[:, None, :].astype(np.float64) - data.x_fit.astype(np.float64).mean(axis=0))
    assert result.extras["n_background"] == len(data.x_fit)
    np.testing.assert_allclose(result.local, expected, rtol=1e-9, atol=1e-9)


def test_planted_hidden_dependencies_are_exactly_zero(planted) -> None:  # noqa: ANN001
    result = explain(DeepShap, planted.model, planted.data, params={"n_background": 30})
    relevant = planted.relevant()
    assert np.all(result.importance[~relevant] == 0.0)
    assert np.all(result.importance[relevant] > 0.0)


# --- params, chunking, figures, model hygiene ----------------------------------------------------------


def test_chunking_over_samples_and_targets_gives_the_same_values(tabular_model) -> None:  # noqa: ANN001
    model, data = tabular_model
    params = {"n_background": 16, "max_samples": 6, "dtype": "float64"}
    big = explain(DeepShap, model, data, target="reconstruction", params=params)
    small = explain(DeepShap, model, data, target="reconstruction", params={**params, "memory_mb": 0.1})
    assert big.extras["samples_per_chunk"] == 6 and big.extras["targets_per_chunk"] == 30
    assert small.extras["samples_per_chunk"] < 6 and small.extras["targets_per_chunk"] < 30
    np.testing.assert_allclose(small.local, big.local, atol=1e-12)


@pytest.mark.parametrize("background", ["kmeans", "all"])
def test_background_choices(tabular_model, background: str) -> None:  # noqa: ANN001
    model, data = tabular_model
    result = explain(DeepShap, model, data, params={**FAST, "background": background})
    assert result.extras["background"] == background
    assert result.extras["n_background"] == (FAST["n_background"] if background == "kmeans" else len(data.x_fit))
    assert result.extras["additivity"]["ok"]


def test_shap_backend_leaves_the_model_alone(tabular_model) -> None:  # noqa: ANN001
    model, data = tabular_model
    before = model_state(model.module)
    result = explain(DeepShap, model, data, params={"backend": "shap", "n_background": 8, "max_samples": 3})
    after = model_state(model.module)
    assert before["hooks"] == after["hooks"] and before["requires_grad"] == after["requires_grad"]
    assert result.extras["backend"] == "shap"


def test_figures_survive_a_round_trip(tabular_model, tmp_path) -> None:  # noqa: ANN001
    model, data = tabular_model
    result = explain(DeepShap, model, data, params=FAST)
    result.save_arrays(tmp_path / "deepshap.npz")
    again = Explanation.from_json(result.to_json(), tmp_path / "deepshap.npz")
    figs = DeepShap.figures(again)
    assert set(figs) == {"additivity"}
    assert len(figs["additivity"].axes[0].patches) == 2 * 4
    np.testing.assert_array_equal(again.arrays["additivity_max_rel"], result.arrays["additivity_max_rel"])


def test_registered_through_the_entry_point() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="aeinterp")}
    assert names.get("deepshap") == "aeinterp_deepshap"


def test_latent_pca_target_is_the_latents_attributions_rotated(tabular_model) -> None:  # noqa: ANN001
    """The principal directions are an affine map of the code: DeepLIFT stays exact, and each pc's attributions are the
    latents' attributions combined by the components (the PCA mean cancels against the background)."""
    from aeinterp.targets import with_latent_pca

    model, data = tabular_model
    model = with_latent_pca(model, data)
    params = {"n_background": 40, "max_samples": 60, "local": "full", "dtype": "float64"}
    z = explain(DeepShap, model, data, params=params, seed=0)
    pc = explain(DeepShap, model, data, target="latent_pca", params=params, seed=0)
    assert pc.extras["method"] == "deeplift_rescale" and pc.target == "latent_pca"
    assert pc.extras["additivity_max_rel"] < 1e-9
    comp = model.latent_pca.components
    np.testing.assert_allclose(pc.local, np.einsum("jk,skf->sjf", comp, z.local), rtol=1e-9, atol=1e-12)
