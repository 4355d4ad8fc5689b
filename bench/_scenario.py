"""The reference scenario of DESIGN.md, shared by the benchmarks.

Tabular autoencoder with n features, encoder Linear(n, 0.75n)-ReLU-Linear(0.75n, 0.5n),
decoder mirrored, 950 samples of standard-normal data.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aeinterp.data import ArrayDataset, element_names, make_groups
from aeinterp.model import TorchAutoencoder


class ReferenceAE(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        h, k = int(0.75 * n), int(0.5 * n)
        self.encoder = nn.Sequential(nn.Linear(n, h), nn.ReLU(), nn.Linear(h, k))
        self.decoder = nn.Sequential(nn.Linear(k, h), nn.ReLU(), nn.Linear(h, n))


def scenario(n: int, samples: int = 950, seed: int = 0) -> tuple[TorchAutoencoder, ArrayDataset]:
    torch.manual_seed(seed)
    module = ReferenceAE(n).eval()
    x = np.random.default_rng(seed).normal(size=(samples, n)).astype(np.float32)
    names = element_names("tabular", (n,))
    data = ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (n,), feature_names=names),
        fit_index=np.arange(samples),
        explain_index=np.arange(samples),
        name=f"reference-{n}",
    )
    return TorchAutoencoder(module, (n,)), data
