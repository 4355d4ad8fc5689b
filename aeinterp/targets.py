"""What an explanation can be about, and how to evaluate it.

Five targets exist:

``latent``
    each latent dimension ``z_j = encode(x)_j`` (the default);
``latent_pca``
    the latent code projected on its principal components, fitted on the fit
    split's codes (``pc0`` explains the most variance), so any explainer that
    evaluates targets here explains principal directions of the latent space;
``reconstruction``
    each element of the decoder output ``decode(encode(x))``, flattened;
``reconstruction_error``
    one number per sample, the mean squared error between the reconstruction
    of the (possibly perturbed) input and the original, unperturbed input;
``prediction``
    the class logits of a supervised model (one whose code feeds a classifier
    head, see :class:`aeinterp.model.SupervisedModel`); explainers opt in to it.

Explainers evaluate targets through :func:`evaluate_target` so that all of
them agree on what, for example, "reconstruction error" means. For
``latent_pca`` the model carries its fitted :class:`LatentPCA`: the core
(:func:`aeinterp.run_explainer`) wraps it with :func:`with_latent_pca`
before the explainer sees it, so explainers need nothing of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch

from .errors import DataError
from .model import Model, evaluate, torch_modules

__all__ = [
    "Target",
    "evaluate_target",
    "target_names",
    "target_names_for",
    "target_change",
    "LatentPCA",
    "LatentPCAModel",
    "fit_latent_pca",
    "with_latent_pca",
]


class Target(str, Enum):
    LATENT = "latent"
    LATENT_PCA = "latent_pca"
    RECONSTRUCTION = "reconstruction"
    RECONSTRUCTION_ERROR = "reconstruction_error"
    PREDICTION = "prediction"

    @property
    def is_loss(self) -> bool:
        """True for a scalar loss per sample, where larger means worse."""
        return self is Target.RECONSTRUCTION_ERROR

    def __str__(self) -> str:  # so f-strings print "latent", not "Target.LATENT"
        return self.value


def evaluate_target(model: Model, target: Target | str, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Evaluate ``target`` on the batch ``x``; returns a ``(batch, n_targets)`` tensor.

    ``reference`` is the unperturbed input the reconstruction error is measured
    against (default: ``x`` itself). Gradients flow when the caller enables them.
    """
    target = Target(target)
    if target is Target.LATENT:
        return model.encode(x)
    if target is Target.LATENT_PCA:
        pca = getattr(model, "latent_pca", None)
        if not isinstance(pca, LatentPCA):
            raise DataError(
                "target 'latent_pca' needs the principal components of the latent codes: wrap the model with "
                "aeinterp.targets.with_latent_pca(model, data) (aeinterp.explain and recipes do this for you)"
            )
        return pca.project(model.encode(x))
    if target is Target.PREDICTION:
        return model.predict(model.encode(x))  # type: ignore[attr-defined]
    x_hat = model.reconstruct(x)
    if target is Target.RECONSTRUCTION:
        return x_hat.reshape(x_hat.shape[0], -1)
    ref = x if reference is None else reference
    diff = (x_hat - ref).reshape(x.shape[0], -1)
    return diff.pow(2).mean(dim=1, keepdim=True)


def target_names(target: Target | str, count: int, output_names: list[str], class_names: list[str] | None = None) -> list[str]:
    """Names of the rows of an importance matrix for ``target``.

    ``count`` is the number of latents (``latent``) or classes (``prediction``);
    ``output_names`` name the reconstructed elements.
    """
    target = Target(target)
    if target is Target.LATENT:
        return [f"z{j}" for j in range(count)]
    if target is Target.LATENT_PCA:
        return [f"pc{j}" for j in range(count)]
    if target is Target.RECONSTRUCTION:
        return [f"{name}^" for name in output_names]
    if target is Target.PREDICTION:
        return list(class_names) if class_names is not None and len(class_names) == count else [f"class{c}" for c in range(count)]
    return ["reconstruction_error"]


def target_names_for(model: Model, data: object, target: Target | str) -> list[str]:
    """Row names for ``target`` of ``model`` on ``data`` (latent count, class names, element names)."""
    target = Target(target)
    names = list(getattr(data, "feature_names", []))
    if target is Target.PREDICTION:
        classes = list(getattr(model, "class_names", None) or [])
        return target_names(target, len(classes), names, classes)
    return target_names(target, model.latent_dim, names)


