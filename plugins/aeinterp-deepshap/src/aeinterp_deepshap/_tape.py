"""Record a target function as a tape: one node per torch call that touches the input.

The recorder is a :class:`torch.overrides.TorchFunctionMode`, so it sees every
top-level torch function and tensor method the model's Python code calls
(``F.linear``, ``torch.relu``, ``x.reshape``, ``x + y`` ...) without hooks on
the user's module. Each *call* becomes its own node, so a module used twice
gets two nodes with their own inputs and outputs (shap's DeepExplainer keys
its rule on the module object and gets reused modules wrong).

A node's ``kind`` names the DeepLIFT rule that applies:

``affine``
    affine in its dependent arguments (linear, conv, reshape, add, sum,
    batch norm in eval mode, dropout in eval mode, ...): multipliers pass
    through the transposed linear map;
``unary``
    an elementwise nonlinearity of one dependent tensor (ReLU, SiLU, GELU,
    Tanh, exp, pow, ...): the rescale rule;
``product``
    the product of two dependent tensors: the Shapley split of a product
    (multipliers are the partner's midpoint between input and reference);
``maxpool``
    shap's max-pooling rule (also adaptive max pooling);
``maxreduce``
    ``max`` / ``amax`` (``min`` / ``amin``) over a dim: the same rule with the whole dim as one window;
``unsupported``
    anything else; the explainer falls back to expected gradients when such
    a node lies between the input and the target.

Composite operations with no single rule are rewritten into primitives while
recording: ``layer_norm`` becomes centring (affine), squaring (product),
mean (affine), ``rsqrt`` (unary) and a product, which keeps attributions
exactly additive; a division by a dependent tensor becomes ``reciprocal``
(unary) times the numerator; ``broadcast_tensors`` (what ``torch.distributions``
calls through ``broadcast_all`` when it builds ``Normal(loc, scale)``) becomes
one ``expand`` (affine) per dependent tensor, so a code read from the
distribution's ``.mean`` / ``.loc`` keeps its exact rules.

Argument validation of ``torch.distributions`` (``validate_args``, on by
default) compares the parameters with their constraints and calls
``bool()`` on the all-true result: a check that either passes, leaving every
value unchanged, or raises. Such ``bool()`` calls on a boolean tensor made
inside ``torch/distributions`` are counted in :attr:`Tape.checks` instead of
being taken for data-dependent control flow. Every unsupported node's reason
names where it was called (the innermost ``nn.Module`` and the user's source
line), so a fallback says which operation of which module broke exactness.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_unflatten

import aeinterp
from aeinterp.toolkit.recurrent import UnsupportedRecurrence

from ._decompose import DECOMPOSED, decompose

__all__ = ["Node", "Ref", "Tape", "Unsupported", "record"]


class Unsupported(Exception):
    """The target cannot be explained with DeepLIFT rules; the message says why."""


class Ref:
    """Placeholder for a dependent tensor argument: the index of its value on the tape."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Ref({self.value})"


@dataclass
class Node:
    """One recorded call."""

    index: int
    name: str
    func: Callable[..., Any]
    kind: str
    leaves: list[Any]  # flattened (args, kwargs); dependent tensors replaced by Ref
    spec: Any
    inputs: tuple[int, ...]  # value index of each Ref, in leaf order
    outputs: tuple[int, ...]
    reason: str = ""
    generic: bool = False  # affine rule by autodiff only (moved batch dim or a per-batch constant); set by check_tape

    def call(self, values: list[torch.Tensor], replace: dict[int, torch.Tensor] | None = None) -> Any:
        """Re-run the call on ``values`` (or ``replace[value]`` where given)."""
        replace = replace or {}
        leaves = [replace.get(leaf.value, values[leaf.value]) if isinstance(leaf, Ref) else leaf for leaf in self.leaves]
        args, kwargs = tree_unflatten(leaves, self.spec)
        return self.func(*args, **kwargs)

    def arg(self, position: int, default: Any = None, keyword: str | None = None) -> Any:
        """A positional (or keyword) argument of the recorded call, Refs left in place."""
        args, kwargs = tree_unflatten(self.leaves, self.spec)
        if keyword is not None and keyword in kwargs:
            return kwargs[keyword]
        return args[position] if position < len(args) else default


