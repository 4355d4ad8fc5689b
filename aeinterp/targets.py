"""What an explanation can be about, and how to evaluate it.

Four targets exist:

``latent``
    each latent dimension ``z_j = encode(x)_j`` (the default);
``reconstruction``
    each element of the decoder output ``decode(encode(x))``, flattened;
``reconstruction_error``
    one number per sample, the mean squared error between the reconstruction
    of the (possibly perturbed) input and the original, unperturbed input;
``prediction``
    the class logits of a supervised model (one whose code feeds a classifier
    head, see :class:`aeinterp.model.SupervisedModel`); explainers opt in to it.

Explainers evaluate targets through :func:`evaluate_target` so that all of
them agree on what, for example, "reconstruction error" means.
"""

from __future__ import annotations

from enum import Enum

import torch

from .model import Model

__all__ = ["Target", "evaluate_target", "gradient_flow_problem", "target_names", "target_names_for", "target_change"]


class Target(str, Enum):
    LATENT = "latent"
    RECONSTRUCTION = "reconstruction"
    RECONSTRUCTION_ERROR = "reconstruction_error"
    PREDICTION = "prediction"

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
    if target is Target.PREDICTION:
        return model.predict(model.encode(x))  # type: ignore[attr-defined]
    x_hat = model.reconstruct(x)
    if target is Target.RECONSTRUCTION:
        return x_hat.reshape(x_hat.shape[0], -1)
    ref = x if reference is None else reference
    diff = (x_hat - ref).reshape(x.shape[0], -1)
    return diff.pow(2).mean(dim=1, keepdim=True)


def gradient_flow_problem(model: Model, target: Target | str, x: object) -> str | None:
    """Why gradients of ``target`` cannot reach the input ``x`` (a few samples), or None when they can.

    One forward pass with autograd on two samples. The usual cause is an
    integer cast on the way (``x.long()`` into ``nn.Embedding``): the target
    is then piecewise constant in the input and every gradient-based
    attribution is zero. The reconstruction error is checked through the
    reconstruction (it reads the input directly as well). Errors of the
    forward pass itself are left for the explainer to report.
    """
    from .model import as_tensor, frozen

    target = Target(target)
    try:
        xt = as_tensor(x[:2], model)  # type: ignore[index]
        if not xt.is_floating_point():
            return "the input is not floating point"
        with frozen(model), torch.enable_grad():
            xt = xt.detach().requires_grad_(True)
            out = model.reconstruct(xt) if target is Target.RECONSTRUCTION_ERROR else evaluate_target(model, target, xt)
    except Exception:  # noqa: BLE001 - the explainer's own run reports it
        return None
    if isinstance(out, torch.Tensor) and not out.requires_grad:
        return (
            f"the input reaches the {target} only through an integer cast or an embedding lookup (no gradient flows "
            "back to it, so every gradient-based attribution would be zero): attribute the embedding output instead, "
            "e.g. explain a model whose encoder starts after the embedding, or use a perturbation explainer"
        )
    return None


def target_names(target: Target | str, count: int, output_names: list[str], class_names: list[str] | None = None) -> list[str]:
    """Names of the rows of an importance matrix for ``target``.

    ``count`` is the number of latents (``latent``) or classes (``prediction``);
    ``output_names`` name the reconstructed elements.
    """
    target = Target(target)
    if target is Target.LATENT:
        return [f"z{j}" for j in range(count)]
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
