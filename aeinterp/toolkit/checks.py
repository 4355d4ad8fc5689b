"""Checks the core runs around every explainer, so that nothing wrong is reported as success.

* :func:`check_model_memory` builds a model on torch's ``meta`` device and
  refuses sizes that cannot fit before a byte is allocated;
* :func:`check_finite_outputs` evaluates a target on the explained samples and
  names the first sample whose output is NaN or infinite;
* :func:`check_gradient_path` makes sure a target depends on its input through
  autograd (explainers that declare ``needs_gradients`` would otherwise report
  all-zero attributions for a model that uses ``no_grad``, ``detach`` or numpy);
* :func:`check_explanation` validates an explainer's result against the data
  (targets x feature groups, names, local shape, arrays and extras) and turns
  its extras into plain JSON.

None of them knows any explainer; :func:`aeinterp.run_explainer` calls them.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ..errors import CapabilityError, ExplainerError, ModelError
from ..explanation import Explanation, jsonable
from ..model import Model, as_tensor, frozen
from ..targets import Target, evaluate_target, target_names_for

__all__ = [
    "check_model_memory",
    "check_finite_outputs",
    "check_gradient_path",
    "check_explanation",
    "memory_limit",
    "plain_extras",
]

BYTES_PER_PARAMETER_TRAINING = 16  # float32 weight, gradient and Adam's two moments
BYTES_PER_PARAMETER = 4
FINITE_BATCH = 256
GRADIENT_PROBE = 8


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def memory_limit() -> int:
    """Bytes a model may take: ``AEINTERP_MAX_MODEL_BYTES``, else 80% of physical memory."""
    env = os.environ.get("AEINTERP_MAX_MODEL_BYTES", "").strip()
    if env:
        try:
            return int(float(env))
        except ValueError:
            pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 64 * 10**9


def check_model_memory(build: Callable[[], torch.nn.Module], what: str, *, training: bool = False) -> None:
    """Build the module on the ``meta`` device (no memory) and refuse it if its parameters cannot fit.

    ``what`` names the recipe values that chose the size (``"latent_dim 1000000000"``).
    Errors raised by ``build`` itself pass through unchanged.
    """
    with torch.device("meta"):
        module = build()
    count = sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())
    need = count * (BYTES_PER_PARAMETER_TRAINING if training else BYTES_PER_PARAMETER)
    limit = memory_limit()
    if need > limit:
        raise ModelError(
            f"{what} would need {_gb(need)} for {count:,} parameters{' while training' if training else ''}, "
            f"more than the {_gb(limit)} available (set AEINTERP_MAX_MODEL_BYTES to change the limit); choose smaller sizes"
        )


def check_finite_outputs(model: Model, data: Any, target: Target | str) -> None:
    """Raise :class:`ModelError` naming the target and the first sample whose output is NaN or infinite."""
    target = Target(target)
    if not hasattr(model, "encode"):  # explainers that build their own models get none
        return
    x = data.x_explain  # read a batch at a time (a memory map or a lazily read sparse matrix stays lazy)
    with frozen(model), torch.no_grad():
        for start in range(0, len(x), FINITE_BATCH):
            batch = as_tensor(np.asarray(x[start : start + FINITE_BATCH]), model)
            try:
                out = evaluate_target(model, target, batch)
            except Exception:  # a model that cannot evaluate is reported by the explainer's own error
                return
            bad = ~torch.isfinite(out.detach().reshape(out.shape[0], -1)).all(dim=1)
            if bool(bad.any()):
                row = int(torch.nonzero(bad)[0, 0])
                values = out[row].reshape(-1)
                kind = "NaN" if bool(torch.isnan(values).any()) else "infinite"
                raise ModelError(
                    f"the model's {target.value} output is {kind} for explained sample {start + row} "
                    f"(row {int(data.explain_index[start + row]) if hasattr(data, 'explain_index') else start + row} of the data); "
                    "no explainer can give meaningful answers on it: check the model (weights, divisions, logs) or the data"
                )


def check_gradient_path(model: Model, data: Any, target: Target | str, *, explainer: str = "") -> None:
    """Raise :class:`CapabilityError` if ``target`` has no autograd path to the input, or a zero gradient."""
    target = Target(target)
    x = as_tensor(np.asarray(data.x_explain[:GRADIENT_PROBE]), model).clone().requires_grad_(True)
    who = f"{explainer} needs gradients, but " if explainer else "gradients are needed, but "
    with frozen(model), torch.enable_grad():
        try:
            out = evaluate_target(model, target, x)
        except Exception:  # evaluation errors are the explainer's to report
            return
        if not isinstance(out, torch.Tensor) or not out.requires_grad or out.grad_fn is None:
            raise CapabilityError(
                f"{who}the model's {target.value} output does not depend on the input through autograd: "
                "the model likely computes it under torch.no_grad(), calls .detach(), goes through numpy, or reads the "
                "input only through an integer cast or an embedding lookup (then attribute the embedding output instead: "
                "explain a model whose encoder starts after the embedding); remove that from the forward pass, "
                "or use a perturbation explainer",
                plugin=explainer or None,
            )
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=out.dtype).to(out.device)
        (grad,) = torch.autograd.grad((out * weights).sum(), x, allow_unused=True)
    if grad is None:
        raise CapabilityError(
            f"{who}the gradient of the model's {target.value} output with respect to the input is missing: the model "
            "likely detaches part of its graph (.detach(), torch.no_grad(), a numpy round trip); use a perturbation explainer",
            plugin=explainer or None,
        )
    if not bool(torch.any(grad != 0)):  # piecewise-constant ops (floor, round) have zero gradients; DeepLIFT rules still apply
        warnings.warn(
            f"{explainer or 'this explainer'}: the gradient of the model's {target.value} output with respect to the input "
            "is zero for every probed input (a detached part of the graph, .detach(), torch.no_grad(), a numpy round trip, "
            "piecewise-constant operations, or a constant output): gradient attributions will be zero",
            stacklevel=3,
        )


def plain_extras(value: Any, where: str = "extras") -> Any:
    """``value`` as plain JSON data: sets become sorted lists, numpy scalars numbers; other objects are refused."""
    if isinstance(value, Mapping):
        return {str(k): plain_extras(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        items = [plain_extras(v, where) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(value, (list, tuple)):
        return [plain_extras(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{where} is an object array; keep numeric arrays in `arrays`")
        return plain_extras(value.tolist(), where)
    if isinstance(value, np.generic):
        return plain_extras(value.item(), where)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"{where} holds a {type(value).__name__}, which is not JSON data (use numbers, strings, lists, dicts)")


def check_explanation(
    result: Any,
    model: Model,
    data: Any,
    target: Target | str,
    *,
    explainer: str,
    distribution: str = "",
    features: str = "groups",
    split: str = "explain",
) -> Explanation:
    """The explainer's result if it fits the data and target; extras made plain JSON. Raises :class:`ExplainerError`.

    ``split`` is the split the explainer explained (its ``split`` param): ``local`` has at most that many rows.
    """

    def fail(problem: str) -> ExplainerError:
        return ExplainerError(
            f"explainer {explainer!r} returned an unusable result: {problem}", plugin=explainer, distribution=distribution
        )

    if not isinstance(result, Explanation):
        raise fail(f"a {type(result).__name__}, not an Explanation")
    target = Target(target)
    names = [g.name for g in data.groups] if getattr(data, "groups", None) else list(data.feature_names)
    has_model = hasattr(model, "latent_dim")
    latents = target_names_for(model, data, Target.LATENT) if has_model else []  # decoder-side explanations are in terms of the code
    if features == "groups" and list(result.feature_names) not in (names, latents):
        raise fail(
            f"{len(result.feature_names)} feature names {_head(result.feature_names)}, but the data has {len(names)} "
            f"feature groups {_head(names)} (and the code {len(latents)} dims)"
        )
    expected = target_names_for(model, data, target) if has_model else None
    rows = list(result.target_names)
    subset = expected is not None and len(set(rows)) == len(rows) and set(rows) <= set(expected)  # e.g. a `dims:` param
    if expected is not None and len(rows) != len(expected) and not subset:
        raise fail(f"{len(rows)} target rows {_head(rows)}, but target {target.value!r} has {len(expected)} {_head(expected)}")
    importance = np.asarray(result.importance, dtype=np.float64)
    if importance.size and not np.isfinite(importance).any():
        raise fail(
            f"every importance value is NaN or infinite ({importance.shape[0]} targets x {importance.shape[1]} features); that is no result"
        )
    explained = len(data.x_fit) if split == "fit" else len(data.x_explain)
    if result.local is not None and not 1 <= result.local.shape[0] <= explained:
        raise fail(f"local attributions for {result.local.shape[0]} samples, but {explained} samples of the {split} split were explained")
    for key, arr in result.arrays.items():
        a = np.asarray(arr)
        if a.dtype == object:
            raise fail(f"array {key!r} has dtype object (it would need pickle to be saved); return numeric arrays")
    try:
        extras = plain_extras(result.extras)
        json.dumps(jsonable(extras), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise fail(str(exc)) from None
    return result.replace(extras=extras)


def _head(names: Any, n: int = 4) -> str:
    names = list(names)
    shown = ", ".join(map(str, names[:n]))
    return f"({shown}{', ...' if len(names) > n else ''})"
