"""Tests of the dependence plugin: ``mutual_information`` (KSG and HSIC).

Ground truth: scikit-learn's ``mutual_info_regression`` on the same samples
(exact when given the same noise seed), closed-form Gaussian MI for a
multivariate group, a hand-built sequence encoder, and a model with a dead
latent.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from aeinterp_dependence.explainers import MutualInformation
from aeinterp_dependence.hsic import hsic_matrix
from aeinterp_dependence.ksg import detect_discrete, has_numba, mi_matrix, prepare
from sklearn.feature_selection import mutual_info_regression
from torch import nn

from aeinterp import ArrayDataset, TorchAutoencoder, explain
from aeinterp.data import element_names, make_groups, split_indices
from aeinterp.errors import DataError
from aeinterp.testing import ExplainerConformance, planted_autoencoder


class TestMutualInformationConformance(ExplainerConformance):
    explainer = MutualInformation
    params = {}
    ground_truth = True


class TestHSICConformance(ExplainerConformance):
    explainer = MutualInformation
    params = {"method": "hsic", "max_samples": 200, "split": "all"}  # 200 of all rows: the planted dependencies need them
    ground_truth = True


def _latents(planted) -> np.ndarray:  # noqa: ANN001
    with torch.no_grad():
        return planted.model.encode(torch.as_tensor(planted.data.x)).double().numpy()


def _tabular(x: np.ndarray) -> ArrayDataset:
    names = element_names("tabular", (x.shape[1],))
    fit, explain_idx = split_indices(len(x), seed=0)
    return ArrayDataset(
        x=x.astype(np.float32),
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (x.shape[1],), feature_names=names),
        fit_index=fit,
        explain_index=explain_idx,
    )


def test_registered_through_the_entry_point() -> None:
    eps = entry_points(group="aeinterp")
    assert "aeinterp_dependence" in {ep.value for ep in eps}


def test_ksg_equals_sklearn_with_the_same_noise() -> None:
    planted = planted_autoencoder()
    result = explain(
        MutualInformation, planted.model, planted.data, seed=1, params={"split": "all"}
    )  # compared with scikit-learn on every row
    z = _latents(planted)
    seed = result.extras["noise_seed"]
    x = planted.data.x.astype(np.float64)
    ref = np.stack([mutual_info_regression(x, z[:, j], n_neighbors=3, random_state=seed) for j in range(z.shape[1])])
    assert result.extras["backend"] == ("numba" if has_numba() else "torch")
    np.testing.assert_allclose(result.importance, ref, atol=1e-10)


@pytest.mark.parametrize("k", [1, 5])
def test_ksg_equals_sklearn_for_other_k_and_noise(k: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5))
    z = np.stack([x[:, 0] + 0.5 * rng.normal(size=300), np.sin(2 * x[:, 1]) * x[:, 2], rng.normal(size=300)], axis=1)
    prepared = prepare(x, z, np.zeros(5, dtype=bool), noise_seed=11)
    ours, _ = mi_matrix(prepared, [np.array([i]) for i in range(5)], k)
    ref = np.stack([mutual_info_regression(x, z[:, j], n_neighbors=k, random_state=11) for j in range(3)], axis=1)
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    # a different noise draw only breaks ties: the estimate moves by far less than its own noise
    other, _ = mi_matrix(prepare(x, z, np.zeros(5, dtype=bool), noise_seed=12), [np.array([i]) for i in range(5)], k)
    np.testing.assert_allclose(other, ref, atol=1e-6)


def test_discrete_features_are_detected_and_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, 4))
    x[:, 1] = rng.integers(0, 3, n)
    x[:, 3] = rng.integers(0, 6, n)
    z = np.stack([x[:, 1] + 0.3 * rng.normal(size=n), x[:, 0] - x[:, 3] + 0.3 * rng.normal(size=n)], axis=1)
    discrete = detect_discrete(x, 20)
    assert discrete.tolist() == [False, True, False, True]
    ours, _ = mi_matrix(prepare(x, z, discrete, 5), [np.array([i]) for i in range(4)], 3)
    ref = np.stack([mutual_info_regression(x, z[:, j], discrete_features=discrete, random_state=5) for j in range(2)], axis=1)
    # scikit-learn finds within-label neighbours of small labels by brute force with the
    # |a|^2 - 2ab + |b|^2 expansion, whose rounding can move a boundary point: agreement to 1e-3
    np.testing.assert_allclose(ours, ref, atol=1e-3)
    assert ours[1, 0] > 0.8 and ours[1, 0] == ours[:, 0].max()


def test_explainer_reports_discrete_features_and_entropy_normalised_gap() -> None:
    rng = np.random.default_rng(1)
    n = 500
    x = rng.normal(size=(n, 4)).astype(np.float32)
    x[:, 2] = rng.integers(0, 4, n)
    data = _tabular(x)
    module = planted_autoencoder(n_features=4, dependencies=((2,), (0, 1))).model.module
    result = explain(MutualInformation, TorchAutoencoder(module, (4,)), data, seed=0, params={"split": "all"})
    assert result.extras["discrete_features"] == ["x2"]
    gap = result.extras["gaps"]["z0"]
    assert gap["top"] == "x2"
    h = -sum(p * np.log(p) for p in np.bincount(x[:, 2].astype(int)) / n)
    assert result.arrays["feature_entropy"][2] == pytest.approx(h)
    assert gap["normalized_gap"] == pytest.approx(gap["gap"] / h)
    assert result.extras["gaps"]["z1"]["normalized_gap"] is None  # continuous top feature: entropy undefined
    forced = explain(MutualInformation, TorchAutoencoder(module, (4,)), data, seed=0, params={"discrete_features": "none", "split": "all"})
    assert forced.extras["discrete_features"] == []


@pytest.mark.skipif(not has_numba(), reason="the compiled backend needs numba")
def test_torch_backend_equals_numba_backend() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 6))
    x[:, 4] = rng.integers(0, 3, 200)
    z = np.stack([x[:, 0] * x[:, 1], x[:, 4] + rng.normal(size=200), rng.normal(size=200)], axis=1)
    prepared = prepare(x, z, detect_discrete(x, 20), 0)
    groups = [np.array([i]) for i in range(6)]
    a, _ = mi_matrix(prepared, groups, 3, backend="numba")
    b, _ = mi_matrix(prepared, groups, 3, backend="torch", memory_mb=1)
    np.testing.assert_allclose(a, b, atol=1e-10)


@pytest.mark.skipif(not has_numba(), reason="the compiled backend needs numba")
@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("route", [0.0, None, float("inf")], ids=["all-along-z", "routed", "all-along-x"])
def test_numba_search_equals_sklearn_for_many_targets(k: int, route: float | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The joint search retires targets as they settle and packs the rest: every target still gets scikit-learn's value.

    37 targets of every kind side by side (strongly dependent, independent,
    heavy-tailed, tied values), so that some settle after a few samples and
    others (Cauchy tails: far in z, crowded in x) search most of the data.
    Each (target, sample) is searched along x or along z (``ROUTE``): both
    walks alone, and the default split, give the same values.
    """
    from aeinterp_dependence import ksg

    if route is not None:
        monkeypatch.setattr(ksg, "ROUTE", route)
    rng = np.random.default_rng(7)
    n = 160
    x = rng.normal(size=(n, 4))
    x[:, 3] = np.round(x[:, 3], 1)  # ties in a feature
    cols = [x[:, 0] + 0.05 * rng.normal(size=n), x[:, 1] ** 3, np.round(x[:, 2], 1), x[:, 0] * x[:, 3]]
    cols += [rng.standard_cauchy(size=n) for _ in range(13)] + [rng.normal(size=n) for _ in range(20)]
    z = np.stack(cols, axis=1)
    seed = 11
    prepared = prepare(x, z, np.zeros(4, dtype=bool), seed)
    ours, backend = mi_matrix(prepared, [np.array([i]) for i in range(4)], k, backend="numba")
    assert backend == "numba"
    ref = np.stack([mutual_info_regression(x, z[:, j], n_neighbors=k, random_state=seed) for j in range(z.shape[1])])
    np.testing.assert_allclose(ours.T, ref, rtol=0, atol=1e-12)
    assert (ref[:4].max(axis=1) > 0.3).all() and ref[4:].max() < 0.3  # both kinds of target are really there


