"""Integration rules and baselines for integrated gradients."""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["Rule", "quadrature", "Baseline", "baselines", "resolve_baseline"]

Rule = Literal["gausslegendre", "riemann_middle", "riemann_left", "riemann_right", "riemann_trapezoid"]
Baseline = Literal["auto", "zero", "mean", "sample"]

#: why ``baseline: auto`` picks what it picks (measured in bench/bench_realdata.py, see docs/summaries.md)
AUTO_REASON = {
    "zero": "image data: a black image is the conventional absence of signal",
    "mean": "tabular / sequence data: zero is an arbitrary point for unscaled features (log expression 0 is 'not expressed', far from every cell); "
    "the fit split's mean is a typical sample and costs one path like zero (expected-gradients-style sampling costs one per baseline)",
}


def resolve_baseline(kind: str, data_kind: str) -> tuple[str, str]:
    """``(baseline, reason)``: ``auto`` becomes ``zero`` for images and ``mean`` otherwise."""
    if kind != "auto":
        return kind, "requested"
    chosen = "zero" if data_kind == "image" else "mean"
    return chosen, AUTO_REASON[chosen]


def quadrature(rule: Rule, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in [0, 1] and weights with ``sum w * g(alpha) ~ integral_0^1 g``.

    Same rules and names as Captum's ``IntegratedGradients(method=...)``, with
    one difference: Captum's ``riemann_trapezoid`` weights sum to
    ``(steps - 1) / steps`` (its points are ``steps - 1`` intervals apart but
    weighted as if ``steps``); here every rule's weights sum to 1.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return (x + 1.0) / 2.0, w / 2.0
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("the trapezoid rule needs at least 2 steps")
        alpha = np.linspace(0.0, 1.0, steps)
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] /= 2.0
        return alpha, w
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[rule]
    return (np.arange(steps) + offset) / steps, np.full(steps, 1.0 / steps)


def baselines(kind: Baseline, x_fit: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, *sample_shape)`` baselines: zeros, the fit split's mean, or ``n`` random fit samples."""
    shape = x_fit.shape[1:]
    if kind == "zero":
        return np.zeros((1, *shape), dtype=np.float32)
    if kind == "mean":
        return x_fit.mean(axis=0, keepdims=True).astype(np.float32)
    if kind == "sample":
        idx = rng.choice(x_fit.shape[0], size=n, replace=n > x_fit.shape[0])
        return x_fit[idx].astype(np.float32)
    raise ValueError(f"unknown baseline {kind!r}; use zero, mean or sample")
