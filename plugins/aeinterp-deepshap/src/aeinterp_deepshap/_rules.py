"""DeepLIFT multiplier rules, vectorised over targets, samples and background.

Multipliers ("cotangents") are tensors shaped ``(k, n, b, *row_shape)``: ``k``
targets, ``n`` explained samples, ``b`` background samples, then the shape of
one row of the value they belong to. ``n`` and ``b`` are 1 while the
multipliers do not yet depend on the (sample, background) pair, which they do
not until the first nonlinearity is crossed on the way back from the target.

``x`` rows of a recorded value are its first ``n`` rows; background rows are
the rest (the tape is recorded on ``cat([x, background])``).
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from ._tape import _IDENTITY, _RESHAPE, Node, Ref, Tape

__all__ = ["affine", "maxpool", "maxreduce", "product", "rescale", "sum_to"]

LEAD = 3  # (targets, samples, background)


def sum_to(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Sum the trailing (row) dims of ``t`` down to ``shape``, undoing broadcasting."""
    row = t.shape[LEAD:]
    extra = len(row) - len(shape)
    if extra > 0:
        t = t.sum(dim=tuple(range(LEAD, LEAD + extra)))
    dims = tuple(LEAD + i for i, (a, b) in enumerate(zip(t.shape[LEAD:], shape)) if b == 1 and a != 1)
    return t.sum(dim=dims, keepdim=True) if dims else t


# --- affine ops ---------------------------------------------------------------------------


def affine(node: Node, twin: Node, tape: Tape, probe: Tape, cots: dict[int, torch.Tensor]) -> list[tuple[int, torch.Tensor]]:
    """Multipliers of an affine call's dependent inputs from those of its outputs (the transposed map).

    ``twin`` is the same call on the one-row ``probe`` tape; calls without an
    explicit rule are differentiated there with :func:`torch.func.vjp` and the
    transposed map is applied to all rows of multipliers with :func:`torch.func.vmap`.
    """
    name = node.name
    out = node.outputs[0]
    if len(node.outputs) == 1 and out in cots and not twin.generic:
        g = cots[out]
        lead = g.shape[:LEAD]
        if name == "linear":
            return [(node.inputs[0], torch.matmul(g, node.arg(1, keyword="weight")))]
        if name in _RESHAPE or name in _IDENTITY or "dropout" in name:
            return [(node.inputs[0], g.reshape(*lead, *tape.feat(node.inputs[0])))]
        if name in ("neg", "negative", "__neg__"):
            return [(node.inputs[0], -g)]
        if name in ("__pos__", "positive"):
            return [(node.inputs[0], g)]
        explicit = _elementwise_linear(node, tape, g)
        if explicit is not None:
            return explicit
    return _generic(node, twin, tape, probe, cots)


def _scalar_or_row(c: object, out_ndim: int) -> object:
    if isinstance(c, torch.Tensor) and c.dim() == out_ndim:
        return c[0] if c.shape[0] == 1 else c
    return c


def _elementwise_linear(node: Node, tape: Tape, g: torch.Tensor) -> list[tuple[int, torch.Tensor]] | None:
    """add / sub / mul or div by a constant, with broadcasting undone."""
    name = node.name
    args, kwargs = tree_unflatten(node.leaves, node.spec)
    if len(args) != 2:
        return None
    out_ndim = tape.values[node.outputs[0]].dim()
    if name in ("add", "__add__", "__radd__", "sub", "__sub__", "__rsub__", "rsub", "subtract"):
        alpha = kwargs.get("alpha", 1)
        signs = {
            "sub": [1.0, -alpha],
            "__sub__": [1.0, -1.0],
            "subtract": [1.0, -alpha],
            "__rsub__": [-1.0, 1.0],
            "rsub": [-alpha, 1.0],
        }.get(name, [1.0, alpha])
        result = []
        for a, s in zip(args, signs):
            if isinstance(a, Ref):
                result.append((a.value, sum_to(g if s == 1 else g * s, tape.feat(a.value))))
        return result
    if name in ("mul", "__mul__", "__rmul__", "multiply", "div", "__truediv__", "divide", "true_divide"):
        if kwargs:
            return None
        dep = args[0] if isinstance(args[0], Ref) else args[1]
        other = _scalar_or_row(args[1] if dep is args[0] else args[0], out_ndim)
        scaled = g / other if name in ("div", "__truediv__", "divide", "true_divide") else g * other
        return [(dep.value, sum_to(scaled, tape.feat(dep.value)))]
    return None


