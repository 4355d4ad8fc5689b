"""Disentanglement metrics against hand computations, scikit-learn and planted codes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from aeinterp.toolkit import disentanglement as dis


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 4, size=(2000, 3)).astype(float)


def test_discretize_matches_histogram_bins() -> None:
    x = np.array([0.0, 0.1, 0.5, 0.99, 1.0])
    got = dis.histogram_discretize(x, bins=4)[:, 0]
    assert got.tolist() == [0, 0, 2, 3, 3]  # edges 0, .25, .5, .75, 1; the maximum falls in the last bin


def test_mutual_info_equals_sklearn(factors: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, size=500)
    b = (a + rng.integers(0, 2, size=500)) % 5
    m = dis.discrete_mutual_info(a[:, None], b[:, None])
    assert m[0, 0] == pytest.approx(mutual_info_score(a, b), rel=1e-12)
    h = dis.discrete_entropy(a[:, None])[0]
    p = np.bincount(a) / len(a)
    assert h == pytest.approx(-np.sum(p * np.log(p)), rel=1e-12)


def test_mig_is_the_normalised_gap(factors: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    codes = factors[:, [2, 0, 1]] + 0.01 * rng.normal(size=factors.shape)
    got = dis.mig(codes, factors)
    z = dis.histogram_discretize(codes, 20)
    f = factors.astype(int)
    m = np.array([[mutual_info_score(z[:, i], f[:, j]) for j in range(3)] for i in range(3)])
    h = np.array([mutual_info_score(f[:, j], f[:, j]) for j in range(3)])
    top = np.sort(m, axis=0)[::-1]
    assert got["mig"] == pytest.approx(float(np.mean((top[0] - top[1]) / h)), rel=1e-9)
    assert got["mig"] > 0.95  # a permutation of the factors
    rot = codes @ np.array([[np.cos(0.6), -np.sin(0.6), 0], [np.sin(0.6), np.cos(0.6), 0], [0, 0, 1]])
    assert dis.mig(rot, factors)["mig"] < got["mig"] - 0.2


def test_dci_from_importance_by_hand() -> None:
    assert dis.dci_from_importance(np.eye(3)) == pytest.approx({"disentanglement": 1.0, "completeness": 1.0})
    assert dis.dci_from_importance(np.ones((3, 3))) == pytest.approx({"disentanglement": 0.0, "completeness": 0.0})
    r = np.array([[1.0, 1.0], [0.0, 2.0]])
    # code 0 spreads evenly over 2 factors (D_0 = 0), code 1 uses one (D_1 = 1); weights 2/4 each
    # factor 0 lives in code 0 only (C_0 = 1, weight 1/4); factor 1: p = (1/3, 2/3), C_1 = 1 - H_2(p) (weight 3/4)
    h = -(1 / 3 * np.log2(1 / 3) + 2 / 3 * np.log2(2 / 3))
    assert dis.dci_from_importance(r) == pytest.approx({"disentanglement": 0.5, "completeness": 0.25 + 0.75 * (1 - h)})


def test_dci_scores_a_permutation_above_a_rotation(factors: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    codes = factors[:, [1, 2, 0]] + 0.05 * rng.normal(size=factors.shape)
    good = dis.dci(codes, factors, n_estimators=20)
    assert good["disentanglement"] > 0.9 and good["completeness"] > 0.9 and good["informativeness"] > 0.95
    assert np.argmax(good["importance"], axis=0).tolist() == [2, 0, 1]
    q = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))[0]
    bad = dis.dci(codes @ q, factors, n_estimators=20)
    assert bad["disentanglement"] < good["disentanglement"] - 0.2


def test_sap_by_hand_and_planted() -> None:
    assert dis.sap_from_scores(np.array([[0.9, 0.1], [0.2, 0.5], [0.1, 0.4]]))["sap"] == pytest.approx(((0.9 - 0.2) + (0.5 - 0.4)) / 2)
    rng = np.random.default_rng(5)
    f = rng.normal(size=(3000, 2))
    z = np.column_stack([f[:, 1], f[:, 0], rng.normal(size=3000)])
    got = dis.sap(z, f)
    assert got["continuous"] is True
    r2 = np.corrcoef(z[:, 0], f[:, 1])[0, 1] ** 2
    assert got["scores"][0, 1] == pytest.approx(r2, rel=1e-9)
    assert got["sap"] > 0.99
    mixed = z[:, :2] @ np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2)
    assert dis.sap(mixed, f)["sap"] < 0.05


def test_sap_discrete_factors_use_one_latent_classifiers(factors: np.ndarray) -> None:
    codes = np.column_stack([factors[:, 0], np.random.default_rng(6).normal(size=len(factors))])
    got = dis.sap(codes, (factors[:, :1] > 1).astype(float))
    assert got["continuous"] is False
    assert got["scores"][0, 0] > 0.95 and got["scores"][1, 0] < 0.65


def test_total_correlation_of_independent_gaussians_is_zero() -> None:
    rng = np.random.default_rng(7)
    z = rng.normal(size=(20000, 5)) * np.array([1, 2, 3, 0.5, 10])
    assert dis.gaussian_total_correlation(z) == pytest.approx(0.0, abs=2e-3)
    rho = 0.8
    pair = np.column_stack([z[:, 0], rho * z[:, 0] + np.sqrt(1 - rho**2) * rng.normal(size=len(z))])
    assert dis.gaussian_total_correlation(pair) == pytest.approx(-0.5 * np.log(1 - rho**2), rel=0.03)


def test_dead_and_duplicate_latents_and_pairwise_mi() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(2, 1000))
    z = np.column_stack([a, b, 2 * a + 1e-3 * rng.normal(size=1000), np.full(1000, 0.3)])
    s = dis.code_summary(z, ["z0", "z1", "z2", "z3"])
    assert s.dead == ["z3"]
    assert [(x, y) for x, y, _ in s.duplicates] == [("z0", "z2")]
    assert s.mutual_info[0, 2] > 1.5 and s.mutual_info[0, 1] < 0.1
    assert np.isfinite(s.total_correlation) and s.total_correlation > 2.0  # z0 and z2 nearly the same
    assert s.scores == {}


def test_code_summary_with_factors(factors: np.ndarray) -> None:
    rng = np.random.default_rng(9)
    z = factors[:, [0, 1, 2]] + 0.05 * rng.normal(size=factors.shape)
    s = dis.code_summary(z[:600], ["a", "b", "c"], factors=factors[:600], factor_names=["f0", "f1", "f2"])
    assert s.scores["mig"] > 0.9 and s.scores["sap"] > 0.3 and s.scores["disentanglement"] > 0.9
    assert s.to_json()["factor_names"] == ["f0", "f1", "f2"]


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        dis.pearson(np.array([[0.0, np.nan], [1.0, 2.0]]))
