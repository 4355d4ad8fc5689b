"""Tests of ``weight_importance`` (Garson, Olden): hand computations, planted sparse weights, capability errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aeinterp_weights.explainer import WeightImportance
from torch import nn

from aeinterp import CapabilityError, TorchAutoencoder, explain
from aeinterp.data import ArrayDataset, FeatureGroup, element_names, make_groups, split_indices
from aeinterp.models.architectures import build_architecture
from aeinterp.testing import ExplainerConformance, planted_autoencoder


class TestOldenConformance(ExplainerConformance):
    explainer = WeightImportance


class TestGarsonConformance(ExplainerConformance):
    explainer = WeightImportance
    params = {"method": "garson"}


def _data(n_features: int, n: int = 60) -> ArrayDataset:
    x = np.random.default_rng(0).normal(size=(n, n_features)).astype(np.float32)
    names = element_names("tabular", (n_features,))
    fit, ex = split_indices(n, seed=0)
    return ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (n_features,), feature_names=names),
        fit_index=fit,
        explain_index=ex,
    )


class ThreeLayer(nn.Module):
    """3 inputs -> 2 hidden (tanh) -> 2 hidden (relu) -> 2 latents, hand-set weights."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
        self.encoder[0].weight.data = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
        self.encoder[2].weight.data = torch.tensor([[2.0, -1.0], [0.5, 1.0]])
        self.encoder[4].weight.data = torch.tensor([[1.0, 1.0], [-3.0, 0.0]])
        self.decoder = nn.Linear(2, 3)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def test_hand_computation_on_a_three_layer_mlp() -> None:
    model = TorchAutoencoder(ThreeLayer(), (3,))
    data = _data(3)
    result = explain(WeightImportance, model, data)
    w1 = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    w2 = np.array([[2.0, -1.0], [0.5, 1.0]])
    w3 = np.array([[1.0, 1.0], [-3.0, 0.0]])
    # Olden: the product of the weight matrices, by hand
    o = np.array(
        [
            [
                1 * (2 * 1 + -1 * 0) + 1 * (0.5 * 1 + 1 * 0),
                1 * (2 * -2 + -1 * 3) + 1 * (0.5 * -2 + 1 * 3),
                1 * (2 * 0.5 + -1 * -1) + 1 * (0.5 * 0.5 + 1 * -1),
            ],
            [-3 * (2 * 1 + -1 * 0), -3 * (2 * -2 + -1 * 3), -3 * (2 * 0.5 + -1 * -1)],
        ]
    )
    np.testing.assert_allclose(o, w3 @ w2 @ w1)
    np.testing.assert_allclose(result.arrays["olden"], o, rtol=1e-6)
    np.testing.assert_allclose(result.importance, np.abs(o), rtol=1e-6)
    # Garson: input shares of hidden unit 1 are |w1| / row sums = [1, 2, .5]/3.5 and [0, 3, 1]/4, ...
    s1 = np.array([[1 / 3.5, 2 / 3.5, 0.5 / 3.5], [0.0, 3 / 4, 1 / 4]])
    s2 = np.array([[2 / 3, 1 / 3], [0.5 / 1.5, 1 / 1.5]]) @ s1
    g = np.abs(w3) @ s2
    g = g / g.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result.arrays["garson"], g, rtol=1e-6)
    np.testing.assert_allclose(result.arrays["garson"].sum(axis=1), 1.0, rtol=1e-6)
    garson = explain(WeightImportance, model, data, params={"method": "garson"})
    np.testing.assert_allclose(garson.importance, g, rtol=1e-6)
    # mean |activation| of every hidden unit, on the explained samples
    with torch.no_grad():
        h1 = torch.tanh(model.module.encoder[0](torch.as_tensor(data.x_explain)))
        h2 = torch.relu(model.module.encoder[2](h1))
    acts = result.extras["mean_abs_activation"]
    assert list(acts) == ["layer1_tanh", "layer3_relu"]
    np.testing.assert_allclose(acts["layer1_tanh"], h1.abs().mean(dim=0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(acts["layer3_relu"], h2.abs().mean(dim=0).numpy(), rtol=1e-5)


def test_one_hidden_layer_garson_matches_the_classic_formula() -> None:
    """G_ki = sum_h |W2_kh| |W1_hi| / sum_i' |W1_hi'|, normalised over i (NeuralNetTools' garson)."""
    torch.manual_seed(0)
    module = build_architecture("mlp", (6,), 3, hidden=[5], activation="tanh")
    model = TorchAutoencoder(module, (6,))
    result = explain(WeightImportance, model, _data(6), params={"method": "garson"})
    w1 = module.encoder[0].weight.detach().double().numpy()
    w2 = module.to_code.weight.detach().double().numpy()
    q = np.abs(w1) / np.abs(w1).sum(axis=1, keepdims=True)  # (H, D)
    ref = np.einsum("kh,hi->ki", np.abs(w2), q)
    np.testing.assert_allclose(result.importance, ref / ref.sum(axis=1, keepdims=True), rtol=1e-6)


def test_planted_sparse_weights_rank_exactly_and_groups_add() -> None:
    planted = planted_autoencoder(n_features=10)
    for method in ("olden", "garson"):
        result = explain(WeightImportance, planted.model, planted.data, params={"method": method})
        for j, deps in enumerate(planted.dependencies):
            assert set(np.flatnonzero(result.importance[j] > 0)) == set(deps)
    groups = (FeatureGroup("a", np.array([0, 1])), FeatureGroup("b", np.array([2, 3, 4])), FeatureGroup("c", np.array([5, 6, 7, 8, 9])))
    d = planted.data
    grouped = ArrayDataset(
        x=d.x, kind="tabular", feature_names=d.feature_names, groups=groups, fit_index=d.fit_index, explain_index=d.explain_index
    )
    per = explain(WeightImportance, planted.model, d, params={"method": "garson"})
    g = explain(WeightImportance, planted.model, grouped, params={"method": "garson"})
    np.testing.assert_allclose(
        g.importance,
        np.stack([per.importance[:, [0, 1]].sum(1), per.importance[:, [2, 3, 4]].sum(1), per.importance[:, 5:].sum(1)], axis=1),
        rtol=1e-6,
    )
    assert np.argmax(g.importance, axis=1).tolist() == [0, 1, 2]


def test_builtin_vae_chain_is_read() -> None:
    torch.manual_seed(0)
    module = build_architecture("mlp", (6,), 2, hidden=[4], variational=True)
    result = explain(WeightImportance, TorchAutoencoder(module, (6,)), _data(6))
    w = module.to_mu.weight.detach().double() @ module.encoder[0].weight.detach().double()
    np.testing.assert_allclose(result.arrays["olden"], w.numpy(), rtol=1e-5)


def test_other_architectures_are_a_capability_error() -> None:
    module = build_architecture("conv2d", (1, 8, 8), 2)
    images = np.random.default_rng(0).normal(size=(20, 1, 8, 8)).astype(np.float32)
    fit, ex = split_indices(20, seed=0)
    names = element_names("image", (1, 8, 8))
    data = ArrayDataset(
        x=images,
        kind="image",
        feature_names=names,
        groups=make_groups("image", (1, 8, 8), feature_names=names),
        fit_index=fit,
        explain_index=ex,
    )
    with pytest.raises(CapabilityError, match="image data|nn.Linear layers and elementwise"):
        explain(WeightImportance, TorchAutoencoder(module, (1, 8, 8)), data)

    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)
            self.decoder = nn.Linear(2, 4)

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) ** 2

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return self.decoder(z)

    with pytest.raises(CapabilityError, match="not a known chain"):
        explain(WeightImportance, TorchAutoencoder(Custom(), (4,)), _data(4))

    class Scaled(ThreeLayer):
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * self.encoder(x)  # more than the chain

    with pytest.raises(CapabilityError, match="do not reproduce its code"):
        explain(WeightImportance, TorchAutoencoder(Scaled(), (3,)), _data(3))

    class BatchNormed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
            self.decoder = nn.Linear(2, 4)

    with pytest.raises(CapabilityError, match="BatchNorm1d"):
        explain(WeightImportance, TorchAutoencoder(BatchNormed(), (4,), encoder="encoder", decoder="decoder"), _data(4))
