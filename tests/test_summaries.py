"""Importance summaries (aeinterp.toolkit.summaries): variance shares, direction, per label group, stability, streaming."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from aeinterp_deepshap.explainer import DeepShap
from aeinterp_gradients.explainers import IntegratedGradients, Jacobian

from aeinterp import ArrayDataset, TorchAutoencoder, explain
from aeinterp.data import element_names, make_groups, split_indices
from aeinterp.errors import AeinterpError
from aeinterp.testing.planted import planted_autoencoder
from aeinterp.toolkit.summaries import FOLDS, SUMMARIES, chunk_sums, ranking_key, summarise, topk_overlap

EXACT = {"dtype": "float64", "background": "all"}  # deterministic DeepSHAP: every fit row is the background


@pytest.fixture(scope="module")
def planted():  # noqa: ANN201
    return planted_autoencoder(n_features=12, n_samples=480, supervised=True, seed=3)


@pytest.fixture(scope="module")
def linear():  # noqa: ANN201
    return planted_autoencoder(n_features=12, n_samples=480, linear=True, seed=4)


def _shap(case, **params):  # noqa: ANN001, ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explain(DeepShap, case.model, case.data, params={**EXACT, **params})


# --- the accumulator itself -------------------------------------------------------------


def test_running_sums_give_the_textbook_covariance_and_correlation() -> None:
    rng = np.random.default_rng(0)
    phi, z, x = rng.normal(size=(50, 3, 4)), rng.normal(size=(50, 3)) + 5.0, rng.normal(size=(50, 4)) - 2.0
    phi[:, :, 0] += 0.7 * z  # feature 0 follows every target, feature 1 its input
    phi[:, :, 1] += 2.0 * x[:, [1]]
    parts = [chunk_sums(phi[s], z[s], x[s], np.arange(50)[s] % FOLDS, FOLDS) for s in (slice(0, 13), slice(13, 50))]
    total = {k: (parts[0][k] + parts[1][k]).sum(axis=0) for k in parts[0]}
    got = summarise(total)
    for t in range(3):
        for g in range(4):
            cov = np.cov(phi[:, t, g], z[:, t], bias=True)[0, 1] / np.var(z[:, t])
            np.testing.assert_allclose(got["variance_share"][t, g], cov, rtol=1e-10)
            np.testing.assert_allclose(got["direction"][t, g], np.corrcoef(phi[:, t, g], x[:, g])[0, 1], rtol=1e-10)
    np.testing.assert_allclose(got["mean_abs"], np.abs(phi).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(got["residual"], 1.0 - got["variance_share"].sum(axis=1), rtol=1e-12)
    assert np.all(got["direction"][:, 1] > 0.8)


def test_constant_attributions_and_targets_give_zero_not_noise() -> None:
    phi, z, x = np.ones((20, 1, 2)), np.full((20, 1), 3.0), np.ones((20, 2))
    got = summarise({k: v.sum(axis=0) for k, v in chunk_sums(phi, z, x, np.zeros(20, dtype=int), 1).items()})
    assert np.all(got["variance_share"] == 0.0) and np.all(got["direction"] == 0.0) and np.all(got["residual"] == 0.0)


def test_topk_overlap_and_ranking_key() -> None:
    a = np.array([[5.0, 4.0, 3.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    b = np.array([[5.0, 0.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(topk_overlap(a, b, 2), [0.5, 1.0])
    np.testing.assert_array_equal(ranking_key("direction", np.array([-0.9, 0.1])), [0.9, 0.1])
    np.testing.assert_array_equal(ranking_key("variance_share", np.array([-0.9, 0.1])), [-0.9, 0.1])


# --- DeepSHAP and integrated gradients ----------------------------------------------------


def test_deepshap_variance_shares_sum_to_one_and_are_the_default(planted) -> None:  # noqa: ANN001
    e = _shap(planted)
    assert e.extras["importance_summary"] == "variance_share" and "variance" in e.extras["unit"]
    np.testing.assert_allclose(e.importance.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(e.importance, e.arrays["importance_variance_share"])
    assert np.abs(e.arrays["variance_share_residual"]).max() < 1e-6
    np.testing.assert_allclose(e.arrays["importance_mean_abs"], np.abs(e.local).mean(axis=0), rtol=1e-6)
    assert e.std is None  # a share has no per-sample spread


def test_linear_encoder_shares_are_the_hand_computed_variance_decomposition(linear) -> None:  # noqa: ANN001
    e = _shap(linear)
    w = linear.model.module.encoder.weight.detach().double().numpy()  # z = W x
    x = linear.data.x_explain.astype(np.float64)
    cov = np.cov(x, rowvar=False, bias=True)
    expected = w * (w @ cov) / np.einsum("tg,gh,th->t", w, cov, w)[:, None]  # w_g (sum_h w_h Cov(x_g, x_h)) / Var z
    np.testing.assert_allclose(e.importance, expected, rtol=1e-8, atol=1e-12)
    assert np.all(np.sign(e.arrays["importance_direction"]) == np.sign(w))  # a higher x_g raises z by w_g
    np.testing.assert_allclose(np.abs(e.arrays["importance_direction"])[w != 0], 1.0, rtol=1e-9)


@pytest.mark.parametrize("explainer", [DeepShap, IntegratedGradients])
def test_every_summary_keeps_the_planted_inputs_on_top(planted, explainer) -> None:  # noqa: ANN001
    relevant = planted.relevant()
    for summary in SUMMARIES:
        params = {**(EXACT if explainer is DeepShap else {"baseline": "mean", "steps": 16}), "summary": summary}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e = explain(explainer, planted.model, planted.data, params=params)
        assert e.extras["importance_summary"] == summary
        key = np.abs(e.importance)  # by magnitude: a relevant input's share may be negative (it cancels part of another's variance)
        for t, deps in enumerate(relevant):
            top = set(np.argsort(-key[t], kind="stable")[: deps.sum()].tolist())
            assert top == set(np.flatnonzero(deps).tolist()), (summary, t)
            assert np.all(np.abs(e.importance[t, ~deps]) < 1e-9), (summary, t)  # the planted model reads nothing else


def test_direction_has_the_planted_sign(linear) -> None:  # noqa: ANN001
    w = linear.model.module.encoder.weight.detach().numpy()
    e = explain(IntegratedGradients, linear.model, linear.data, params={"summary": "direction", "baseline": "zero"})
    np.testing.assert_array_equal(np.sign(e.importance), np.sign(w))


def test_integrated_gradients_shares_sum_to_one_up_to_completeness(planted) -> None:  # noqa: ANN001
    e = explain(IntegratedGradients, planted.model, planted.data, params={"baseline": "mean", "steps": 64})
    assert e.extras["importance_summary"] == "variance_share"
    np.testing.assert_allclose(e.importance.sum(axis=1), 1.0, atol=1e-4)


def test_non_additive_methods_default_to_mean_abs_and_report_the_residual(planted) -> None:  # noqa: ANN001
    sal = explain(Jacobian, planted.model, planted.data)
    assert sal.extras["importance_summary"] == "mean_abs" and sal.std is not None
    np.testing.assert_allclose(sal.importance, sal.arrays["importance_mean_abs"], rtol=1e-6)
    ixg = explain(Jacobian, planted.model, planted.data, params={"method": "input_x_gradient", "summary": "variance_share"})
    residual = ixg.arrays["variance_share_residual"]
    np.testing.assert_allclose(residual, 1.0 - ixg.importance.sum(axis=1), atol=1e-9)
    assert np.abs(residual).max() > 0.01  # x * dz/dx does not add up to z - E z for tanh units


def test_a_bad_summary_is_a_clear_error(planted) -> None:  # noqa: ANN001
    with pytest.raises(AeinterpError, match="summary"):
        explain(planted.model, planted.data.x, "deepshap", summary="median")


# --- per label group, streaming, stability -------------------------------------------------


def test_per_group_importance_equals_the_group_rows_alone(planted) -> None:  # noqa: ANN001
    e = _shap(planted)
    groups = e.extras["groups"]
    assert groups == ["neg", "pos"] and e.arrays["importance_by_group"].shape == (2, *e.importance.shape)
    labels = planted.data.y_explain
    for g, name in enumerate(groups):
        alone = dataclasses.replace(planted.data, explain_index=planted.data.explain_index[labels == name])
        only = _shap(dataclasses.replace(planted, data=alone))
        np.testing.assert_allclose(e.arrays["importance_by_group"][g], only.importance, rtol=1e-9, atol=1e-12)
    assert sum(e.extras["group_rows"]) == len(labels)


def test_streamed_chunks_equal_the_whole(planted) -> None:  # noqa: ANN001
    for explainer, params in ((DeepShap, EXACT), (IntegratedGradients, {"baseline": "mean", "steps": 8})):
        whole = explain(explainer, planted.model, planted.data, params=params)
        chunked = explain(explainer, planted.model, planted.data, params={**params, "chunk_size": 7, "local": "none"})
        np.testing.assert_allclose(chunked.importance, whole.importance, rtol=1e-6, atol=1e-10)
        for key in (
            "importance_mean_abs",
            "importance_variance_share",
            "importance_direction",
            "importance_by_group",
            "stability_topk_overlap",
        ):
            np.testing.assert_allclose(chunked.arrays[key], whole.arrays[key], rtol=1e-6, atol=1e-9, err_msg=key)


def test_stability_is_one_for_a_deterministic_explainer_on_a_fixed_background(planted) -> None:  # noqa: ANN001
    e = _shap(planted, stability_k=1)  # (a share of 0.7 % may change sign between halves: k=1 asks only for the dominant input)
    assert e.extras["stability"]["topk"] == 1 and e.extras["stability"]["overlap"] == [1.0, 1.0, 1.0]
    assert "warning" not in e.extras["stability"]


def _noisy_case() -> tuple[TorchAutoencoder, ArrayDataset]:
    """An MLP with random weights on 40 unstructured inputs: no ranking is well determined by 60 rows."""
    torch.manual_seed(0)
    d, n = 40, 240
    module = torch.nn.Module()
    module.encoder = torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    module.decoder = torch.nn.Linear(4, d)
    x = np.random.default_rng(1).standard_t(2, size=(n, d)).astype(np.float32)
    names = element_names("tabular", (d,))
    fit, held = split_indices(n, seed=0)
    data = ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (d,), feature_names=names),
        fit_index=fit,
        explain_index=held,
    )
    return TorchAutoencoder(module, (d,)), data


def test_stability_drops_below_one_when_the_background_is_resampled_on_a_noisy_case() -> None:
    model, data = _noisy_case()
    params = {"n_background": 4, "summary": "mean_abs", "stability_k": 5}
    runs = [explain(DeepShap, model, data, params=params, seed=s) for s in range(3)]
    across = np.mean([topk_overlap(a.importance, b.importance, 5).mean() for i, a in enumerate(runs) for b in runs[i + 1 :]])
    assert across < 1.0
    same = [explain(DeepShap, model, data, params=params, seed=0) for _ in range(2)]  # same seed, same background: identical
    np.testing.assert_array_equal(topk_overlap(same[0].importance, same[1].importance, 5), 1.0)
    split_half = runs[0].arrays["stability_topk_overlap"]
    assert split_half.shape == (4,) and split_half.min() < 1.0  # half of 60 rows do not settle the top 5 of 40 t-distributed inputs


# --- perturbation: per-sample effects -----------------------------------------------------


def test_zero_ablation_effects_give_the_exact_linear_shares(linear) -> None:  # noqa: ANN001
    from aeinterp_perturbation.explainers import ZeroAblation

    e = explain(ZeroAblation, linear.model, linear.data, params={"summary": "variance_share"})
    shap = _shap(linear)  # z = W x: z(x) - z(x with x_g = 0) = w_g x_g, whose covariance with z is DeepSHAP's
    np.testing.assert_allclose(e.importance, shap.importance, rtol=1e-5, atol=1e-7)
    assert e.extras["importance_summary"] == "variance_share" and "per-sample effect" in e.extras["unit"]
    np.testing.assert_array_equal(np.sign(e.arrays["importance_direction"]), np.sign(linear.model.module.encoder.weight.detach().numpy()))


def test_permutation_summaries_keep_planted_inputs_and_stream(planted) -> None:  # noqa: ANN001
    from aeinterp_perturbation.explainers import Permutation

    rms = explain(Permutation, planted.model, planted.data, params={"summary": "rms_change"})
    assert rms.extras["importance_summary"] == "rms_change" and "importance_variance_share" not in rms.arrays
    e = explain(Permutation, planted.model, planted.data)  # on a code the default is variance_share (bench/bench_realdata.py)
    assert e.extras["importance_summary"] == "variance_share"
    relevant = planted.relevant()
    assert np.all(e.importance[~relevant] == 0.0) and np.all(e.importance[relevant] > 0.0)
    chunked = explain(Permutation, planted.model, planted.data, params={"summary": "variance_share", "chunk_size": 13})
    for key in ("importance_variance_share", "importance_mean_abs", "importance_direction", "importance_by_group"):
        np.testing.assert_allclose(chunked.arrays[key], e.arrays[key], rtol=1e-6, atol=1e-9, err_msg=key)


def test_integrated_gradients_baseline_auto_is_the_mean_for_tables_and_zero_for_images(planted) -> None:  # noqa: ANN001
    from aeinterp_gradients.paths import resolve_baseline

    e = explain(IntegratedGradients, planted.model, planted.data, params={"steps": 8})
    assert e.extras["baseline"] == "mean" and "tabular" in e.extras["baseline_reason"]
    mean = explain(IntegratedGradients, planted.model, planted.data, params={"steps": 8, "baseline": "mean"})
    np.testing.assert_array_equal(e.local, mean.local)
    assert resolve_baseline("auto", "image")[0] == "zero" and resolve_baseline("sample", "image") == ("sample", "requested")


def test_tiles_bound_the_temporaries_without_changing_the_sums(monkeypatch) -> None:  # noqa: ANN001
    from aeinterp.toolkit import summaries

    rng = np.random.default_rng(2)
    phi, z, x, cells = rng.normal(size=(37, 4, 5)), rng.normal(size=(37, 4)), rng.normal(size=(37, 5)), np.arange(37) % 3
    whole = chunk_sums(phi, z, x, cells, 3)
    # every row and two targets per tile; then eight rows and one target per tile (one target of every row is too big)
    for elements in (2 * 37 * 5, 8 * 5):
        monkeypatch.setattr(summaries, "BLOCK_MB", elements * 8 / 2**20)
        tiled = chunk_sums(phi, z, x, cells, 3)
        for k in whole:
            np.testing.assert_allclose(tiled[k], whole[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("summary", ["variance_share", "mean_abs", "direction"])
def test_row_total_is_the_sum_over_every_row_whichever_partition_holds_it(summary: str) -> None:
    from aeinterp.toolkit.summaries import SummaryPlan, row_total

    rng = np.random.default_rng(4)
    phi, z, x = rng.normal(size=(11, 3, 4)), rng.normal(size=(11, 3)), rng.normal(size=(11, 4))
    sums = SummaryPlan(summary=summary, k=2, additive=True).sums(phi, z, x, np.arange(11), np.arange(11))
    np.testing.assert_allclose(row_total(sums, "pa"), np.abs(phi).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(row_total(sums, "p2"), (phi**2).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(row_total(sums, "pz"), (phi * z[:, :, None]).sum(axis=0), rtol=1e-12)
    assert row_total(sums, "n") == 11


def test_sums_of_a_chunk_without_rows_or_targets_keep_their_shapes_and_counts() -> None:
    rng = np.random.default_rng(5)
    for b, t, g in ((0, 3, 4), (6, 0, 4), (6, 3, 0)):
        sums = chunk_sums(rng.normal(size=(b, t, g)), rng.normal(size=(b, t)), rng.normal(size=(b, g)), np.arange(b) % 2, 2)
        assert sums["n"].tolist() == [(b + 1) // 2, b // 2]  # rows are counted even with no target to sum
        assert sums["pz"].shape == (2, t, g) and sums["x1"].shape == (2, g) and sums["z1"].shape == (2, t)