def test_multivariate_group_recovers_gaussian_mi() -> None:
    rng = np.random.default_rng(4)
    n = 1500
    x = rng.normal(size=(n, 3))
    z = (x[:, 0] + x[:, 1] + rng.normal(size=n))[:, None]  # MI(x0,x1 ; z) = 0.5 log(1 + 2 / 1)
    prepared = prepare(x, z, np.zeros(3, dtype=bool), 0)
    mi, _ = mi_matrix(prepared, [np.array([0, 1]), np.array([0]), np.array([2])], 3)
    assert mi[0, 0] == pytest.approx(0.5 * np.log(3.0), abs=0.08)
    assert mi[1, 0] == pytest.approx(0.5 * np.log(1.5), abs=0.06)  # one input alone: 0.5 log(1 + 1/2)
    assert mi[2, 0] < 0.03


class _MeanOverTime(nn.Module):
    """z_j = mean over time of sequence feature j (a known, group-level dependence)."""

    def __init__(self, steps: int, features: int) -> None:
        super().__init__()
        self.steps = steps
        self.out = nn.Linear(features, features * steps, bias=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(z).reshape(z.shape[0], self.steps, -1)


def _sequences(n: int = 300, steps: int = 12, seed: int = 0) -> ArrayDataset:
    """Three independent sequence features (random walks with their own scale per sample)."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(n, steps, 3)), axis=1) * rng.uniform(0.5, 2.0, size=(n, 1, 3))
    base = ["a", "b", "c"]
    names = element_names("sequence", (steps, 3), base)
    fit, explain_idx = split_indices(n, seed=0)
    groups = make_groups("sequence", (steps, 3), feature_names=names, base_names=base)
    return ArrayDataset(
        x=x.astype(np.float32), kind="sequence", feature_names=names, groups=groups, fit_index=fit, explain_index=explain_idx
    )


def test_sequence_groups_use_the_feature_over_all_steps() -> None:
    data = _sequences()
    model = TorchAutoencoder(_MeanOverTime(*data.sample_shape), data.sample_shape)
    result = explain(MutualInformation, model, data, seed=0, params={"split": "all"})
    assert result.feature_names == ["a", "b", "c"]
    assert result.extras["multivariate_groups"] == 3
    assert np.argmax(result.importance, axis=1).tolist() == [0, 1, 2]
    off_diagonal = result.importance[~np.eye(3, dtype=bool)]
    assert result.importance.diagonal().min() > 0.5 and off_diagonal.max() < 0.1
    hsic = explain(MutualInformation, model, data, seed=0, params={"method": "hsic", "split": "all"})
    assert np.argmax(hsic.importance, axis=1).tolist() == [0, 1, 2]


def test_dead_latent_and_redundant_features_are_reported() -> None:
    planted = planted_autoencoder(dependencies=((0, 1), (2,), (3,)))
    module = planted.model.module
    module.encoder[2].weight.data[2] = 0.0  # z2 no longer depends on anything: a constant, dead latent
    result = explain(MutualInformation, planted.model, planted.data, seed=0, params={"split": "all"})
    assert result.extras["dead_latents"] == ["z2"]
    assert result.extras["constant_targets"] == ["z2"]
    assert set(result.extras["redundant_features"]) >= {"x5", "x6", "x7", "x8", "x9"}
    assert not {"x0", "x2"} & set(result.extras["redundant_features"])
    assert result.extras["top_features"]["z1"][0][0] == "x2"
    assert result.extras["gaps"]["z1"]["top"] == "x2"
    assert result.arrays["gap_per_target"].shape == (3,)
    assert result.arrays["gap_per_feature"].shape == (10,)
    assert np.all(result.importance[2] == 0.0)


def test_hsic_matches_the_explicit_formula() -> None:
    rng = np.random.default_rng(5)
    n = 150
    x = rng.normal(size=(n, 3))
    z = np.stack([x[:, 0] ** 2, rng.normal(size=n)], axis=1)

    def centred(v: np.ndarray) -> np.ndarray:
        v = (v - v.mean(0)) / v.std(0)
        d2 = ((v[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        k = np.exp(-d2 / (2 * np.median(d2[np.triu_indices(n, 1)])))
        h = np.eye(n) - 1.0 / n
        return h @ k @ h

    groups = [np.array([0]), np.array([1, 2])]
    ours = hsic_matrix(x, z, groups, memory_mb=1)
    for g, idx in enumerate(groups):
        for j in range(2):
            k, l_ = centred(x[:, idx]), centred(z[:, [j]])
            ref = (k * l_).sum() / np.sqrt((k * k).sum() * (l_ * l_).sum())
            assert ours[g, j] == pytest.approx(ref, abs=1e-5)
    assert ours[0, 0] > 0.3 and ours[0, 1] < 0.05


def test_the_explain_split_is_the_default() -> None:
    planted = planted_autoencoder()
    result = explain(MutualInformation, planted.model, planted.data, seed=0)
    assert result.extras["split"] == "explain" and result.extras["n_samples"] == len(planted.data.explain_index)
    assert result.arrays["explain_index"].tolist() == planted.data.explain_index.tolist()


def test_hsic_caps_the_samples() -> None:
    planted = planted_autoencoder(n_samples=700)
    result = explain(MutualInformation, planted.model, planted.data, seed=0, params={"method": "hsic", "split": "all"})
    assert result.extras["n_samples"] == 500 and result.extras["sample_cap"] == 500


def test_reconstruction_error_target_and_splits() -> None:
    planted = planted_autoencoder()
    result = explain(MutualInformation, planted.model, planted.data, seed=0, target="reconstruction_error", params={"split": "explain"})
    assert result.importance.shape == (1, 10)
    assert result.extras["n_samples"] == len(planted.data.explain_index)


def test_bad_params_are_clear_errors() -> None:
    planted = planted_autoencoder()
    with pytest.raises(DataError, match="unknown features: nope"):
        explain(MutualInformation, planted.model, planted.data, params={"discrete_features": ["nope"]})
    with pytest.raises(DataError, match="more than"):
        explain(MutualInformation, planted.model, planted.data, params={"n_neighbors": 10, "max_samples": 8})


def test_gap_figure() -> None:
    planted = planted_autoencoder()
    result = explain(MutualInformation, planted.model, planted.data, seed=0)
    figs = MutualInformation.figures(result)
    assert set(figs) == {"gaps"}
    assert len(figs["gaps"].axes[0].patches) == 6


@pytest.mark.parametrize("n", [8, 12, 20])
def test_few_samples_never_make_continuous_columns_discrete(n: int) -> None:
    """With 20 samples every continuous column has 20 values (<= discrete_max_levels): still continuous, MI not zero."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 4))
    assert not detect_discrete(x, 20).any()
    labels = np.repeat([0.0, 1.0, 2.0], n)[:n]
    assert detect_discrete(np.c_[x, labels], 20).tolist() == [False] * 4 + [True]
    module = planted_autoencoder(n_features=4, dependencies=((0,), (1, 2))).model.module
    data = _tabular(x.astype(np.float32))
    result = explain(MutualInformation, TorchAutoencoder(module, (4,)), data, seed=0, params={"split": "all", "n_neighbors": 3})
    assert result.extras["discrete_features"] == []
    assert result.importance.max() > 0.1


def test_breast_cancer_with_max_samples_20_has_no_discrete_features(tabular_model) -> None:  # noqa: ANN001
    model, data = tabular_model
    result = explain(MutualInformation, model, data, seed=0, params={"max_samples": 20, "n_neighbors": 3})
    assert result.extras["discrete_features"] == []
    assert (result.importance > 0).any()


def test_fewer_samples_than_neighbours_is_a_clear_error(tabular_model) -> None:  # noqa: ANN001
    model, data = tabular_model
    with pytest.raises(DataError, match="needs more than 5 samples"):
        explain(MutualInformation, model, data, seed=0, params={"max_samples": 5, "n_neighbors": 4})


def test_numba_cache_falls_back_to_a_writable_folder(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    numba_config = pytest.importorskip("numba.core.config")
    from aeinterp_dependence import ksg

    monkeypatch.setenv("NUMBA_CACHE_DIR", "placeholder")
    monkeypatch.delenv("NUMBA_CACHE_DIR")  # restored (absent) after the test
    monkeypatch.setattr(numba_config, "CACHE_DIR", numba_config.CACHE_DIR)
    monkeypatch.setenv("AEINTERP_CACHE_DIR", str(tmp_path / "aeinterp"))
    monkeypatch.setattr(ksg, "_writable", lambda folder: str(folder).startswith(str(tmp_path)))  # package and home read-only
    chosen = ksg.ensure_numba_cache()
    assert chosen == str(tmp_path / "aeinterp" / "numba")
    assert numba_config.CACHE_DIR == chosen and __import__("os").environ["NUMBA_CACHE_DIR"] == chosen
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert ksg.ensure_numba_cache() == str(tmp_path / "mine")  # the user's choice wins


@pytest.mark.slow
def test_only_the_first_run_compiles_and_says_so(tmp_path) -> None:  # noqa: ANN001
    """Two fresh processes sharing one numba cache folder: the first compiles, the second loads."""
    pytest.importorskip("numba")
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json; from aeinterp.testing.planted import planted_autoencoder; from aeinterp import explain;"
        "from aeinterp_dependence.explainers import MutualInformation; p = planted_autoencoder();"
        "r = explain(MutualInformation, p.model, p.data, seed=0); print(json.dumps([r.extras['numba_kernels'], r.extras.get('summary')]))"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    first, second = (
        json.loads(
            subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        )
        for _ in range(2)
    )
    assert first[0]["compiled"] and first[0]["cache_misses"] > 0 and "compiled the KSG kernels" in first[1][0]
    assert not second[0]["compiled"] and second[0]["cache_hits"] > 0 and second[1] is None
    assert first[0]["cache_dir"] == str(tmp_path / "numba")
