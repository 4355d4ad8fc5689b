"""deepshap rules for every layer a real autoencoder has: the zoo, one exact reference per rule, LSTM/GRU, TorchScript.

Every network here is explained in float64; "exact" means: additive to 1e-9
relative, and equal to an independent reference (shap.DeepExplainer where its
rule is correct, a hand-decomposed equivalent network through the same
engine, or closed-form values).
"""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from aeinterp_deepshap.explainer import DeepShap
from torch import nn

from aeinterp import ArrayDataset, TorchAutoencoder, explain
from aeinterp.data import element_names, make_groups, split_indices
from aeinterp.errors import CapabilityError
from aeinterp.models.architectures import build_architecture

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _lstm import TwoStackLSTMAE, trained  # noqa: E402

F64 = {"dtype": "float64", "n_background": 8, "max_samples": 6}


class Lambda(nn.Module):
    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class SeqAE(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


def dataset(shape: tuple[int, ...] = (8,), n: int = 60, seed: int = 0, kind: str = "tabular") -> ArrayDataset:
    x = np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)
    names = element_names(kind, shape)
    fit, exp = split_indices(n, seed=seed)
    return ArrayDataset(
        x=x, kind=kind, feature_names=names, groups=make_groups(kind, shape, feature_names=names), fit_index=fit, explain_index=exp
    )


def ae(encoder: nn.Module, latent: int, shape: tuple[int, ...] = (8,)) -> TorchAutoencoder:
    return TorchAutoencoder(SeqAE(encoder, nn.Linear(latent, int(np.prod(shape)))), shape)


def run(model: TorchAutoencoder, data: ArrayDataset, target: str = "latent", **params):  # noqa: ANN201
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explain(DeepShap, model, data, target=target, params={**F64, **params})


def per_element(result) -> np.ndarray:  # noqa: ANN001
    return result.arrays["phi"].reshape(*result.arrays["phi"].shape[:2], -1) if "phi" in result.arrays else result.local


