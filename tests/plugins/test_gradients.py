"""Tests of the gradients plugin: ``jacobian`` (saliency, input x gradient) and ``integrated_gradients``.

Ground truth: a linear planted encoder whose Jacobian is its weight matrix,
autograd loops over targets on real MLP / conv2d / LSTM models, and Captum's
``IntegratedGradients`` called once per target.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from aeinterp_gradients.explainers import IntegratedGradients, Jacobian
from aeinterp_gradients.paths import quadrature
from captum.attr import IntegratedGradients as CaptumIG

from aeinterp import TorchAutoencoder, explain
from aeinterp.io.datasets import load_dataset
from aeinterp.models.architectures import build_architecture
from aeinterp.models.training import TrainConfig, train_autoencoder
from aeinterp.testing import ExplainerConformance, planted_autoencoder
from aeinterp.toolkit.perturb import reduce_groups, subsample


class TestSaliencyConformance(ExplainerConformance):
    explainer = Jacobian
    params = {}


class TestInputXGradientConformance(ExplainerConformance):
    explainer = Jacobian
    params = {"method": "input_x_gradient"}


class TestIntegratedGradientsConformance(ExplainerConformance):
    explainer = IntegratedGradients
    params = {"steps": 8}


def _explained(data, seed: int = 0, max_samples: int | None = None) -> np.ndarray:  # noqa: ANN001
    """The samples an explainer with ``split: explain`` sees under ``seed`` (its first draw is the sample index)."""
    from types import SimpleNamespace

    from aeinterp.toolkit.streaming import sample_index

    index = sample_index(SimpleNamespace(rows_used={}), len(data.x_explain), max_samples, np.random.default_rng(seed), "explain")
    return np.asarray(data.x_explain)[index]


def _autograd_jacobian(fn, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """(N, T, D) by a plain loop of autograd calls over targets (the reference)."""
    x = x.clone().requires_grad_(True)
    y = fn(x)
    rows = [torch.autograd.grad(y[:, t].sum(), x, retain_graph=True)[0].reshape(len(x), -1) for t in range(y.shape[1])]
    return torch.stack(rows, dim=1)


def test_registered_through_the_entry_point() -> None:
    assert "aeinterp_gradients" in {ep.value for ep in entry_points(group="aeinterp")}


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_linear_encoder_jacobian_is_its_weight(mode: str) -> None:
    planted = planted_autoencoder(linear=True)
    w = planted.model.module.encoder.weight.detach().numpy()
    sal = explain(Jacobian, planted.model, planted.data, params={"mode": mode})
    assert sal.extras["mode"] == mode
    np.testing.assert_allclose(sal.arrays["jacobian_mean"], w, atol=1e-6)
    np.testing.assert_allclose(sal.arrays["jacobian_abs_mean"], np.abs(w), atol=1e-6)
    np.testing.assert_allclose(sal.importance, np.abs(w), atol=1e-6)
    np.testing.assert_allclose(sal.std, 0.0, atol=1e-6)
    x = _explained(planted.data)
    ixg = explain(Jacobian, planted.model, planted.data, params={"mode": mode, "method": "input_x_gradient"})
    np.testing.assert_allclose(ixg.local, x[:, None, :] * w[None], atol=1e-6)
    np.testing.assert_allclose(ixg.importance, np.abs(x[:, None, :] * w[None]).mean(axis=0), atol=1e-6)


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_linear_encoder_integrated_gradients_are_exact(baseline: str) -> None:
    planted = planted_autoencoder(linear=True)
    w = planted.model.module.encoder.weight.detach().numpy()
    result = explain(IntegratedGradients, planted.model, planted.data, params={"steps": 4, "baseline": baseline, "rule": "riemann_middle"})
    x = _explained(planted.data)
    b = np.zeros(10) if baseline == "zero" else planted.data.x_fit.mean(axis=0)
    np.testing.assert_allclose(result.local, (x - b)[:, None, :] * w[None], atol=1e-5)
    assert max(result.extras["completeness_gap"].values()) < 1e-5


def test_nonlinear_jacobian_matches_an_autograd_loop() -> None:
    planted = planted_autoencoder()
    result = explain(Jacobian, planted.model, planted.data)
    ref = _autograd_jacobian(planted.model.encode, torch.as_tensor(_explained(planted.data)))
    np.testing.assert_allclose(result.arrays["jacobian_mean"], ref.mean(dim=0).numpy(), atol=1e-6)
    np.testing.assert_allclose(result.local, ref.abs().numpy(), atol=1e-6)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_right"])
def test_integrated_gradients_match_captum_per_target(rule: str) -> None:
    planted = planted_autoencoder()
    result = explain(IntegratedGradients, planted.model, planted.data, params={"steps": 20, "rule": rule, "baseline": "mean"})
    x = torch.as_tensor(_explained(planted.data))
    base = torch.as_tensor(planted.data.x_fit.mean(axis=0, keepdims=True))
    ig = CaptumIG(planted.model.encode)
    ref = torch.stack([ig.attribute(x, baselines=base, target=t, n_steps=20, method=rule) for t in range(3)], dim=1)
    np.testing.assert_allclose(result.local, ref.detach().numpy(), atol=2e-6)
    # completeness: the attributions sum to z(x) - z(baseline), up to the quadrature error
    assert result.extras["max_relative_completeness_gap"] < (1e-3 if rule == "gausslegendre" else 0.1)


def _trained(arch: str, dataset: str, **options) -> tuple[TorchAutoencoder, object]:  # noqa: ANN003
    data = load_dataset(builtin=dataset, max_samples=240)
    module = build_architecture(arch, data.sample_shape, 3, **options)
    train_autoencoder(module, data.x_fit, TrainConfig(epochs=2, batch_size=64))
    return TorchAutoencoder(module, data.sample_shape), data


@pytest.fixture(scope="module")
def lstm():  # noqa: ANN201
    return _trained("lstm", "sines", hidden=12)


@pytest.fixture(scope="module")
def conv():  # noqa: ANN201
    return _trained("conv2d", "digits", channels=[4, 8])


@pytest.mark.parametrize("target", ["latent", "reconstruction", "reconstruction_error"])
def test_lstm_jacobian_matches_autograd_for_every_target(lstm, target: str) -> None:  # noqa: ANN001
    model, data = lstm
    result = explain(Jacobian, model, data, target=target, params={"max_samples": 6})
    x = torch.as_tensor(_explained(data, max_samples=6))
    ref0 = x.clone()
    fns = {
        "latent": model.encode,
        "reconstruction": lambda v: model.reconstruct(v).reshape(len(v), -1),
        "reconstruction_error": lambda v: (model.reconstruct(v) - ref0).pow(2).reshape(len(v), -1).mean(1, keepdim=True),
    }
    ref = _autograd_jacobian(fns[target], x)
    np.testing.assert_allclose(result.arrays["jacobian_mean"], ref.mean(dim=0).numpy(), atol=1e-6)
    # a group is one sequence feature over all its steps: the sum of |J| over those elements
    np.testing.assert_allclose(result.local, reduce_groups(ref.abs().numpy(), data.groups), rtol=1e-5, atol=1e-7)
    assert result.feature_names == ["sine", "cosine", "walk"]


def test_lstm_modes_agree_and_forward_mode_works_on_written_out_gates(lstm) -> None:  # noqa: ANN001
    model, data = lstm
    fwd = explain(Jacobian, model, data, params={"mode": "fwd", "max_samples": 5})
    rev = explain(Jacobian, model, data, params={"mode": "rev", "max_samples": 5})
    auto = explain(Jacobian, model, data, params={"max_samples": 5})
    loop = explain(Jacobian, model, data, params={"mode": "loop", "max_samples": 5})
    assert fwd.extras["mode"] == "fwd" and "mode_fallback" not in fwd.extras  # the fused kernel has no forward mode; the gates do
    assert fwd.extras["recurrent_unrolled"] and not auto.extras["recurrent_unrolled"]
    assert auto.extras["mode"] == "batched" and "nn.LSTM" in auto.extras["mode_reason"]  # one backward pass for all targets
    assert loop.extras["mode"] == "loop" and "mode_reason" not in loop.extras  # still selectable
    assert rev.extras["mode"] == "rev"  # vmap over the targets' cotangents works too, only slower
    np.testing.assert_allclose(fwd.importance, rev.importance, rtol=1e-5)
    np.testing.assert_allclose(auto.importance, rev.importance, rtol=1e-5)
    np.testing.assert_allclose(loop.importance, rev.importance, rtol=1e-5)


def test_lstm_integrated_gradients_equal_captum_looped_over_latents(lstm) -> None:  # noqa: ANN001
    model, data = lstm
    ours = explain(IntegratedGradients, model, data, seed=0, params={"steps": 16, "max_samples": 6, "baseline": "zero"})
    assert ours.extras["recurrent_layers"] and ours.extras["mode"] == "batched"
    x = torch.as_tensor(_explained(data, 0, 6))
    ig = CaptumIG(lambda t: model.encode(t))
    for j in range(ours.local.shape[1]):
        ref = ig.attribute(x, baselines=torch.zeros_like(x), target=j, n_steps=16, method="gausslegendre").sum(1).numpy()
        np.testing.assert_allclose(ours.local[:, j], ref, atol=1e-6, rtol=1e-4)


def test_torchscript_lstm_is_detected_as_recurrent(lstm) -> None:  # noqa: ANN001
    model, data = lstm
    import copy

    clone = copy.deepcopy(model.module)
    clone.encoder = torch.jit.script(clone.encoder)
    wrapped = TorchAutoencoder(clone, data.sample_shape)
    result = explain(IntegratedGradients, wrapped, data, params={"steps": 8, "max_samples": 3})
    assert result.extras["recurrent_layers"] and not result.extras["recurrent_unrolled"]
    assert result.extras["mode"] == "loop" and "TorchScript" in result.extras["mode_reason"]
    plain = explain(IntegratedGradients, model, data, params={"steps": 8, "max_samples": 3})
    np.testing.assert_allclose(result.importance, plain.importance, rtol=1e-4, atol=1e-7)


def test_lstm_integrated_gradients_complete(lstm) -> None:  # noqa: ANN001
    model, data = lstm
    result = explain(IntegratedGradients, model, data, params={"steps": 24, "max_samples": 6, "baseline": "mean"})
    assert result.extras["max_relative_completeness_gap"] < 1e-3


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_conv2d_jacobian_and_integrated_gradients(conv, mode: str) -> None:  # noqa: ANN001
    model, data = conv
    x = torch.as_tensor(_explained(data, max_samples=5))
    sal = explain(Jacobian, model, data, params={"max_samples": 5, "mode": mode})
    ref = _autograd_jacobian(model.encode, x)
    np.testing.assert_allclose(sal.arrays["jacobian_mean"], ref.mean(dim=0).numpy(), atol=1e-6)
    assert sal.importance.shape == (3, 64)
    ig = explain(IntegratedGradients, model, data, target="reconstruction_error", params={"max_samples": 5, "steps": 64, "mode": mode})
    assert ig.importance.shape == (1, 64)
    assert ig.extras["max_relative_completeness_gap"] < 0.05  # ReLU kinks: the quadrature converges slowly


def test_sample_baselines_are_averaged() -> None:
    planted = planted_autoencoder(linear=True)
    w = planted.model.module.encoder.weight.detach().numpy()
    result = explain(
        IntegratedGradients,
        planted.model,
        planted.data,
        seed=4,
        params={"steps": 2, "baseline": "sample", "n_baselines": 3, "max_samples": 7},
    )
    rng = np.random.default_rng(4)
    x = subsample(planted.data.x_explain, 7, np.random.default_rng(int(rng.integers(2**63))))  # the sample index: the first draw
    base = planted.data.x_fit[rng.choice(len(planted.data.x_fit), size=3, replace=False)]
    expected = ((x[:, None, :] - base[None]).mean(axis=1))[:, None, :] * w[None]
    np.testing.assert_allclose(result.local, expected, atol=1e-5)
    assert result.extras["n_baselines"] == 3


def test_local_is_dropped_when_too_large_and_blocks_are_bounded() -> None:
    planted = planted_autoencoder()
    result = explain(Jacobian, planted.model, planted.data, params={"local_max_mb": 0.001, "memory_mb": 0.01})
    assert result.local is None and "local_skipped" in result.extras
    assert result.extras["samples_per_block"] < len(planted.data.explain_index)
    full = explain(Jacobian, planted.model, planted.data)
    np.testing.assert_allclose(result.importance, full.importance, rtol=1e-6)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"])
def test_quadrature_rules_integrate(rule: str) -> None:
    alpha, w = quadrature(rule, 50)
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert np.sum(w) == pytest.approx(1.0)
    assert np.sum(w * alpha**2) == pytest.approx(1 / 3, abs=0.011)


def test_completeness_figure() -> None:
    planted = planted_autoencoder()
    result = explain(IntegratedGradients, planted.model, planted.data, params={"steps": 4})
    assert set(IntegratedGradients.figures(result)) == {"completeness"}


# --- the affine first layer factorised out of integrated gradients -------------------------------


@pytest.fixture(scope="module")
def tabular_models():  # noqa: ANN201
    """Briefly trained built-in tabular models (on breast_cancer): MLP AEs with two and one hidden layers, an MLP VAE, a supervised VAE."""
    from aeinterp.models.loading import adapt, build_builtin

    data = load_dataset(builtin="breast_cancer")
    models = {}
    for name, options in {"mlp": {"hidden": [24, 12]}, "mlp1": {"hidden": [24]}, "vae": {"hidden": [24], "variational": True}}.items():
        module = build_architecture("mlp", data.sample_shape, 3, **options)
        train_autoencoder(module, data.x_fit, TrainConfig(epochs=3, batch_size=64))
        models[name] = TorchAutoencoder(module, data.sample_shape)
    module, _ = build_builtin("supervised_vae", data, latent_dim=4, options={"task_dims": 2, "hidden": [16]}, train=TrainConfig(epochs=3))
    models["supervised_vae"] = adapt(module, data)
    return models, data


def _both_paths(model, data, target: str, **params):  # noqa: ANN001, ANN003, ANN202
    params = {"steps": 8, "max_samples": 40, "baseline": "mean", **params}
    fast = explain(IntegratedGradients, model, data, target=target, params=params)
    slow = explain(IntegratedGradients, model, data, target=target, params={**params, "factorize": "off"})
    assert fast.extras["path"] == "first-layer factorised", fast.extras["path_reason"]
    assert slow.extras["path"] == "generic" and slow.extras["path_reason"] == "factorize: off"
    return fast, slow


def _assert_same(fast, slow) -> None:  # noqa: ANN001
    scale = np.abs(slow.local).max()
    np.testing.assert_allclose(fast.importance, slow.importance, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(fast.local, slow.local, rtol=1e-5, atol=1e-6 * scale)
    assert (fast.std is None) == (slow.std is None)  # None when the importance is a variance share (no spread over samples)
    if fast.std is not None:
        np.testing.assert_allclose(fast.std, slow.std, rtol=1e-5, atol=1e-6 * scale)
    for key in ("attribution_mean", "attribution_abs_mean", "target_change", "importance_mean_abs", "importance_variance_share"):
        np.testing.assert_allclose(fast.arrays[key], slow.arrays[key], rtol=1e-5, atol=1e-6 * scale)
    # the completeness gap is a small difference of large numbers: equal up to float32 rounding of the sums
    np.testing.assert_allclose(fast.arrays["completeness_gap"], slow.arrays["completeness_gap"], rtol=1e-3, atol=1e-5 * scale)


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("mlp", "latent"),
        ("mlp", "reconstruction"),
        ("mlp", "reconstruction_error"),
        ("mlp1", "latent"),
        ("mlp1", "reconstruction"),
        ("vae", "latent"),
        ("vae", "reconstruction_error"),
        ("supervised_vae", "latent"),
        ("supervised_vae", "prediction"),
    ],
)
def test_first_layer_factorisation_matches_the_generic_path(tabular_models, name: str, target: str) -> None:  # noqa: ANN001
    models, data = tabular_models
    fast, slow = _both_paths(models[name], data, target)
    _assert_same(fast, slow)
    assert fast.extras["first_layer"] == [30, models[name].module.config["hidden"][0]]
    # one hidden layer and the latent target: the code is W act(a) + c, its Jacobian needs no autodiff
    closed_form = name != "mlp" and target == "latent"
    assert (fast.extras["mode"] == "none") == closed_form and ("slope" in fast.extras["path_reason"]) == closed_form
    if closed_form:  # and autodiff from the first layer's output agrees with it
        mid = explain(
            IntegratedGradients,
            models[name],
            data,
            target=target,
            params={"steps": 8, "max_samples": 40, "baseline": "mean", "factorize": "first_layer"},
        )
        assert mid.extras["path"] == "first-layer factorised" and mid.extras["mode"] == "rev"
        _assert_same(mid, slow)


@pytest.mark.parametrize("target", ["latent", "prediction"])
def test_linear_planted_encoder_factorises_exactly(target: str) -> None:
    planted = planted_autoencoder(linear=True, supervised=True)
    fast, slow = _both_paths(planted.model, planted.data, target, rule="riemann_middle", baseline="zero")
    _assert_same(fast, slow)
    w = planted.model.module.encoder.weight.detach().numpy()
    x = _explained(planted.data, max_samples=40)
    expected = x[:, None, :] * w[None] if target == "latent" else np.stack([-x * w[0], x * w[0]], axis=1)
    np.testing.assert_allclose(fast.local, expected, atol=1e-5)
    assert max(fast.extras["completeness_gap"].values()) < 1e-5


def test_factorised_blocks_are_bounded(tabular_models) -> None:  # noqa: ANN001
    models, data = tabular_models
    small = explain(IntegratedGradients, models["mlp"], data, params={"steps": 8, "max_samples": 40, "memory_mb": 0.05})
    assert small.extras["path"] == "first-layer factorised" and small.extras["samples_per_block"] < 40
    full = explain(IntegratedGradients, models["mlp"], data, params={"steps": 8, "max_samples": 40})
    np.testing.assert_allclose(small.local, full.local, rtol=1e-5, atol=1e-7)


class _Residual(torch.nn.Module):
    """An encoder that reads the input besides its first layer: must not be factorised."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(10, 6)
        self.out = torch.nn.Linear(6, 3)
        self.decoder = torch.nn.Linear(3, 10)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.first(x))) + x[:, :3]


