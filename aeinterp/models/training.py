"""A small trainer for the built-in architectures (and any module with the same shape).

Trains with Adam on mean squared reconstruction error, plus ``beta * KL`` for
VAEs. Seeded without touching the global torch RNG state of the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError
from ..model import select_code
from ..progress import NullProgress, Progress

__all__ = ["TrainConfig", "TrainResult", "train_autoencoder", "reconstruction_error", "module_device"]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    beta: float = 1.0  # weight of the KL term for VAEs
    alpha: float = 1.0  # weight of the cross-entropy term for supervised models
    seed: int = 0


@dataclass
class TrainResult:
    train_loss: list[float] = field(default_factory=list)
    val_error: float | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "epochs": len(self.train_loss),
            "final_train_loss": self.train_loss[-1] if self.train_loss else None,
            "val_error": self.val_error,
        }


def _loss(module: nn.Module, xb: torch.Tensor, yb: torch.Tensor | None, config: TrainConfig) -> torch.Tensor:
    out = module(xb)
    if not isinstance(out, tuple):
        return (out - xb).pow(2).mean()
    # VAE: (x_hat, mu, logvar); supervised VAE: (x_hat, mu, logvar, logits[, logits of re-encoded redrawn-nuisance samples])
    x_hat, mu, logvar = out[:3]
    rec = (x_hat - xb).pow(2).mean()
    kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)) / xb[0].numel()
    loss = rec + config.beta * kl
    if len(out) >= 4:
        if yb is None:
            raise ModelError(
                "this model has a classifier head: training it needs labels (a dataset with labels, e.g. digits, wine, breast_cancer, or `label:` for a CSV)"
            )
        loss = loss + config.alpha * F.cross_entropy(out[3], yb)
    if len(out) >= 5:  # the supervised VAE's cycle term: redrawn nuisance must keep the label
        loss = loss + config.alpha * float(getattr(module, "cycle_weight", 1.0)) * F.cross_entropy(out[4], yb)  # type: ignore[arg-type]
    return loss


def module_device(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters live (the CPU for a module without any)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def reconstruction_error(module: nn.Module, x: np.ndarray, batch_size: int = 1024) -> float:
    """Mean squared reconstruction error of ``module`` (through ``encode``/``decode``) on ``x``."""
    was = module.training
    module.eval()
    device = module_device(module)
    try:
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        total = 0.0
        with torch.no_grad():
            for s in range(0, len(xt), batch_size):
                xb = xt[s : s + batch_size].to(device)
                total += float((module.decode(select_code(module.encode(xb))) - xb).pow(2).sum())  # type: ignore[operator]
        return total / xt.numel()
    finally:
        module.train(was)


def train_autoencoder(
    module: nn.Module,
    x_fit: np.ndarray,
    config: TrainConfig = TrainConfig(),
    *,
    x_val: np.ndarray | None = None,
    y_fit: np.ndarray | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train ``module`` in place on ``x_fit`` (and integer labels ``y_fit`` for
    supervised models); returns the loss history and held-out error.

    Training runs where the module's parameters are (move it first, e.g. with
    ``module.to(aeinterp.device.resolve_device("auto"))``); the batch order
    is drawn on the CPU, so a seed gives the same batches on every device.
    """
    progress = progress or NullProgress()
    result = TrainResult()
    device = module_device(module)
    x = torch.as_tensor(np.asarray(x_fit), dtype=torch.float32).to(device)
    y = torch.as_tensor(np.asarray(y_fit), dtype=torch.long).to(device) if y_fit is not None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        opt = torch.optim.Adam(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        module.train()
        for _ in progress.track(range(config.epochs), total=config.epochs, description="training"):
            order = torch.randperm(len(x), generator=gen)
            epoch_loss = 0.0
            for s in range(0, len(x), config.batch_size):
                idx = order[s : s + config.batch_size].to(device)
                opt.zero_grad()
                loss = _loss(module, x[idx], None if y is None else y[idx], config)
                loss.backward()
                opt.step()
                epoch_loss += float(loss.detach()) * len(idx)
            result.train_loss.append(epoch_loss / len(x))
        module.eval()
    if x_val is not None and len(x_val):
        result.val_error = reconstruction_error(module, x_val)
    return result