class LSTMEncoder(nn.Module):
    """Sequence (T, F) -> code, with the recurrent layer's options and its output read as h_n, the last step or all steps."""

    def __init__(
        self,
        cell: type[nn.Module] = nn.LSTM,
        features: int = 2,
        hidden: int = 5,
        layers: int = 1,
        batch_first: bool = True,
        bidirectional: bool = False,
        read: str = "h_n",
        latent: int = 3,
        steps: int = 4,
    ) -> None:
        super().__init__()
        self.rnn = cell(features, hidden, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional)
        self.batch_first, self.read = batch_first, read
        width = hidden * (2 if bidirectional else 1)
        self.head = nn.Linear(width * (steps if read == "all" else 1) if read != "h_n" else hidden, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x if self.batch_first else x.transpose(0, 1)
        out, state = self.rnn(seq)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if self.read == "h_n":
            h = state[0] if isinstance(state, tuple) else state
            return self.head(h[-1])
        if self.read == "last":
            return self.head(out[:, -1])
        return self.head(out.flatten(1))


# --- the zoo: every layer type inside a small autoencoder -----------------------------------------

ZOO = {
    "softmax": lambda: nn.Sequential(nn.Linear(8, 6), nn.Softmax(dim=1), nn.Linear(6, 3)),
    "log_softmax": lambda: nn.Sequential(nn.Linear(8, 6), nn.Tanh(), Lambda(lambda h: F.log_softmax(h, dim=-1)), nn.Linear(6, 3)),
    "prelu": lambda: nn.Sequential(nn.Linear(8, 6), nn.PReLU(6), nn.Linear(6, 3)),
    "adaptive_max_pool1d": lambda: nn.Sequential(
        nn.Linear(8, 12), nn.Unflatten(1, (2, 6)), nn.AdaptiveMaxPool1d(4), nn.Flatten(), nn.Linear(8, 3)
    ),
    "adaptive_max_pool2d": lambda: nn.Sequential(
        nn.Linear(8, 18), nn.Unflatten(1, (2, 3, 3)), nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)
    ),
    "max_dim": lambda: nn.Sequential(
        nn.Linear(8, 12), nn.Unflatten(1, (3, 4)), Lambda(lambda h: torch.max(h, dim=1).values), nn.Linear(4, 3)
    ),
    "amax": lambda: nn.Sequential(nn.Linear(8, 12), nn.Unflatten(1, (3, 4)), Lambda(lambda h: h.amax(dim=-1)), nn.Linear(3, 3)),
    "min_dim": lambda: nn.Sequential(nn.Linear(8, 12), nn.Unflatten(1, (3, 4)), Lambda(lambda h: h.min(2).values), nn.Linear(3, 3)),
    "lp_pool1d": lambda: nn.Sequential(nn.Linear(8, 12), nn.Unflatten(1, (2, 6)), nn.LPPool1d(2, 3), nn.Flatten(), nn.Linear(4, 3)),
    "lp_pool2d": lambda: nn.Sequential(nn.Linear(8, 32), nn.Unflatten(1, (2, 4, 4)), nn.LPPool2d(2, 2), nn.Flatten(), nn.Linear(8, 3)),
    "group_norm": lambda: nn.Sequential(
        nn.Linear(8, 12), nn.Unflatten(1, (4, 3)), nn.GroupNorm(2, 4), nn.Flatten(), nn.ReLU(), nn.Linear(12, 3)
    ),
    "instance_norm": lambda: nn.Sequential(
        nn.Linear(8, 12), nn.Unflatten(1, (4, 3)), nn.InstanceNorm1d(4, affine=True), nn.Flatten(), nn.Linear(12, 3)
    ),
    "ones_cat": lambda: nn.Sequential(
        Lambda(lambda x: torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)), nn.Linear(9, 6), nn.ReLU(), nn.Linear(6, 3)
    ),
    "buffer_expand": lambda: nn.Sequential(
        nn.Linear(8, 6), Lambda(lambda h: torch.relu(h + torch.linspace(-1, 1, 6, dtype=h.dtype).expand(h.shape[0], -1))), nn.Linear(6, 3)
    ),
    "floor_divide": lambda: nn.Sequential(nn.Linear(8, 6), Lambda(lambda h: torch.div(h, 0.3, rounding_mode="floor")), nn.Linear(6, 3)),
    "maximum": lambda: nn.Sequential(nn.Linear(8, 6), Lambda(lambda h: torch.maximum(h[:, :3], torch.tanh(h[:, 3:])))),
    "lstm": lambda: nn.Sequential(nn.Unflatten(1, (4, 2)), LSTMEncoder()),
    "gru": lambda: nn.Sequential(nn.Unflatten(1, (4, 2)), LSTMEncoder(nn.GRU)),
    "rnn": lambda: nn.Sequential(nn.Unflatten(1, (4, 2)), LSTMEncoder(nn.RNN)),
}


@pytest.mark.parametrize("layer", sorted(ZOO))
def test_zoo_layer_gets_exact_rules(layer: str) -> None:
    torch.manual_seed(0)
    encoder = ZOO[layer]()
    latent = encoder(torch.zeros(2, 8)).shape[1]
    result = run(ae(encoder, latent), dataset())
    assert result.extras["method"] == "deeplift_rescale", result.extras["method_reason"]
    assert result.extras["additivity"]["max_rel"] < 1e-9


# --- one exact reference per rule -----------------------------------------------------------------


def same_values(a: nn.Module, b: nn.Module, shape: tuple[int, ...] = (8,), rtol: float = 1e-9) -> None:
    """Two networks computing the same function get the same DeepSHAP values (both through the rules)."""
    data = dataset(shape)
    x = torch.as_tensor(data.x_explain[:4], dtype=torch.float64)
    a, b = a.double().eval(), b.double().eval()
    torch.testing.assert_close(a(x), b(x), rtol=1e-10, atol=1e-12)
    ra, rb = run(ae(a, a(x).shape[1], shape), data), run(ae(b, b(x).shape[1], shape), data)
    for r in (ra, rb):
        assert r.extras["method"] == "deeplift_rescale", r.extras["method_reason"]
    np.testing.assert_allclose(per_element(ra), per_element(rb), rtol=rtol, atol=1e-11)


