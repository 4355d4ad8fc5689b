"""The Model adapter: encoder/decoder resolution, VAE outputs, state restoration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from aeinterp import Model, ModelError, TorchAutoencoder
from aeinterp.model import evaluate, frozen, select_code


class Methods(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 2)
        self.b = nn.Linear(2, 4)

    def encode(self, x):  # noqa: ANN001, ANN201
        return self.a(x)

    def decode(self, z):  # noqa: ANN001, ANN201
        return self.b(z)


class Submodules(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        self.decoder = nn.Linear(2, 4)


class Named(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(4, 2)
        self.dec = nn.Linear(2, 4)


class DictVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.decoder = nn.Linear(2, 4)

    def encoder(self, x):  # noqa: ANN001, ANN201
        h = self.lin(x)
        return {"logvar": h[:, 2:], "mu": h[:, :2]}


def test_methods_and_submodules_and_named() -> None:
    x = torch.randn(5, 4)
    m = TorchAutoencoder(Methods(), (4,))
    assert torch.equal(m.encode(x), m.module.a(x))
    s = TorchAutoencoder(Submodules(), (4,))
    assert s.encode(x).shape == (5, 2) and s.latent_dim == 2
    n = TorchAutoencoder(Named(), (4,), encoder="enc", decoder="dec")
    assert torch.equal(n.reconstruct(x), n.module.dec(n.module.enc(x)))
    assert isinstance(n, Model)


def test_missing_encoder_names_the_option() -> None:
    with pytest.raises(ModelError, match="encoder: <name>"):
        TorchAutoencoder(Named(), (4,))


def test_vae_tuple_dict_and_distribution_give_the_mean() -> None:
    mu, logvar = torch.randn(3, 2), torch.randn(3, 2)
    assert torch.equal(select_code((mu, logvar)), mu)
    assert torch.equal(select_code((mu, logvar), 1), logvar)
    assert torch.equal(select_code({"mu": mu, "logvar": logvar}), mu)
    assert torch.equal(select_code({"a": mu, "b": logvar}, "b"), logvar)
    dist = torch.distributions.Normal(mu, logvar.exp())
    assert torch.equal(select_code(dist), mu)
    with pytest.raises(ModelError, match="say which one is the code"):
        select_code({"a": mu, "b": logvar})
    model = TorchAutoencoder(DictVAE(), (4,))
    x = torch.randn(6, 4)
    assert torch.equal(model.encode(x), model.module.lin(x)[:, :2])


def test_non_2d_code_is_a_clear_error() -> None:
    class Conv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Conv2d(1, 2, 3, padding=1)
            self.decoder = nn.Identity()

    model = TorchAutoencoder(Conv(), (1, 4, 4))
    with pytest.raises(ModelError, match="2-D code"):
        model.encode(torch.randn(2, 1, 4, 4))


def test_frozen_restores_mode_and_grad_flags_even_on_error() -> None:
    module = Submodules()
    module.train()
    module.encoder[0].weight.requires_grad_(False)
    flags = [p.requires_grad for p in module.parameters()]
    with pytest.raises(RuntimeError):
        with frozen(TorchAutoencoder(module, (4,))):
            assert not module.training and not any(p.requires_grad for p in module.parameters())
            raise RuntimeError("fail inside")
    assert module.training and all(m.training for m in module.modules())
    assert [p.requires_grad for p in module.parameters()] == flags


def test_evaluate_batches_without_grad() -> None:
    model = TorchAutoencoder(Methods(), (4,))
    x = np.random.default_rng(0).normal(size=(11, 4)).astype(np.float32)
    out = evaluate(model.encode, x, batch_size=3, model=model)
    expected = model.module.a(torch.as_tensor(x))
    assert not out.requires_grad
    torch.testing.assert_close(out, expected.detach())
