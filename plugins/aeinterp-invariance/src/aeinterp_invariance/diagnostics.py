"""Checks of a supervised VAE's split into task and nuisance dims.

* :func:`leakage_probe`: how well a logistic regression predicts the label
  from the nuisance dims alone (cross-validated), against chance (the
  majority-class rate) and against the same probe on the task dims.
* :func:`plain_classifier_accuracy`: the accuracy a plain classifier of the
  same backbone reaches on the same split — a re-initialised copy of the
  model's encoder (everything up to the code) with a linear layer on the full
  code, trained with cross-entropy alone (Adam, batches of 64; epochs and learning rate are params) on
  the fit split and scored on the explain split.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aeinterp.model import as_tensor, torch_modules
from aeinterp.progress import NullProgress, Progress

__all__ = ["dataset_labels", "leakage_probe", "plain_classifier_accuracy"]


def dataset_labels(data: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer labels ``(y_fit, y_explain)`` in the model's class order, or None when the data has none."""
    codes_of = getattr(data, "label_codes", None)
    if not callable(codes_of) or getattr(data, "labels", None) is None:
        return None
    codes, classes = codes_of()
    if len(classes) != n_classes:
        return None
    return codes[data.fit_index], codes[data.explain_index]


def leakage_probe(nuisance: np.ndarray, task: np.ndarray, y: np.ndarray, seed: int, *, folds: int = 5) -> dict[str, Any]:
    """Cross-validated logistic-regression accuracy of ``y`` from the nuisance codes (and, for reference, the task codes).

    ``score = max(0, (accuracy - chance) / (1 - chance))``: 0 at chance, 1 for
    a perfect probe. Returns a dict; ``probe_accuracy`` is None when a class
    has fewer than two samples.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(y)
    counts = counts[counts > 0]
    chance = float(counts.max() / counts.sum())
    result: dict[str, Any] = {"chance": chance, "probe_accuracy": None, "task_probe_accuracy": None, "score": None, "n": int(len(y))}
    k = int(min(folds, counts.min()))
    if len(counts) < 2 or k < 2:
        result["skipped"] = "fewer than two samples in some class (or a single class)"
        return result
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)

    def accuracy(features: np.ndarray) -> float:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        return float(cross_val_score(probe, features, y, cv=cv, scoring="accuracy").mean())

    acc = accuracy(nuisance)
    result.update(probe_accuracy=acc, task_probe_accuracy=accuracy(task), folds=k)
    result["score"] = 0.0 if chance >= 1.0 else max(0.0, (acc - chance) / (1.0 - chance))
    return result


class _Classifier(nn.Module):
    def __init__(self, model: Any, n_classes: int) -> None:
        super().__init__()
        self.model = model
        (self.backbone,) = torch_modules(model)
        self.linear = nn.Linear(
            model.latent_dim, n_classes, dtype=getattr(model, "dtype", torch.float32), device=getattr(model, "device", None)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.model.encode(x))


def plain_classifier_accuracy(
    model: Any,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_explain: np.ndarray,
    y_explain: np.ndarray,
    n_classes: int,
    *,
    epochs: int,
    lr: float = 1e-3,
    seed: int,
    progress: Progress | None = None,
) -> tuple[float | None, str | None]:
    """Train a plain classifier of the same backbone (see the module docstring); ``(accuracy, reason_if_skipped)``."""
    progress = progress or NullProgress()
    if not torch_modules(model):
        return None, "the model has no torch module to copy the backbone from"
    try:
        clone = copy.deepcopy(model)
        clone._latent_dim = model.latent_dim  # noqa: SLF001 - avoid a probe pass through the copy
    except Exception as exc:  # noqa: BLE001 - any copy failure only skips this comparison
        return None, f"cannot copy the model: {type(exc).__name__}: {exc}"
    device = torch.device(getattr(model, "device", "cpu"))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # seeded, caller's RNG untouched
        torch.manual_seed(seed)
        classifier = _Classifier(clone, n_classes)
        for m in classifier.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset) and m is not classifier:
                reset()
        classifier.train()
        for p in classifier.parameters():
            p.requires_grad_(True)
        opt = torch.optim.Adam(classifier.parameters(), lr=lr)
        x = as_tensor(x_fit, model)
        y = torch.as_tensor(np.asarray(y_fit), dtype=torch.long, device=x.device)
        gen = torch.Generator().manual_seed(seed)
        with torch.enable_grad():
            for _ in progress.track(range(epochs), total=epochs, description="plain classifier"):
                order = torch.randperm(len(x), generator=gen).to(x.device)
                for s in range(0, len(x), 64):
                    idx = order[s : s + 64]
                    opt.zero_grad()
                    F.cross_entropy(classifier(x[idx]), y[idx]).backward()
                    opt.step()
        classifier.eval()
        with torch.no_grad():
            pred = classifier(as_tensor(x_explain, model)).argmax(dim=1).cpu().numpy()
    return float((pred == y_explain).mean()), None
