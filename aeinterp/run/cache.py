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
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..explanation import Explanation, jsonable
from ..paths import CACHE_ENV, default_cache_dir

__all__ = [
    "Cache",
    "CACHE_ENV",
    "default_cache_dir",
    "without_run_facts",
    "fingerprint",
    "data_fingerprint",
    "model_fingerprint",
    "module_fingerprint",
]

KEY_VERSION = 3  # bump when what goes into a key changes (or the values for a key do), so old entries are never matched
_CHUNK = 16 * 2**20
#: a figure name an entry may hold: it becomes part of ``<alias>.<name>.png`` in the output folder
FIGURE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_FIGURE_FILE = re.compile(r"(0|[1-9][0-9]*)\.png")


def without_run_facts(explanation: Explanation) -> Explanation:
    """``explanation`` without what its explainer marked as facts about the run that computed it
    (``extras["run_facts"]``: ``keys`` of extras and ``summary`` lines, e.g. "numba compiled the kernels
    in this run" and the folder it compiled to): a cached copy reports only the result."""
    facts = explanation.extras.get("run_facts")
    if not isinstance(facts, dict):
        return explanation
    drop = {str(k) for k in facts.get("keys", [])} | {"run_facts"}
    extras = {k: v for k, v in explanation.extras.items() if k not in drop}
    lines = set(str(line) for line in facts.get("summary", []))
    if isinstance(extras.get("summary"), list):
        extras["summary"] = [line for line in extras["summary"] if str(line) not in lines]
        if not extras["summary"]:
            del extras["summary"]
    return explanation.replace(extras=extras)


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
    h.update(
        fingerprint(
            getattr(data, "kind", None),
            list(getattr(data, "feature_names", [])),
            [g.name for g in getattr(data, "groups", ())],
        ).encode()
    )
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
    """Hash of a torch module: its class, the code it runs (:func:`aeinterp.run.codehash.code_fingerprint`), every tensor of its state dict."""
    import torch

    from .codehash import code_fingerprint

    h = _hasher()
    cls = type(module)
    h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    h.update(_source_of(module).encode())
    h.update(code_fingerprint(module).encode())  # the classes' MRO, their modules' sources and the helpers they call
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
    from .codehash import callable_fingerprint

    parts: list[Any] = [type(model).__qualname__, list(getattr(model, "input_shape", ()))]
    for attr in ("code", "task_dims", "class_names"):
        parts.append(repr(getattr(model, attr, None)))
    for attr in ("_encoder", "_decoder", "_head"):
        fn = getattr(model, attr, None)
        parts.append(getattr(fn, "__qualname__", None) or type(fn).__qualname__)
        if fn is not None and not hasattr(fn, "state_dict"):
            parts.append(callable_fingerprint(fn))  # an adapter's own encoder/decoder function: its code too
        if fn is not None and hasattr(fn, "state_dict") and not any(fn is m for m in torch_modules(model)):
            parts.append(module_fingerprint(fn))
    parts += [module_fingerprint(m) for m in torch_modules(model)]
    if not torch_modules(model):  # a user's Model without a torch module: only its identity is known
        parts.append(f"{type(model).__module__}.{type(model).__qualname__}:{id(model)}")
    return fingerprint(*parts)


STEP_LOCAL_FILE = "arrays.local.npy"
STEP_FILES = frozenset({"arrays.npz", STEP_LOCAL_FILE})


def safe_figure_name(name: str) -> bool:
    """Whether ``name`` may become part of a file name in the output folder (letters, digits, ``_ - .``; no ``..``)."""
    return bool(FIGURE_NAME.fullmatch(name)) and ".." not in name and len(name) <= 120


