"""Signed output effects: ``output_effects`` and the signed arrays of ``latent_traversal`` /
``component_contributions``.

Ground truth comes from hand-built float64 decoders: a linear decoder's effect
is exactly ``W[:, j] (q_high - q_low)``; under a monotone link (exp, softmax as
in scvi-tools' LinearSCVI) the log-scale effect is the same up to a per-latent
constant, so its ranking equals the weights'. Chunked streaming must equal one
whole pass; the old normalisation by the input spread stays available by name.
A real ``scvi.model.LinearSCVI`` (a few epochs on scanpy's pbmc68k_reduced)
is compared with its own ``get_loadings()`` when scvi-tools is installed.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import aeinterp_visualize
import numpy as np
import pytest
import torch
from aeinterp_visualize._effects import signed_effects
from aeinterp_visualize.output_effects import OutputEffects
from aeinterp_visualize.traversal import ComponentContributions, LatentTraversal
from scipy.stats import spearmanr
from torch import nn

from aeinterp import TorchAutoencoder, explain
from aeinterp.data import ArrayDataset, element_names, make_groups, split_indices
from aeinterp.errors import CapabilityError
from aeinterp.explanation import Explanation
from aeinterp.models.architectures import build_architecture
from aeinterp.plugins.registry import ExplainerRegistry
from aeinterp.testing import ExplainerConformance

K, D = 3, 12


class TestOutputEffectsConformance(ExplainerConformance):
    explainer = OutputEffects
    params = {"max_samples": 64}


class LinkAE(nn.Module):
    """Linear encoder; decoder ``link(W z + b)`` with a known ``W``."""

    def __init__(self, link: str = "identity", seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.encoder = nn.Linear(D, K)
        self.encoder.weight.data = torch.randn(K, D, generator=g)
        self.decoder = nn.Linear(K, D)
        self.decoder.weight.data = torch.randn(D, K, generator=g)
        self.decoder.bias.data = torch.randn(D, generator=g)
        self.link = link

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.decoder(z)
        return {
            "identity": h,
            "exp": torch.exp(0.3 * h),
            "softmax": torch.softmax(h, dim=-1),
            "sigmoid": torch.sigmoid(h),
            "mlp": torch.tanh(h) * h,
        }[self.link]


def tabular(n: int = 300, seed: int = 0) -> ArrayDataset:
    x = np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)
    names = [f"g{i}" for i in range(D)]
    fit, exp = split_indices(n, seed=seed)
    return ArrayDataset(
        x=x, kind="tabular", feature_names=names, groups=make_groups("tabular", (D,), feature_names=names), fit_index=fit, explain_index=exp
    )


def model_of(link: str) -> tuple[TorchAutoencoder, LinkAE]:
    module = LinkAE(link).double().eval()
    return TorchAutoencoder(module, (D,)), module


def codes_and_quantiles(module: LinkAE, data: ArrayDataset, q: tuple[float, float] = (0.05, 0.95)) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        z = module.encode(torch.as_tensor(np.asarray(data.x_explain), dtype=torch.float64)).numpy()
    return z, np.quantile(z, [q[0], 0.5, q[1]], axis=0)


def weights(module: LinkAE) -> np.ndarray:
    return module.decoder.weight.detach().numpy().T  # (K, D)


@pytest.fixture(scope="module")
def data() -> ArrayDataset:
    return tabular()


# --- output_effects: ground truth ---------------------------------------------------------------


@pytest.mark.parametrize("others", ["rows", "median"])
def test_linear_decoder_effect_is_the_weights_times_the_quantile_span(data, others: str) -> None:  # noqa: ANN001
    model, module = model_of("identity")
    result = explain(OutputEffects, model, data, params={"max_samples": None, "others": others})
    _, qv = codes_and_quantiles(module, data)
    w = weights(module)
    a = result.arrays
    np.testing.assert_allclose(a["effect"], w * (qv[2] - qv[0])[:, None], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a["effect_high"], w * (qv[2] - qv[1])[:, None], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a["effect_low"], w * (qv[0] - qv[1])[:, None], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a["effect"], a["effect_high"] - a["effect_low"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a["effect_sd"], 0.0, atol=1e-9)  # additive in z_j: the same change for every row
    np.testing.assert_allclose(result.importance, np.abs(a["effect"]), rtol=1e-12)  # one element per group: |effect|
    np.testing.assert_allclose(a["quantile_values"], qv, rtol=1e-12)
    assert result.feature_names == [f"g{i}" for i in range(D)] and result.extras["feature_axis"] == "output"
    for j in range(K):  # the LinearSCVI-style check: exact sign, rank correlation 1
        assert np.array_equal(np.sign(a["effect"][j]), np.sign(w[j]))
        assert spearmanr(a["effect"][j], w[j]).statistic >= 0.99


def test_plus_and_minus_lists_name_the_most_raised_and_lowered_outputs(data) -> None:  # noqa: ANN001
    model, module = model_of("identity")
    result = explain(OutputEffects, model, data, params={"max_samples": None, "top": 4})
    w = weights(module)
    for j in range(K):
        up, down = result.extras["top_up"][f"z{j}"], result.extras["top_down"][f"z{j}"]
        assert [name for name, _ in up] == [f"g{i}" for i in np.argsort(-w[j])[:4] if w[j, i] > 0]
        assert [name for name, _ in down] == [f"g{i}" for i in np.argsort(w[j])[:4] if w[j, i] < 0]
        assert all(v > 0 for _, v in up) and all(v < 0 for _, v in down)
    assert len(result.extras["summary"]) == K and result.extras["summary"][0].startswith("z0: + ")
    assert "output units" in result.extras["effect"] and "q5%->q95%" in result.extras["effect"]
    json.dumps(result.extras)  # the lists are plain JSON


@pytest.mark.parametrize("link", ["exp", "softmax"])
def test_monotone_link_log_scale_gives_the_weights_up_to_a_per_latent_constant(data, link: str) -> None:  # noqa: ANN001
    model, module = model_of(link)
    result = explain(OutputEffects, model, data, params={"max_samples": None, "scale": "log"})
    _, qv = codes_and_quantiles(module, data)
    w = weights(module) * (0.3 if link == "exp" else 1.0)
    expected = w * (qv[2] - qv[0])[:, None]
    shift = (result.arrays["effect"] - expected).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(result.arrays["effect"] - shift, expected, rtol=1e-9, atol=1e-10)
    if link == "exp":  # elementwise link: no shift at all, the log effect is exactly W (q_high - q_low)
        np.testing.assert_allclose(shift, 0.0, atol=1e-10)
    for j in range(K):
        assert spearmanr(result.arrays["effect"][j], w[j]).statistic >= 0.99
    assert result.extras["scale"] == "log" and "log fold change" in result.extras["unit"]


@pytest.mark.parametrize("link", ["sigmoid", "exp"])
def test_monotone_link_in_output_units_keeps_the_exact_sign(data, link: str) -> None:  # noqa: ANN001
    model, module = model_of(link)
    result = explain(OutputEffects, model, data, params={"max_samples": None})
    w = weights(module)
    for j in range(K):
        assert np.array_equal(np.sign(result.arrays["effect"][j]), np.sign(w[j]))
        assert np.array_equal(np.sign(result.arrays["effect_high"][j]), np.sign(w[j]))
        assert np.array_equal(np.sign(result.arrays["effect_low"][j]), -np.sign(w[j]))
    assert (result.arrays["effect_sd"] > 0).any()  # not additive: the change depends on the other latents


def test_chunked_streaming_equals_one_whole_pass(data) -> None:  # noqa: ANN001
    model, module = model_of("mlp")
    z, qv = codes_and_quantiles(module, data)
    whole = signed_effects(model, z, qv, batch_size=100_000, memory_mb=1e4)
    chunks: list[int] = []
    tiny = signed_effects(model, z, qv, batch_size=7, memory_mb=1e-3, track=lambda s, n: chunks.append(n) or s)
    assert chunks[0] == len(z)  # one row per chunk
    for key in ("effect", "effect_high", "effect_low", "effect_sd"):
        np.testing.assert_allclose(getattr(tiny, key), getattr(whole, key), rtol=1e-10, atol=1e-12)
    # against the plain formula, all rows x latents x {lo, mid, hi} at once
    with torch.no_grad():
        out = {}
        for s in range(3):
            grid = np.repeat(z[:, None, :], K, axis=1)
            grid[:, np.arange(K), np.arange(K)] = qv[s]
            out[s] = module.decode(torch.as_tensor(grid)).numpy()  # (N, K, D)
    np.testing.assert_allclose(whole.effect, (out[2] - out[0]).mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(whole.effect_sd, (out[2] - out[0]).std(axis=0, ddof=1), rtol=1e-7, atol=1e-10)
    result = explain(OutputEffects, model, data, params={"max_samples": None, "batch_size": 5, "memory_mb": 1e-3})
    np.testing.assert_allclose(result.arrays["effect"], whole.effect, rtol=1e-10, atol=1e-12)


def test_log_scale_refuses_non_positive_outputs(data) -> None:  # noqa: ANN001
    model, _ = model_of("identity")
    with pytest.raises(CapabilityError, match="positive"):
        explain(OutputEffects, model, data, params={"scale": "log"})


def test_params_are_validated() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        OutputEffects.Params(quantiles=(0.6, 0.9))  # the median must lie between
    with pytest.raises(ValidationError):
        OutputEffects.Params(scale="logit")


def test_entry_point_and_hook_register_output_effects() -> None:
    assert any(ep.name == "visualize" for ep in entry_points(group="aeinterp"))
    registry = ExplainerRegistry()
    aeinterp_visualize.aeinterp_register_explainers(registry)
    assert "output_effects" in registry


# --- any model: images and sequences, figures from disk ---------------------------------------------


def _dataset(kind: str, shape: tuple[int, ...], n: int = 40) -> ArrayDataset:
    x = np.random.default_rng(1).normal(size=(n, *shape)).astype(np.float32)
    names = element_names(kind, shape)
    fit, exp = split_indices(n, seed=0)
    return ArrayDataset(
        x=x, kind=kind, feature_names=names, groups=make_groups(kind, shape, feature_names=names), fit_index=fit, explain_index=exp
    )


@pytest.mark.parametrize(
    "kind, shape, arch, options",
    [
        ("image", (1, 8, 8), "conv2d", {}),
        ("sequence", (6, 2), "lstm", {"hidden": 8}),
    ],
    ids=["conv-image", "lstm-sequence"],
)
def test_images_and_sequences_keep_their_shape_and_draw(kind, shape, arch, options, tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    data = _dataset(kind, shape)
    model = TorchAutoencoder(build_architecture(arch, shape, 2, **options), shape)
    result = explain(OutputEffects, model, data, params={"memory_mb": 0.01})
    assert result.arrays["effect"].shape == (2, *shape)
    assert result.importance.shape == (2, len(data.groups))
    path = tmp_path / "effects.npz"
    result.save_arrays(path)
    loaded = Explanation.from_json(json.loads(result.dumps()), path)
    figs = OutputEffects.figures(loaded)
    assert set(figs) == {"effects"}
    figs["effects"].savefig(tmp_path / "effects.png")
    names = {name for lists in loaded.extras["top_up"].values() for name, _ in lists}
    assert names <= set(data.feature_names)  # outputs named like the data's elements (feature@tT, px[i,j])


# --- latent_traversal / component_contributions: signed, output units; old numbers by name ---------------


def test_traversal_signed_effect_in_output_units_and_old_normalisation_by_name(data) -> None:  # noqa: ANN001
    model, module = model_of("identity")
    params = {"steps": 5, "reference": "samples", "n_references": 3, "max_samples": None}
    new = explain(LatentTraversal, model, data, params=params)
    old = explain(LatentTraversal, model, data, params={**params, "normalize": "input_spread"})
    _, qv = codes_and_quantiles(module, data)
    w = weights(module)
    span = (qv[2] - qv[0])[:, None]
    np.testing.assert_allclose(new.arrays["effect"], w * span, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(new.importance, np.abs(w) * span, rtol=1e-9, atol=1e-12)  # output units, no division
    np.testing.assert_allclose(old.importance, np.abs(w) * span / old.arrays["data_scale"], rtol=1e-5, atol=1e-7)  # today's numbers
    np.testing.assert_allclose(old.arrays["effect"], new.arrays["effect"])  # the signed array never depends on normalize
    assert new.extras["normalize"] == "none" and old.extras["normalize"] == "input_spread"
    assert "output units" in new.extras["unit"] and "data SDs" in old.extras["unit"]


def test_contributions_signed_effect_in_output_units_and_old_normalisation_by_name(data) -> None:  # noqa: ANN001
    model, module = model_of("identity")
    new = explain(ComponentContributions, model, data, params={"max_samples": None})
    old = explain(ComponentContributions, model, data, params={"max_samples": None, "normalize": "input_spread"})
    z, qv = codes_and_quantiles(module, data)
    w = weights(module)
    np.testing.assert_allclose(new.arrays["effect"], w * (qv[2] - qv[0])[:, None], rtol=1e-9, atol=1e-12)
    dev = np.abs(z - z.mean(axis=0)).mean(axis=0)[:, None]
    np.testing.assert_allclose(new.importance, np.abs(w) * dev, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(old.importance, np.abs(w) * dev / old.arrays["data_scale"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new.local, (z - z.mean(axis=0))[:, :, None] * w[None], rtol=1e-5, atol=1e-6)
    assert "output units" in new.extras["unit"] and new.extras["unit_short"] == "output units"


def test_output_effects_agree_with_the_traversal_at_the_median_reference(data) -> None:  # noqa: ANN001
    model, _ = model_of("mlp")
    eff = explain(OutputEffects, model, data, params={"max_samples": None, "others": "median"})
    codes = eff.arrays["quantile_values"][1]
    with torch.no_grad():  # the traversal around the median code, by hand: q_high minus q_low decoded
        hi, lo = np.repeat(codes[None], K, 0), np.repeat(codes[None], K, 0)
        hi[np.arange(K), np.arange(K)] = eff.arrays["quantile_values"][2]
        lo[np.arange(K), np.arange(K)] = eff.arrays["quantile_values"][0]
        expected = (model.decode(torch.as_tensor(hi)) - model.decode(torch.as_tensor(lo))).numpy()
    np.testing.assert_allclose(eff.arrays["effect"], expected, rtol=1e-10, atol=1e-12)


# --- a real scvi-tools LinearSCVI: the signed log effect ranks genes as get_loadings() does ---------


class LinearScviAdapter(nn.Module):
    """Minimal adapter for the test: encode = the posterior mean qz.loc, decode = px_scale (normalised expression)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.m = module

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x_ = torch.log1p(x) if self.m.log_variational else x
        qz, _ = self.m.z_encoder(x_, torch.zeros(x.shape[0], 1, dtype=x.dtype))
        return qz.loc

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        one = torch.zeros(z.shape[0], 1, dtype=z.dtype)
        return self.m.decoder(self.m.dispersion, z, one, one)[0]


