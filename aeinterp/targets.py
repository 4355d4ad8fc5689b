"""What an explanation can be about, and how to evaluate it.

Three targets exist:

``latent``
    each latent dimension ``z_j = encode(x)_j`` (the default);
``reconstruction``
    each element of the decoder output ``decode(encode(x))``, flattened;
``reconstruction_error``
    one number per sample, the mean squared error between the reconstruction
    of the (possibly perturbed) input and the original, unperturbed input.

Explainers evaluate targets through :func:`evaluate_target` so that all of
them agree on what, for example, "reconstruction error" means.
"""

from __future__ import annotations

from enum import Enum

import torch

from .model import Model

__all__ = ["Target", "evaluate_target", "target_names", "target_change"]


class Target(str, Enum):
    LATENT = "latent"
    RECONSTRUCTION = "reconstruction"
    RECONSTRUCTION_ERROR = "reconstruction_error"

    @property
    def is_loss(self) -> bool:
        """True for a scalar loss per sample, where larger means worse."""
        return self is Target.RECONSTRUCTION_ERROR

    def __str__(self) -> str:  # so f-strings print "latent", not "Target.LATENT"
        return self.value


def evaluate_target(
    model: Model, target: Target | str, x: torch.Tensor, reference: torch.Tensor | None = None
) -> torch.Tensor:
    """Evaluate ``target`` on the batch ``x``; returns a ``(batch, n_targets)`` tensor.

    ``reference`` is the unperturbed input the reconstruction error is measured
    against (default: ``x`` itself). Gradients flow when the caller enables them.
    """
    target = Target(target)
    if target is Target.LATENT:
        return model.encode(x)
    x_hat = model.reconstruct(x)
    if target is Target.RECONSTRUCTION:
        return x_hat.reshape(x_hat.shape[0], -1)
    ref = x if reference is None else reference
    diff = (x_hat - ref).reshape(x.shape[0], -1)
    return diff.pow(2).mean(dim=1, keepdim=True)


def target_names(target: Target | str, latent_dim: int, output_names: list[str]) -> list[str]:
    """Names of the rows of an importance matrix for ``target``."""
    target = Target(target)
    if target is Target.LATENT:
        return [f"z{j}" for j in range(latent_dim)]
    if target is Target.RECONSTRUCTION:
        return [f"{name}^" for name in output_names]
    return ["reconstruction_error"]


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