def test_softmax_equals_its_hand_written_decomposition() -> None:
    torch.manual_seed(1)
    first, last = nn.Linear(8, 5), nn.Linear(5, 3)
    by_hand = Lambda(lambda h: torch.exp(h) / torch.exp(h).sum(1, keepdim=True))
    same_values(nn.Sequential(first, nn.Softmax(dim=1), last), nn.Sequential(first, by_hand, last))
    log_by_hand = Lambda(lambda h: h - torch.log(torch.exp(h).sum(1, keepdim=True)))
    same_values(nn.Sequential(first, nn.LogSoftmax(dim=1), last), nn.Sequential(first, log_by_hand, last))


def test_softmax_of_large_logits_does_not_overflow() -> None:
    torch.manual_seed(1)
    first = nn.Linear(8, 5)
    with torch.no_grad():
        first.bias.add_(800.0)  # exp(800) overflows in float64
    result = run(ae(nn.Sequential(first, nn.Softmax(dim=1), nn.Linear(5, 3)), 3), dataset())
    assert result.extras["method"] == "deeplift_rescale"
    assert np.isfinite(result.local).all() and result.extras["additivity"]["max_rel"] < 1e-9


def test_group_and_instance_norm_equal_their_decomposition() -> None:
    torch.manual_seed(2)
    first, last = nn.Linear(8, 12), nn.Linear(12, 3)
    gn = nn.GroupNorm(2, 4)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 2)
        gn.bias.uniform_(-1, 1)

    def group_by_hand(h: torch.Tensor) -> torch.Tensor:
        g = h.reshape(h.shape[0], 2, 6)
        c = g - g.mean(2, keepdim=True)
        y = (c * torch.rsqrt((c * c).mean(2, keepdim=True) + gn.eps)).reshape(h.shape[0], 4, 3)
        return (y * gn.weight.view(1, 4, 1) + gn.bias.view(1, 4, 1)).flatten(1)

    same_values(nn.Sequential(first, nn.Unflatten(1, (4, 3)), gn, nn.Flatten(), last), nn.Sequential(first, Lambda(group_by_hand), last))
    inorm = nn.InstanceNorm1d(4)

    def instance_by_hand(h: torch.Tensor) -> torch.Tensor:
        g = h.reshape(h.shape[0], 4, 3)
        c = g - g.mean(2, keepdim=True)
        return (c * torch.rsqrt((c * c).mean(2, keepdim=True) + inorm.eps)).flatten(1)

    same_values(
        nn.Sequential(first, nn.Unflatten(1, (4, 3)), inorm, nn.Flatten(), last), nn.Sequential(first, Lambda(instance_by_hand), last)
    )


def test_lp_pool_equals_its_decomposition() -> None:
    torch.manual_seed(3)
    first, last = nn.Linear(8, 12), nn.Linear(4, 3)
    by_hand = Lambda(lambda h: (F.avg_pool1d(h.reshape(-1, 2, 6).pow(2), 3) * 3).pow(0.5).flatten(1))
    same_values(nn.Sequential(first, nn.Unflatten(1, (2, 6)), nn.LPPool1d(2, 3), nn.Flatten(), last), nn.Sequential(first, by_hand, last))


def test_maximum_equals_relu_form() -> None:
    torch.manual_seed(4)
    first = nn.Linear(8, 6)
    same_values(
        nn.Sequential(first, Lambda(lambda h: torch.maximum(h[:, :3], torch.tanh(h[:, 3:])))),
        nn.Sequential(first, Lambda(lambda h: h[:, :3] + torch.relu(torch.tanh(h[:, 3:]) - h[:, :3]))),
    )


def shap_reference(encoder: nn.Module, latent: int, data: ArrayDataset) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = explain(DeepShap, ae(encoder, latent), data, params={**F64, "backend": "shap"})
    assert ref.extras["method"] == "deeplift_rescale"
    return per_element(ref)


