"""The encoder's posterior q(z|x), read at encode time, and the check for collapsed nuisance dims.

Where the posterior comes from
    One call of the model's encoder gives both the mean and the spread, so
    they always belong together. A model exposes its posterior when

    * it has a method ``encode_posterior(x)`` returning ``(mean, std)``; or
    * its encoder (``TorchAutoencoder.encoder_fn``: the ``encode`` method or
      ``encoder`` submodule) returns
        - a tuple/list ``(mu, logvar, ...)``: the second item is the log-variance
          (the convention of the built-in VAEs and most VAE code);
        - a dict with the code under ``mu``/``mean``/``z_mean``/``loc`` and the
          spread under ``logvar``/``log_var``/``z_log_var`` (log-variance),
          ``log_std``/``log_sigma`` (log standard deviation) or
          ``std``/``sigma``/``scale`` (standard deviation);
        - a ``torch.distributions.Distribution`` (its ``mean`` and ``stddev``).

    Otherwise only the mean is known; ``posterior`` sampling then falls back to
    other samples' means and says so.

Collapse
    A nuisance dim is *collapsed* when its posterior equals the prior — the
    KL divergence to N(0, 1), averaged over the fit samples, is below
    ``kl_threshold`` nats (posterior known) — or when moving it over the prior
    (-2 to +2) changes the decoded sample by less than ``variation_threshold``
    of the data's mean absolute deviation. Redrawing collapsed dims changes
    nothing, so invariance measured over them says nothing about the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aeinterp.model import evaluate, select_code

__all__ = ["Posterior", "encode_posterior", "collapse_check"]

LOGVAR_KEYS = ("logvar", "log_var", "z_log_var", "logvariance", "log_variance")
LOGSTD_KEYS = ("log_std", "log_sigma", "logstd", "logsigma")
STD_KEYS = ("std", "sigma", "scale", "stddev")


@dataclass(frozen=True)
class Posterior:
    """Posterior means ``(N, k)`` and standard deviations (or None), and where the spread came from."""

    mean: np.ndarray
    std: np.ndarray | None
    source: str


def _spread(output: Any) -> tuple[torch.Tensor | None, str]:
    """The posterior standard deviation in an encoder output, and how it was read."""
    if isinstance(output, torch.distributions.Distribution):
        return output.stddev, "distribution.stddev"
    if isinstance(output, Mapping):
        for keys, kind in ((LOGVAR_KEYS, "logvar"), (LOGSTD_KEYS, "log_std"), (STD_KEYS, "std")):
            key = next((k for k in keys if k in output), None)
            if key is not None:
                v = output[key]
                std = torch.exp(0.5 * v) if kind == "logvar" else torch.exp(v) if kind == "log_std" else v
                return std, f"encoder output[{key!r}] ({kind})"
        return None, ""
    if (
        isinstance(output, Sequence)
        and not isinstance(output, str)
        and len(output) >= 2
        and all(isinstance(o, torch.Tensor) for o in output[:2])
    ):
        mu, logvar = output[0], output[1]
        if logvar.shape == mu.shape:
            return torch.exp(0.5 * logvar), "encoder output (mu, logvar)"
    return None, ""


def encode_posterior(model: Any, x: np.ndarray) -> Posterior:
    """Posterior mean and standard deviation of ``x``'s codes, both from the same encoder call."""
    custom = getattr(model, "encode_posterior", None)
    raw = getattr(model, "encoder_fn", None)
    code = getattr(model, "code", None)
    if callable(custom):

        def both(xb: torch.Tensor) -> torch.Tensor:
            mean, std = custom(xb)
            return torch.cat([mean, std], dim=1)

        out = evaluate(both, x, model=model).numpy()
        k = out.shape[1] // 2
        return Posterior(out[:, :k], out[:, k:], "model.encode_posterior (mean, std)")
    if not callable(raw):
        return Posterior(evaluate(model.encode, x, model=model).numpy(), None, "none: the model exposes only encode (the mean)")
    source = {"text": ""}

    def read(xb: torch.Tensor) -> torch.Tensor:
        output = raw(xb)
        mean = select_code(output, code)
        std, how = _spread(output)
        source["text"] = how
        if std is None or std.shape != mean.shape:
            return torch.cat([mean, torch.full_like(mean, float("nan"))], dim=1)
        return torch.cat([mean, std], dim=1)

    out = evaluate(read, x, model=model).numpy()
    k = out.shape[1] // 2
    std = out[:, k:]
    if np.isnan(std).all():
        return Posterior(out[:, :k], None, "none: the encoder returns only the code (the mean)")
    return Posterior(out[:, :k], std, source["text"])


def collapse_check(
    model: Any,
    posterior: Posterior,
    x_fit: np.ndarray,
    nuisance: list[int],
    *,
    kl_threshold: float,
    variation_threshold: float,
    n_probe: int = 64,
) -> dict[str, Any]:
    """Per nuisance dim: mean KL to the prior (if known), decoded variation over the prior, collapsed or not."""
    kl = None
    if posterior.std is not None:
        mu, std = posterior.mean[:, nuisance].astype(np.float64), np.maximum(posterior.std[:, nuisance].astype(np.float64), 1e-12)
        kl = (0.5 * (mu**2 + std**2 - 1.0 - 2.0 * np.log(std))).mean(axis=0)
    rows = np.linspace(0, len(x_fit) - 1, min(n_probe, len(x_fit))).astype(int)
    codes = posterior.mean[rows].astype(np.float32)
    flat = np.asarray(x_fit, dtype=np.float64).reshape(len(x_fit), -1)
    scale = float(np.mean(np.abs(flat - flat.mean(axis=0)))) or 1.0
    variation = []
    for j in nuisance:
        lo, hi = codes.copy(), codes.copy()
        lo[:, j], hi[:, j] = -2.0, 2.0
        both = evaluate(model.decode, np.concatenate([lo, hi]), model=model).double().numpy().reshape(2, len(rows), -1)
        variation.append(float(np.mean(np.abs(both[1] - both[0]))) / scale)
    variation_arr = np.asarray(variation)
    collapsed = [j for i, j in enumerate(nuisance) if variation_arr[i] < variation_threshold or (kl is not None and kl[i] < kl_threshold)]
    return {
        "kl_per_dim": None if kl is None else [float(v) for v in kl],
        "decoded_variation": [float(v) for v in variation_arr],
        "collapsed": collapsed,
        "informative": [j for j in nuisance if j not in collapsed],
        "all_collapsed": len(collapsed) == len(nuisance),
        "kl_threshold": kl_threshold,
        "variation_threshold": variation_threshold,
        "rule": (
            "a nuisance dim is collapsed when its mean KL to N(0, 1) over the fit samples is below kl_threshold nats "
            "(where the posterior is known) or when moving it from -2 to +2 changes the decoded sample by less than "
            "variation_threshold of the data's mean absolute deviation"
        ),
    }
