"""The jacobian explainer's factorised path (W act'(Ax+b) A, no autodiff) against torch.func.vmap(jacrev)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aeinterp_gradients.explainers import Jacobian
from torch import nn

from aeinterp import ArrayDataset, TorchAutoencoder, explain
from aeinterp.data import element_names, make_groups


def _model(act: type[nn.Module], dtype: torch.dtype) -> tuple[TorchAutoencoder, ArrayDataset]:
    torch.manual_seed(0)
    module = nn.Module()
    module.encoder = nn.Sequential(nn.Linear(12, 9), act(), nn.Linear(9, 6))
    module.decoder = nn.Sequential(nn.Linear(6, 12))
    module.to(dtype).eval()
    x = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32 if dtype == torch.float32 else np.float64)
    names = element_names("tabular", (12,))
    data = ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (12,), feature_names=names),
        fit_index=np.arange(20),
        explain_index=np.arange(20, 40),
    )
    return TorchAutoencoder(module, (12,)), data


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.SiLU])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_factorised_jacobian_equals_vmap_jacrev(act: type[nn.Module], dtype: torch.dtype) -> None:
    model, data = _model(act, dtype)
    result = explain(Jacobian, model, data, params={"memory_mb": 0.01})  # several blocks
    assert result.extras["path"] == "first-layer factorised" and result.extras["mode"] == "none"
    enc = model.module.encoder
    x = torch.as_tensor(data.x_explain)
    ref = torch.func.vmap(torch.func.jacrev(lambda v: enc(v.unsqueeze(0))[0]))(x).detach()  # (samples, latents, inputs)
    scale = float(ref.abs().max())
    np.testing.assert_allclose(result.arrays["jacobian_mean"], ref.mean(0).numpy(), rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(result.local, ref.abs().numpy(), rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(result.importance, ref.abs().mean(0).numpy(), rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(result.std, ref.abs().double().std(0).numpy(), rtol=0, atol=1e-5 * scale)
    rev = explain(Jacobian, model, data, params={"mode": "rev"})  # autodiff on the same model: the same values
    assert rev.extras["mode"] == "rev" and rev.extras.get("path") != "first-layer factorised"
    np.testing.assert_allclose(result.local, rev.local, rtol=0, atol=1e-6 * scale)


def test_other_targets_keep_autodiff() -> None:
    model, data = _model(nn.ReLU, torch.float32)
    result = explain(Jacobian, model, data, target="reconstruction")
    assert result.extras["mode"] in ("rev", "fwd") and result.extras.get("path") != "first-layer factorised"


def test_relu_products_over_active_units_only_equal_the_dense_product(monkeypatch: pytest.MonkeyPatch) -> None:
    import aeinterp_gradients.factorised as factorised

    model, data = _model(nn.ReLU, torch.float64)
    with torch.no_grad():  # enough inactive units for the per-sample path to be taken
        assert float((model.module.encoder[0](torch.as_tensor(data.x_explain)) <= 0).double().mean()) >= 0.25
    dense = explain(Jacobian, model, data)
    monkeypatch.setattr(factorised, "SPARSE_MIN_MACS", 0)  # every block takes the per-sample active-unit products
    sparse = explain(Jacobian, model, data)
    np.testing.assert_allclose(sparse.local, dense.local, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sparse.arrays["jacobian_mean"], dense.arrays["jacobian_mean"], rtol=0, atol=1e-12)
