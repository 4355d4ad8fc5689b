"""DeepSHAP stays exact through ``torch.distributions``, and a fallback names its real cause.

An encoder that builds ``Normal(loc, scale)`` and returns its ``.mean`` /
``.loc`` computes exactly ``loc``: ``broadcast_all`` only expands the
arguments and ``validate_args`` only checks them. The recorder rewrites
``broadcast_tensors`` into ``expand`` and ignores the validation's ``bool()``,
so DeepLIFT keeps its exact rules (additivity to 1e-9 in float64, and the
same attributions as the encoder that returns ``loc`` directly). Where an
operation truly has no rule, the method reason and the warning name that
operation and the module that called it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from aeinterp_deepshap._tape import record
from aeinterp_deepshap.explainer import DeepShap
from torch import nn
from torch.distributions import Independent, Normal

from aeinterp import ArrayDataset, TorchAutoencoder, explain
from aeinterp.data import element_names, make_groups, split_indices

F64 = {"dtype": "float64", "n_background": 8, "max_samples": 6}


def dataset(d: int = 8, n: int = 60) -> ArrayDataset:
    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    names = element_names("tabular", (d,))
    fit, exp = split_indices(n, seed=0)
    return ArrayDataset(
        x=x, kind="tabular", feature_names=names, groups=make_groups("tabular", (d,), feature_names=names), fit_index=fit, explain_index=exp
    )


class GaussianEncoder(nn.Module):
    """x -> ReLU MLP -> (loc, softplus scale) -> Normal; the code is read as ``read`` (mean, loc, or the raw loc)."""

    def __init__(self, validate: bool | None, read: str = "mean", independent: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 10), nn.Tanh())
        self.loc, self.scale = nn.Linear(10, 3), nn.Linear(10, 3)
        self.validate, self.read, self.independent = validate, read, independent

    def posterior(self, x: torch.Tensor) -> torch.distributions.Distribution:
        h = self.body(x)
        q = Normal(self.loc(h), F.softplus(self.scale(h)) + 1e-4, validate_args=self.validate)
        return Independent(q, 1, validate_args=self.validate) if self.independent else q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.read == "raw":
            return self.loc(self.body(x))
        q = self.posterior(x)
        return q.mean if self.read == "mean" else q.base_dist.loc if self.independent else q.loc


class VAE(nn.Module):
    """A VAE as users write it: encode returns the posterior mean, forward samples with rsample."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = GaussianEncoder(validate=None, independent=True)
        self.decoder = nn.Sequential(nn.Linear(3, 10), nn.ReLU(), nn.Linear(10, 8))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.posterior(x).mean

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder.posterior(x).rsample())


class AE(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, nn.Linear(3, 8)


def run(module: nn.Module, data: ArrayDataset, **params):  # noqa: ANN201
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explain(DeepShap, TorchAutoencoder(module, (8,)), data, params={**F64, **params})


def _assert_exact(result, data: ArrayDataset) -> None:  # noqa: ANN001
    assert result.extras["method"] == "deeplift_rescale", result.extras["method_reason"]
    assert result.extras["additivity"]["max_rel"] <= 1e-9
    phi = result.local.sum(axis=2)  # (samples, targets): attributions summed over features
    expected = result.arrays["target_values"] - result.arrays["expected_value"]
    np.testing.assert_allclose(phi, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("validate", [True, False, None], ids=["validate_args", "no_validation", "default"])
@pytest.mark.parametrize("read", ["mean", "loc"])
def test_normal_mean_code_is_exact_and_equals_the_plain_encoder(validate: bool | None, read: str) -> None:
    torch.manual_seed(3)
    data = dataset()
    encoder = GaussianEncoder(validate, read)
    result = run(AE(encoder), data)
    _assert_exact(result, data)
    plain = GaussianEncoder(validate, "raw")
    plain.load_state_dict(encoder.state_dict())
    reference = run(AE(plain), data)
    np.testing.assert_allclose(result.local, reference.local, rtol=1e-10, atol=1e-13)


def test_independent_normal_mean_is_exact_with_validation() -> None:
    torch.manual_seed(4)
    _assert_exact(run(AE(GaussianEncoder(True, "mean", independent=True)), dataset()), dataset())


def test_vae_whose_encode_returns_the_posterior_mean_is_exact() -> None:
    torch.manual_seed(5)
    data = dataset()
    vae = VAE().double()
    _assert_exact(run(vae, data), data)
    assert vae.training  # the user's module is left as found


def test_validation_checks_are_counted_not_recorded_as_control_flow() -> None:
    torch.manual_seed(6)
    x = torch.randn(5, 8, dtype=torch.float64)
    checked = record(GaussianEncoder(True).double(), x)
    unchecked = record(GaussianEncoder(False).double(), x)
    assert checked.checks == 2 and unchecked.checks == 0  # loc (real) and scale (positive)
    assert [n.name for n in checked.nodes if checked.used[n.index]] == [n.name for n in unchecked.nodes if unchecked.used[n.index]]
    assert "broadcast_tensors" not in {n.name for n in checked.nodes}


class Bessel(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.special.i0(h)


def test_fallback_warning_names_the_operation_and_its_module() -> None:
    torch.manual_seed(7)
    encoder = nn.Sequential(nn.Linear(8, 6), Bessel(), nn.Linear(6, 3))
    with pytest.warns(UserWarning) as caught:
        result = explain(DeepShap, TorchAutoencoder(AE(encoder), (8,)), dataset(), params={**F64, "eg_samples": 4, "tolerance": 1e-12})
    assert result.extras["method"] == "expected_gradients"
    assert "special_i0" in result.extras["method_reason"] and "module Bessel" in result.extras["method_reason"]
    text = " ".join(str(w.message) for w in caught)
    assert "special_i0" in text and "module Bessel" in text
    assert "only narrows the sampling error" in text  # eg_samples is not offered as the cure


def test_user_control_flow_on_a_boolean_is_still_refused_with_its_place() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.lin(x)
            return h if bool((h > -100).all()) else -h  # a real branch, outside torch.distributions

    result = run(AE(Branchy()), dataset(), eg_samples=4)
    assert result.extras["method"] == "expected_gradients"
    assert "__bool__" in result.extras["method_reason"] and "module Branchy" in result.extras["method_reason"]


def test_encoder_returning_the_distribution_itself_is_exact_through_the_public_api() -> None:
    """aeinterp reads a returned distribution's mean as the code; that read stays on the exact path too."""

    class Posterior(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = GaussianEncoder(validate=True)

        def forward(self, x: torch.Tensor) -> torch.distributions.Distribution:
            return Independent(self.inner.posterior(x), 1)

    torch.manual_seed(8)
    vae = AE(Posterior())
    x = np.random.default_rng(2).normal(size=(40, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        result = explain(vae, x, "deepshap", dtype="float64", n_background=8, max_samples=6, progress=False)
    assert result.extras["method"] == "deeplift_rescale"
    assert result.extras["additivity"]["max_rel"] <= 1e-9