def test_max_reductions_and_adaptive_pooling_equal_shaps_max_pool() -> None:
    """amax over a dim is MaxPool1d over the whole dim, AdaptiveMaxPool2d(2) on 4x4 is MaxPool2d(2): shap has a rule for those."""
    torch.manual_seed(5)
    data = dataset()
    first, last = nn.Linear(8, 12), nn.Linear(3, 2)
    ref = shap_reference(nn.Sequential(first, nn.ReLU(), nn.Unflatten(1, (3, 4)), nn.MaxPool1d(4), nn.Flatten(), last), 2, data)
    for reduce in (lambda h: h.amax(dim=2), lambda h: torch.max(h, 2).values, lambda h: h.max(dim=-1, keepdim=True)[0].squeeze(2)):
        ours = run(ae(nn.Sequential(first, nn.ReLU(), nn.Unflatten(1, (3, 4)), Lambda(reduce), last), 2), data)
        np.testing.assert_allclose(per_element(ours), ref, rtol=1e-7, atol=1e-9)
    first, last = nn.Linear(8, 32), nn.Linear(8, 2)
    ref = shap_reference(nn.Sequential(first, nn.Unflatten(1, (2, 4, 4)), nn.MaxPool2d(2), nn.Flatten(), last), 2, data)
    ours = run(ae(nn.Sequential(first, nn.Unflatten(1, (2, 4, 4)), nn.AdaptiveMaxPool2d(2), nn.Flatten(), last), 2), data)
    np.testing.assert_allclose(per_element(ours), ref, rtol=1e-7, atol=1e-9)


def test_prelu_equals_shaps_leaky_relu() -> None:
    torch.manual_seed(6)
    data = dataset()
    first, last = nn.Linear(8, 6), nn.Linear(6, 3)
    prelu = nn.PReLU(1, init=0.2)
    ref = shap_reference(nn.Sequential(first, nn.LeakyReLU(0.2), last), 3, data)
    ours = run(ae(nn.Sequential(first, prelu, last), 3), data)
    np.testing.assert_allclose(per_element(ours), ref, rtol=1e-7, atol=1e-9)


def test_floor_division_is_a_nonlinearity_with_exact_values() -> None:
    """Each output reads one input: its DeepSHAP value is exactly mean_b f(x_d) - f(b_d), zero elsewhere."""
    data = dataset()
    encoder = Lambda(lambda x: torch.div(x[:, :3], 0.4, rounding_mode="floor"))
    result = run(ae(encoder, 3), data, background="all", max_samples=None)
    assert result.extras["method"] == "deeplift_rescale"
    x, bg = data.x_explain.astype(np.float64), data.x_fit.astype(np.float64)
    f = lambda a: np.floor(a[:, :3] / 0.4)  # noqa: E731
    expected = np.zeros((len(x), 3, 8))
    for j in range(3):
        expected[:, j, j] = f(x)[:, j] - f(bg)[:, j].mean()
    assert np.abs(expected).max() > 0.5
    np.testing.assert_allclose(result.local, expected, rtol=1e-9, atol=1e-9)


def test_per_batch_constants_are_constants() -> None:
    """cat([x, ones(N, 1)]) @ W is W[:, :D] x + W[:, D]: the linear encoder's exact values."""
    torch.manual_seed(7)
    data = dataset()
    lin = nn.Linear(9, 3, bias=False)
    encoder = nn.Sequential(Lambda(lambda x: torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)), lin)
    result = run(ae(encoder, 3), data, background="all", max_samples=None)
    assert result.extras["method"] == "deeplift_rescale"
    w = lin.weight.detach().double().numpy()[:, :8]
    expected = w[None] * (data.x_explain[:, None, :].astype(np.float64) - data.x_fit.astype(np.float64).mean(0))
    np.testing.assert_allclose(result.local, expected, rtol=1e-9, atol=1e-9)


def test_a_constant_that_differs_per_sample_is_still_refused() -> None:
    encoder = nn.Sequential(Lambda(lambda x: x + torch.arange(x.shape[0], dtype=x.dtype).unsqueeze(1)), nn.Linear(8, 3))
    result = run(ae(encoder, 3), dataset(), eg_samples=5)
    assert result.extras["method"] == "expected_gradients"
    assert "one row per sample" in result.extras["method_reason"]


