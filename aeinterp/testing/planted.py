"""Hand-built autoencoders whose dependencies are known, for ground-truth tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data import ArrayDataset, element_names, make_groups, split_indices
from ..model import TorchAutoencoder

__all__ = ["PlantedAutoencoder", "Planted", "planted_autoencoder", "DEFAULT_DEPENDENCIES"]

DEFAULT_DEPENDENCIES: tuple[tuple[int, ...], ...] = ((0, 1), (2, 3, 4), (5,))


class PlantedAutoencoder(nn.Module):
    """``z_j`` depends on exactly the features in ``dependencies[j]``.

    ``linear=True``: ``z = x @ W.T`` with ``W`` zero outside the planted
    features, so the Jacobian is ``W``. Otherwise each latent has its own
    hidden block: ``z_j = v_j . tanh(U_j x[S_j])``. The decoder is linear.
    """

    def __init__(
        self, n_features: int, dependencies: Sequence[Sequence[int]], *, linear: bool = False, hidden_per_latent: int = 4, seed: int = 0
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        k = len(dependencies)
        self.dependencies = [tuple(d) for d in dependencies]
        mask = torch.zeros(k, n_features)
        for j, deps in enumerate(dependencies):
            mask[j, list(deps)] = 1.0
        signs = torch.where(torch.rand(k, n_features, generator=gen) < 0.5, -1.0, 1.0)
        weights = (0.5 + torch.rand(k, n_features, generator=gen)) * signs * mask
        self.linear = linear
        if linear:
            self.encoder = nn.Linear(n_features, k, bias=False)
            self.encoder.weight.data = weights
        else:
            h = hidden_per_latent
            first = nn.Linear(n_features, k * h)
            w1 = torch.zeros(k * h, n_features)
            for j, deps in enumerate(dependencies):
                w1[j * h : (j + 1) * h, list(deps)] = torch.randn(h, len(deps), generator=gen)
            first.weight.data = w1
            first.bias.data = 0.1 * torch.randn(k * h, generator=gen)
            second = nn.Linear(k * h, k)
            w2 = torch.zeros(k, k * h)
            for j in range(k):
                w2[j, j * h : (j + 1) * h] = 0.5 + torch.rand(h, generator=gen)
            second.weight.data = w2
            second.bias.data.zero_()
            self.encoder = nn.Sequential(first, nn.Tanh(), second)  # type: ignore[assignment]
        self.decoder = nn.Linear(k, n_features)
        self.decoder.weight.data = weights.T.clone() / max(1.0, float(weights.abs().sum(dim=1).max()))
        self.decoder.bias.data.zero_()
        # a classifier head on z0 alone (used when the planted model is declared supervised)
        self.head = nn.Linear(1, 2)
        self.head.weight.data = torch.tensor([[-1.0], [1.0]])
        self.head.bias.data.zero_()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def aeinterp_first_layer(self, func: object) -> object:
        """``encode`` is ``encoder(x)``: it splits as the encoder module does (see :mod:`aeinterp.toolkit.first_layer`)."""
        from ..toolkit.first_layer import split_module

        return split_module(self.encoder) if func is PlantedAutoencoder.encode else None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@dataclass(frozen=True)
class Planted:
    model: TorchAutoencoder
    data: ArrayDataset
    dependencies: list[tuple[int, ...]]

    def relevant(self) -> np.ndarray:
        """``(latents, features)`` boolean matrix of the planted dependencies."""
        m = np.zeros((len(self.dependencies), self.data.n_features), dtype=bool)
        for j, deps in enumerate(self.dependencies):
            m[j, list(deps)] = True
        return m


def planted_autoencoder(
    n_features: int = 10,
    dependencies: Sequence[Sequence[int]] = DEFAULT_DEPENDENCIES,
    *,
    n_samples: int = 400,
    linear: bool = False,
    supervised: bool = False,
    seed: int = 0,
) -> Planted:
    """A planted model with standard-normal tabular data (features ``x0``..).

    ``supervised=True`` declares the head: class logits ``(-z0, z0)`` for the
    classes ``neg`` and ``pos``, so the prediction depends on exactly
    ``dependencies[0]``; the labels are ``z0 > 0``.
    """
    module = PlantedAutoencoder(n_features, dependencies, linear=linear, seed=seed)
    module.eval()
    x = np.random.default_rng(seed).normal(size=(n_samples, n_features)).astype(np.float32)
    names = element_names("tabular", (n_features,))
    fit, explain = split_indices(n_samples, seed=seed)
    labels = None
    if supervised:
        with torch.no_grad():
            labels = np.where(module.encode(torch.as_tensor(x))[:, 0].numpy() > 0, "pos", "neg")
    data = ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (n_features,), feature_names=names),
        fit_index=fit,
        explain_index=explain,
        name="planted",
        labels=labels,
    )
    head = dict(head="head", task_dims=[0], class_names=["neg", "pos"]) if supervised else {}
    model = TorchAutoencoder(module, (n_features,), description="PlantedAutoencoder", **head)  # type: ignore[arg-type]
    return Planted(model=model, data=data, dependencies=[tuple(d) for d in dependencies])
