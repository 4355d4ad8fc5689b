"""The core target ``latent_pca``: principal directions of the code, explained by any explainer."""

from __future__ import annotations

import aeinterp_perturbation
import numpy as np
import pytest
import torch
from aeinterp_gradients.explainers import IntegratedGradients
from aeinterp_perturbation.explainers import Permutation
from torch import nn

from aeinterp import DataError, Explainer, Explanation, TorchAutoencoder, explain
from aeinterp.data import ArrayDataset, element_names, make_groups, split_indices
from aeinterp.model import evaluate
from aeinterp.targets import LatentPCAModel, Target, evaluate_target, fit_latent_pca, target_names_for, with_latent_pca

FACTORS = [(0, 1), (2, 3), (4,)]
SCALES = [3.0, 1.5, 0.5]


class RotatedFactors(nn.Module):
    """z = R f with planted factors f0 = 3 (x0 + x1), f1 = 1.5 (x2 + x3), f2 = 0.5 x4 and a random rotation R."""

    def __init__(self, n_features: int = 10, seed: int = 0) -> None:
        super().__init__()
        m = torch.zeros(3, n_features)
        for k, (deps, s) in enumerate(zip(FACTORS, SCALES, strict=True)):
            m[k, list(deps)] = s
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed)))
        self.rotation = q
        self.encoder = nn.Linear(n_features, 3, bias=False)
        self.encoder.weight.data = q @ m
        self.decoder = nn.Linear(3, n_features)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


@pytest.fixture(scope="module")
def rotated() -> tuple[TorchAutoencoder, ArrayDataset, RotatedFactors]:
    module = RotatedFactors()
    x = np.random.default_rng(0).normal(size=(2000, 10)).astype(np.float32)
    names = element_names("tabular", (10,))
    fit, ex = split_indices(2000, explain_size=300, seed=0)
    data = ArrayDataset(
        x=x, kind="tabular", feature_names=names, groups=make_groups("tabular", (10,), feature_names=names), fit_index=fit, explain_index=ex
    )
    return TorchAutoencoder(module, (10,)), data, module


def test_components_undo_the_rotation(rotated) -> None:  # noqa: ANN001
    model, data, module = rotated
    pca = fit_latent_pca(model, data)
    assert pca.n_fit == len(data.x_fit)
    np.testing.assert_allclose(np.abs(pca.components @ module.rotation.numpy()), np.eye(3), atol=0.03)
    expected = np.array([len(d) * s**2 for d, s in zip(FACTORS, SCALES, strict=True)])  # var(f_k) = scale^2 x its unit-variance inputs
    np.testing.assert_allclose(pca.explained_variance, expected, rtol=0.1)
    np.testing.assert_allclose(pca.explained_variance_ratio.sum(), 1.0)
    z = evaluate(model.encode, data.x_fit).double().numpy()
    np.testing.assert_allclose(pca.explained_variance, np.sort(np.linalg.eigvalsh(np.cov(z.T)))[::-1], rtol=1e-6)
    for row in pca.components:  # sign convention: the largest loading is positive
        assert row[np.argmax(np.abs(row))] > 0


def test_every_component_is_driven_by_its_planted_inputs(rotated) -> None:  # noqa: ANN001
    model, data, _ = rotated
    result = explain(Permutation, model, data, target="latent_pca", params={"repeats": 2})
    assert result.target == "latent_pca" and result.target_names == ["pc0", "pc1", "pc2"]
    for k, deps in enumerate(FACTORS):
        top = set(np.argsort(-result.importance[k])[: len(deps)].tolist())
        assert top == set(deps)
        assert result.importance[k, 5:].max() < 1e-6  # x5.. are read by nothing
    # the raw latent axes mix the factors: each reads several planted pairs
    latent = explain(Permutation, model, data, target="latent", params={"repeats": 2, "summary": "rms_change"})
    assert all((latent.importance[j, :5] > 0.1).sum() >= 3 for j in range(3))  # RMS changes, in the code's units
    info = result.extras["latent_pca"]
    assert info["n_components"] == 3 and info["fit_samples"] == len(data.x_fit)
    assert result.extras["summary"][-1].startswith("latent_pca: explained variance of the code (fit split, n = 1700): pc0 ")


def test_gradient_explainers_get_it_for_free_and_linearly(rotated) -> None:  # noqa: ANN001
    model, data, _ = rotated
    pca = fit_latent_pca(model, data)
    ig_z = explain(IntegratedGradients, model, data, target="latent", params={"steps": 4, "max_samples": 50})
    ig_pc = explain(IntegratedGradients, model, data, target="latent_pca", params={"steps": 4, "max_samples": 50})
    np.testing.assert_allclose(ig_pc.local, np.einsum("kj,njf->nkf", pca.components, ig_z.local), rtol=1e-4, atol=1e-5)


def test_a_third_party_explainer_with_default_capabilities_gets_latent_pca(rotated) -> None:  # noqa: ANN001
    class MeanTarget(Explainer):
        """|mean of each target| repeated over the groups (uses only the core's evaluate_target)."""

        name = "mean_target"

        def explain(self, model, data, *, target, rng):  # noqa: ANN001
            y = evaluate(lambda b: evaluate_target(model, target, b), data.x_explain, model=model).numpy()
            imp = np.repeat(np.abs(y.mean(axis=0))[:, None], len(data.groups), axis=1)
            return Explanation(
                importance=imp,
                feature_names=data.group_names,
                target_names=target_names_for(model, data, target),
                target=Target(target).value,
            )

    model, data, _ = rotated
    assert "latent_pca" in MeanTarget.capabilities.targets
    result = explain(MeanTarget, model, data, target="latent_pca")
    assert result.target_names == ["pc0", "pc1", "pc2"]
    assert np.abs(result.importance).max() < 0.3  # codes are centred on the fit split's mean


def test_without_components_the_target_is_a_clear_error(rotated) -> None:  # noqa: ANN001
    model, data, _ = rotated
    with pytest.raises(DataError, match="with_latent_pca"):
        evaluate_target(model, "latent_pca", torch.zeros(2, 10))
    wrapped = with_latent_pca(model, data)
    assert isinstance(wrapped, LatentPCAModel) and with_latent_pca(wrapped, data) is wrapped
    assert wrapped.module is model.module and wrapped.latent_dim == 3 and wrapped.code == model.code
    out = evaluate_target(wrapped, "latent_pca", torch.as_tensor(data.x_explain[:5]))
    assert out.shape == (5, 3)


def test_recipe_reports_explained_variance(run_recipe, tmp_path) -> None:  # noqa: ANN001
    doc = run_recipe(
        {
            "data": {"builtin": "synthetic_tabular"},
            "model": {"builtin": "mlp", "latent_dim": 3, "options": {"hidden": [8]}, "train": {"epochs": 5}},
            "targets": ["latent_pca"],
            "explainers": [{"name": "permutation", "params": {"repeats": 1}}],
            "output": str(tmp_path / "out"),
            "report": {"html": False, "plots": False},
        },
        plugins=[aeinterp_perturbation],
    )
    (step,) = doc["explainers"]
    assert step["status"] == "ok" and step["target"] == "latent_pca" and step["target_names"] == ["pc0", "pc1", "pc2"]
    ratio = step["extras"]["latent_pca"]["explained_variance_ratio"]
    assert ratio == sorted(ratio, reverse=True) and abs(sum(ratio) - 1) < 1e-6
    assert any(line.startswith("latent_pca: explained variance") for line in step["extras"]["summary"])