def test_multihead_attention_is_refused_with_its_true_reason() -> None:
    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(2, 1, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = x.reshape(x.shape[0], 4, 2)
            return self.head(self.mha(s, s, s, need_weights=False)[0].flatten(1))

    result = run(ae(Attn(), 3), dataset(), eg_samples=5)
    assert result.extras["method"] == "expected_gradients"
    assert "MultiheadAttention" in result.extras["method_reason"]
    assert "batch dimension" not in result.extras["method_reason"]


# --- recurrent layers -------------------------------------------------------------------------------


RNN_CASES = [
    (cell, layers, batch_first, bidirectional, read)
    for cell in (nn.LSTM, nn.GRU)
    for layers, batch_first, bidirectional, read in [
        (1, True, False, "h_n"),
        (2, False, True, "last"),
        (2, True, True, "all"),
        (1, False, False, "h_n"),
    ]
]


@pytest.mark.parametrize(
    "cell,layers,batch_first,bidirectional,read",
    RNN_CASES,
    ids=[f"{c.__name__}-{n}l-{'bf' if b else 'tf'}-{'bi' if d else 'uni'}-{r}" for c, n, b, d, r in RNN_CASES],
)
def test_recurrent_layers_are_exact(cell, layers: int, batch_first: bool, bidirectional: bool, read: str) -> None:  # noqa: ANN001
    torch.manual_seed(8)
    encoder = LSTMEncoder(cell, layers=layers, batch_first=batch_first, bidirectional=bidirectional, read=read)
    result = run(
        TorchAutoencoder(SeqAE(encoder, nn.Sequential(nn.Linear(3, 8), nn.Unflatten(1, (4, 2)))), (4, 2)), dataset((4, 2), kind="sequence")
    )
    assert result.extras["method"] == "deeplift_rescale", result.extras["method_reason"]
    assert result.extras["additivity"]["max_rel"] < 1e-9


class CellUnrolled(nn.Module):
    """The same two-layer LSTM as nn.LSTM(2, 5, 2) unrolled with nn.LSTMCell, or with hand-written gates."""

    def __init__(self, lstm: nn.LSTM, head: nn.Linear, by_hand: bool) -> None:
        super().__init__()
        self.lstm, self.head, self.by_hand = lstm, head, by_hand
        self.cells = nn.ModuleList()
        for k in range(lstm.num_layers):
            cell = nn.LSTMCell(lstm.input_size if k == 0 else lstm.hidden_size, lstm.hidden_size).double()
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).data.copy_(getattr(lstm, f"{name}_l{k}").data)
            self.cells.append(cell)

    def _gates(self, cell: nn.LSTMCell, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = F.linear(x, cell.weight_ih, cell.bias_ih) + F.linear(h, cell.weight_hh, cell.bias_hh)
        i, f, g, o = pre.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.reshape(x.shape[0], 4, 2)
        for cell in self.cells:
            h = c = torch.zeros(x.shape[0], self.lstm.hidden_size, dtype=x.dtype)
            outs = []
            for t in range(seq.shape[1]):
                h, c = self._gates(cell, seq[:, t], h, c) if self.by_hand else cell(seq[:, t], (h, c))
                outs.append(h)
            seq = torch.stack(outs, 1)
        return self.head(h)


def test_lstm_equals_hand_unrolled_cells_in_float64() -> None:
    torch.manual_seed(9)
    lstm, head = nn.LSTM(2, 5, num_layers=2, batch_first=True).double(), nn.Linear(5, 3).double()

    class Fused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm, self.head = lstm, head

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.lstm(x.reshape(x.shape[0], 4, 2))[1][0][-1])

    same_values(Fused(), CellUnrolled(lstm, head, by_hand=False))
    same_values(Fused(), CellUnrolled(lstm, head, by_hand=True))


def test_builtin_lstm_autoencoder_is_exact_in_float32(sequence_model) -> None:  # noqa: ANN001
    """Latents additive to 1e-6 in float32; reconstruction elements (72 of them, some barely moving) to 1e-4:
    float32 rounding over the 24 decoder steps, measured 9e-6 (in float64 both are below 1e-9, see below)."""
    model, data = sequence_model
    for target, tol in (("latent", 1e-6), ("reconstruction", 1e-4)):
        result = explain(DeepShap, model, data, target=target, params={"n_background": 10, "max_samples": 4})
        assert result.extras["method"] == "deeplift_rescale", result.extras["method_reason"]
        assert result.extras["additivity"]["max_rel"] < tol


