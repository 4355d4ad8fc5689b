"""The Model protocol users bring, and the adapter that wraps a torch module.

Anything with ``encode``, ``decode``, ``reconstruct``, ``latent_dim`` and
``input_shape`` is a :class:`Model`; nobody has to subclass anything. The
:class:`TorchAutoencoder` adapter turns the common shapes of autoencoders into
one: ``encoder``/``decoder`` submodules or ``encode``/``decode`` methods (names
configurable), and VAEs whose encoder returns ``(mu, logvar)``, a dict or a
distribution (the code is the mean unless told otherwise).

``encode`` and ``decode`` are differentiable; :func:`evaluate` runs any of them
in memory-bounded batches without building a graph, and :func:`frozen` puts a
model in eval mode for the duration of an explanation and restores it after,
even when the explanation fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from .errors import ModelError

__all__ = ["Model", "SupervisedModel", "TorchAutoencoder", "evaluate", "frozen", "is_supervised", "select_code", "torch_modules"]

CODE_KEYS = ("mu", "mean", "z_mean", "loc", "z", "code", "latent")


@runtime_checkable
class Model(Protocol):
    """What aeinterp needs from an autoencoder.

    ``encode`` maps a batch shaped ``(N, *input_shape)`` to codes ``(N, latent_dim)``;
    ``decode`` maps codes back to ``(N, *input_shape)``. Both must be
    differentiable for gradient-based explainers.
    """

    @property
    def latent_dim(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class SupervisedModel(Model, Protocol):
    """A model whose code also feeds a classifier head.

    ``task_dims`` are the latent dimensions the head reads; the others are
    nuisance dimensions the decision ignores. ``predict(z)`` maps full codes
    ``(N, latent_dim)`` to class logits ``(N, n_classes)``.
    """

    @property
    def task_dims(self) -> list[int]: ...

    @property
    def class_names(self) -> list[str]: ...

    def predict(self, z: torch.Tensor) -> torch.Tensor: ...


def is_supervised(model: Any) -> bool:
    """True when ``model`` has a classifier head (``predict``) and declared task dims."""
    return callable(getattr(model, "predict", None)) and bool(getattr(model, "task_dims", None))


def select_code(output: Any, code: int | str | None = None, *, where: str = "encoder") -> torch.Tensor:
    """Pick the latent code out of whatever an encoder returned.

    Tensors pass through; for a tuple or list ``code`` is an index (default 0,
    the mean of ``(mu, logvar)``); for a mapping ``code`` is a key (default:
    the first of ``mu``, ``mean``, ``z_mean``, ``loc``, ``z``, ``code``,
    ``latent`` that exists); a ``torch.distributions.Distribution`` gives its mean.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, torch.distributions.Distribution):
        return output.mean
    if isinstance(output, Mapping):
        if code is None:
            key: int | str | None = next((k for k in CODE_KEYS if k in output), None)
            if key is None:
                raise ModelError(
                    f"the {where} returned a dict with keys {sorted(output)}; "
                    f'say which one is the code: code="<key>" in Python, `code: <key>` in a recipe\'s model section'
                )
        else:
            key = code
            if key not in output:
                raise ModelError(f"the {where} output has no key {key!r}; it has {sorted(output)}")
        return select_code(output[key], where=where)
    if isinstance(output, Sequence) and not isinstance(output, str):
        index = 0 if code is None else code
        if not isinstance(index, int):
            raise ModelError(f"the {where} returned a {type(output).__name__}; `code` must be an index, got {index!r}")
        if not -len(output) <= index < len(output):
            raise ModelError(f"the {where} returned {len(output)} outputs; code index {index} is out of range")
        return select_code(output[index], where=where)
    raise ModelError(f"the {where} returned {type(output).__name__}, expected a tensor, tuple, dict or distribution")


def _resolve(module: nn.Module, names: Sequence[str], role: str) -> Callable[..., Any]:
    for name in names:
        attr = getattr(module, name, None)
        if attr is not None and callable(attr):
            return attr
    raise ModelError(
        f"the model has no {role}: looked for {', '.join(repr(n) for n in names)}; "
        f'name the submodule or method: {role}="<name>" in Python (aeinterp.explain, TorchAutoencoder), '
        f"`{role}: <name>` in a recipe's model section"
    )


def module_device(module: nn.Module) -> torch.device:
    """Where ``module`` lives: its first parameter's (or buffer's) device, the CPU for an empty module."""
    for t in module.parameters():
        return t.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def module_dtype(module: nn.Module) -> torch.dtype:
    """The dtype ``module`` computes in: its first floating-point parameter's, float32 without one."""
    for t in module.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.float32


