"""Per-sample Jacobians of every target at once, with ``torch.func``.

``weighted_jacobian`` returns, for a block of samples and an optional set of
weighted copies of each (the points of an integration path), the weighted sum
of the Jacobians ``d target / d input`` of every target for every sample::

    G[b, t, :] = sum_a w[a] * d f_t(x[a, b]) / d x   at x[a, b]

With one copy of weight 1 this is the plain per-sample Jacobian.

How, and why this way
---------------------
Samples of a batch are independent for an autoencoder in eval mode (no layer
mixes rows), so ``d sum_b f_t(x_b) / d x_b`` is sample ``b``'s gradient. Two
transforms give every target at once:

``rev`` (reverse mode)
    ``jacrev`` of the batch-summed targets: one batched forward pass, then
    ``torch.func.vmap`` over the T one-hot cotangents of a single vjp; the
    cost is about T backward passes, done as batched matrix products.
``fwd`` (forward mode)
    ``jacfwd`` with respect to one input-shaped offset ``delta`` added to
    every sample: ``vmap`` over the D one-hot tangents; the cost is about D
    forward-mode passes. Cheaper when the input has fewer elements than there
    are targets.

``loop`` (batched autograd)
    one batched forward pass with autograd, then one backward pass per
    target (``retain_graph``); used for recurrent models it cannot batch, see below.
``batched`` (recurrent models: ``nn.LSTM``/``nn.GRU``)
    one forward pass in which every recurrent call is one
    :class:`torch.autograd.Function` with a hand-written backward
    (:mod:`aeinterp_gradients.recurrent_vjp`), then ONE backward pass that
    carries all T cotangents, as plain ``(T, rows, ...)`` tensors inside the
    recurrence and as legacy-``vmap`` batched gradients through the rest of
    the graph.

``auto`` takes ``batched`` for models whose recurrent layers are all
``nn.LSTM``/``nn.GRU`` (no ``proj_size``, no TorchScript), ``loop`` for the
other recurrent models, else ``fwd`` when D < T and ``rev`` otherwise.

Recurrent layers (``nn.LSTM``/``GRU``/``RNN``) keep their fused kernel in
``loop`` and ``rev``; ``fwd`` runs them as written-out gates
(:class:`aeinterp.toolkit.recurrent.Unrolled`, the same values), which have a
forward-mode derivative. Written out, the two-stack LSTM autoencoder
(6 x 30 -> 4, 2048 rows, one thread) measured: forward with autograd 0.57 s
vs 0.44 s fused, each backward pass 0.32 s vs 0.70 s in isolation, but over
a whole explanation no faster (2.6 s vs 2.8 s for 4 latents, 126 s vs 83 s
for 64 on a loaded machine: autograd walks ~2000 nodes per backward pass);
a backward vmapped over the targets (``jacrev``, ``is_grads_batched``, or a
hand-written LSTM backward with a vmap rule) took longer than the per-target
passes. With the fused kernel on CPU, vmapping the model over
*samples* (``vmap(jacrev(f))``) has no batching rule for the mkldnn RNN
(measured 70x slower, a per-sample loop); vmapping over cotangents works but
its RNN backward is not batched either (measured 2x slower than the loop of
backward passes, plus ~10 s of one-off overhead on the first call); forward
mode is not implemented for the mkldnn RNN, so ``fwd`` falls back to ``rev``
there with the reason reported. Hence ``loop`` for them: the forward pass is
still shared by all targets. cuDNN's restriction that RNN backward needs
train mode does not arise on CPU; on a GPU the RNN would have to run with
cuDNN disabled (not done here).

What was never tried before is a plain, explicitly batched hand-written
backward, and that is ``batched``: the recurrence's backward never runs under
``vmap`` dispatch (the Function takes the batch dimension off the gradients
it receives and puts it back on its results), has no weight gradients to
compute, and per step recomputes the step's gates (once for all targets),
then a few elementwise products on the ``(H, k, rows)`` cotangents plus one
``[W_hh | W_ih]`` matrix product, stacked layers in lockstep (layout and the
choice to recompute rather than save the slopes:
:mod:`aeinterp_gradients.recurrent_vjp`). On the bench model (two-stack LSTM
6 x 30 -> 4, 64 sequences x 32 steps = 2048 rows, 2 shared cores, best of
repeats), first version: the Jacobian took 0.12-0.15 s batched vs
0.25-0.27 s for ``loop``; with 1 cotangent 0.11 vs 0.17 s, with 32 (the
64-latent model's code head) 1.1 vs 1.9 s. One thread, CPU time: LSTM 0.10
vs 0.20 s (1 cotangent), 0.25 vs 0.46 s (4); GRU 0.07 vs 0.11 s, 0.24 vs
0.33 s. Variants measured and dropped: two matrix products per step instead
of one into ``[d h | d x]`` (backward 0.18 vs 0.15 s, one thread; again no
gain in columns), folding the forget-gate product into a 5-slot buffer (0.17
vs 0.14 s), blocks of rows sized for the cache (no gain, rows or columns
innermost), the input projection of all steps at once (a ``(T, N, 4H)``
tensor of memory traffic), smaller blocks of path points (``memory_mb`` 8
and 4: 10-30% slower, more steps of smaller products). The backward's matrix
products run near the cores' peak (~250 GFLOP/s); most of the rest is memory
traffic. In the bench's explanation (``bench_gradients.py --lstm-only``,
same run as Captum, idle machine) 4 latents went from 1.7x to 2.9x and then,
in columns with the gates recomputed, to 3.3-3.5x Captum's loop over latents
(0.12 s vs 0.40-0.43 s); 64 latents from 5.3x to 9.2x and then ~15x.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch.func import jacfwd, jacrev

from aeinterp.targets import Target, evaluate_target
from aeinterp.toolkit.recurrent import Unrolled

from .recurrent_vjp import RoutedRecurrent, batched_grad
from .recurrent_vjp import is_recurrent as _is_recurrent

__all__ = ["target_function", "weighted_jacobian", "choose_mode", "has_recurrent_layers", "scripted_recurrent", "Mode"]

Mode = Literal["auto", "rev", "fwd", "loop", "batched"]
TargetFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def target_function(model, target: Target | str, *, unroll: bool = False) -> TargetFn:  # noqa: ANN001 - any Model
    """``f(x, reference) -> (B, n_targets)``; the reconstruction error is measured against ``reference``.

    The reference is held constant (not differentiated): the error of the
    reconstruction of a moved input against the original sample, as the
    perturbation explainers define it. ``unroll``: recurrent kernels run as
    written-out gates (:class:`aeinterp.toolkit.recurrent.Unrolled`).
    """
    target = Target(target)

    def f(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        if unroll:
            with Unrolled():
                return evaluate_target(model, target, x, reference)
        return evaluate_target(model, target, x, reference)

    return f


def has_recurrent_layers(model) -> bool:  # noqa: ANN001 - any Model
    """Whether the torch modules behind ``model`` contain an ``nn.LSTM``/``GRU``/``RNN`` (or a cell), TorchScript included."""
    from aeinterp.model import torch_modules

    return any(_is_recurrent(m) for root in torch_modules(model) for m in root.modules())


def scripted_recurrent(model) -> bool:  # noqa: ANN001 - any Model
    """Whether a recurrent layer sits inside TorchScript (its kernel runs in the interpreter and cannot be written out)."""
    from aeinterp.model import torch_modules

    return any(
        isinstance(m, torch.jit.ScriptModule) and any(_is_recurrent(s) for s in m.modules())
        for root in torch_modules(model)
        for m in root.modules()
    )


def choose_mode(
    mode: Mode, n_inputs: int, n_targets: int, recurrent: bool = False, batched: bool = False
) -> Literal["rev", "fwd", "loop", "batched"]:
    """``auto``: for recurrent models ``batched`` where every recurrent layer takes it (``batched``, measured faster than
    ``loop`` for 1, 4 and 32 cotangents), else ``loop``; for the others forward mode when the input has fewer elements
    than there are targets."""
    if mode != "auto":
        return mode
    if recurrent:
        return "batched" if batched else "loop"
    return "fwd" if n_inputs < n_targets else "rev"


def weighted_jacobian(
    f: TargetFn,
    points: torch.Tensor,
    reference: torch.Tensor,
    weights: torch.Tensor,
    mode: Literal["rev", "fwd", "loop", "batched"],
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``(B, T, *shape)``: the ``weights``-weighted sum over copies of each sample's Jacobian.

    ``points`` is ``(A, B, *shape)`` (A weighted copies of B samples, e.g. the
    points of an integration path), ``reference`` ``(B, *shape)``, ``weights``
    ``(A,)``; the points need not have the reference's shape (they may be a
    layer's outputs, see :mod:`aeinterp_gradients.factorised`). The copies share one input-shaped offset, so autograd sums the
    A gradients of a sample before returning (nothing of size A x T x D is kept).
    """
    a, b = points.shape[:2]
    shape = tuple(points.shape[2:])
    ref = reference.unsqueeze(0).expand(a, *reference.shape).reshape(a * b, *reference.shape[1:])
    w = weights.to(points.dtype).view(a, 1, 1)

    if mode == "loop":
        with torch.enable_grad():
            delta = torch.zeros((b, *shape), dtype=points.dtype, device=points.device, requires_grad=True)
            y = f((points + delta.unsqueeze(0)).reshape(a * b, *shape), ref)
            y = (y.reshape(a, b, -1) * w).sum(dim=0)  # (B, T)
            rows = [torch.autograd.grad(y[:, t].sum(), delta, retain_graph=t + 1 < y.shape[1])[0] for t in range(y.shape[1])]
        return torch.stack(rows, dim=1)

    if mode == "batched":  # one backward pass, every target's cotangent at once (aeinterp_gradients.recurrent_vjp)
        with torch.enable_grad():
            delta = torch.zeros((b, *shape), dtype=points.dtype, device=points.device, requires_grad=True)
            with RoutedRecurrent():
                y = f((points + delta.unsqueeze(0)).reshape(a * b, *shape), ref)
            y = (y.reshape(a, b, -1) * w).sum(dim=0)  # (B, T)
            n_t = y.shape[1]
            one_hot = torch.eye(n_t, dtype=y.dtype, device=y.device).unsqueeze(1).expand(n_t, b, n_t)
            return batched_grad(y, delta, one_hot).movedim(0, 1)

    if mode == "rev":

        def summed(delta: torch.Tensor) -> torch.Tensor:
            y = f((points + delta.unsqueeze(0)).reshape(a * b, *shape), ref)
            return (y.reshape(a, b, -1) * w).sum(dim=(0, 1))

        jac = jacrev(summed, chunk_size=chunk_size)(torch.zeros((b, *shape), dtype=points.dtype, device=points.device))
        return jac.movedim(0, 1)  # (T, B, *shape) -> (B, T, *shape)

    def shifted(delta: torch.Tensor) -> torch.Tensor:
        y = f((points + delta).reshape(a * b, *shape), ref)
        return (y.reshape(a, b, -1) * w).sum(dim=0)  # (B, T)

    return jacfwd(shifted)(torch.zeros(shape, dtype=points.dtype, device=points.device))