def test_generic_path_for_models_it_cannot_split(conv, lstm) -> None:  # noqa: ANN001
    for (model, data), why in [(conv, "not tabular"), (lstm, "not tabular")]:
        result = explain(IntegratedGradients, model, data, params={"steps": 4, "max_samples": 3})
        assert result.extras["path"] == "generic" and why in result.extras["path_reason"]
    planted = planted_autoencoder()
    residual = TorchAutoencoder(_Residual(), (10,))
    result = explain(IntegratedGradients, residual, planted.data, params={"steps": 4, "max_samples": 5})
    assert result.extras["path"] == "generic" and "not a known encode method" in result.extras["path_reason"]
    hooked = planted_autoencoder()
    handle = hooked.model.module.encoder[0].register_forward_hook(lambda m, i, o: o)
    try:
        result = explain(IntegratedGradients, hooked.model, hooked.data, params={"steps": 4, "max_samples": 5})
    finally:
        handle.remove()
    assert result.extras["path"] == "generic" and "hooks" in result.extras["path_reason"]


# --- the affine code head: gradients of its input, then its weight --------------------------------------


class _SeqCodeAE(torch.nn.Module):
    """The sequence engineer's shape (bench/_lstm.py): LSTM(6, 32, 2) -> h_n[-1] -> Linear(32, k), on short sequences."""

    def __init__(self, latent: int, steps: int = 6, hidden: int = 32) -> None:
        super().__init__()
        self.steps = steps
        self.enc = torch.nn.LSTM(6, hidden, num_layers=2, batch_first=True)
        self.to_code = torch.nn.Linear(hidden, latent)
        self.dec = torch.nn.Linear(latent, steps * 6)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.enc(x)
        return self.to_code(h[-1])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z).reshape(len(z), self.steps, 6)


