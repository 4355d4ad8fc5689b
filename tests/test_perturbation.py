"""Permutation and zero-ablation: conformance, ground truth, exact values, all model kinds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aeinterp_perturbation.explainers import Permutation, ZeroAblation

from aeinterp import explain
from aeinterp.testing import ExplainerConformance, planted_autoencoder
from aeinterp.toolkit.perturb import copies_per_batch


class TestPermutationConformance(ExplainerConformance):
    explainer = Permutation
    params = {"repeats": 2}


class TestZeroAblationConformance(ExplainerConformance):
    explainer = ZeroAblation
    params = {"baseline": "mean"}


def test_zero_ablation_equals_the_analytic_value_on_a_linear_encoder() -> None:
    planted = planted_autoencoder(linear=True)
    w = planted.model.module.encoder.weight.detach().double().numpy()  # z = W x
    x = planted.data.x_explain.astype(np.float64)
    result = explain(ZeroAblation, planted.model, planted.data, params={"baseline": "zero"})
    # zeroing x_i moves z_j by -W_ji x_i, so the RMS change is |W_ji| * sqrt(mean(x_i^2))
    expected = np.abs(w) * np.sqrt((x**2).mean(axis=0))[None, :]
    np.testing.assert_allclose(result.importance, expected, rtol=1e-5, atol=1e-6)


def test_permutation_on_a_linear_encoder_matches_the_expected_scale() -> None:
    planted = planted_autoencoder(linear=True, n_samples=2000)
    w = planted.model.module.encoder.weight.detach().double().numpy()
    x = planted.data.x_explain.astype(np.float64)
    result = explain(Permutation, planted.model, planted.data, params={"repeats": 20, "summary": "rms_change"})
    # E[(x_perm - x)^2] = 2 var(x_i) for independent shuffles
    expected = np.abs(w) * np.sqrt(2 * x.var(axis=0))[None, :]
    np.testing.assert_allclose(result.importance, expected, rtol=0.08, atol=1e-6)
    assert result.std is not None and (result.std[np.abs(w) > 0] > 0).all()
    assert (result.importance[np.abs(w) == 0] == 0).all()
    # the default on a code: phi_g(x) = w_g (x_g - mean of the donors' x_g), so the share is w_g Cov(x_g, z) / Var(z)
    default = explain(Permutation, planted.model, planted.data, params={"repeats": 20})
    assert default.extras["importance_summary"] == "variance_share" and "auto" in default.extras["importance_summary_reason"]
    z = x @ w.T
    share = w * ((x - x.mean(axis=0)).T @ (z - z.mean(axis=0))).T / len(x) / z.var(axis=0)[:, None]
    np.testing.assert_allclose(default.importance, share, atol=0.02)
    assert (default.importance[np.abs(w) == 0] == 0).all()


def test_normalize_gives_rows_that_sum_to_one(planted) -> None:  # noqa: ANN001
    result = explain(Permutation, planted.model, planted.data, params={"repeats": 2, "normalize": True})
    np.testing.assert_allclose(result.importance.sum(axis=1), 1.0, rtol=1e-9)


@pytest.mark.parametrize("copies", [1, 3, 64])
def test_stacking_copies_does_not_change_the_result(planted, copies: int) -> None:  # noqa: ANN001
    base = explain(Permutation, planted.model, planted.data, params={"repeats": 2, "copies_per_batch": 1}, seed=5)
    other = explain(Permutation, planted.model, planted.data, params={"repeats": 2, "copies_per_batch": copies}, seed=5)
    np.testing.assert_allclose(other.importance, base.importance, rtol=1e-5, atol=1e-6)


def test_copies_per_batch_is_memory_bounded() -> None:
    assert copies_per_batch(950, 1000) == 1  # a full batch already has enough rows
    assert copies_per_batch(50, 10) == 11  # small batches are stacked up to ~512 rows
    assert copies_per_batch(50, 10_000_000, memory_mb=1) == 1


@pytest.mark.parametrize("fixture", ["tabular_model", "image_model", "sequence_model"])
@pytest.mark.parametrize("target", ["latent", "reconstruction", "reconstruction_error"])
def test_all_model_kinds_and_targets(request, fixture: str, target: str) -> None:  # noqa: ANN001
    model, data = request.getfixturevalue(fixture)
    n_targets = {"latent": model.latent_dim, "reconstruction": data.n_features, "reconstruction_error": 1}[target]
    for cls, params in ((Permutation, {"repeats": 2, "max_samples": 60}), (ZeroAblation, {"max_samples": 60})):
        result = explain(cls, model, data, target=target, params=params)
        assert result.importance.shape == (n_targets, len(data.groups))
        assert np.isfinite(result.importance).all()
        summary = result.extras["importance_summary"]
        assert summary == ("variance_share" if cls is Permutation and target == "latent" else "rms_change")
        if summary == "variance_share":  # shares of each code's variance: mostly positive, summing to about 1 less the residual
            np.testing.assert_allclose(result.importance.sum(axis=1) + result.arrays["variance_share_residual"], 1.0, atol=1e-9)
        elif target != "reconstruction_error":
            assert (result.importance >= 0).all() and result.importance.max() > 0


def test_sequence_groups_perturb_a_feature_over_all_steps(sequence_model) -> None:  # noqa: ANN001
    model, data = sequence_model
    result = explain(ZeroAblation, model, data, params={"max_samples": 40})
    assert result.feature_names == ["sine", "cosine", "walk"]
    # ablating a whole feature must move the code at least as much as nothing
    assert result.importance.shape == (3, 3) and result.importance.sum() > 0


def test_explain_split_is_the_default_and_fit_is_selectable(planted) -> None:  # noqa: ANN001
    a = explain(ZeroAblation, planted.model, planted.data)
    b = explain(ZeroAblation, planted.model, planted.data, params={"split": "fit"})
    assert a.extras["n_samples"] == len(planted.data.explain_index)
    assert b.extras["n_samples"] == len(planted.data.fit_index)


def test_model_in_float64_works() -> None:
    planted = planted_autoencoder()
    planted.model.module.double()
    result = explain(Permutation, planted.model, planted.data, params={"repeats": 1})
    assert result.importance.dtype == np.float64 and np.isfinite(result.importance).all()
    planted.model.module.float()
    assert torch.get_default_dtype() == torch.float32


def test_prediction_target_needs_a_supervised_model(planted) -> None:  # noqa: ANN001
    from aeinterp import CapabilityError

    with pytest.raises(CapabilityError, match="needs a supervised model"):
        explain(Permutation, planted.model, planted.data, target="prediction")


def test_prediction_target_on_a_user_declared_head() -> None:
    """A user model declares its head and task dims; permutation explains the class logits."""
    from aeinterp import TorchAutoencoder

    planted = planted_autoencoder(linear=True)
    module = planted.model.module
    module.clf = torch.nn.Linear(1, 2)  # reads z1 only, which depends on x2, x3, x4
    model = TorchAutoencoder(module, (10,), head="clf", task_dims=[1], class_names=["no", "yes"])
    result = explain(Permutation, model, planted.data, target="prediction", params={"repeats": 2})
    assert result.target_names == ["no", "yes"]
    for row in result.importance:
        assert set(np.flatnonzero(row > 0)) == {2, 3, 4}
    del module.clf


def test_reduce_groups_sums_means_and_skips_identity_groups() -> None:
    from aeinterp.data import FeatureGroup
    from aeinterp.toolkit.perturb import reduce_groups

    local = np.arange(12.0).reshape(2, 2, 3)
    groups = [FeatureGroup("ab", [0, 1]), FeatureGroup("c", [2])]
    np.testing.assert_allclose(reduce_groups(local, groups), np.stack([local[..., :2].sum(-1), local[..., 2]], -1))
    np.testing.assert_allclose(reduce_groups(local, groups, "mean")[..., 0], local[..., :2].mean(-1))
    identity = [FeatureGroup(str(j), [j]) for j in range(3)]
    assert reduce_groups(local, identity) is local


def test_reduce_groups_handles_overlaps_and_ungrouped_elements() -> None:
    from aeinterp.data import FeatureGroup
    from aeinterp.toolkit.perturb import reduce_groups

    local = torch.arange(8.0).reshape(2, 4)
    overlapping = [FeatureGroup("ab", [0, 1]), FeatureGroup("bc", [1, 2])]  # element 3 is in no group
    torch.testing.assert_close(reduce_groups(local, overlapping), torch.tensor([[1.0, 3.0], [9.0, 11.0]]))
    partial = [FeatureGroup("a", [0]), FeatureGroup("cd", [2, 3])]
    torch.testing.assert_close(reduce_groups(local, partial, "mean"), torch.tensor([[0.0, 2.5], [4.0, 6.5]]))
