"""The affine first layer of an encoder, found structurally: ``encoder(x) == rest(A x + b)``.

Explainers use it to skip work that the first layer makes redundant: the
gradient family stops its backward passes at ``a = A x + b`` (see
``aeinterp_gradients.factorised``), permutation updates ``a`` by a rank-one
term per permuted input instead of recomputing the first matmul
(:func:`aeinterp.toolkit.perturb.perturbation_effects`). It lives in the core because
more than one explainer (and third-party ones) need it.

Detection is structural and conservative (:func:`first_layer_split`): the
model is a :class:`aeinterp.model.TorchAutoencoder` on tabular data, and its
resolved encoder is

* an ``nn.Linear`` or an ``nn.Sequential`` whose first module is one (after an
  optional ``nn.Flatten``), or
* the unmodified ``encode`` method of a module that says how it splits
  (``aeinterp_first_layer(func)``: the built-in architectures'
  ``to_code(encoder(x))`` or VAE heads ``(to_mu(h), to_logvar(h))``,
  ``SupervisedVAE`` delegating to its MLP, the planted test model's ``encoder(x)``),

with no hooks on the modules that are bypassed. When the encoder after the
first layer is one elementwise activation and an affine layer ``W``,
``FirstLayer.tail`` says so. All four targets read the input only through the
encoder: the reconstruction error compares the reconstruction with the
*unperturbed* sample, which :func:`layer_target_function` takes as its
reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..model import TorchAutoencoder, select_code
from ..targets import Target, evaluate_target

__all__ = ["ELEMENTWISE", "FirstLayer", "first_layer_split", "layer_target_function"]


#: Elementwise activations whose derivative at ``a`` is ``jvp(act, a, ones)``.
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Identity)


@dataclass(frozen=True)
class FirstLayer:
    """``encoder(x) == rest(linear(x))``: the affine first layer and the remaining encoder.

    ``tail = (act, out, index)`` when the encoder's output (its ``index``-th
    output for a tuple, the output itself for ``None``) is ``out(act(a))`` with
    an elementwise ``act`` and an affine ``out``: then the latent code's
    Jacobian w.r.t. ``a`` is ``out.weight * act'(a)`` and needs no autodiff.
    """

    linear: nn.Linear
    rest: Callable[[torch.Tensor], Any]
    tail: tuple[nn.Module, nn.Linear, int | None] | None = None

    @property
    def width(self) -> int:
        return int(self.linear.out_features)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or getattr(module, "_forward_hooks_with_kwargs", None))


def split_module(encoder: Any) -> FirstLayer | str:
    """Split an ``nn.Linear`` / ``nn.Sequential([nn.Flatten,] nn.Linear, ...)`` module."""
    if isinstance(encoder, nn.Linear):
        if _hooked(encoder):
            return "the first layer has forward hooks"
        return FirstLayer(encoder, lambda a: a)
    if isinstance(encoder, nn.Sequential) and type(encoder) is nn.Sequential:
        if _hooked(encoder):
            return "the encoder has forward hooks"
        if len(encoder) > 1 and type(encoder[0]) is nn.Flatten and encoder[0].start_dim == 1 and not _hooked(encoder[0]):
            encoder = encoder[1:]  # tabular rows are flat already: flattening them is the identity
        if len(encoder) == 0 or not isinstance(encoder[0], nn.Linear):
            return "the encoder's first module is not an nn.Linear"
        if _hooked(encoder) or _hooked(encoder[0]):
            return "the encoder or its first layer has forward hooks"
        rest = encoder[1:]
        tail = None
        if len(rest) == 2 and type(rest[0]) in ELEMENTWISE and isinstance(rest[1], nn.Linear) and not any(map(_hooked, rest)):
            tail = (rest[0], rest[1], None)
        return FirstLayer(encoder[0], rest, tail)
    return f"the encoder is a {type(encoder).__name__}, not an nn.Linear or an nn.Sequential starting with one"


def split_builtin(module: nn.Module) -> FirstLayer | str:
    """``BuiltinAutoencoder.encode``: ``to_code(encoder(x))`` or ``(to_mu(h), to_logvar(h))``."""
    body = split_module(module.encoder)
    if isinstance(body, str):
        return body

    def rest(a: torch.Tensor) -> Any:
        h = body.rest(a)
        return (module.to_mu(h), module.to_logvar(h)) if module.variational else module.to_code(h)  # type: ignore[operator]

    tail = None
    act = body.rest if isinstance(body.rest, nn.Sequential) else None
    if act is not None and len(act) == 1 and type(act[0]) in ELEMENTWISE and not _hooked(act[0]):
        out = module.to_mu if module.variational else module.to_code
        if isinstance(out, nn.Linear) and not _hooked(out):
            tail = (act[0], out, 0 if module.variational else None)
    return FirstLayer(body.linear, rest, tail)


def split_method(method: Any) -> FirstLayer | str:
    """Split a bound ``encode`` method whose owner says how (built-in architectures, the planted test model).

    A module knows its own ``encode``: its ``aeinterp_first_layer(func)``
    returns the split when ``func`` is the ``encode`` it defines (so a
    subclass that overrides ``encode`` is not split), else None.
    """
    owner, func = getattr(method, "__self__", None), getattr(method, "__func__", None)
    if not isinstance(owner, nn.Module) or func is None:
        return f"the encoder is {type(method).__name__}, not a module or a known encode method"
    if _hooked(owner):
        return "the autoencoder module has forward hooks"
    split = getattr(owner, "aeinterp_first_layer", None)
    found = split(func) if callable(split) else None
    if found is None:
        return f"{type(owner).__name__}.{func.__name__} is not a known encode method (only built-in and planted models are split)"
    return found


def first_layer_split(model: Any, data: Any, target: Target) -> tuple[FirstLayer | None, str]:
    """The affine first layer of ``model``'s encoder and why (or why not) it can be factorised out."""
    if type(model) is not TorchAutoencoder:
        return None, f"the model is a {type(model).__name__}, not a TorchAutoencoder whose encoder can be inspected"
    if getattr(data, "kind", None) != "tabular" or len(model.input_shape) != 1:
        return None, "the data are not tabular"
    encoder = model.encoder_fn
    split = split_module(encoder) if isinstance(encoder, nn.Module) else split_method(encoder)
    if isinstance(split, str):
        return None, split
    if split.linear.in_features != model.input_shape[0]:
        return None, f"the first layer reads {split.linear.in_features} inputs, the samples have {model.input_shape[0]}"
    if split.tail is not None and split.tail[2] is not None and model.code not in (None, split.tail[2]):
        split = FirstLayer(split.linear, split.rest)  # the code is another output than the one the tail describes
    what = (
        "the reconstruction error against the constant unperturbed sample"
        if target is Target.RECONSTRUCTION_ERROR
        else f"the {target} target"
    )
    return split, f"{what} reads the input only through an affine first layer ({split.linear.in_features} -> {split.width})"


class _FromFirstLayer:
    """The model seen from the first layer's output: same code selection, decoder and head."""

    def __init__(self, model: TorchAutoencoder, layer: FirstLayer) -> None:
        self.model, self.layer = model, layer

    def encode(self, a: torch.Tensor) -> torch.Tensor:
        return self.model_code(self.layer.rest(a))

    def model_code(self, output: Any) -> torch.Tensor:
        return select_code(output, self.model.code, where="encoder")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)

    def reconstruct(self, a: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(a))

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.predict(z)


def layer_target_function(
    model: TorchAutoencoder, layer: FirstLayer, target: Target
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``g(a, reference) -> (B, n_targets)`` with ``g(A x + b, reference) == evaluate_target(model, target, x, reference)``."""
    proxy = _FromFirstLayer(model, layer)

    def g(a: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return evaluate_target(proxy, target, a, reference)  # type: ignore[arg-type]

    return g