class _MLPCodeAE(torch.nn.Module):
    """An MLP encoder ending in Linear(8, 20); ``after`` is applied to the head's output (``tanh``, in-place doubling)."""

    def __init__(self, after: str = "none") -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(16, 12), torch.nn.Tanh(), torch.nn.Linear(12, 8), torch.nn.Tanh())
        self.to_code = torch.nn.Linear(8, 20)
        self.dec = torch.nn.Linear(20, 16)
        self.after = after

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.to_code(self.body(x))
        if self.after == "tanh":
            return torch.tanh(z)
        if self.after == "inplace":
            return z.mul_(2.0)
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)


class _SequentialCodeAE(torch.nn.Module):
    """The same MLP as an ``nn.Sequential`` encoder: the first-layer factorisation applies too (no closed form: two hidden layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Sequential(
            torch.nn.Linear(16, 12), torch.nn.Tanh(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 20)
        )
        self.decoder = torch.nn.Linear(20, 16)


def _code_data(kind: str, dtype: torch.dtype, n: int = 12, steps: int = 6, features: int = 6):  # noqa: ANN202
    from aeinterp import ArrayDataset
    from aeinterp.data import element_names, make_groups

    rng = np.random.default_rng(0)
    shape = (steps, features) if kind == "sequence" else (16,)
    x = rng.normal(size=(n, *shape)).astype(np.float64 if dtype == torch.float64 else np.float32)
    names = element_names(kind, shape)
    return ArrayDataset(
        x=x,
        kind=kind,
        feature_names=names,
        groups=make_groups(kind, shape, feature_names=names),
        fit_index=np.arange(n // 2, n),
        explain_index=np.arange(n // 2),
    )


def _code_model(module: torch.nn.Module, data, dtype: torch.dtype) -> TorchAutoencoder:  # noqa: ANN001
    torch.manual_seed(0)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.4)
    return TorchAutoencoder(module.to(dtype).eval(), data.sample_shape)


def _head_and_plain(explainer, model, data, params):  # noqa: ANN001, ANN202
    split = explain(explainer, model, data, params=params)
    plain = explain(explainer, model, data, params={**params, "code_head": "off"})
    assert plain.extras["code_head_reason"] == "code_head: off" and "code_head" not in plain.extras
    return split, plain


def _assert_close(split, plain, tol: float) -> None:  # noqa: ANN001
    pairs = {
        "local": (split.local, plain.local),
        "importance": (split.importance, plain.importance),
        **{
            k: (split.arrays[k], plain.arrays[k])
            for k in plain.arrays
            if k not in ("sample_index", "completeness_gap", "variance_share_residual", "importance_direction")
        },
    }
    for key, (a, b) in pairs.items():
        b = np.asarray(b, dtype=np.float64)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(np.abs(b).max(), 1e-30), err_msg=key)
    if "variance_share_residual" in plain.arrays:  # 1 - sum of the shares: a small difference of numbers near 1
        np.testing.assert_allclose(split.arrays["variance_share_residual"], plain.arrays["variance_share_residual"], rtol=0, atol=100 * tol)
    if "importance_direction" in plain.arrays:  # a correlation: scale-free, so float32 rounding of near-zero attributions shows
        np.testing.assert_allclose(split.arrays["importance_direction"], plain.arrays["importance_direction"], rtol=0, atol=1e-4)
    if "completeness_gap" in plain.arrays:  # |sum IG - change|: a small difference of large numbers, equal up to the rounding of the change
        scale = np.abs(plain.arrays["target_change"]).max()
        np.testing.assert_allclose(split.arrays["completeness_gap"], plain.arrays["completeness_gap"], rtol=0, atol=10 * tol * scale)


#: the explainers' outputs are float32 whatever the model's dtype; the Jacobians themselves are compared in float64 below
_TOL = {torch.float32: 1e-6, torch.float64: 1e-6}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["loop", "rev"])
def test_code_head_split_equals_the_plain_path_on_an_lstm(mode: str, dtype: torch.dtype) -> None:
    data = _code_data("sequence", dtype, n=6)
    model = _code_model(_SeqCodeAE(latent=64), data, dtype)
    split, plain = _head_and_plain(IntegratedGradients, model, data, {"steps": 4, "mode": mode})
    assert split.extras["code_head"] == [32, 64] and split.extras["mode"] == mode
    assert "affine head to_code (32 -> 64)" in split.extras["code_head_reason"]
    _assert_close(split, plain, 2 * _TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["loop", "rev"])
@pytest.mark.parametrize("shape", ["method", "sequential"])
def test_code_head_split_equals_the_plain_path_on_an_mlp(shape: str, mode: str, dtype: torch.dtype) -> None:
    data = _code_data("tabular", dtype)
    model = _code_model(_MLPCodeAE() if shape == "method" else _SequentialCodeAE(), data, dtype)
    split, plain = _head_and_plain(IntegratedGradients, model, data, {"steps": 6, "mode": mode, "baseline": "mean"})
    assert split.extras["code_head"] == [8, 20]
    assert split.extras["path"] == ("generic" if shape == "method" else "first-layer factorised")  # the head composes with the first layer
    _assert_close(split, plain, _TOL[dtype])
    for method in ["saliency", "input_x_gradient"]:  # the same helper for the jacobian explainer
        jsplit, jplain = _head_and_plain(Jacobian, model, data, {"mode": mode, "method": method})
        assert jsplit.extras["code_head"] == [8, 20]
        _assert_close(jsplit, jplain, _TOL[dtype])
    x = torch.as_tensor(_explained(data), dtype=dtype)
    ref = _autograd_jacobian(model.encode, x)
    np.testing.assert_allclose(
        explain(Jacobian, model, data, params={"mode": mode}).arrays["jacobian_mean"],
        ref.mean(dim=0).numpy(),
        rtol=_TOL[dtype],
        atol=_TOL[dtype] * float(ref.abs().max()),
    )


def test_code_head_split_is_chunked_like_the_rest() -> None:
    data = _code_data("tabular", torch.float32, n=24)
    model = _code_model(_MLPCodeAE(), data, torch.float32)
    small = explain(IntegratedGradients, model, data, params={"steps": 6, "mode": "rev", "memory_mb": 0.01, "chunk_size": 5})
    full = explain(IntegratedGradients, model, data, params={"steps": 6, "mode": "rev"})
    assert small.extras["code_head"] == [8, 20] and small.extras["samples_per_block"] < 12
    np.testing.assert_allclose(small.local, full.local, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["loop", "rev"])
@pytest.mark.parametrize("kind", ["sequence", "tabular"])
def test_code_head_weighted_jacobian_is_exact(kind: str, mode: str, dtype: torch.dtype) -> None:
    """The weighted Jacobian over path points through the head's input, times its weight, is the code's own."""
    from aeinterp_gradients.autodiff import target_function, weighted_jacobian
    from aeinterp_gradients.code_head import code_head_split, resolve_code_head

    from aeinterp.targets import Target

    data = _code_data(kind, dtype, n=6)
    model = _code_model(_SeqCodeAE(latent=64) if kind == "sequence" else _MLPCodeAE(), data, dtype)
    x = torch.as_tensor(data.x_explain, dtype=dtype)
    where, why = code_head_split(model, Target.LATENT, x[:1], model.latent_dim)
    assert where == (0, "to_code"), why
    head = resolve_code_head(model, where)
    f = target_function(model, Target.LATENT)
    alpha = torch.linspace(0.1, 0.9, 3, dtype=dtype).view(-1, *([1] * x.dim()))
    points, weights = alpha * x.unsqueeze(0), torch.tensor([0.2, 0.5, 0.3], dtype=dtype)
    plain = weighted_jacobian(f, points, x, weights, mode).detach()
    split = head.apply(weighted_jacobian(head.input_function(f), points, x, weights, mode).detach())
    tol = 1e-6 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(split.numpy(), plain.numpy(), rtol=tol, atol=tol * float(plain.abs().max()))


def test_code_head_split_is_not_taken_where_it_saves_nothing_or_does_not_hold() -> None:
    seq = _code_data("sequence", torch.float32, n=4)
    narrow = _code_model(_SeqCodeAE(latent=4), seq, torch.float32)  # 32 head inputs, 4 latents
    result = explain(IntegratedGradients, narrow, seq, params={"steps": 2, "mode": "loop"})
    assert "code_head" not in result.extras and "no saving" in result.extras["code_head_reason"]
    data = _code_data("tabular", torch.float32)
    model = _code_model(_MLPCodeAE(), data, torch.float32)
    for target in ["reconstruction", "reconstruction_error"]:
        result = explain(IntegratedGradients, model, data, target=target, params={"steps": 2, "mode": "rev"})
        assert "code_head" not in result.extras and "not the latent code" in result.extras["code_head_reason"]
    for after, why in [("tanh", "not the output of an nn.Linear"), ("inplace", "changed in place")]:
        other = _code_model(_MLPCodeAE(after), data, torch.float32)
        result = explain(IntegratedGradients, other, data, params={"steps": 2, "mode": "rev"})
        assert "code_head" not in result.extras and why in result.extras["code_head_reason"], result.extras["code_head_reason"]
    result = explain(IntegratedGradients, model, data, params={"steps": 2, "mode": "fwd"})
    assert "code_head" not in result.extras and "fwd mode" in result.extras["code_head_reason"]
    handle = model.module.to_code.register_forward_hook(lambda m, i, o: None)
    try:
        result = explain(IntegratedGradients, model, data, params={"steps": 2, "mode": "rev"})
    finally:
        handle.remove()
    assert "code_head" not in result.extras and "has hooks" in result.extras["code_head_reason"]


# --- nn.LSTM with one batched backward pass for all targets (aeinterp_gradients.recurrent_vjp) -------------


class _RecurrentEncoder(torch.nn.Module):
    """An LSTM (or GRU) anywhere in a module: initial states from the input, output, h_n and c_n all read by a non-linear head."""

    def __init__(
        self,
        kind: str = "lstm",
        layers: int = 2,
        bidirectional: bool = False,
        batch_first: bool = True,
        states: bool = True,
        latent: int = 5,
        hidden: int = 7,
        features: int = 3,
        **extra,
    ) -> None:  # noqa: ANN003
        super().__init__()
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
        self.kind, self.batch_first, self.states, self.dirs = kind, batch_first, states, 2 if bidirectional else 1
        self.rnn = cls(features, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, **extra)
        self.init = torch.nn.Linear(features, layers * self.dirs * hidden)
        out = extra.get("proj_size", 0) or hidden  # h (and the output) are projected, c is not
        width = self.dirs * out + out + (hidden if kind == "lstm" else 0)
        self.head = torch.nn.Sequential(torch.nn.Linear(width, 9), torch.nn.Tanh(), torch.nn.Linear(9, latent))
        self.dec = torch.nn.Linear(latent, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        seq = x if self.batch_first else x.transpose(0, 1)
        hx = None
        if self.states:  # initial states that depend on the input: their gradients flow back too
            h0 = torch.tanh(self.init(x.mean(dim=1))).reshape(len(x), -1, self.rnn.hidden_size).transpose(0, 1).contiguous()
            hx = (h0, 0.5 * h0) if self.kind == "lstm" else h0
        out, state = self.rnn(seq, hx)
        last = out[:, -1] if self.batch_first else out[-1]
        parts = [last, state[0][-1], state[1][0]] if self.kind == "lstm" else [last, state[-1]]
        return self.head(torch.cat(parts, dim=1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)


def _path_jacobians(module: torch.nn.Module, dtype: torch.dtype, modes: tuple[str, ...] = ("batched", "loop"), n: int = 5, steps: int = 6):  # noqa: ANN202
    from aeinterp_gradients.autodiff import target_function, weighted_jacobian

    from aeinterp.targets import Target

    torch.manual_seed(0)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.5)
    module = module.to(dtype).eval()
    x = torch.randn(n, 8, 3, dtype=dtype)
    model = TorchAutoencoder(module, (8, 3))
    f = target_function(model, Target.LATENT)
    alpha = torch.linspace(0.1, 1.0, 3, dtype=dtype).view(-1, 1, 1, 1)
    points, weights = alpha * x.unsqueeze(0), torch.tensor([0.2, 0.5, 0.3], dtype=dtype)
    return [weighted_jacobian(f, points, x, weights, m).detach() for m in modes]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
def test_batched_recurrent_backward_equals_the_loop_of_backward_passes(
    kind: str, layers: int, bidirectional: bool, batch_first: bool
) -> None:
    """float64, every shape nn.LSTM/GRU allow in eval mode, with input-dependent initial states and output, h_n (c_n) all used."""
    batched, loop = _path_jacobians(_RecurrentEncoder(kind, layers, bidirectional, batch_first), torch.float64)
    assert batched.shape == loop.shape == (5, 5, 8, 3)
    np.testing.assert_allclose(batched.numpy(), loop.numpy(), rtol=1e-10, atol=1e-10 * float(loop.abs().max()))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("states", [False, True])
def test_batched_recurrent_backward_in_float32_and_without_biases(kind: str, states: bool) -> None:
    batched, loop = _path_jacobians(_RecurrentEncoder(kind, 2, True, True, states=states, bias=False), torch.float32)
    np.testing.assert_allclose(batched.numpy(), loop.numpy(), rtol=1e-5, atol=1e-6 * float(loop.abs().max()))
    batched, loop = _path_jacobians(_RecurrentEncoder(kind, 2, False, True, states=states), torch.float32)
    np.testing.assert_allclose(batched.numpy(), loop.numpy(), rtol=1e-5, atol=1e-6 * float(loop.abs().max()))


def test_batched_lstm_is_chosen_and_equals_loop_on_the_sequence_engineers_model() -> None:
    """The bench's shape (two-stack LSTM -> h_n[-1] -> Linear), float64, integrated gradients end to end, with and without the code head."""
    for latent, head in [(4, None), (64, [32, 64])]:
        data = _code_data("sequence", torch.float64, n=6)
        model = _code_model(_SeqCodeAE(latent=latent), data, torch.float64)
        auto = explain(IntegratedGradients, model, data, params={"steps": 4})
        loop = explain(IntegratedGradients, model, data, params={"steps": 4, "mode": "loop"})
        assert auto.extras["mode"] == "batched" and "measured faster" in auto.extras["mode_reason"]
        assert loop.extras["mode"] == "loop" and auto.extras.get("code_head") == head
        _assert_close(auto, loop, 1e-6)  # the explainers' outputs are float32


