"""A content-addressed cache of trained built-in models, finished step results and their report figures.

Re-running a recipe recomputes only what changed. Each entry's key is a hash
of everything its result depends on:

- a **trained built-in model**: the model section (architecture, latent size,
  options, training settings), the recipe seed, the data (every sample's
  bytes, the feature names and groups, the split), the device type, and the
  aeinterp and torch versions;
- a **step**: the explainer's name, distribution and version, its validated
  params, the seed, the target, the data, the model (its weights and, where
  it can be read, the source of its class), the device type, and the keys of
  the earlier steps it reads through a ``StepRef`` param.

A step's **report figures** (PNG files) are keyed by the explanation's
values and everything they are drawn from (the explained rows' feature
values, the data's description, aeinterp, matplotlib and the explainer's
versions), so a re-run with cached steps copies its plots instead of
drawing them.

Entries are plain files, never pickles: a step is its ``results.json`` entry
(``result.json``) and its arrays (``arrays.npz``), read back with
:meth:`aeinterp.Explanation.from_json`; a model is its ``weights_only``
checkpoint. The folder is ``$AEINTERP_CACHE_DIR``, else
``$XDG_CACHE_HOME/aeinterp``, else ``~/.cache/aeinterp``; a recipe's
``cache:`` key or the CLI's ``--cache-dir`` / ``--no-cache`` choose otherwise.
An entry that cannot be read is treated as absent and replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..explanation import Explanation, jsonable

__all__ = ["Cache", "CACHE_ENV", "default_cache_dir", "fingerprint", "data_fingerprint", "model_fingerprint", "module_fingerprint"]

CACHE_ENV = "AEINTERP_CACHE_DIR"
KEY_VERSION = 2  # bump when what goes into a key changes (or the values for a key do), so old entries are never matched
_CHUNK = 16 * 2**20


def default_cache_dir() -> Path:
    """``$AEINTERP_CACHE_DIR``, else ``$XDG_CACHE_HOME/aeinterp``, else ``~/.cache/aeinterp``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "aeinterp"


def _hasher() -> Any:
    return hashlib.blake2b(digest_size=20)


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (dict keys sorted, numpy values converted)."""
    h = _hasher()
    h.update(json.dumps(jsonable(list(parts)), sort_keys=True, separators=(",", ":"), default=str).encode())
    return h.hexdigest()


def _update_array(h: Any, arr: Any) -> None:
    fingerprint = getattr(arr, "fingerprint", None)
    if callable(fingerprint):  # a lazily read matrix (aeinterp.io.rows.LazyRows): its source, rows and transforms
        h.update(str(fingerprint()).encode())
        return
    a = np.asarray(arr)
    if a.dtype == object or a.dtype.kind in "US":
        a = np.asarray(a.astype(str), dtype="U")
    h.update(f"{a.dtype.str}{a.shape}".encode())
    if a.ndim == 0 or a.size == 0:
        h.update(np.ascontiguousarray(a).tobytes())
        return
    row_bytes = max(1, a[:1].nbytes)
    step = max(1, _CHUNK // row_bytes)
    for s in range(0, a.shape[0], step):  # row chunks: a memory-mapped array is read, never copied whole
        h.update(np.ascontiguousarray(a[s : s + step]).tobytes())


def data_fingerprint(data: Any) -> str:
    """Hash of a dataset's samples, names, groups, labels and split."""
    h = _hasher()
    h.update(fingerprint(
        getattr(data, "kind", None), list(getattr(data, "feature_names", [])), [g.name for g in getattr(data, "groups", ())],
    ).encode())
    for g in getattr(data, "groups", ()):
        _update_array(h, g.indices)
    x = getattr(data, "x", None)
    if x is not None:
        _update_array(h, x)
        _update_array(h, getattr(data, "fit_index", np.zeros(0)))
        _update_array(h, getattr(data, "explain_index", np.zeros(0)))
    else:  # a Dataset protocol object: its two splits
        _update_array(h, data.x_fit)
        _update_array(h, data.x_explain)
    labels = getattr(data, "labels", None)
    if labels is not None:
        _update_array(h, labels)
    return h.hexdigest()


def _source_of(obj: Any) -> str:
    with contextlib.suppress(Exception):
        code = getattr(obj, "code", None)  # TorchScript: the compiled code
        if isinstance(code, str):
            return code
    with contextlib.suppress(Exception):
        return inspect.getsource(type(obj))
    return ""


def module_fingerprint(module: Any) -> str:
    """Hash of a torch module: its class, its class's source (or TorchScript code), every tensor of its state dict."""
    import torch

    h = _hasher()
    cls = type(module)
    h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    h.update(_source_of(module).encode())
    state = module.state_dict() if hasattr(module, "state_dict") else {}
    for name, tensor in state.items():
        h.update(name.encode())
        if isinstance(tensor, torch.Tensor):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(tensor).encode())
    return h.hexdigest()


def model_fingerprint(model: Any) -> str:
    """Hash of an :class:`aeinterp.Model`: its module(s), and how the adapter reads them."""
    from ..model import torch_modules

    parts: list[Any] = [type(model).__qualname__, list(getattr(model, "input_shape", ()))]
    for attr in ("code", "task_dims", "class_names"):
        parts.append(repr(getattr(model, attr, None)))
    for attr in ("_encoder", "_decoder", "_head"):
        fn = getattr(model, attr, None)
        parts.append(getattr(fn, "__qualname__", None) or type(fn).__qualname__)
        if fn is not None and hasattr(fn, "state_dict") and not any(fn is m for m in torch_modules(model)):
            parts.append(module_fingerprint(fn))
    parts += [module_fingerprint(m) for m in torch_modules(model)]
    if not torch_modules(model):  # a user's Model without a torch module: only its identity is known
        parts.append(f"{type(model).__module__}.{type(model).__qualname__}:{id(model)}")
    return fingerprint(*parts)