@dataclass
class Tape:
    """What one forward pass of the target did, with every intermediate value."""

    values: list[torch.Tensor]
    producer: list[int]  # node index that produced each value; -1 for the input
    nodes: list[Node]
    output: int
    rows: int
    used: list[bool] = field(default_factory=list)  # node lies on a path input -> output
    bdim: list[int] = field(default_factory=list)  # the batch axis of each value (0 unless moved); set by check_tape
    checks: int = 0  # bool() calls of torch.distributions' argument validation, passed and ignored

    def feat(self, value: int) -> tuple[int, ...]:
        """Shape of one row of ``value`` (its shape without the batch axis)."""
        shape = tuple(self.values[value].shape)
        bd = self.bdim[value] if self.bdim else 0
        return shape[:bd] + shape[bd + 1 :]


# --- op classification ------------------------------------------------------------------

_PASS = {  # calls that return metadata, not tensors
    "size",
    "dim",
    "ndimension",
    "numel",
    "nelement",
    "__len__",
    "stride",
    "is_contiguous",
    "data_ptr",
    "element_size",
    "get_device",
    "is_floating_point",
    "is_complex",
    "__format__",
    "__repr__",
    "__str__",
    "__hash__",
    "storage_offset",
    "__setstate__",
    "__reduce_ex__",
}
_DATA_DEPENDENT = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "__array__", "equal", "allclose"}

_IDENTITY = {"contiguous", "clone", "detach", "alias", "requires_grad_", "float", "double", "to", "type", "type_as", "data", "real"}
_DROPOUT = {"dropout", "alpha_dropout", "feature_alpha_dropout", "dropout1d", "dropout2d", "dropout3d"}
_RESHAPE = {"reshape", "view", "flatten", "unflatten", "view_as", "reshape_as", "squeeze", "unsqueeze"}
_AFFINE_FIRST = _RESHAPE | {  # affine in the first argument, the only one that may depend on the input
    "permute",
    "transpose",
    "swapaxes",
    "swapdims",
    "movedim",
    "moveaxis",
    "t",
    "expand",
    "expand_as",
    "repeat",
    "tile",
    "__getitem__",
    "narrow",
    "select",
    "index_select",
    "gather",
    "flip",
    "roll",
    "split",
    "chunk",
    "unbind",
    "tensor_split",
    "split_with_sizes",
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "pad",
    "interpolate",
    "upsample",
    "pixel_shuffle",
    "pixel_unshuffle",
    "sum",
    "mean",
    "cumsum",
    "trace",
    "diagonal",
    "tril",
    "triu",
    "neg",
    "negative",
    "__neg__",
    "positive",
    "__pos__",
    "batch_norm",
    "mT",
    "mH",
    "T",
    "H",
}
_AFFINE_ALL = {
    "add",
    "__add__",
    "__radd__",
    "sub",
    "__sub__",
    "__rsub__",
    "rsub",
    "subtract",
    "cat",
    "concat",
    "concatenate",
    "stack",
    "hstack",
    "vstack",
    "dstack",
    "where",
}
_MUL = {"mul", "__mul__", "__rmul__", "multiply"}
_DIV = {"div", "__truediv__", "divide", "true_divide"}
_MATMUL = {"matmul", "__matmul__", "mm", "bmm", "einsum"}
_UNARY = {
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "celu",
    "gelu",
    "silu",
    "mish",
    "softplus",
    "softsign",
    "tanh",
    "sigmoid",
    "hardtanh",
    "hardsigmoid",
    "hardswish",
    "logsigmoid",
    "tanhshrink",
    "exp",
    "expm1",
    "log",
    "log1p",
    "log2",
    "log10",
    "sqrt",
    "rsqrt",
    "reciprocal",
    "square",
    "pow",
    "__pow__",
    "__rpow__",
    "abs",
    "sin",
    "cos",
    "erf",
    "clamp",
    "clip",
    "threshold",
    "sinh",
    "cosh",
    "atan",
    "asinh",
    "softshrink",
    "hardshrink",
}
# elementwise but piecewise constant (or with jumps): the rescale rule splits f(x) - f(ref) exactly;
# their derivative (used only at near-ties) is 0 where autograd has none
_PIECEWISE = {
    "floor",
    "ceil",
    "round",
    "trunc",
    "fix",
    "frac",
    "sign",
    "sgn",
    "floor_divide",
    "__floordiv__",
    "__rfloordiv__",
    "remainder",
    "__mod__",
    "__rmod__",
    "fmod",
    "div_rounded",
}
_UNARY |= _PIECEWISE | {"prelu", "rrelu", "maximum", "minimum", "fmax", "fmin"}  # the last four with a constant
_MAXPOOL = {"max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d"}
_MAXREDUCE = {"max", "amax", "min", "amin"}
_INPLACE_DUNDER = {"__iadd__": "add", "__isub__": "sub", "__imul__": "mul", "__itruediv__": "div", "__ipow__": "pow"}
_FACTORY_LIKE = {
    "zeros_like",
    "ones_like",
    "empty_like",
    "full_like",
    "rand_like",
    "randn_like",
    "randint_like",
    "new_zeros",
    "new_ones",
    "new_empty",
    "new_full",
    "new_tensor",
    "size",
}