def target_change(target: Target | str, perturbed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """How much a target moved between ``original`` and ``perturbed``, one number per target.

    For vector targets (latent, reconstruction) this is the root mean squared
    change over samples, in the target's own units. For the reconstruction
    error it is the mean increase of the error (the classic permutation
    importance of a loss), which may be negative when a perturbation helps.
    Both tensors are ``(samples, n_targets)``; the result is ``(n_targets,)``.
    """
    delta = perturbed - original
    if Target(target).is_loss:
        return delta.mean(dim=0)
    return delta.pow(2).mean(dim=0).sqrt()


# --- latent_pca: principal directions of the code ------------------------------------------


@dataclass(frozen=True)
class LatentPCA:
    """Principal components of latent codes: ``pc = (z - mean) @ components.T``.

    ``components`` is ``(k, k)`` with orthonormal rows ordered by decreasing
    variance (a full basis, so the projection is a rotation and loses nothing);
    each row's largest-magnitude loading is positive, which fixes the signs.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    n_fit: int

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, k)`` codes to ``(B, k)`` principal coordinates, differentiably."""
        mean = torch.as_tensor(self.mean, dtype=z.dtype, device=z.device)
        comp = torch.as_tensor(self.components, dtype=z.dtype, device=z.device)
        return (z - mean) @ comp.T

    def to_json(self) -> dict[str, Any]:
        return {
            "n_components": int(self.components.shape[0]),
            "fit_samples": self.n_fit,
            "explained_variance": [float(v) for v in self.explained_variance],
            "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio],
            "components": self.components.tolist(),
            "mean": [float(v) for v in self.mean],
        }

    def summary(self) -> str:
        shares = ", ".join(f"pc{j} {100 * r:.1f}%" for j, r in enumerate(self.explained_variance_ratio))
        return f"latent_pca: explained variance of the code (fit split, n = {self.n_fit}): {shares}"


def fit_latent_pca(model: Model, data: Any, *, batch_size: int = 2048) -> LatentPCA:
    """Principal components of ``model``'s codes of the fit split of ``data``."""
    x = getattr(data, "x_fit", None)
    if x is None or len(x) < 2:
        raise DataError("target 'latent_pca' fits principal components on the fit split, which needs at least 2 samples")
    z = evaluate(model.encode, x, batch_size=batch_size, model=model).double().numpy()
    if not np.isfinite(z).all():
        raise DataError("the latent codes of the fit split are not finite; principal components cannot be fitted")
    mean = z.mean(axis=0)
    _, s, vt = np.linalg.svd(z - mean, full_matrices=True)
    var = np.zeros(vt.shape[0])
    var[: s.size] = s**2 / max(1, z.shape[0] - 1)
    rows = np.arange(vt.shape[0])
    vt = vt * np.sign(vt[rows, np.argmax(np.abs(vt), axis=1)])[:, None]
    total = var.sum()
    ratio = var / total if total > 0 else np.zeros_like(var)
    return LatentPCA(mean=mean, components=vt, explained_variance=var, explained_variance_ratio=ratio, n_fit=int(z.shape[0]))


class LatentPCAModel:
    """``model`` unchanged, carrying the :class:`LatentPCA` that target ``latent_pca`` projects on.

    Every attribute but ``latent_pca`` and ``base`` is the wrapped model's, so
    explainers see the same encoder, decoder, head and torch module.
    """

    def __init__(self, base: Model, pca: LatentPCA) -> None:
        self.base = base
        self.latent_pca = pca

    @property
    def latent_dim(self) -> int:
        return self.base.latent_dim

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.base.input_shape

    @property
    def module(self) -> Any:
        modules = torch_modules(self.base)
        return modules[0] if modules else None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.base.decode(z)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.reconstruct(x)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "base" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["base"], name)

    def __repr__(self) -> str:
        return f"LatentPCAModel({self.base!r})"


def with_latent_pca(model: Model, data: Any) -> Model:
    """``model`` ready for target ``latent_pca`` (itself if it already carries its components)."""
    if isinstance(getattr(model, "latent_pca", None), LatentPCA):
        return model
    return LatentPCAModel(model, fit_latent_pca(model, data))