class TorchAutoencoder:
    """Adapter from a ``torch.nn.Module`` (or TorchScript module) to :class:`Model`.

    Parameters
    ----------
    module:
        The autoencoder.
    input_shape:
        Shape of one sample, e.g. ``(30,)``, ``(1, 8, 8)`` or ``(T, F)``.
    encoder, decoder:
        Attribute names of the encoder and decoder (submodules or methods).
        By default ``encode`` then ``encoder``, and ``decode`` then ``decoder``.
    code:
        Which encoder output is the latent code when it returns several
        (index or key; default the mean, see :func:`select_code`).
    head, task_dims, class_names:
        For a supervised model: the classifier head (attribute name or a
        callable) that maps the task part of the code, ``z[:, task_dims]``, to
        class logits; which latent dims it reads; the class names.
    device:
        Move the module there first (``auto``, ``cpu``, ``cuda[:i]``, ``mps``;
        see :func:`aeinterp.device.resolve_device`); default: leave it where
        its parameters are. Inputs follow the module (:func:`as_tensor`).
    """

    def __init__(
        self,
        module: nn.Module,
        input_shape: Sequence[int],
        *,
        encoder: str | None = None,
        decoder: str | None = None,
        code: int | str | None = None,
        description: str = "",
        head: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
        task_dims: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if device is not None:  # the module moves in place, as ``module.to`` does
            from .device import resolve_device

            module = module.to(resolve_device(device))
        self.module = module
        self._input_shape = tuple(int(s) for s in input_shape)
        self._encoder = _resolve(module, [encoder] if encoder else ["encode", "encoder"], "encoder")
        self._decoder = _resolve(module, [decoder] if decoder else ["decode", "decoder"], "decoder")
        self.code = code
        self.description = description or type(module).__name__
        self._latent_dim: int | None = None
        if (head is None) != (task_dims is None):
            raise ModelError("a supervised model needs both a classifier head and its task dims")
        self._head = _resolve(module, [head], "head") if isinstance(head, str) else head
        self.task_dims: list[int] | None = [int(d) for d in task_dims] if task_dims is not None else None
        self.class_names: list[str] | None = [str(c) for c in class_names] if class_names is not None else None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._input_shape

    @property
    def encoder_fn(self) -> Callable[..., Any]:
        """The resolved encoder callable (submodule or method), before code selection."""
        return self._encoder

    @property
    def device(self) -> torch.device:
        return module_device(self.module)

    @property
    def dtype(self) -> torch.dtype:
        return module_dtype(self.module)

    @property
    def latent_dim(self) -> int:
        if self._latent_dim is None:
            probe = torch.zeros((2, *self._input_shape), dtype=self.dtype, device=self.device)
            with frozen(self), torch.no_grad():
                z = self.encode(probe)
            self._latent_dim = int(z.shape[1])
        return self._latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = select_code(self._encoder(x), self.code, where="encoder")
        if z.dim() != 2:
            raise ModelError(
                f"the encoder returned a code of shape {tuple(z.shape)} for a batch of {x.shape[0]}; "
                "aeinterp needs a 2-D code (batch, latent_dim): flatten it in the encoder, "
                "or choose the code output with `code:`"
            )
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return select_code(self._decoder(z), 0, where="decoder")

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """Class logits from full codes (supervised models only)."""
        if self._head is None or self.task_dims is None:
            raise ModelError("this model has no classifier head; declare `head:` and `task_dims:` in the recipe's model section")
        return select_code(self._head(z[:, self.task_dims]), 0, where="head")

    def __repr__(self) -> str:
        return f"TorchAutoencoder({self.description}, input_shape={self._input_shape})"


def torch_modules(model: Any) -> list[nn.Module]:
    """The torch modules behind ``model`` (itself, or its ``module`` attribute)."""
    if isinstance(model, nn.Module):
        return [model]
    inner = getattr(model, "module", None)
    return [inner] if isinstance(inner, nn.Module) else []


@contextlib.contextmanager
def frozen(model: Any) -> Iterator[None]:
    """Eval mode and no parameter gradients while inside; the previous state after.

    Restores every submodule's ``training`` flag and every parameter's
    ``requires_grad`` in ``finally``, so a failing explainer leaves the user's
    model exactly as it found it.
    """
    modules = torch_modules(model)
    training = [(m, m.training) for root in modules for m in root.modules()]
    grads = [(p, p.requires_grad) for root in modules for p in root.parameters()]
    try:
        for root in modules:
            root.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield
    finally:
        for m, flag in training:
            m.training = flag
        for p, flag in grads:
            p.requires_grad_(flag)


def as_tensor(x: np.ndarray | torch.Tensor, model: Any = None) -> torch.Tensor:
    """``x`` as a tensor on the model's device and dtype (float32 by default)."""
    device = getattr(model, "device", torch.device("cpu"))
    dtype = getattr(model, "dtype", torch.float32)
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def evaluate(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 2048,
    model: Any = None,
) -> torch.Tensor:
    """``fn`` applied to ``x`` in batches of ``batch_size`` rows, without autograd.

    Returns the concatenated outputs on the CPU.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    outs = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):  # batches converted one at a time: a lazily read matrix stays lazy
            part = x[start : start + batch_size]
            outs.append(fn(as_tensor(part if isinstance(part, torch.Tensor) else np.asarray(part), model)).detach().cpu())
    if not outs:
        raise ValueError("cannot evaluate an empty batch")
    return torch.cat(outs)