_HINTS = {
    "lstm": "the recurrent kernel of nn.LSTM",
    "gru": "the recurrent kernel of nn.GRU",
    "rnn_tanh": "nn.RNN",
    "rnn_relu": "nn.RNN",
    "embedding": "nn.Embedding",
    "softmax": "softmax mixes elements",
    "log_softmax": "log_softmax mixes elements",
    "group_norm": "nn.GroupNorm",
    "instance_norm": "nn.InstanceNorm",
    "scaled_dot_product_attention": "attention multiplies two input-dependent tensors (q k^T, then the weights by v)",
    "multi_head_attention_forward": "nn.MultiheadAttention: its fused kernel multiplies input-dependent queries, keys and values; "
    "no rule for it yet",
}


def op_name(func: Callable[..., Any]) -> str:
    """A call's name: ``linear``, ``__add__``, ``reshape``; a property getter's attribute (``T``, ``data``)."""
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":
        return getattr(getattr(func, "__self__", None), "__name__", name)
    return "max_pool" + name[-2:] if name.startswith("_max_pool") else name


def _is_training_dropout(name: str, args: tuple, kwargs: dict) -> bool:
    if "training" in kwargs:
        return bool(kwargs["training"])
    if name in ("dropout", "alpha_dropout", "feature_alpha_dropout", "dropout1d", "dropout2d", "dropout3d"):
        return bool(args[2]) if len(args) > 2 else True
    return False


def classify(name: str, args: tuple, kwargs: dict, dep: list[int], leaves: list[Any], out: Any) -> tuple[str, str]:
    """``(kind, reason)`` for a call whose flattened arguments ``leaves`` depend on the input at ``dep``."""
    first_only = dep == [0] and isinstance(args[0] if args else None, torch.Tensor)
    if name in _DROPOUT:
        if _is_training_dropout(name, args, kwargs):
            return "unsupported", f"{name} in training mode"
        return ("affine", "") if first_only else ("unsupported", f"{name} with a dependent probability")
    if name in _IDENTITY:
        if isinstance(out, torch.Tensor) and not out.is_floating_point():
            return (
                "unsupported",
                f"{name} casts an input-dependent tensor to {out.dtype} (integer values have no gradient and no DeepLIFT rule)",
            )
        return ("affine", "") if first_only else ("unsupported", f"{name} of a dependent argument")
    if name == "batch_norm":
        training = kwargs.get("training", args[5] if len(args) > 5 else False)
        if training:
            return "unsupported", "batch_norm in training mode (batch statistics mix samples)"
        return ("affine", "") if first_only else ("unsupported", "batch_norm with dependent statistics")
    if name in _AFFINE_FIRST:
        return ("affine", "") if first_only else ("unsupported", f"{name} with a dependent weight or index")
    if name in _AFFINE_ALL:
        if name == "where" and 0 in dep:
            return "unsupported", "where with a condition that depends on the input"
        return "affine", ""
    if name in _MUL:
        return ("product", "") if len(dep) == 2 else ("affine", "")
    if name in _MATMUL:
        return ("affine", "") if len(dep) == 1 else ("unsupported", f"{name} of two input-dependent tensors")
    if name in _DIV:  # dependent denominators are rewritten by the recorder
        return ("affine", "") if dep == [0] else ("unsupported", f"{name} by an input-dependent tensor")
    if name in _UNARY:
        if len(dep) != 1 or not isinstance(out, torch.Tensor):
            return "unsupported", f"{name} of several input-dependent tensors"
        if tuple(leaves[dep[0]].shape) != tuple(out.shape):
            return "unsupported", f"{name} that broadcasts its input"
        return "unary", ""
    if name in _MAXPOOL:
        if (
            kwargs.get("return_indices")
            or (name.startswith("max") and len(args) > 6 and args[6])
            or (name.startswith("adaptive") and len(args) > 2 and args[2])
        ):
            return "unsupported", f"{name} with return_indices"
        return ("maxpool", "") if first_only else ("unsupported", f"{name} of a non-input argument")
    if name in _MAXREDUCE:
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if first_only and isinstance(dim, torch.Tensor) and isinstance(out, torch.Tensor) and out.shape == args[0].shape:
            return "unary", ""  # elementwise max / min with a constant tensor
        if not first_only or dim is None or isinstance(dim, torch.Tensor):
            return "unsupported", f"{name} of several tensors or over all elements (use {name} over a dim)"
        return "maxreduce", ""
    hint = f" ({_HINTS[name]})" if name in _HINTS else ""
    return "unsupported", f"no DeepLIFT rule for {name}{hint}"


