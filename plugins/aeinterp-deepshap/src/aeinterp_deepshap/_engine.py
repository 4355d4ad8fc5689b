"""DeepSHAP (DeepLIFT rescale multipliers averaged over a background) for every target at once.

For each explained sample ``x`` and background sample ``b`` DeepLIFT gives a
multiplier matrix ``M(x, b)`` (targets x input elements) and the attribution
``phi(x) = mean_b M(x, b) * (x - b)``, exactly what ``shap.DeepExplainer``
computes one target and one sample at a time.

Here the target function is recorded once per chunk of samples on
``cat([x_chunk, background])`` (see :mod:`._tape`), and multipliers flow back
from all targets together as tensors ``(targets, samples, background, *row)``.
Multipliers stay independent of the (sample, background) pair until the first
nonlinearity is crossed. Where that nonlinearity's input is an affine function
``L x + c`` of the input (the first layer), the pair average is factorised::

    phi[k, d] = sum_h G[k, h] L[h, d] A[h, d],   A[h, d] = mean_b r[b, h] (x_d - b_d)

with ``G`` the (pair-independent) multipliers above the nonlinearity and
``r`` its rescale factors; ``A`` is one batched matmul per chunk. For a
``Linear-ReLU-Linear`` encoder this removes the background dimension from all
but one matmul. Deeper stacks of nonlinearities are computed per pair, in
chunks sized to ``memory_mb``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from aeinterp.progress import NullProgress, Progress

from ._rules import affine, maxpool, maxreduce, product, rescale
from ._tape import Tape, Unsupported, check_tape, record

__all__ = ["DeepLiftResult", "Unsupported", "deeplift_shap"]

MAX_JACOBIAN = 2**26  # elements of an explicit first-layer map used by the factorisation
MAX_CONTRACTION = 2**25  # elements of the (background x first-layer map) matrix used by the contraction


@dataclass
class _Plan:
    factored: set[int]  # unary nodes whose pair average is factorised
    contracted: set[int]  # affine-in-x values whose pair-dependent multipliers are contracted directly
    affine_from_x: list[bool]
    pair: set[int]  # values whose multipliers depend on the (sample, background) pair
    jac: dict[int, torch.Tensor] = field(default_factory=dict)  # value -> (H, D) map from the input
    vmat: dict[int, torch.Tensor] = field(default_factory=dict)  # value -> (B * H, D): L[h, d] * bg[b, d]


@dataclass
class DeepLiftResult:
    """Per-element attributions and the target values they explain."""

    phi: torch.Tensor  # (samples, targets, elements)
    f_x: torch.Tensor  # (samples, targets)
    f_background: torch.Tensor  # (background, targets)
    info: dict[str, Any]


def _numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))


def _plan(tape: Tape, d: int, b: int) -> _Plan:
    affine_from_x = [False] * len(tape.values)
    affine_from_x[0] = True
    for node in tape.nodes:
        ok = node.kind == "affine" and all(affine_from_x[v] for v in node.inputs)
        for v in node.outputs:
            affine_from_x[v] = ok
    has, pair, factored, contracted = {tape.output}, set(), set(), set()
    held = 0  # elements of the contraction matrices kept so far
    for node in reversed(tape.nodes):
        outs = [o for o in node.outputs if o in has]
        if not tape.used[node.index] or not outs:
            continue
        p = any(o in pair for o in outs)
        h = _numel(tape.feat(outs[0]))
        if len(node.outputs) == 1 and p and affine_from_x[outs[0]] and h * d <= MAX_JACOBIAN and held + b * h * d <= MAX_CONTRACTION:
            contracted.add(outs[0])
            held += b * h * d
        elif node.kind == "affine":
            has.update(node.inputs)
            if p:
                pair.update(node.inputs)
        elif node.kind == "unary" and not p and affine_from_x[node.inputs[0]] and _numel(tape.feat(node.inputs[0])) * d <= MAX_JACOBIAN:
            factored.add(node.index)
        else:
            has.update(node.inputs)
            pair.update(node.inputs)
    return _Plan(factored=factored, contracted=contracted, affine_from_x=affine_from_x, pair=pair)


def _per_sample(tape: Tape, plan: _Plan, k: int, b: int, d: int) -> int:
    """Approximate peak elements per explained sample for ``k`` targets at once."""
    feats = [_numel(tape.feat(v)) for v in range(len(tape.values))]
    pair_cot = max((k * b * feats[v] for v in plan.pair), default=0)
    unary = max(
        (b * feats[n.inputs[0]] for n in tape.nodes if n.kind in ("unary", "maxpool", "maxreduce") and tape.used[n.index]), default=0
    )
    fact = max((feats[tape.nodes[i].inputs[0]] * (d + k) for i in plan.factored), default=0)
    return 3 * pair_cot + 5 * unary + fact + 3 * k * d + sum(feats) + 2 * b * d


def _jacobian(tape: Tape, probe: Tape, u: int) -> torch.Tensor:
    """``(row elements of u, input elements)``: the affine map from the input to value ``u``."""
    feat = tape.feat(u)
    h = _numel(feat)
    x = tape.values[0]
    cots = {u: torch.eye(h, dtype=x.dtype, device=x.device).reshape(h, 1, 1, *feat)}
    for node in reversed(tape.nodes[: tape.producer[u] + 1]):
        local = {o: cots.pop(o) for o in node.outputs if o in cots}
        if local:
            for v, c in affine(node, probe.nodes[node.index], tape, probe, local):
                cots[v] = c if v not in cots else cots[v] + c
    d = _numel(tape.feat(0))
    if 0 not in cots:
        return torch.zeros((h, d), dtype=x.dtype, device=x.device)
    return cots[0].reshape(h, d)


def _factored(g: torch.Tensor, r: torch.Tensor, u: int, plan: _Plan, x: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """``(k, n, D)`` contribution of a nonlinearity whose input is affine in ``x`` and whose
    multipliers above do not depend on the pair: ``G @ (L * A)``, A averaged over the background."""
    k = g.shape[0]
    G = g.reshape(k, -1)
    n, b = r.shape[:2]
    r = r.reshape(n, b, -1)
    delta = x.unsqueeze(1) - bg.unsqueeze(0)  # (n, b, D)
    if u == 0:  # the nonlinearity acts on the input itself
        return G.unsqueeze(1) * (r * delta).mean(1).unsqueeze(0)
    a = torch.matmul(r.transpose(1, 2), delta)  # (n, H, D): sum over the background in one bmm
    a.mul_(plan.jac[u])
    return torch.matmul(G / b, a).transpose(0, 1)


def _contract(g: torch.Tensor, u: int, plan: _Plan, x: torch.Tensor) -> torch.Tensor:
    """``(k, n, D)`` from pair-dependent multipliers ``C`` at a value ``L x + c``::

        mean_b (C_b L) * (x - b) = (mean_b C_b) L * x - (1/B) sum_(b,h) C[b, h] (L[h, d] b_d)

    the second term is one matmul with inner dimension background x H, instead
    of a ``(k, n, background, D)`` tensor multiplied by ``x - b`` and averaged.
    """
    k, n, b = g.shape[0], x.shape[0], plan.vmat[u].shape[0] // plan.jac[u].shape[0]
    c = g.expand(k, n, b, *g.shape[3:]).reshape(k, n, b, -1)
    first = torch.matmul(c.mean(2), plan.jac[u]).mul_(x.unsqueeze(0))
    second = torch.matmul(c.reshape(k * n, -1), plan.vmat[u]).reshape(k, n, -1)
    return first.sub_(second.div_(b))


def _backward(
    tape: Tape, probe: Tape, plan: _Plan, n: int, x: torch.Tensor, bg: torch.Tensor, kidx: torch.Tensor, eps: float
) -> torch.Tensor:
    out_feat = tape.feat(tape.output)
    k = len(kidx)
    eye = torch.eye(_numel(out_feat), dtype=x.dtype, device=x.device)[kidx]
    cots: dict[int, torch.Tensor] = {tape.output: eye.reshape(k, 1, 1, *out_feat)}
    phi: torch.Tensor | None = None
    for node in reversed(tape.nodes):
        if not tape.used[node.index] or not any(o in cots for o in node.outputs):
            continue
        local = {o: cots.pop(o) for o in node.outputs if o in cots}
        if node.outputs[0] in plan.contracted:
            part = _contract(local[node.outputs[0]], node.outputs[0], plan, x)
            phi = part if phi is None else phi.add_(part)
            contribs = []
        elif node.kind == "affine":
            contribs = affine(node, probe.nodes[node.index], tape, probe, local)
        elif node.kind == "unary":
            g, u = local[node.outputs[0]], node.inputs[0]
            r = rescale(node, tape, n, eps)
            if node.index in plan.factored:
                part = _factored(g, r, u, plan, x, bg)
                phi = part if phi is None else phi.add_(part)
                contribs = []
            else:
                contribs = [(u, g * r.unsqueeze(0))]
        elif node.kind == "product":
            contribs = product(node, tape, n, local[node.outputs[0]])
        elif node.kind == "maxpool":
            contribs = maxpool(node, tape, n, local[node.outputs[0]])
        elif node.kind == "maxreduce":
            contribs = maxreduce(node, tape, n, local[node.outputs[0]])
        else:  # pragma: no cover - check_tape refuses these
            raise Unsupported(node.reason)
        for v, c in contribs:
            cots[v] = c if v not in cots else cots[v] + c
    if 0 in cots:
        g = cots.pop(0)
        g = g.reshape(*g.shape[:3], -1)
        if g.shape[2] == 1:
            part = g[:, :, 0] * (x - bg.mean(0)).unsqueeze(0)
        else:
            part = (g * (x.unsqueeze(1) - bg.unsqueeze(0)).unsqueeze(0)).mean(2)
        phi = part if phi is None else phi.add_(part)
    if phi is None:
        return torch.zeros((k, n, x.shape[1]), dtype=x.dtype, device=x.device)
    return phi.expand(k, n, x.shape[1])


def _setup(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, background: torch.Tensor, memory_mb: float
) -> tuple[Tape, Tape, _Plan, int, int, int, int]:
    """What every chunk shares: the recorded probe and first tapes, the plan, its first-layer maps, the block sizes."""
    b, d = background.shape[0], _numel(tuple(x.shape[1:]))
    probe = record(fn, x[:1])
    first = record(fn, torch.cat([x[:1], background]))
    check_tape(first, probe)
    plan = _plan(first, d, b)
    k_all = _numel(first.feat(first.output))
    budget = max(1, int(memory_mb * 2**20 / x.element_size()))
    with torch.no_grad():
        for u in ({first.nodes[i].inputs[0] for i in plan.factored} | plan.contracted) - {0}:
            plan.jac[u] = _jacobian(first, probe, u)
        for u in plan.contracted:
            plan.vmat[u] = (plan.jac[u].unsqueeze(0) * background.reshape(b, 1, -1)).reshape(-1, d)
    fixed = sum(j.numel() for j in plan.jac.values()) + sum(v.numel() for v in plan.vmat.values())
    kb = k_all
    while kb > 1 and _per_sample(first, plan, kb, b, d) > budget - fixed:
        kb = (kb + 1) // 2
    return probe, first, plan, k_all, fixed, kb, _per_sample(first, plan, kb, b, d)


def deeplift_shap(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    background: torch.Tensor,
    *,
    memory_mb: float = 1024.0,
    eps: float = 1e-6,
    progress: Progress | None = None,
    description: str = "deepshap",
    setup: dict[str, Any] | None = None,
) -> DeepLiftResult:
    """DeepSHAP attributions of every output of ``fn`` for every row of ``x``.

    ``fn`` maps ``(N, *shape)`` to ``(N, K)``. Raises :class:`Unsupported` (with
    the reason) when an operation between input and output has no rule.

    ``setup``: a dict the caller keeps between calls with the same ``fn``
    (model and target) and ``background`` (e.g. the sample chunks of one
    step); the recorded probe, the plan and the first-layer maps are made on
    the first call and reused by the next (each costs a recording of the
    model on the background). It is keyed by the background's storage, shape,
    dtype and ``memory_mb``, so a different background makes a new one.
    """
    progress = progress or NullProgress()
    n_all, b = x.shape[0], background.shape[0]
    d = _numel(tuple(x.shape[1:]))
    key = (background.data_ptr(), tuple(background.shape), background.dtype, tuple(x.shape[1:]), float(memory_mb))
    if setup is not None and setup.get("key") == key:
        probe, first, plan, k_all, fixed, kb, per = setup["value"]
    else:
        probe, first, plan, k_all, fixed, kb, per = _setup(fn, x, background, memory_mb)
        if setup is not None:
            setup.clear()
            setup.update(key=key, value=(probe, first, plan, k_all, fixed, kb, per))
    budget = max(1, int(memory_mb * 2**20 / x.element_size()))
    chunk = max(1, min(n_all, (budget - fixed) // max(1, per)))
    single = chunk >= n_all and kb >= k_all  # one block: its result is phi itself, no copy into a buffer
    phi = None if single else torch.empty((n_all, k_all, d), dtype=x.dtype, device=x.device)
    f_x = torch.empty((n_all, k_all), dtype=x.dtype, device=x.device)
    bg_flat = background.reshape(b, -1)
    starts = range(0, n_all, chunk)
    f_bg = first.values[first.output].reshape(1 + b, -1)[1:]
    for start in progress.track(starts, total=len(starts), description=description):
        xc = x[start : start + chunk]
        n = xc.shape[0]
        tape = record(fn, torch.cat([xc, background]))
        if len(tape.nodes) != len(first.nodes):
            raise Unsupported("the model runs different operations for different inputs (data-dependent control flow)")
        tape.bdim = first.bdim
        out = tape.values[tape.output].reshape(n + b, -1)
        f_x[start : start + n] = out[:n]
        for k0 in range(0, k_all, kb):
            kidx = torch.arange(k0, min(k0 + kb, k_all))
            with torch.no_grad():
                part = _backward(tape, probe, plan, n, xc.reshape(n, -1), bg_flat, kidx, eps)
            if phi is None:  # (targets, samples, D) views of a (samples, targets, D) product: transposing back is free
                phi = part.transpose(0, 1).contiguous()
            else:
                phi[start : start + n, k0 : k0 + len(kidx)] = part.transpose(0, 1)
        del tape
    rules = Counter(n.name for n in first.nodes if first.used[n.index])
    info = {
        "rules": dict(sorted(rules.items())),
        "factorised_nonlinearities": len(plan.factored),
        "contracted_values": len(plan.contracted),
        "samples_per_chunk": int(chunk),
        "targets_per_chunk": int(kb),
        "estimated_peak_mb": round((fixed + chunk * per) * x.element_size() / 2**20, 1),
    }
    if phi is None:  # no samples
        phi = torch.zeros((n_all, k_all, d), dtype=x.dtype, device=x.device)
    return DeepLiftResult(phi=phi, f_x=f_x, f_background=f_bg, info=info)