def _generic(node: Node, twin: Node, tape: Tape, probe: Tape, cots: dict[int, torch.Tensor]) -> list[tuple[int, torch.Tensor]]:
    primals = [probe.values[v] for v in twin.inputs]

    def fn(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        it = iter(tensors)
        leaves = [next(it) if isinstance(leaf, Ref) else leaf for leaf in twin.leaves]
        args, kwargs = tree_unflatten(leaves, twin.spec)
        out, _ = tree_flatten(twin.func(*args, **kwargs))
        return tuple(t for t in out if isinstance(t, torch.Tensor))

    outs, vjp_fn = torch.func.vjp(fn, *primals)
    any_cot = next(cots[o] for o in node.outputs if o in cots)
    lead = tuple(max(cots[o].shape[i] for o in node.outputs if o in cots) for i in range(LEAD))
    rows = lead[0] * lead[1] * lead[2]
    bdim = probe.bdim or [0] * len(probe.values)
    flat = []
    for o, primal in zip(node.outputs, outs):
        g = cots.get(o)
        feat = probe.feat(o) if o < len(bdim) and bdim[o] >= 0 else tuple(primal.shape[1:])
        axis = bdim[o] if o < len(bdim) and bdim[o] >= 0 else 0
        g = torch.zeros((1, 1, 1, *feat), dtype=any_cot.dtype, device=any_cot.device) if g is None else g
        flat.append(g.expand(*lead, *g.shape[LEAD:]).reshape(rows, *feat).unsqueeze(1 + axis))  # the probe's one-row layout
    grads = torch.func.vmap(vjp_fn)(tuple(flat))
    return [(v, gr.squeeze(1 + bdim[v]).reshape(*lead, *probe.feat(v))) for v, gr in zip(twin.inputs, grads)]


# --- rules that depend on the (sample, background) pair --------------------------------------


def _split(t: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return t[:n], t[n:]


def rescale(node: Node, tape: Tape, n: int, eps: float = 1e-6) -> torch.Tensor:
    """Rescale multipliers ``(n, b, *row)`` of an elementwise nonlinearity.

    ``(f(x) - f(ref)) / (x - ref)`` for every (sample, background) pair; where
    ``|x - ref| < eps`` (a near-tie) the derivative at the explained sample,
    ``f'(x)``. shap's DeepExplainer also switches to the gradient there but
    takes it at the reference; the two differ by ``O(eps)`` times the second
    derivative, and either choice leaves ``multiplier * (x - ref)`` within
    ``eps * |f'|`` of ``f(x) - f(ref)``. Rounding functions (no derivative
    between their jumps) get slope 0 there.
    """
    u, v = node.inputs[0], node.outputs[0]
    hx, hb = _split(tape.values[u], n)
    yx, yb = _split(tape.values[v], n)
    with torch.enable_grad():
        leaf = hx.detach().requires_grad_(True)
        out = node.call(tape.values, {u: leaf})
        if out.requires_grad:
            (deriv,) = torch.autograd.grad(out.sum(), leaf, allow_unused=True)
            deriv = torch.zeros_like(hx) if deriv is None else deriv
        else:  # piecewise constant (rounding): slope 0 between its jumps
            deriv = torch.zeros_like(hx)
    gap = hx.unsqueeze(1) - hb.unsqueeze(0)
    ratio = torch.sub(yx.unsqueeze(1), yb.unsqueeze(0)).div_(gap)
    small = gap.abs_() <= eps  # |x - ref| <= eps (a NaN gap is not small: it stays NaN, as the data were)
    if not bool(small.any()):  # continuous data rarely tie: no pass to patch them
        return ratio
    return torch.where(small, deriv.unsqueeze(1), ratio, out=ratio)  # in place: one (n, b, row) buffer fewer


def product(node: Node, tape: Tape, n: int, g: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """Shapley split of ``a * b``: ``d(ab) = mean(b) da + mean(a) db`` with pair midpoints; exact."""
    a, b = node.inputs
    mids = []
    for v in (a, b):
        vx, vb = _split(tape.values[v], n)
        mids.append(((vx.unsqueeze(1) + vb.unsqueeze(0)) / 2).unsqueeze(0))
    return [(a, sum_to(g * mids[1], tape.feat(a))), (b, sum_to(g * mids[0], tape.feat(b)))]


def maxpool(node: Node, tape: Tape, n: int, g: torch.Tensor, eps: float = 1e-7) -> list[tuple[int, torch.Tensor]]:
    """shap's max-pooling rule: the change of each window's max is split between the
    input's and the reference's arg-max positions, then divided by the input change."""
    from torch.nn import functional as F

    u = node.inputs[0]
    dims = int(node.name[-2])
    adaptive = node.name.startswith("adaptive")
    if adaptive:
        pool = {1: F.adaptive_max_pool1d_with_indices, 2: F.adaptive_max_pool2d_with_indices, 3: F.adaptive_max_pool3d_with_indices}[dims]
    else:
        pool = {1: F.max_pool1d_with_indices, 2: F.max_pool2d_with_indices, 3: F.max_pool3d_with_indices}[dims]
    args, kwargs = tree_unflatten([tape.values[u] if isinstance(leaf, Ref) else leaf for leaf in node.leaves], node.spec)
    kwargs = {k: v for k, v in kwargs.items() if k != "return_indices"}
    y, idx = pool(*args[: 2 if adaptive else 6], **kwargs)
    yx, yb = _split(y, n)
    ix, ib = _split(idx, n)
    hx, hb = _split(tape.values[u], n)
    cross = torch.maximum(yx.unsqueeze(1), yb.unsqueeze(0))
    to_x = (cross - yb.unsqueeze(0)).unsqueeze(0) * g  # (k, n, b, C, *out)
    to_ref = (yx.unsqueeze(1) - cross).unsqueeze(0) * g
    k, nb = to_x.shape[0], to_x.shape[1:3]
    lead_in = (k, *nb, *hx.shape[1 : 1 + (hx.dim() - 1 - dims)])
    spatial_in = int(torch.tensor(hx.shape[-dims:]).prod())
    flat_out = lambda t: t.reshape(*t.shape[: t.dim() - dims], -1)  # noqa: E731
    res = torch.zeros((*lead_in, spatial_in), dtype=g.dtype, device=g.device)
    res.scatter_add_(-1, flat_out(ix).unsqueeze(1).unsqueeze(0).expand(flat_out(to_x).shape), flat_out(to_x))
    res.scatter_add_(-1, flat_out(ib).unsqueeze(0).unsqueeze(0).expand(flat_out(to_ref).shape), flat_out(to_ref))
    dh = (hx.unsqueeze(1) - hb.unsqueeze(0)).unsqueeze(0)
    res = res.reshape(*lead_in, *hx.shape[-dims:])
    small = dh.abs() < eps
    return [(u, torch.where(small, torch.zeros_like(res), res / torch.where(small, torch.ones_like(dh), dh)))]


def maxreduce(node: Node, tape: Tape, n: int, g: torch.Tensor, eps: float = 1e-7) -> list[tuple[int, torch.Tensor]]:
    """``max`` / ``amax`` / ``min`` / ``amin`` over dims: shap's max-pooling rule with the reduced dims as one window.

    The change ``y(x) - y(ref)`` is split into ``cross - y(ref)``, credited to
    the sample's arg-max, and ``y(x) - cross``, credited to the reference's,
    with ``cross`` the larger (for min: smaller) of the two; both are divided
    by the input change at their position, so the split is exactly additive.
    """
    u = node.inputs[0]
    h = tape.values[u]
    dim = node.arg(1, keyword="dim")
    dims = sorted({d % h.dim() for d in (dim if isinstance(dim, (tuple, list)) else (dim,))})
    kept = [d for d in range(1, h.dim()) if d not in dims]
    kept_shape = [h.shape[d] for d in kept]
    hp = h.permute(0, *kept, *dims).reshape(h.shape[0], *kept_shape, -1)
    largest = node.name in ("max", "amax")
    idx = hp.argmax(-1) if largest else hp.argmin(-1)
    y = hp.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    yx, yb = _split(y, n)
    ix, ib = _split(idx, n)
    pick = torch.maximum if largest else torch.minimum
    cross = pick(yx.unsqueeze(1), yb.unsqueeze(0))
    k = g.shape[0]
    g = g.reshape(k, *g.shape[1:LEAD], *kept_shape)
    to_x = ((cross - yb.unsqueeze(0)).unsqueeze(0) * g).unsqueeze(-1)
    to_ref = ((yx.unsqueeze(1) - cross).unsqueeze(0) * g).unsqueeze(-1)
    b = yb.shape[0]
    full = (k, n, b, *kept_shape, hp.shape[-1])
    res = torch.zeros(full, dtype=g.dtype, device=g.device)
    res.scatter_add_(-1, ix.unsqueeze(1).unsqueeze(0).unsqueeze(-1).expand(*full[:-1], 1), to_x.expand(*full[:-1], 1))
    res.scatter_add_(-1, ib.unsqueeze(0).unsqueeze(0).unsqueeze(-1).expand(*full[:-1], 1), to_ref.expand(*full[:-1], 1))
    res = res.reshape(k, n, b, *kept_shape, *[h.shape[d] for d in dims])
    order = [0] + kept + dims  # row axes of the permuted layout, in original numbering
    inverse = [order.index(d) for d in range(1, h.dim())]
    res = res.permute(0, 1, 2, *[LEAD - 1 + i for i in inverse])
    hx, hb = _split(h, n)
    dh = (hx.unsqueeze(1) - hb.unsqueeze(0)).unsqueeze(0)
    small = dh.abs() < eps
    return [(u, torch.where(small, torch.zeros_like(res), res / torch.where(small, torch.ones_like(dh), dh)))]