def file_hash(path: Path) -> str:
    """Content hash of one file (read in chunks)."""
    h = _hasher()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _verify(folder: Path, hashes: Mapping[str, Any], allowed: Iterable[str] | None = None) -> bool:
    """Every file named in ``hashes`` is a plain file directly in ``folder`` (no link, no path) with that content hash."""
    allowed = None if allowed is None else frozenset(allowed)
    root = folder.resolve()
    for name, digest in hashes.items():
        if not isinstance(name, str) or not isinstance(digest, str) or (allowed is not None and name not in allowed):
            return False
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or os.path.isabs(name):
            return False
        path = folder / name
        if path.is_symlink() or not path.is_file() or path.resolve().parent != root:
            return False
        if file_hash(path) != digest:
            return False
    return True


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
        *,
        name: str,
        distribution: str,
        version: str,
        params: Mapping[str, Any],
        seed: int,
        target: str,
        data_hash: str,
        model_hash: str,
        device: str,
        depends_on: Iterable[str] = (),
    ) -> str:
        return fingerprint(
            "step",
            KEY_VERSION,
            __version__,
            name,
            distribution,
            version,
            dict(params),
            seed,
            target,
            data_hash,
            model_hash,
            device,
            sorted(depends_on),
        )

    # --- steps -----------------------------------------------------------------------
    def _dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / key

    def load_step(self, key: str) -> Explanation | None:
        """The cached Explanation for ``key``, or None."""
        folder = self._dir("steps", key)
        try:
            entry = json.loads((folder / "result.json").read_text())
            if entry.get("cache_key") != key or not isinstance(entry.get("files"), dict):
                return None
            if entry.get("local_file") not in (None, STEP_LOCAL_FILE) or not _verify(folder, entry["files"], allowed=STEP_FILES):
                return None  # a name the entry never wrote, or a file changed since: not used
            if set(entry["files"]) != {"arrays.npz", *([entry["local_file"]] if entry.get("local_file") else [])}:
                return None
            return Explanation.from_json(entry, folder / "arrays.npz")
        except FileNotFoundError:
            return None
        except Exception:  # a damaged entry is a miss; the next save replaces it
            return None

    def save_step(self, key: str, explanation: Explanation, *, inputs: Mapping[str, Any] | None = None) -> Path | None:
        """Store ``explanation`` under ``key``; returns the entry's folder (None if the cache folder is not writable)."""
        explanation = without_run_facts(explanation)
        entry = {**explanation.to_json(), "cache_key": key, "inputs": dict(inputs or {})}

        def write(tmp: Path) -> None:
            local_file = explanation.save_arrays(tmp / "arrays.npz")  # a spilled or large ``local`` goes beside it
            names = ["arrays.npz", *([local_file] if local_file else [])]
            full = {**entry, "local_file": local_file, "files": {n: file_hash(tmp / n) for n in names}}
            (tmp / "result.json").write_text(json.dumps(jsonable(full), allow_nan=False))

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
            names, hashes = manifest["files"], manifest["hashes"]
            if not isinstance(names, dict) or not isinstance(hashes, dict):
                return None
            for name, file in names.items():  # names the entry itself wrote: n.png, each once, and safe figure names
                if (
                    not isinstance(name, str)
                    or not isinstance(file, str)
                    or not (name == "" or safe_figure_name(name))
                    or not _FIGURE_FILE.fullmatch(file)
                ):
                    return None
            if len(set(names.values())) != len(names) or set(hashes) != set(names.values()) or not _verify(folder, hashes):
                return None
            files = {name: folder / file for name, file in names.items()}
        except (OSError, ValueError, KeyError, AttributeError, TypeError):
            return None
        return files

    def save_figures(self, key: str, files: Mapping[str, Path]) -> Path | None:
        """Store copies of the PNG ``files`` (by figure name) under ``key``."""

        def write(tmp: Path) -> None:
            if not all(name == "" or safe_figure_name(name) for name in files):
                raise OSError("unsafe figure name")  # never stored (the report refuses such names before)
            names = {name: f"{i}.png" for i, name in enumerate(files)}
            for name, path in files.items():
                shutil.copyfile(path, tmp / names[name])
            hashes = {file: file_hash(tmp / file) for file in names.values()}
            (tmp / "figures.json").write_text(json.dumps({"cache_key": key, "files": names, "hashes": hashes}))

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
