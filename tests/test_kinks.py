"""The kink update (aeinterp.toolkit.kinks): code changes of Linear -> ReLU-like -> Linear encoders from Jacobian columns
and kink crossings equal the plain forward pass, and permutation takes that path only where it is exact and pays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aeinterp_perturbation.explainers import Permutation
from torch import nn

from aeinterp import explain
from aeinterp.data import ArrayDataset, FeatureGroup, element_names, make_groups
from aeinterp.model import TorchAutoencoder
from aeinterp.models.architectures import MLPAutoencoder
from aeinterp.models.training import TrainConfig, train_autoencoder
from aeinterp.targets import Target
from aeinterp.toolkit.first_layer import FirstLayer, first_layer_split
from aeinterp.toolkit.kinks import MIN_SECOND_LAYER, KinkUpdate, kink_update_reason

KINKED_PATH = "first-layer rank update, code changes from shared Jacobian columns and kink crossings"


def _layer(act: nn.Module, d: int, h: int, k: int, dtype: torch.dtype, seed: int = 0) -> FirstLayer:
    torch.manual_seed(seed)
    first, out = nn.Linear(d, h).to(dtype), nn.Linear(h, k).to(dtype)
    with torch.no_grad():
        first.bias[:7] = 0.0  # with an all-zero sample below: pre-activations exactly at the kink
    return FirstLayer(first, nn.Sequential(act, out), (act, out, None))


def _plain_change(layer: FirstLayer, x: torch.Tensor, cols: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The change of the code by the full forward pass, per copy."""
    act, out, _ = layer.tail
    perturbed = x.unsqueeze(0).repeat(delta.shape[0], 1, 1)
    perturbed[:, :, cols] += delta
    return out(act(layer(perturbed))) - out(act(layer(x)))


@pytest.mark.parametrize(
    "act", [nn.ReLU(), nn.LeakyReLU(0.1), nn.Identity(), nn.ReLU(inplace=True)], ids=["relu", "leaky", "identity", "relu_inplace"]
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n_cols", [1, 3])
def test_change_equals_the_forward_pass(act: nn.Module, dtype: torch.dtype, n_cols: int) -> None:
    d, h, k, n = 12, 40, 9, 64
    layer = _layer(act, d, h, k, dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    x[0] = 0.0  # a sample whose first 7 units sit exactly at the kink
    cols = torch.tensor([2, 5, 11][:n_cols])
    # small, ordinary and huge changes: from no unit crossing to nearly all of them
    scale = torch.tensor([0.01, 1.0, 30.0], dtype=dtype)[:, None, None]
    delta = torch.randn(3, n, n_cols, generator=gen, dtype=dtype) * scale
    with torch.no_grad():
        a0 = layer(x)
        update = KinkUpdate(layer, a0)
        got = update.change(cols, delta.clone(), update.jacobian(cols))
        want = _plain_change(layer, x, cols, delta)
    tol = 1e-12 if dtype is torch.float64 else 2e-5
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * float(want.abs().max()))
    if not isinstance(act, nn.Identity):  # the huge changes do cross: the correction is exercised
        crossings = ((a0 + delta[2] @ layer.linear.weight[:, cols].T > 0) != (a0 > 0)).sum()
        assert crossings > 0.2 * n * h


def test_jacobian_columns_are_the_codes_jacobian() -> None:
    layer = _layer(nn.LeakyReLU(0.2), 6, 20, 5, torch.float64)
    x = torch.randn(10, 6, dtype=torch.float64)
    with torch.no_grad():
        update = KinkUpdate(layer, layer(x))
    jac = torch.func.vmap(torch.func.jacrev(lambda v: layer.tail[1](layer.tail[0](layer(v)))))(x)  # (N, k, D)
    torch.testing.assert_close(update.jacobian(torch.tensor([1, 4])), jac[:, :, [1, 4]].permute(2, 0, 1), rtol=1e-12, atol=1e-12)


def _data(x: np.ndarray, groups: list[FeatureGroup] | None = None) -> ArrayDataset:
    names = element_names("tabular", (x.shape[1],))
    return ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=groups or make_groups("tabular", (x.shape[1],), feature_names=names),
        fit_index=np.arange(len(x)),
        explain_index=np.arange(len(x)),
        name="kinks",
    )


@pytest.fixture(scope="module")
def trained_mlp() -> tuple[TorchAutoencoder, ArrayDataset]:
    """A built-in MLP autoencoder (Linear(20, 256)-ReLU, to_code Linear(256, 64)), trained a few epochs."""
    x = np.random.default_rng(0).normal(size=(300, 20)).astype(np.float32)
    x[:, 10:] = x[:, :10] ** 2 - 1  # structure to learn
    module = MLPAutoencoder((20,), 64, hidden=[256])
    data = _data(x)
    train_autoencoder(module, x, TrainConfig(epochs=3, lr=3e-3))
    module.eval()
    return TorchAutoencoder(module, (20,)), data


