"""aeinterp.toolkit.accumulate: block-compensated sums equal float64 sums, moments keep a zero spread at zero."""

from __future__ import annotations

import numpy as np
import torch

from aeinterp.toolkit.accumulate import BLOCK, magnitude_sums, moments, row_sums, sample_sum


def test_sample_sum_is_float64_accurate_for_any_row_count() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 3, BLOCK, BLOCK + 1, 5 * BLOCK + 7):
        x = rng.normal(size=(n, 4, 6)).astype(np.float32)
        exact = x.astype(np.float64).sum(axis=0)
        got = sample_sum(torch.from_numpy(x))
        assert got.dtype == np.float64 and got.shape == (4, 6)
        np.testing.assert_allclose(got, exact, rtol=0, atol=2e-6 * np.abs(x).sum(axis=0).max())
        np.testing.assert_allclose(sample_sum(x), got)  # numpy in, same values
    assert sample_sum(torch.zeros((0, 3))).shape == (3,)


def test_float64_values_are_summed_in_float64() -> None:
    x = torch.tensor([[1e16], [1.0], [-1e16]], dtype=torch.float64)
    assert sample_sum(x)[0] == (1e16 + 1.0) - 1e16  # plain float64 order, no float32 anywhere


def test_moments_keep_a_zero_spread_at_zero() -> None:
    x = torch.full((300, 5), 0.1234567, dtype=torch.float32)  # every sample equal: variance exactly 0
    first, second = moments(x)
    n = x.shape[0]
    var = (second - first**2 / n) / (n - 1)
    assert np.abs(var).max() < 1e-12
    np.testing.assert_allclose(first, x.double().sum(0).numpy(), rtol=1e-15)


def test_magnitude_and_row_sums() -> None:
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(70, 3, 8)).astype(np.float32))
    sums = magnitude_sums(x, squares=True)
    np.testing.assert_allclose(sums["abs"], np.abs(x.numpy()).astype(np.float64).sum(0), rtol=1e-6)
    np.testing.assert_allclose(sums["abs_sq"], (x.double().numpy() ** 2).sum(0), rtol=1e-12)
    assert set(magnitude_sums(x)) == {"abs"}
    np.testing.assert_allclose(row_sums(x), x.double().sum(2).numpy(), rtol=1e-5, atol=1e-5)
