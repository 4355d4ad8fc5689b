"""Selection, short descriptions and saving of an :class:`~aeinterp.Explanation` (its methods delegate here).

An Explanation has up to three named axes, in ``local``'s order: ``sample`` (the
explained rows, named by ``sample_names`` when the caller's data had row
labels), ``target`` (``target_names``: z0, z1, ... for latents) and ``feature``
(``feature_names``). :func:`select` restricts any of them by name, label,
position, a list of those, or a slice — the conventions of xarray's ``sel``
and of shap's ``Explanation`` indexing (``exp[:, "z3"]``).

:func:`save` writes a folder with ``explanation.json`` (the ``results.json``
entry) and ``explanation.npz`` (the arrays) — no pickle; :func:`load` reads it
back, memory-mapped (``Explanation.load``).

This module sits below :mod:`aeinterp.explanation` (which calls it) and imports
only the errors: the Explanation it works on is passed in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import AeinterpError

if TYPE_CHECKING:
    from .explanation import Explanation

__all__ = ["select", "getitem", "short_repr", "save", "read_saved", "resolve_sample", "sample_labels", "JSON_FILE", "NPZ_FILE"]

JSON_FILE = "explanation.json"
NPZ_FILE = "explanation.npz"
#: arrays whose first axis is ``local``'s samples / whose only axis is the targets (subset with them)
SAMPLE_ARRAYS = ("sample_index", "explain_rows")
TARGET_ARRAYS = ("expected_value",)


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def _positions(key: Any, names: Sequence[str], axis: str) -> list[int]:
    """Positions along an axis named ``names`` for ``key``: a name, an int position, a list of either, a slice, a bool mask."""
    n = len(names)
    if isinstance(key, slice):
        if isinstance(key.start, str) or isinstance(key.stop, str):  # label slices include both ends, as in pandas/xarray
            lo = 0 if key.start is None else _positions(key.start, names, axis)[0]
            hi = n - 1 if key.stop is None else _positions(key.stop, names, axis)[0]
            return list(range(lo, hi + 1))[:: key.step or 1]
        return list(range(n))[key]
    if isinstance(key, (str, int, np.integer)):
        key = [key]
    arr = np.asarray(key)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise AeinterpError(f"a boolean {axis} mask needs {n} values, got {arr.shape}")
        return [int(i) for i in np.flatnonzero(arr)]
    out = []
    lookup = {str(name): i for i, name in enumerate(names)}
    for k in arr.tolist():
        if isinstance(k, str):
            if k not in lookup:
                raise AeinterpError(f"unknown {axis} {k!r}; this explanation has {_listing(list(names))}")
            out.append(lookup[k])
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            if not -n <= k < n:
                raise AeinterpError(f"{axis} position {k} outside 0..{n - 1}")
            out.append(int(k) % n)
        else:
            raise AeinterpError(f"cannot select {axis} by {k!r}: give a name, a position, a list of them or a slice")
    return out


def sample_labels(e: Explanation) -> list[str]:
    """The names of ``local``'s rows: ``sample_names``, else the explained rows' positions as text."""
    if e.local is None:
        return []
    if e.sample_names is not None:
        return list(e.sample_names)
    return [str(i) for i in e._sample_ids()]


def resolve_sample(e: Explanation, sample: int | str) -> int:
    """The position in ``local`` of ``sample``: a row label (``sample_names``) or a position."""
    if e.local is None:
        raise AeinterpError(f"{e.explainer or 'this explanation'} has no per-sample attributions (local), so no sample to pick")
    if isinstance(sample, str):
        names = sample_labels(e)
        if sample not in names:
            raise AeinterpError(f"unknown sample {sample!r}; the explained rows are {_listing(names)}")
        return names.index(sample)
    return _positions(int(sample), range(len(e.local)), "sample")[0]  # type: ignore[arg-type]


def _subset_array(
    key: str, value: Any, rows: list[int] | None, cols: list[int] | None, samples: list[int] | None, shape: tuple[int, int, int]
) -> Any:
    """The extra array restricted like the explanation, or None where it cannot be told which axis is which."""
    arr = np.asarray(value)
    n_samples, n_targets, n_features = shape
    if key in SAMPLE_ARRAYS and arr.ndim >= 1 and arr.shape[0] == n_samples:
        return arr[samples] if samples is not None else arr
    if key in TARGET_ARRAYS and arr.ndim == 1 and arr.shape[0] == n_targets:
        return arr[rows] if rows is not None else arr
    changed = [n for n, sel in ((n_samples, samples), (n_targets, rows), (n_features, cols)) if sel is not None and len(sel) != n]
    if any(d in changed for d in arr.shape):
        return None  # may be indexed by a selected axis: dropped rather than kept wrong
    return value


def select(e: Explanation, *, target: Any = None, sample: Any = None, feature: Any = None) -> Explanation:
    """``e`` restricted to the given targets, samples (row labels or positions) and features (``None``: all)."""
    rows = None if target is None else _positions(target, e.target_names, "target")
    cols = None if feature is None else _positions(feature, e.feature_names, "feature")
    samples = None
    if sample is not None:
        if e.local is None:
            raise AeinterpError(f"{e.explainer or 'this explanation'} has no per-sample attributions (local); select by target or feature")
        samples = _positions(sample, sample_labels(e), "sample")
    r = slice(None) if rows is None else rows
    c = slice(None) if cols is None else cols
    local = e.local
    if local is not None:
        local = np.asarray(local)
        if samples is not None:
            local = local[samples]
        local = local[:, r][:, :, c]
    shape = (0 if e.local is None else len(e.local), len(e.target_names), len(e.feature_names))
    arrays = {}
    for key, value in e.arrays.items():
        kept = _subset_array(key, value, rows, cols, samples, shape)
        if kept is not None:
            arrays[key] = kept
    extras = dict(e.extras)
    if rows is not None:
        for key in ("explained_targets", "dims"):
            dims = extras.get(key)
            if isinstance(dims, (list, tuple)) and all(isinstance(d, int) for d in dims):
                extras[key] = [rows.index(d) for d in dims if d in rows]
    names = None
    if e.sample_names is not None:
        names = list(e.sample_names) if samples is None else [e.sample_names[i] for i in samples]
    return e.replace(
        importance=e.importance[r][:, c],
        std=None if e.std is None else e.std[r][:, c],
        local=local,
        target_names=[e.target_names[i] for i in rows] if rows is not None else list(e.target_names),
        feature_names=[e.feature_names[i] for i in cols] if cols is not None else list(e.feature_names),
        arrays=arrays,
        extras=extras,
        sample_names=names,
    )


def getitem(e: Explanation, key: Any) -> Explanation:
    """``e[samples, targets, features]`` in ``local``'s axis order; ``e[:, "z3"]`` is target z3 (shap's way)."""
    keys = key if isinstance(key, tuple) else (key,)
    if len(keys) > 3:
        raise AeinterpError(f"an explanation has 3 axes (sample, target, feature); got {len(keys)} keys")
    keys = keys + (slice(None),) * (3 - len(keys))
    full = [k if not (isinstance(k, slice) and k == slice(None)) else None for k in keys]
    if full[0] is not None and e.local is None:
        raise AeinterpError(
            f"{e.explainer or 'this explanation'} has no per-sample attributions, so its first axis (sample) takes only ':'; "
            "e.g. exp[:, 'z3'] for target z3"
        )
    return select(e, sample=full[0], target=full[1], feature=full[2])


def short_repr(e: Explanation) -> str:
    """``Explanation(deepshap on latent: 3 targets x 8 features, ...)``: shape, method, targets, runtime; never arrays."""
    nt, nf = len(e.target_names), len(e.feature_names)
    parts = [f"{nt} target{'' if nt == 1 else 's'} x {nf} feature{'' if nf == 1 else 's'}"]
    if e.local is not None:
        parts.append(f"local {tuple(e.local.shape)}")
        if e.sample_names is not None and len(e.sample_names):
            first, last = _clip(e.sample_names[0]), _clip(e.sample_names[-1])
            parts.append(f"rows {first!r}..{last!r}" if len(e.sample_names) > 1 else f"row {first!r}")
    method = e.extras.get("method")
    if method and method != e.explainer:
        parts.append(f"method {_clip(str(method))}")
    parts.append(f"targets {_clip(_listing(list(e.target_names), 4), 80)}")
    if e.runtime_s is not None:
        parts.append(f"{e.runtime_s:.2f} s")
    return f"Explanation({_clip(e.explainer or '?')} on {e.target}: {', '.join(parts)})"


def _clip(text: str, limit: int = 40) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def save(e: Explanation, path: str | os.PathLike[str]) -> Path:
    """Write ``e`` to the folder ``path`` (``explanation.json`` + ``explanation.npz``; no pickle). Returns the folder."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise AeinterpError(f"{folder} is a file; exp.save() writes a folder (explanation.json and explanation.npz)")
    folder.mkdir(parents=True, exist_ok=True)
    local_file = e.save_arrays(folder / NPZ_FILE, move=False)
    entry = e.to_json(inline=False)
    entry["arrays"] = NPZ_FILE
    if local_file:
        entry["local_file"] = local_file
    tmp = folder / f".{JSON_FILE}.tmp"
    tmp.write_text(json.dumps(entry, allow_nan=False), encoding="utf-8")
    tmp.replace(folder / JSON_FILE)
    return folder


def read_saved(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """The ``explanation.json`` entry :func:`save` wrote to ``path``, and its arrays file."""
    folder = Path(path)
    meta = folder / JSON_FILE
    if not meta.is_file():
        raise AeinterpError(f"no {JSON_FILE} in {folder}: is it a folder written by exp.save()?")
    try:
        entry = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AeinterpError(f"cannot read {meta}: {exc}") from None
    if not isinstance(entry, dict) or "feature_names" not in entry:
        raise AeinterpError(f"{meta} is not an explanation written by exp.save()")
    return entry, folder / NPZ_FILE
