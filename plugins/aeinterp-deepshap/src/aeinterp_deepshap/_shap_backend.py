"""The reference backend: ``shap.DeepExplainer`` (or ``GradientExplainer``) on a copy of the model.

shap hooks every leaf module and removes the hooks only when it succeeds, so
it always runs on a deep copy: the user's module is never touched. shap's
``(samples, *input_shape, outputs)`` result is reshaped to the contract's
``(samples, targets, elements)``. shap has no progress callback; it is
called one chunk of samples at a time so the report's progress bar moves.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from aeinterp.errors import require
from aeinterp.progress import NullProgress, Progress

__all__ = ["TargetModule", "shap_deep", "shap_gradient"]


class TargetModule(nn.Module):
    """``x -> target(x)`` as an ``nn.Module`` (what shap explains); the autoencoder is a child module."""

    def __init__(self, inner: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.inner = inner
        self._fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x).reshape(x.shape[0], -1)


def _to_contract(values: object, n: int, k: int) -> np.ndarray:
    arr = np.asarray(values)
    return arr.reshape(n, -1, k).transpose(0, 2, 1)


def shap_deep(
    module: TargetModule, x: torch.Tensor, background: torch.Tensor, *, chunk: int = 16, progress: Progress | None = None
) -> np.ndarray:
    """``(N, K, D)`` from ``shap.DeepExplainer`` (additivity is checked by the caller)."""
    shap = require("shap", "shap", "the shap backend of the deepshap explainer")
    progress = progress or NullProgress()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="unrecognized nn.Module")
        explainer = shap.DeepExplainer(module, background)
        k = int(np.asarray(explainer.expected_value).size)
        starts = range(0, x.shape[0], chunk)
        parts = [
            _to_contract(explainer.shap_values(x[s : s + chunk], check_additivity=False), len(x[s : s + chunk]), k)
            for s in progress.track(starts, total=len(starts), description="shap.DeepExplainer")
        ]
    return np.concatenate(parts)


def shap_gradient(
    module: TargetModule,
    x: torch.Tensor,
    background: torch.Tensor,
    seeds: np.ndarray,
    *,
    samples: int = 200,
    progress: Progress | None = None,
) -> np.ndarray:
    """``(N, K, D)`` from ``shap.GradientExplainer``, one sample per call seeded with ``seeds[j]``.

    shap reseeds NumPy's global generator; its state is restored afterwards.
    """
    shap = require("shap", "shap", "the shap backend of the deepshap explainer")
    progress = progress or NullProgress()
    state = np.random.get_state()
    try:
        explainer = shap.GradientExplainer(module, background)
        with torch.no_grad():
            k = int(module(x[:1]).shape[1])
        parts = [
            _to_contract(explainer.shap_values(x[j : j + 1], nsamples=samples, rseed=int(seeds[j])), 1, k)
            for j in progress.track(range(x.shape[0]), total=x.shape[0], description="shap.GradientExplainer")
        ]
    finally:
        np.random.set_state(state)
    return np.concatenate(parts)