class Cache:
    """Cached models and step results under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    # --- keys ------------------------------------------------------------------------
    @staticmethod
    def model_key(section: Mapping[str, Any], *, seed: int, data_hash: str, device: str) -> str:
        import torch

        return fingerprint("model", KEY_VERSION, __version__, torch.__version__, dict(section), seed, data_hash, device)

    @staticmethod
    def step_key(
        *, name: str, distribution: str, version: str, params: Mapping[str, Any], seed: int, target: str,
        data_hash: str, model_hash: str, device: str, depends_on: Iterable[str] = (),
    ) -> str:
        return fingerprint(
            "step", KEY_VERSION, __version__, name, distribution, version, dict(params), seed, target, data_hash, model_hash, device, sorted(depends_on),
        )

    # --- steps -----------------------------------------------------------------------
    def _dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / key

    def load_step(self, key: str) -> Explanation | None:
        """The cached Explanation for ``key``, or None."""
        folder = self._dir("steps", key)
        try:
            entry = json.loads((folder / "result.json").read_text())
            if entry.get("cache_key") != key:
                return None
            return Explanation.from_json(entry, folder / "arrays.npz")
        except FileNotFoundError:
            return None
        except Exception:  # a damaged entry is a miss; the next save replaces it
            return None

    def save_step(self, key: str, explanation: Explanation, *, inputs: Mapping[str, Any] | None = None) -> Path | None:
        """Store ``explanation`` under ``key``; returns the entry's folder (None if the cache folder is not writable)."""
        entry = {**explanation.to_json(), "cache_key": key, "inputs": dict(inputs or {})}

        def write(tmp: Path) -> None:
            explanation.save_arrays(tmp / "arrays.npz")
            (tmp / "result.json").write_text(json.dumps(jsonable(entry), allow_nan=False))

        return self._store("steps", key, write)

    # --- models ----------------------------------------------------------------------
    def load_model(self, key: str, device: Any = None) -> tuple[Any, dict[str, Any]] | None:
        """The cached built-in module and its training info for ``key``, or None."""
        import torch

        from ..models.architectures import from_checkpoint

        folder = self._dir("models", key)
        try:
            info = json.loads((folder / "info.json").read_text())
            if info.get("cache_key") != key:
                return None
            checkpoint = torch.load(folder / "model.pt", map_location=device or "cpu", weights_only=True)
            module = from_checkpoint(dict(checkpoint))
        except FileNotFoundError:
            return None
        except Exception:
            return None
        if device is not None:
            module = module.to(device)
        module.eval()
        return module, dict(info.get("training") or {})

    def save_model(self, key: str, module: Any, training: Mapping[str, Any]) -> Path | None:
        import torch

        def write(tmp: Path) -> None:
            torch.save(module.checkpoint(), tmp / "model.pt")
            (tmp / "info.json").write_text(json.dumps(jsonable({"cache_key": key, "training": dict(training)})))

        return self._store("models", key, write)

    # --- figures ---------------------------------------------------------------------
    @staticmethod
    def figures_key(explanation: Explanation, *parts: Any, arrays: Iterable[Any] = ()) -> str:
        """Key of one explanation's report figures: every value it holds, and ``parts`` and ``arrays`` they are drawn from."""
        h = _hasher()
        h.update(fingerprint("figures", KEY_VERSION, __version__, explanation.to_json(inline=False), *parts).encode())
        own = (explanation.importance, explanation.std, explanation.local, *(explanation.arrays[k] for k in sorted(explanation.arrays)))
        for arr in (*own, None, *arrays):  # None: no array, a separator
            h.update(b"|") if arr is None else _update_array(h, arr)
        return h.hexdigest()

    def load_figures(self, key: str) -> dict[str, Path] | None:
        """The cached PNG files for ``key`` by figure name (``""`` for the main view), or None."""
        folder = self._dir("figures", key)
        try:
            manifest = json.loads((folder / "figures.json").read_text())
            if manifest.get("cache_key") != key:
                return None
            files = {str(name): folder / str(file) for name, file in manifest["files"].items()}
        except (OSError, ValueError, KeyError, AttributeError):
            return None
        return files if all(f.is_file() for f in files.values()) else None

    def save_figures(self, key: str, files: Mapping[str, Path]) -> Path | None:
        """Store copies of the PNG ``files`` (by figure name) under ``key``."""
        def write(tmp: Path) -> None:
            names = {name: f"{i}.png" for i, name in enumerate(files)}
            for name, path in files.items():
                shutil.copyfile(path, tmp / names[name])
            (tmp / "figures.json").write_text(json.dumps({"cache_key": key, "files": names}))

        return self._store("figures", key, write)

    # --- files -----------------------------------------------------------------------
    def _store(self, kind: str, key: str, write: Any) -> Path | None:
        final = self._dir(kind, key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key[:8]}.", suffix=".tmp"))
        except OSError:
            return None  # a read-only cache folder only costs the reuse
        try:
            write(tmp)
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def clear(self) -> None:
        """Remove every entry."""
        shutil.rmtree(self.root, ignore_errors=True)