@pytest.mark.slow  # about 10-20 s on 2 shared cores: imports scvi-tools and trains a LinearSCVI for a few epochs
def test_linear_scvi_signed_log_effects_rank_genes_like_its_loadings() -> None:
    scvi = pytest.importorskip("scvi", reason="scvi-tools is not installed")
    import anndata
    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced()
    raw = adata.raw.X.toarray() if hasattr(adata.raw.X, "toarray") else np.asarray(adata.raw.X)
    counts = np.round(np.expm1(raw)).astype(np.float32)  # the shipped log1p-normalised values back to (pseudo) counts
    ad = anndata.AnnData(counts)
    ad.var_names = list(adata.raw.var_names)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Lightning on shared cores: one thread is ~50x faster here
    try:
        scvi.settings.seed = 0
        scvi.model.LinearSCVI.setup_anndata(ad)
        lin = scvi.model.LinearSCVI(ad, n_latent=4)
        lin.train(max_epochs=8, batch_size=128, accelerator="cpu", enable_progress_bar=False)
        loadings = lin.get_loadings().to_numpy().T  # (latents, genes)
        module = lin.module.eval()
        n = len(counts)
        fit, exp = split_indices(n, seed=0)
        names = list(ad.var_names)
        data = ArrayDataset(
            x=counts,
            kind="tabular",
            feature_names=names,
            groups=make_groups("tabular", (len(names),), feature_names=names),
            fit_index=fit,
            explain_index=exp,
        )
        model = TorchAutoencoder(LinearScviAdapter(module), (len(names),))
        log_fx = explain(OutputEffects, model, data, params={"scale": "log", "others": "rows"})
        plain = explain(OutputEffects, model, data)
    finally:
        torch.set_num_threads(threads)
    span = log_fx.arrays["quantile_values"][2] - log_fx.arrays["quantile_values"][0]
    for j in range(loadings.shape[0]):
        effect = log_fx.arrays["effect"][j]
        assert spearmanr(effect, loadings[j]).statistic >= 0.99
        # softmax link: log px_scale = W z + b - logsumexp, so the effect is loadings * span minus one constant per latent
        residual = effect - loadings[j] * span[j]
        assert residual.std() <= 1e-4 * np.abs(effect).max()
    assert plain.importance.shape == (4, len(names)) and np.isfinite(plain.arrays["effect"]).all()


def test_a_decoder_of_another_shape_is_a_capability_error() -> None:
    class Narrow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.decoder = nn.Linear(D, 2), nn.Linear(2, 4)

    with pytest.raises(CapabilityError, match="input's shape"):
        explain(OutputEffects, TorchAutoencoder(Narrow(), (D,)), tabular())