def test_user_two_stack_lstm_from_a_state_dict(tmp_path) -> None:  # noqa: ANN001
    """The sequence engineer's model (6 features x 30 steps -> 4), trained by their own loop, saved as a state dict."""
    user_model, x = trained(n=48, epochs=5)
    torch.save(user_model.state_dict(), tmp_path / "model.pt")
    module = TwoStackLSTMAE()
    module.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    names = element_names("sequence", x.shape[1:])
    fit, exp = split_indices(len(x), seed=0)
    data = ArrayDataset(
        x=x,
        kind="sequence",
        feature_names=names,
        groups=make_groups("sequence", x.shape[1:], feature_names=names),
        fit_index=fit,
        explain_index=exp,
    )
    model = TorchAutoencoder(module, x.shape[1:])
    result = explain(DeepShap, model, data, params={"n_background": 10, "max_samples": 4})
    assert result.extras["method"] == "deeplift_rescale"
    assert result.local.shape == (4, 4, 6)
    # float32: additive to the precision of the float32 forward pass itself. On this model z0 moves by 0.007 around
    # 0.18, so the fused float32 LSTM alone is off by up to 2e-6 of that spread; measured 0.5-9e-6 over 8 seeds
    m64 = TorchAutoencoder(copy.deepcopy(module).double(), x.shape[1:])
    with torch.no_grad():
        xe = torch.as_tensor(x[exp])
        z32, z64 = module.encode(xe).double(), m64.module.encode(xe.double())
        spread = (z64 - m64.module.encode(torch.as_tensor(x[fit]).double()).mean(0)).abs().mean(0)
    forward_floor = float(((z32 - z64).abs().max(0).values / spread).max())
    assert result.extras["additivity"]["max_rel"] <= max(1e-6, 10 * forward_floor), forward_floor
    # float64: exact
    exact = explain(DeepShap, m64, data, params={"n_background": 10, "max_samples": 4})
    assert exact.extras["method"] == "deeplift_rescale" and exact.extras["additivity"]["max_rel"] < 1e-9


# --- what is not exact says so ----------------------------------------------------------------------


def test_torchscript_says_it_hides_its_operations() -> None:
    torch.manual_seed(11)
    data = dataset()
    module = SeqAE(nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)), nn.Linear(3, 8))
    exact = run(TorchAutoencoder(module, (8,)), data)
    scripted = TorchAutoencoder(SeqAE(torch.jit.script(module.encoder), module.decoder), (8,))
    with pytest.warns(UserWarning, match="factory"):
        result = explain(DeepShap, scripted, data, params={**F64, "eg_samples": 20, "tolerance": 1e-12})
    assert exact.extras["method"] == "deeplift_rescale"
    assert result.extras["method"] == "expected_gradients"
    assert "TorchScript" in result.extras["method_reason"] and "factory" in result.extras["method_reason"]
    with pytest.raises(CapabilityError, match="TorchScript"):
        explain(DeepShap, scripted, data, params={**F64, "method": "rescale"})


class Embedded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 3)
        self.lin = nn.Linear(24, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.emb(x.clamp(0, 9).long()).flatten(1))


@pytest.mark.parametrize("name", ["deepshap", "jacobian", "integrated_gradients"])
def test_integer_inputs_are_a_capability_error(name: str) -> None:
    from aeinterp import Runner

    cls = Runner().registry[name].cls
    data = dataset()
    model = TorchAutoencoder(SeqAE(Embedded(), nn.Linear(2, 8)), (8,))
    with pytest.raises(CapabilityError, match="integer cast"):
        explain(cls, model, data)


def test_shap_backend_keeps_float64_on_the_fallback() -> None:
    class Sorted(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sort(x, dim=1).values[:, :3]

    model = TorchAutoencoder(SeqAE(Sorted(), nn.Linear(3, 8)), (8,))
    data = dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native = explain(DeepShap, model, data, params={**F64, "eg_samples": 10})
        ref = explain(DeepShap, model, data, params={**F64, "eg_samples": 10, "backend": "shap"})
    assert ref.extras["method"] == "expected_gradients"
    np.testing.assert_allclose(ref.local, native.local, atol=1e-5)
    assert ref.arrays["target_values"].dtype == np.float64


@pytest.mark.parametrize("target", ["latent", "reconstruction"])
def test_builtin_lstm_architecture_in_float64(target: str) -> None:
    module = build_architecture("lstm", (5, 2), 3, hidden=4, layers=2)
    result = run(TorchAutoencoder(module, (5, 2)), dataset((5, 2), kind="sequence"), target=target)
    assert result.extras["method"] == "deeplift_rescale"
    assert result.extras["additivity"]["max_rel"] < 1e-9
