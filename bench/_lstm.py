"""The sequence engineer's model (shared/USERS.md): a two-stack LSTM autoencoder, F features x T steps -> k -> F x T."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TwoStackLSTMAE(nn.Module):
    """Encoder ``LSTM(F, H, 2)`` -> last layer's ``h_n`` -> ``Linear(H, k)``; decoder repeats the code over the steps."""

    def __init__(self, features: int = 6, steps: int = 30, latent: int = 4, hidden: int = 32) -> None:
        super().__init__()
        self.steps = steps
        self.enc = nn.LSTM(features, hidden, num_layers=2, batch_first=True)
        self.to_code = nn.Linear(hidden, latent)
        self.from_code = nn.Linear(latent, hidden)
        self.dec = nn.LSTM(hidden, hidden, num_layers=2, batch_first=True)
        self.out = nn.Linear(hidden, features)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.enc(x)
        return self.to_code(h[-1])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_code(z).unsqueeze(1).repeat(1, self.steps, 1)
        y, _ = self.dec(h)
        return self.out(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def sequences(n: int, steps: int = 30, features: int = 6, seed: int = 0) -> np.ndarray:
    """Noisy sines with random phases and frequencies, ``(n, steps, features)`` float32."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, steps)
    freq = rng.uniform(0.5, 2.0, size=(n, 1, features))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, features))
    return (np.sin(freq * t[None, :, None] + phase) + 0.1 * rng.normal(size=(n, steps, features))).astype(np.float32)


def trained(latent: int = 4, n: int = 256, epochs: int = 20, seed: int = 0) -> tuple[TwoStackLSTMAE, np.ndarray]:
    """The model briefly trained on :func:`sequences` (a few seconds), and the data."""
    torch.manual_seed(seed)
    x = sequences(n, seed=seed)
    model = TwoStackLSTMAE(latent=latent)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt = torch.as_tensor(x)
    for _ in range(epochs):
        opt.zero_grad()
        loss = (model(xt) - xt).pow(2).mean()
        loss.backward()
        opt.step()
    return model.eval(), x