# memory_mb 0.08: blocks of 3 copies of 300 x 20 floats, so each feature's 4 repeats span two blocks sharing one Jacobian column
@pytest.mark.parametrize(
    "params", [{"repeats": 3}, {"repeats": 2, "max_samples": "auto"}, {"repeats": 4, "chunk_size": 37}, {"repeats": 4, "memory_mb": 0.08}]
)
def test_permutation_takes_the_kink_path_with_the_plain_values(trained_mlp, params) -> None:  # noqa: ANN001
    model, data = trained_mlp
    params = {**params, "summary": "rms_change"}  # the copies' own sums (the per-sample summaries are checked below)
    fast = explain(Permutation, model, data, params=params, seed=2)
    plain = explain(Permutation, model, data, params={**params, "first_layer": "off"}, seed=2)
    assert fast.extras["path"] == KINKED_PATH, fast.extras["path_reason"]
    assert "perturbed at least twice per column" in fast.extras["path_reason"]
    scale = np.abs(plain.importance).max()
    assert scale > 0
    np.testing.assert_allclose(fast.importance, plain.importance, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(fast.std, plain.std, rtol=1e-4, atol=1e-6 * scale)
    assert fast.extras["n_samples"] == plain.extras["n_samples"]


def test_groups_wider_than_half_the_repeats_take_the_rank_update(trained_mlp) -> None:  # noqa: ANN001
    """Groups of 1, 2 and 5 columns with 4 repeats: the Jacobian pays for the first two only; values match either way."""
    model, _ = trained_mlp
    x = trained_mlp[1].x
    widths = [1, 2, 5, 1, 2, 5, 4]
    groups, start = [], 0
    for j, w in enumerate(widths):
        groups.append(FeatureGroup(f"g{j}", np.arange(start, start + w)))
        start += w
    data = _data(x, groups)
    fast = explain(Permutation, model, data, params={"repeats": 4}, seed=0)
    plain = explain(Permutation, model, data, params={"repeats": 4, "first_layer": "off"}, seed=0)
    assert fast.extras["path"] == KINKED_PATH
    np.testing.assert_allclose(fast.importance, plain.importance, rtol=1e-5, atol=1e-6 * np.abs(plain.importance).max())


def test_leaky_relu_variational_head_and_user_sequential() -> None:
    """A VAE's mean head (tail index 0) and a user's nn.Sequential encoder with LeakyReLU, in float64."""
    x = np.random.default_rng(1).normal(size=(120, 16))
    vae = MLPAutoencoder((16,), 70, hidden=[240], activation="relu", variational=True).double().eval()
    torch.manual_seed(0)

    class UserAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(16, 200), nn.LeakyReLU(0.05), nn.Linear(200, 90))
            self.decoder = nn.Sequential(nn.Linear(90, 16))

    for module in (vae, UserAE().double().eval()):
        model, data = TorchAutoencoder(module, (16,)), _data(x)
        for summary, atol in (("rms_change", 1e-9), ("variance_share", 1e-7)):  # shares: float32 effects over a float64 variance
            fast = explain(Permutation, model, data, params={"repeats": 2, "summary": summary}, seed=0)
            plain = explain(Permutation, model, data, params={"repeats": 2, "first_layer": "off", "summary": summary}, seed=0)
            assert fast.extras["path"] == KINKED_PATH
            np.testing.assert_allclose(fast.importance, plain.importance, rtol=1e-6, atol=atol)  # both paths report float32 changes


def test_the_path_is_not_taken_where_it_is_not_exact_or_does_not_pay(trained_mlp) -> None:  # noqa: ANN001
    model, data = trained_mlp
    layer, _ = first_layer_split(model, data, Target.LATENT)
    assert kink_update_reason(layer, Target.LATENT) is None
    assert "not the latent code" in kink_update_reason(layer, Target.RECONSTRUCTION)
    for target in ("reconstruction", "reconstruction_error"):
        assert (
            explain(Permutation, model, data, target=target, params={"repeats": 2, "max_samples": 40}).extras["path"]
            == "first-layer rank update"
        )
    assert explain(Permutation, model, data, params={"repeats": 1}).extras["path"] == "first-layer rank update"  # nothing to share

    smooth = FirstLayer(layer.linear, layer.rest, (nn.Tanh(), layer.tail[1], None))
    assert "not piecewise linear" in kink_update_reason(smooth, Target.LATENT)
    small = _layer(nn.ReLU(), 8, 64, 16, torch.float32)
    assert 64 * 16 < MIN_SECOND_LAYER and "too small" in kink_update_reason(small, Target.LATENT)
    assert "not one activation" in kink_update_reason(FirstLayer(layer.linear, layer.rest), Target.LATENT)
