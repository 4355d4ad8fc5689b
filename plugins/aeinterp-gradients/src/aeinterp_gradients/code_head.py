"""Gradients of a latent code that is the output of an affine head, through the head's input.

When the latent code is exactly the output of one ``nn.Linear``,
``z = W u + c`` (e.g. ``self.to_code(h_n[-1])`` after a recurrent stack), the
Jacobian of every latent is ``dz/dx = W du/dx``, and for integrated gradients
the weighted sum over the path points commutes with ``W``::

    sum_s w_s dz_t/dx(x_s) = sum_j W[t, j] sum_s w_s du_j/dx(x_s)

so the backward passes (``loop``) or cotangents (``rev``) run for the head's
``h`` inputs instead of its ``k`` outputs, and ``W`` is applied once per
block. It saves work only when ``h < k`` and only in those two modes (forward
mode costs ~ input elements whatever the number of outputs).

Detection is generic and conservative (:func:`code_head_split`): on one
sample, with a forward hook on every ``nn.Linear`` of the model's torch
modules, the code that ``model.encode`` returns must *be* the output tensor of
one plain ``nn.Linear`` call (the same tensor, or a view with the same storage,
shape, strides and values), that module must have run exactly once, take one
2-D input ``(batch, h)``, have no hooks of its own (nor global module hooks)
and not override ``forward``, and its output must be unchanged since (no
in-place edit). Anything after the head (``tanh(linear(h))``, ``z * 2``, a
sampled code) makes ``encode`` return another tensor and the split is not
taken. The head's input is read by a forward pre-hook registered for the
duration of each call (:meth:`CodeHead.input_function`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from aeinterp.model import torch_modules
from aeinterp.targets import Target

from .autodiff import TargetFn

__all__ = ["CodeHead", "code_head_split", "resolve_code_head"]


def _hooked(module: nn.Module) -> bool:
    return bool(
        module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or getattr(module, "_backward_pre_hooks", None)
    )


def _global_hooks() -> bool:
    from torch.nn.modules import module as m

    names = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks")
    return any(bool(getattr(m, n, None)) for n in names)


@dataclass(frozen=True)
class CodeHead:
    """``encode(x) == linear(u(x))``: the affine head the code comes out of."""

    linear: nn.Linear

    @property
    def width(self) -> int:
        return int(self.linear.in_features)

    def input_function(self, f: TargetFn) -> TargetFn:
        """``u(x, reference) -> (B, h)``: the head's input while ``f`` (the latent target) runs."""
        head = self.linear

        def u(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
            seen: list[torch.Tensor] = []
            handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
            try:
                f(x, reference)
            finally:
                handle.remove()
            if len(seen) != 1:
                raise RuntimeError(
                    f"the code head ran {len(seen)} times in this call, once on the probe sample: the encoder's control flow depends on its input"
                )
            return seen[0]

        return u

    def apply(self, grad_u: torch.Tensor) -> torch.Tensor:
        """``(B, h, *shape)`` gradients of the head's input to ``(B, k, *shape)`` gradients of the code: ``W @ G_u``."""
        b, h = grad_u.shape[:2]
        w = self.linear.weight.detach().to(grad_u.dtype)
        return (w @ grad_u.reshape(b, h, -1)).reshape(b, w.shape[0], *grad_u.shape[2:])


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a is b:
        return True
    return (
        a.device == b.device
        and a.dtype == b.dtype
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.storage_offset() == b.storage_offset()
        and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    )


def code_head_split(model: Any, target: Target, x0: torch.Tensor, n_targets: int) -> tuple[tuple[int, str] | None, str]:
    """Where the affine code head sits (index of the torch module, submodule name) and why, or None and why not.

    ``x0`` is a batch of one (or a few) samples the encoder is probed on.
    """
    if Target(target) is not Target.LATENT:
        return None, f"the {target} target is not the latent code"
    roots = torch_modules(model)
    if not roots:
        return None, "the model has no torch module to inspect"
    if _global_hooks():
        return None, "global module hooks are registered"
    linears = [(i, name, m) for i, root in enumerate(roots) for name, m in root.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None, "the model has no nn.Linear"
    seen: set[int] = set()
    unique = []
    for i, name, m in linears:  # a module reachable under two names is one module
        if id(m) not in seen:
            seen.add(id(m))
            unique.append((i, name, m))
    hooked_before = {id(m) for _, _, m in unique if _hooked(m)}
    calls: list[tuple[nn.Module, tuple, torch.Tensor, torch.Tensor | None]] = []

    def record(m: nn.Module, args: tuple, out: Any) -> None:
        calls.append((m, args, out, out.detach().clone() if isinstance(out, torch.Tensor) else None))

    handles = [m.register_forward_hook(record) for _, _, m in unique]
    try:
        with torch.no_grad():
            z = model.encode(x0)
    except Exception as exc:  # noqa: BLE001 - the plain path will report it if it is real
        return (
            None,
            f"probing the encoder on one sample failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
        )
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(z, torch.Tensor):
        return None, "the encoder's code is not a tensor"
    match = [c for c in calls if isinstance(c[2], torch.Tensor) and _same_tensor(c[2], z)]
    if not match:
        return None, "the code is not the output of an nn.Linear (something follows the last affine layer)"
    m, args, _, value = match[-1]
    where = next((i, name) for i, name, mm in unique if mm is m)
    label = where[1] or type(m).__name__
    if sum(c[0] is m for c in calls) != 1:
        return None, f"the code head {label} runs more than once per encoding"
    if id(m) in hooked_before:
        return None, f"the code head {label} has hooks"
    if type(m).forward is not nn.Linear.forward or torch.nn.utils.parametrize.is_parametrized(m):
        return None, f"the code head {label} is a {type(m).__name__} with its own forward or parametrisation"
    if len(args) != 1 or not isinstance(args[0], torch.Tensor) or args[0].dim() != 2 or z.dim() != 2 or args[0].shape[0] != z.shape[0]:
        return None, f"the code head {label} does not map one (batch, features) input to the (batch, latents) code"
    if value is None or not torch.equal(value, z):
        return None, f"the code was changed in place after the head {label}"
    h, k = int(m.in_features), int(m.out_features)
    if k != n_targets:
        return None, f"the code head {label} has {k} outputs, there are {n_targets} targets"
    if h >= n_targets:
        return None, f"the code head {label} reads {h} inputs, not fewer than the {n_targets} latents: no saving"
    return where, f"the code is the output of the affine head {label} ({h} -> {k}): {h} gradients of its input, then its weight"


def resolve_code_head(model: Any, where: tuple[int, str]) -> CodeHead:
    """The :class:`CodeHead` at ``where`` (from :func:`code_head_split`) in this copy of the model."""
    root = torch_modules(model)[where[0]]
    return CodeHead(root.get_submodule(where[1]) if where[1] else root)  # type: ignore[arg-type]