def test_batched_backward_falls_back_to_the_loop_where_it_does_not_apply() -> None:
    """nn.RNN and proj_size keep the loop (the reason says why); a packed sequence, seen only at call time, falls back too."""
    data = _code_data("sequence", torch.float32, n=6, steps=8, features=3)
    for module, why in [
        (_RecurrentEncoder("rnn"), "RNN has no batched backward"),
        (_RecurrentEncoder("lstm", states=False, proj_size=4), "proj_size"),
    ]:
        model = TorchAutoencoder(module.eval(), (8, 3))
        auto = explain(IntegratedGradients, model, data, params={"steps": 4})
        assert auto.extras["mode"] == "loop" and why in auto.extras["mode_reason"], auto.extras["mode_reason"]
        forced = explain(IntegratedGradients, model, data, params={"steps": 4, "mode": "batched"})
        assert forced.extras["mode"] == "loop" and why in forced.extras["mode_fallback"]
        np.testing.assert_allclose(forced.local, auto.local, rtol=1e-6)

    class Packed(_RecurrentEncoder):
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.full((len(x),), x.shape[1]), batch_first=True)
            _, (h, _) = self.rnn(packed)
            return self.head[2](h[-1][:, :9])

    model = TorchAutoencoder(Packed("lstm", 1, hidden=9, states=False).eval(), (8, 3))
    auto = explain(IntegratedGradients, model, data, params={"steps": 4})
    assert auto.extras["mode"] == "loop" and "packed" in auto.extras["mode_fallback"].lower()
    loop = explain(IntegratedGradients, model, data, params={"steps": 4, "mode": "loop"})
    np.testing.assert_allclose(auto.local, loop.local, rtol=1e-6)
