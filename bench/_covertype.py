"""A cover-type-like table and its autoencoder (issue 15's case), generated, nothing downloaded.

3000 x 54, the shape of the UCI cover-type data: 10 continuous columns mixed from 4 latent
factors (with a small interaction), 10 near-duplicates of them (noise 0.05), 10 constant
columns, and three one-hot blocks: 4 "wilderness" columns and 10 "soil" columns that depend
on the factors, and 10 random-flag columns independent of everything. Standardised by the
fit split (constant columns stay 0). The autoencoder is an MLP 54 -> 128 -> 64 -> 32 and back
(ReLU), trained with Adam on mean squared error.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aeinterp.data import ArrayDataset, make_groups, split_indices
from aeinterp.model import TorchAutoencoder

BLOCKS = [("cont", 10), ("dup", 10), ("const", 10), ("wild", 4), ("flag", 10), ("soil", 10)]


def covertype_like(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 4))
    cont = f @ rng.normal(size=(4, 10)) + 0.3 * np.tanh(f[:, [0]] * f[:, [1]]) + 0.1 * rng.normal(size=(n, 10))
    dup = cont + 0.05 * rng.normal(size=(n, 10))
    const = np.zeros((n, 10))
    const[:, ::2] = 1.0
    wild = np.eye(4)[np.argmax(f[:, :2] @ rng.normal(size=(2, 4)) + 0.5 * rng.normal(size=(n, 4)), axis=1)]
    flags = np.eye(10)[rng.integers(0, 10, size=n)]
    soil = np.eye(10)[np.argmax(f @ rng.normal(size=(4, 10)) + rng.normal(size=(n, 10)), axis=1)]
    return np.hstack([cont, dup, const, wild, flags, soil])


class CoverAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(54, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 32))
        self.decoder = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 54))


def cover_case(epochs: int = 60, seed: int = 0) -> tuple[TorchAutoencoder, ArrayDataset]:
    raw = covertype_like(seed=seed)
    fit, held = split_indices(len(raw), seed=seed)
    mu, sd = raw[fit].mean(axis=0), raw[fit].std(axis=0)
    x = ((raw - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
    names = [f"{b}{i}" for b, k in BLOCKS for i in range(k)]
    data = ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (54,), feature_names=names),
        fit_index=fit,
        explain_index=held,
        name="covertype-like",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = CoverAE()
        opt = torch.optim.Adam(module.parameters(), lr=3e-3)
        xt = torch.as_tensor(x[fit])
        for _ in range(epochs):
            order = torch.randperm(len(xt))
            for s in range(0, len(xt), 64):
                b = xt[order[s : s + 64]]
                opt.zero_grad()
                (module.decoder(module.encoder(b)) - b).pow(2).mean().backward()
                opt.step()
    return TorchAutoencoder(module.eval(), (54,)), data