# --- recording ---------------------------------------------------------------------------


class _Recorder(TorchFunctionMode):
    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.values: list[torch.Tensor] = [x]
        self.versions: list[int] = [x._version]
        self.producer: list[int] = [-1]
        self.ids: dict[int, int] = {id(x): 0}
        self.nodes: list[Node] = []
        self.data_dependent: str = ""
        self.checks = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch protocol
        kwargs = kwargs or {}
        leaves, _ = tree_flatten((args, kwargs))
        if not any(isinstance(leaf, torch.Tensor) and id(leaf) in self.ids for leaf in leaves):
            return func(*args, **kwargs)
        name = op_name(func)
        if name in _PASS or name in ("shape", "dtype", "device", "requires_grad", "is_leaf", "grad_fn", "layout", "ndim"):
            return func(*args, **kwargs)
        if name in _DATA_DEPENDENT:
            if name == "__bool__" and _is_validation(args):
                self.checks += 1
            else:
                self.data_dependent = self.data_dependent or _with_location(
                    f"the model calls .{name}() on an input-dependent tensor (data-dependent control flow)"
                )
            return func(*args, **kwargs)
        if name in _FACTORY_LIKE:  # values do not depend on the input
            return func(*args, **kwargs)
        if name in _INPLACE_DUNDER or (name.endswith("_") and not name.startswith("_")):
            return self._inplace(func, _INPLACE_DUNDER.get(name, name.rstrip("_")), args, kwargs)
        args, kwargs = _no_inplace_flag(func, args, kwargs)
        if name in DECOMPOSED:
            plan = decompose(name, args, kwargs, self._dep)
            if isinstance(plan, str):
                return self.call(func, name, args, kwargs, reason=f"{name}: {plan}")
            if plan is not None:
                try:
                    with self:
                        return plan()
                except UnsupportedRecurrence as exc:  # raised before anything is recorded
                    return self.call(func, name, args, kwargs, reason=str(exc))
        if name == "layer_norm":
            return self._layer_norm(*args, **kwargs)
        if name == "broadcast_tensors":
            return self._broadcast(args)
        if name in _DIV or name == "__rtruediv__":
            return self._div(func, name, args, kwargs)
        return self.call(func, name, args, kwargs)

    def _dep(self, leaf: Any) -> bool:
        return isinstance(leaf, torch.Tensor) and id(leaf) in self.ids

    def call(self, func: Callable[..., Any], name: str, args: tuple, kwargs: dict, reason: str = "") -> Any:
        """Run ``func`` and record it as a node (unsupported, with ``reason``, when one is given)."""
        leaves, spec = tree_flatten((args, kwargs))
        dep = [i for i, leaf in enumerate(leaves) if self._dep(leaf)]
        out = func(*args, **kwargs)
        kind, reason = ("unsupported", reason) if reason else classify(name, args, kwargs, dep, leaves, out)
        if kind == "unsupported":
            reason = _with_location(reason)
        inputs = tuple(self.ids[id(leaves[i])] for i in dep)
        stored = [Ref(self.ids[id(leaf)]) if i in dep else leaf for i, leaf in enumerate(leaves)]
        out_leaves, _ = tree_flatten(out)
        index = len(self.nodes)
        outputs = []
        for t in out_leaves:
            if isinstance(t, torch.Tensor):
                self.ids[id(t)] = len(self.values)
                outputs.append(len(self.values))
                self.values.append(t)
                self.versions.append(t._version)
                self.producer.append(index)
        self.nodes.append(Node(index, name, func, kind, stored, spec, inputs, tuple(outputs), reason))
        return out

    def _inplace(self, func: Callable[..., Any], name: str, args: tuple, kwargs: dict) -> Any:
        target = args[0]
        if self._dep(target):  # keep the value other nodes saw before the mutation
            old = self.ids[id(target)]
            self.values[old] = target.detach().clone()
            self.versions[old] = self.values[old]._version
        return self.call(func, name, args, kwargs)

    def _div(self, func: Callable[..., Any], name: str, args: tuple, kwargs: dict) -> Any:
        num, den = (args[1], args[0]) if name == "__rtruediv__" else (args[0], args[1])
        if kwargs.get("rounding_mode") is not None:  # floor / trunc division: piecewise constant, not affine
            return self.call(func, "div_rounded", args, kwargs)
        if not self._dep(den):
            if name == "__rtruediv__":
                return self.call(func, "div_by_dependent", args, kwargs)  # classified unsupported
            return self.call(func, name, args, kwargs)
        inv = self.call(torch.reciprocal, "reciprocal", (den,), {})
        return self.call(torch.mul, "mul", (num, inv) if isinstance(num, torch.Tensor) else (inv, num), {})

    def _broadcast(self, args: tuple) -> tuple[torch.Tensor, ...]:
        """``broadcast_tensors`` as one ``expand`` per tensor (``reshape`` where the shape stays): affine, one input each."""
        tensors = tuple(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else tuple(args)
        shape = torch.broadcast_shapes(*(tuple(t.shape) for t in tensors))
        out = []
        for t in tensors:
            if not self._dep(t):
                out.append(t.expand(shape))
            elif tuple(t.shape) == tuple(shape):
                out.append(self.call(torch.Tensor.reshape, "reshape", (t, tuple(shape)), {}))
            else:
                out.append(self.call(torch.Tensor.expand, "expand", (t, tuple(shape)), {}))
        return tuple(out)

    def _layer_norm(self, x: torch.Tensor, normalized_shape: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> Any:
        dims = tuple(range(-len(tuple(normalized_shape)), 0))
        mu = self.call(torch.mean, "mean", (x,), {"dim": dims, "keepdim": True})
        centred = self.call(torch.sub, "sub", (x, mu), {})
        square = self.call(torch.mul, "mul", (centred, centred), {})
        var = self.call(torch.mean, "mean", (square,), {"dim": dims, "keepdim": True})
        shifted = self.call(torch.add, "add", (var, eps), {})
        scale = self.call(torch.rsqrt, "rsqrt", (shifted,), {})
        y = self.call(torch.mul, "mul", (centred, scale), {})
        if weight is not None:
            y = self.call(torch.mul, "mul", (y, weight), {})
        if bias is not None:
            y = self.call(torch.add, "add", (y, bias), {})
        return y


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_DISTRIBUTIONS_DIR = os.path.join(_TORCH_DIR, "distributions") + os.sep
_LIBRARY_DIRS = (_TORCH_DIR, os.path.dirname(__file__) + os.sep, os.path.dirname(aeinterp.__file__) + os.sep)


def _is_validation(args: tuple) -> bool:
    """Whether ``bool(t)`` is torch.distributions checking its arguments: a boolean ``t``, asked inside torch/distributions."""
    if not args or not isinstance(args[0], torch.Tensor) or args[0].dtype != torch.bool:
        return False
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(_DISTRIBUTIONS_DIR):
            return True
        frame = frame.f_back
    return False


def _with_location(reason: str) -> str:
    """``reason`` plus where the call was made: the innermost nn.Module running it and, when that
    line is inside the module (not in torch, aeinterp or the caller of the whole model), the user's source line."""
    module = site = None
    frame = sys._getframe(1)
    while frame is not None and module is None:
        code = frame.f_code
        file = code.co_filename
        if site is None and not file.startswith(_LIBRARY_DIRS):
            site = f"{os.path.basename(file)}:{frame.f_lineno} in {code.co_name}"
        owner = frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None  # a method's self, whatever its name
        if isinstance(owner, torch.nn.Module):
            module = type(owner).__name__
        frame = frame.f_back
    where = ", ".join(part for part in (f"module {module}" if module else "", site if module else "") if part)
    return f"{reason} (called from {where})" if where else reason


def _no_inplace_flag(func: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Turn ``F.relu(x, inplace=True)`` and friends into their out-of-place form."""
    if getattr(func, "__module__", None) != F.__name__:
        return args, kwargs
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return args, kwargs
    if not bound.arguments.get("inplace"):
        return args, kwargs
    bound.arguments["inplace"] = False
    return bound.args, bound.kwargs


def record(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Tape:
    """Run ``fn(x)`` once and return its tape; raises :class:`Unsupported` when it cannot be used."""
    x = x.detach()
    rec = _Recorder(x)
    with torch.no_grad(), rec:
        out = fn(x)
    if rec.data_dependent:
        raise Unsupported(rec.data_dependent)
    if not isinstance(out, torch.Tensor) or id(out) not in rec.ids:
        raise Unsupported("the target was not computed by torch operations the recorder can see (TorchScript or a C++ extension?)")
    for i, (t, v) in enumerate(zip(rec.values, rec.versions)):
        if t._version != v:
            raise Unsupported(f"an intermediate tensor (value {i}) was modified in place after it was used")
    tape = Tape(values=rec.values, producer=rec.producer, nodes=rec.nodes, output=rec.ids[id(out)], rows=x.shape[0], checks=rec.checks)
    _mark_used(tape)
    return tape


def _mark_used(tape: Tape) -> None:
    """Flag the nodes on a path from the input to the output."""
    needed = {tape.output}
    used = [False] * len(tape.nodes)
    for node in reversed(tape.nodes):
        if needed.intersection(node.outputs):
            used[node.index] = True
            needed.update(node.inputs)
    tape.used = used


def _batch_axis(main: torch.Tensor, one: torch.Tensor, rows: int) -> int | None:
    """The axis of ``main`` (recorded on ``rows`` rows) that is the batch, given the one-row ``one``; None if none is."""
    if main.dim() == 0 or main.dim() != one.dim():
        return None
    differ = [i for i, (a, b) in enumerate(zip(main.shape, one.shape)) if a != b]
    if len(differ) == 1 and main.shape[differ[0]] == rows and one.shape[differ[0]] == 1:
        return differ[0]
    if not differ and rows == 1 and main.shape[0] == 1:
        return 0
    return None


def _batch_constant(leaf: torch.Tensor, other: Any, rows: int) -> bool:
    """Whether a constant argument is one row repeated for every sample (``torch.ones(N, 1)``, ``buf.expand(N, -1)``)."""
    if not isinstance(other, torch.Tensor) or leaf.dtype != other.dtype or _batch_axis(leaf, other, rows) is None:
        return False
    return bool(torch.equal(leaf, other.expand_as(leaf)))


def check_tape(tape: Tape, probe: Tape) -> None:
    """Raise :class:`Unsupported` unless every used node has a rule and both tapes have the same structure.

    ``probe`` is the tape of a one-row input: its nodes are where the affine
    rules evaluate their (sample-independent) transposed maps. Sets the batch
    axis of every value on both tapes; a value whose batch axis is not the
    first may pass only through affine calls (evaluated by autodiff on the
    probe), and a constant repeated once per sample is accepted as a constant.
    """
    if len(tape.nodes) != len(probe.nodes) or tape.output != probe.output:
        raise Unsupported("the model runs different operations for different batch sizes (batch-dependent control flow)")
    for node, twin in zip(tape.nodes, probe.nodes):
        if node.name != twin.name or node.inputs != twin.inputs:
            raise Unsupported(f"the model runs different operations for different batch sizes ({node.name} vs {twin.name})")
    used = [n for n in tape.nodes if tape.used[n.index]]
    for node in used:  # a missing rule is the reason, whatever the layout
        if node.kind == "unsupported":
            raise Unsupported(node.reason)
    bdim = [0] * len(tape.values)
    for v, (main, one) in enumerate(zip(tape.values, probe.values)):
        axis = _batch_axis(main, one, tape.rows)
        bdim[v] = -1 if axis is None else axis
    for node in used:
        twin = probe.nodes[node.index]
        for leaf, other in zip(node.leaves, twin.leaves):
            if isinstance(leaf, torch.Tensor) and (not isinstance(other, torch.Tensor) or leaf.shape != other.shape):
                if node.kind != "affine" or not _batch_constant(leaf, other, tape.rows):
                    raise Unsupported(f"{node.name} uses a constant with one row per sample; DeepLIFT needs the same map for every sample")
                twin.generic = True
        for v in (*node.inputs, *node.outputs):
            if bdim[v] < 0:
                raise Unsupported(f"{node.name} moves, squeezes or reduces the batch dimension; samples must be processed independently")
            if bdim[v] != 0:
                if node.kind != "affine":
                    raise Unsupported(f"{node.name} ({node.kind}) acts on a tensor whose batch dimension is not the first")
                twin.generic = True
    if bdim[tape.output] != 0:
        raise Unsupported("the target's batch dimension is not the first")
    tape.bdim = probe.bdim = bdim
