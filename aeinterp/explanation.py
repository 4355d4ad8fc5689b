"""The Explanation every explainer returns, and how it is saved without pickle.

``importance`` is a ``(targets, features)`` matrix where larger means more
important; ``features`` are the dataset's feature groups. Optional arrays:
``std`` (same shape, spread over repeats) and ``local`` (``(samples, targets,
features)`` per-sample attributions). ``arrays`` holds any other numeric
output an explainer wants kept (saved in the ``.npz``); ``extras`` holds small
JSON-able facts shown in reports and ``results.json``. ``extras["summary"]``,
a list of short human-readable lines (one formula or headline per target),
is printed as is by the terminal and HTML reports.

On disk (see the README's result contract): ``<alias>.npz`` is an
*uncompressed* ``np.savez`` of ``importance``, ``std``, ``arrays`` and a small
``local``; a ``local`` above :data:`LOCAL_FILE_MB` (or one that already lives
in a memory-mapped file) is a separate ``<alias>.local.npy``. The
``results.json`` entry embeds ``importance`` / ``std`` as lists only up to
:data:`INLINE_MAX_VALUES` numbers; above it they are ``null`` and the entry
says ``"inline": false`` (the matrices are under the same keys in the
entry's ``arrays`` file). :meth:`Explanation.from_json` memory-maps every
uncompressed member, so reading a result costs what is used.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = ["Explanation", "jsonable", "INLINE_MAX_VALUES", "LOCAL_FILE_MB", "open_npz"]

#: importance / std with more numbers than this are referenced from results.json, not embedded
INLINE_MAX_VALUES = 100_000
#: a per-sample array larger than this (MiB) is written to its own ``.npy`` (memory-mappable)
LOCAL_FILE_MB = 64.0


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into plain Python, NaN/inf into None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class Explanation:
    """The result of one explainer on one target. Immutable."""

    importance: np.ndarray
    feature_names: list[str]
    target_names: list[str]
    target: str = "latent"
    std: np.ndarray | None = None
    local: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    # metadata, filled in by the runner (or by whoever calls explain directly)
    explainer: str = ""
    distribution: str = ""
    version: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    runtime_s: float | None = None
    library_versions: dict[str, str] = field(default_factory=dict)
    #: labels of ``local``'s rows (the caller's DataFrame index, AnnData obs names), or None: positions
    sample_names: list[str] | None = None
    #: ``exp.plot`` (figures), notebook display and ``exp.to_anndata(adata)``: attached by the report
    #: layer (:mod:`aeinterp.report.views`), which ``aeinterp``, its API and the results loader import
    plot: ClassVar[Any]
    to_anndata: ClassVar[Any]

    def __post_init__(self) -> None:
        imp = np.asarray(self.importance, dtype=np.float64)
        object.__setattr__(self, "importance", imp)
        shape = (len(self.target_names), len(self.feature_names))
        if imp.shape != shape:
            raise ValueError(f"importance has shape {imp.shape}, expected (targets, features) = {shape}")
        if self.std is not None:
            std = np.asarray(self.std, dtype=np.float64)
            if std.shape != shape:
                raise ValueError(f"std has shape {std.shape}, expected {shape}")
            object.__setattr__(self, "std", std)
        if self.local is not None:
            local = np.asarray(self.local)
            if local.ndim != 3 or local.shape[1:] != shape:
                raise ValueError(f"local has shape {local.shape}, expected (samples, {shape[0]}, {shape[1]})")
            object.__setattr__(self, "local", local)
        if self.sample_names is not None:
            names = [str(n) for n in self.sample_names]
            if self.local is None or len(names) != self.local.shape[0]:
                got = "no local" if self.local is None else f"local with {self.local.shape[0]} samples"
                raise ValueError(f"sample_names has {len(names)} labels for {got}; they name local's rows")
            object.__setattr__(self, "sample_names", names)
        for key in self.arrays:
            if key in ("importance", "std", "local"):
                raise ValueError(f"extra array name {key!r} is reserved")

    def replace(self, **changes: Any) -> Explanation:
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        """Shape, method, targets and runtime on one line (never the arrays)."""
        from ._select import short_repr

        return short_repr(self)

    # --- selection (xarray's ``sel``, shap's ``exp[:, "z3"]``) --------------------
    def sel(self, *, target: Any = None, sample: Any = None, feature: Any = None) -> Explanation:
        """This explanation restricted by name: ``exp.sel(target="z3")``, ``exp.sel(sample="cell_110")``,
        ``exp.sel(feature=["age", "bmi"])``.

        Each takes a name (target / feature name, row label from ``sample_names``),
        a position, a list of either, a slice (label slices include both ends) or a
        boolean mask. Axes keep their dimension: ``local`` stays ``(samples,
        targets, features)``. ``arrays`` indexed by a restricted axis are subset
        (``sample_index``, ``expected_value``) or dropped when their axes cannot be told.
        """
        from ._select import select

        return select(self, target=target, sample=sample, feature=feature)

    def __getitem__(self, key: Any) -> Explanation:
        """``exp[samples, targets, features]`` in ``local``'s axis order, by label or position:
        ``exp[:, "z3"]`` (target z3), ``exp["cell_110"]`` (one row), ``exp[:, :, "age"]``."""
        from ._select import getitem

        return getitem(self, key)

    __iter__ = None  # indexing selects (exp[:, "z3"]); it is not a sequence to loop over

    def save(self, path: str | Path) -> Path:
        """Write this explanation to the folder ``path`` (``explanation.json`` + ``explanation.npz``, no pickle);
        read it back with ``aeinterp.load(path)``."""
        from ._select import save

        return save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Explanation:
        """The explanation :meth:`save` wrote to the folder ``path`` (arrays memory-mapped read-only, no pickle);
        ``aeinterp.load(path)`` does the same and also reads a run's output folder."""
        from ._select import read_saved
        from .errors import AeinterpError

        entry, arrays = read_saved(path)
        try:
            return cls.from_json(entry, arrays)
        except (KeyError, ValueError) as exc:
            raise AeinterpError(f"cannot rebuild the explanation in {path}: {exc}") from None

    # --- views -----------------------------------------------------------------
    def top_features(self, k: int = 5) -> dict[str, list[tuple[str, float]]]:
        """For each target, its ``k`` most important features with their importance."""
        order = np.argsort(-self.importance, axis=1, kind="stable")[:, :k]
        return {t: [(self.feature_names[i], float(self.importance[r, i])) for i in order[r]] for r, t in enumerate(self.target_names)}

    def normalized(self) -> np.ndarray:
        """Importance scaled so each target's non-negative values sum to 1 (rows of zeros stay 0)."""
        imp = np.clip(self.importance, 0.0, None)
        total = imp.sum(axis=1, keepdims=True)
        return np.divide(imp, total, out=np.zeros_like(imp), where=total > 0)

    def _sample_ids(self) -> np.ndarray:
        """Row ids of ``local``'s samples: the explained rows' indices when the explainer recorded them."""
        if self.local is None:
            return np.arange(0)
        ids = self.arrays.get("sample_index")
        return np.asarray(ids) if ids is not None and len(ids) == len(self.local) else np.arange(len(self.local))

    def to_pandas(self, kind: str = "importance") -> Any:
        """A pandas view.

        ``"importance"`` (default): a targets x features DataFrame;
        ``"std"``: the same for the spread; ``"local"``: the per-sample
        attributions in long form (columns ``sample``, ``target``,
        ``feature``, ``attribution``), indexed by the row labels
        (``sample_names``: your DataFrame's index) when there are any;
        ``sample`` is the explained row's position.
        """
        from .errors import require

        pd = require("pandas", "pandas", "to build DataFrames")
        if kind in ("importance", "std"):
            values = self.importance if kind == "importance" else self.std
            if values is None:
                raise ValueError(f"{self.explainer or 'this explanation'} has no std (no repeats or spread)")
            return pd.DataFrame(
                values, index=pd.Index(self.target_names, name="target"), columns=pd.Index(self.feature_names, name="feature")
            )
        if kind == "local":
            if self.local is None:
                raise ValueError(f"{self.explainer or 'this explanation'} has no per-sample attributions (local)")
            s, t, f = self.local.shape
            index = None
            if self.sample_names is not None:
                index = pd.Index(np.repeat(np.asarray(self.sample_names, dtype=object), t * f), name="row")
            return pd.DataFrame(
                {
                    "sample": np.repeat(self._sample_ids(), t * f),
                    "target": np.tile(np.repeat(np.asarray(self.target_names, dtype=object), f), s),
                    "feature": np.tile(np.asarray(self.feature_names, dtype=object), s * t),
                    "attribution": np.asarray(self.local).reshape(-1),
                },
                index=index,
            )
        raise ValueError(f"kind must be 'importance', 'std' or 'local', got {kind!r}")

    def to_xarray(self) -> Any:
        """An ``xarray.Dataset`` with ``importance`` (and ``std``, ``local``) on named dims (needs xarray)."""
        from .errors import require

        xr = require("xarray", "xarray", "to build xarray datasets")
        coords: dict[str, Any] = {"target": list(self.target_names), "feature": list(self.feature_names)}
        variables: dict[str, Any] = {"importance": (("target", "feature"), self.importance)}
        if self.std is not None:
            variables["std"] = (("target", "feature"), self.std)
        if self.local is not None:
            variables["local"] = (("sample", "target", "feature"), np.asarray(self.local))
            coords["sample"] = self._sample_ids() if self.sample_names is None else list(self.sample_names)
        attrs = {"explainer": self.explainer, "target_kind": self.target, "method": str(self.extras.get("method", self.explainer))}
        return xr.Dataset(variables, coords=coords, attrs=attrs)

    # --- serialisation ---------------------------------------------------------
    def to_json(self, *, inline: bool | None = None) -> dict[str, Any]:
        """The ``results.json`` entry for this explanation (arrays referenced, not embedded).

        ``importance`` / ``std`` are lists when ``inline`` (default: when they
        hold at most :data:`INLINE_MAX_VALUES` numbers), else ``null`` with
        ``"inline": false``: read them from the entry's arrays file.
        """
        inline = self.importance.size <= INLINE_MAX_VALUES if inline is None else inline
        return jsonable(
            {
                "name": self.explainer,
                "target": self.target,
                "feature_names": list(self.feature_names),
                "target_names": list(self.target_names),
                "importance": self.importance if inline else None,
                "std": self.std if inline else None,
                "inline": bool(inline),
                "shape": list(self.importance.shape),
                "has_std": self.std is not None,
                "runtime_s": self.runtime_s,
                "params": self.params,
                "extras": self.extras,
                "seed": self.seed,
                "distribution": self.distribution,
                "version": self.version,
                "library_versions": self.library_versions,
                "has_local": self.local is not None,
                "local_shape": None if self.local is None else list(self.local.shape),
                "array_names": sorted(self.arrays),
                "sample_names": self.sample_names,
            }
        )

    def save_arrays(self, path: str | Path, *, move: bool = True) -> str | None:
        """Write ``importance``, ``std``, ``local`` and ``arrays`` to an uncompressed ``.npz`` (atomically).

        A ``local`` above :data:`LOCAL_FILE_MB`, or one memory-mapped from a
        file, goes to ``<stem>.local.npy`` beside it instead (moved there when
        it is a file on the same file system and ``move``, else copied in
        slices); the name of that file is returned (None when ``local`` is in the npz).
        """
        path = Path(path)
        data: dict[str, np.ndarray] = {"importance": self.importance}
        if self.std is not None:
            data["std"] = self.std
        local_file = None
        if self.local is not None:
            if _mapped_file(self.local) is not None or self.local.nbytes > LOCAL_FILE_MB * 2**20:
                local_file = path.name[: -len(path.suffix)] + ".local.npy" if path.suffix else path.name + ".local.npy"
                _write_npy(self.local, path.with_name(local_file), move=move)
            else:
                data["local"] = self.local
        data.update({k: np.asarray(v) for k, v in self.arrays.items()})
        for key, arr in data.items():
            if arr.dtype == object:  # np.savez would pickle it
                raise ValueError(f"array {key!r} has dtype object; only numeric arrays are saved (no pickle)")
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **data)  # type: ignore[arg-type]  # (numpy's stub types **kwds as allow_pickle) uncompressed: float noise does not compress, and members can be memory-mapped
        tmp.replace(path)
        for value in self.arrays.values() if move else ():  # spilled rows now copied into the npz: drop their temporary files
            source = _mapped_file(np.asarray(value)) if isinstance(value, np.ndarray) else None
            if source is not None and source.parent.name.startswith(".rows-"):
                source.unlink(missing_ok=True)  # an open map stays valid after the unlink
                _remove_empty_parent(source)
        return local_file

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], arrays_path: str | Path | None = None) -> Explanation:
        """Rebuild an explanation from its ``results.json`` entry and ``.npz`` (no pickle).

        Uncompressed members and the ``local_file`` are memory-mapped
        read-only: nothing is read until it is used.
        """
        std = entry.get("std")
        local = None
        arrays: dict[str, np.ndarray] = {}
        importance = entry.get("importance")
        if arrays_path is not None and Path(arrays_path).exists():
            npz = open_npz(arrays_path)
            importance = npz.pop("importance")
            std = npz.pop("std", std)
            local = npz.pop("local", None)
            arrays = npz
            if entry.get("local_file"):
                local_path = Path(arrays_path).with_name(entry["local_file"])
                if local_path.exists():
                    local = np.load(local_path, mmap_mode="r", allow_pickle=False)
        if importance is None:
            raise ValueError(
                f"the entry of {entry.get('alias', entry.get('name'))!r} references its matrices in {arrays_path}, which is missing"
            )
        return cls(
            importance=np.asarray(importance, dtype=np.float64),
            feature_names=list(entry["feature_names"]),
            target_names=list(entry["target_names"]),
            target=entry.get("target", "latent"),
            std=None if std is None else np.asarray(std, dtype=np.float64),
            local=local,
            arrays=arrays,
            extras=dict(entry.get("extras") or {}),
            explainer=entry.get("name", ""),
            distribution=entry.get("distribution", ""),
            version=entry.get("version", ""),
            params=dict(entry.get("params") or {}),
            seed=entry.get("seed"),
            runtime_s=entry.get("runtime_s"),
            library_versions=dict(entry.get("library_versions") or {}),
            sample_names=_names_for(entry.get("sample_names"), local),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json())


def _names_for(names: Any, local: Any) -> list[str] | None:
    """Saved row labels, kept only when they still match ``local`` (older files have none)."""
    if not isinstance(names, list) or local is None or len(names) != len(local):
        return None
    return [str(n) for n in names]


def _mapped_file(array: np.ndarray) -> Path | None:
    """The file behind a memory-mapped array (or a view of one), if any."""
    base: Any = array
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap) and getattr(base, "filename", None):
            return Path(str(base.filename))
        base = base.base
    return None


def _write_npy(array: np.ndarray, target: Path, rows_per_slice: int = 64, *, move: bool = True) -> None:
    """``array`` as ``target`` (an ``.npy``): moved when it is a whole mapped ``.npy`` file, else copied in slices."""
    source = _mapped_file(array)
    if source is not None and not source.exists():  # moved away already (e.g. into the output folder): the open map still reads
        source = None
    if move and source is not None and source.suffix == ".npy" and source.resolve() != target.resolve():
        whole = np.load(source, mmap_mode="r")
        if whole.shape == array.shape and whole.dtype == array.dtype:
            try:
                os.replace(source, target)
                _remove_empty_parent(source)
                return
            except OSError:  # another file system: copy below
                pass
    if source is not None and source.resolve() == target.resolve():
        return
    from .resources import check_free, reserve

    tmp = target.with_name(target.name + ".tmp")
    check_free(target.parent, int(array.nbytes), f"writing {target.name}")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=array.dtype, shape=array.shape)
    try:
        reserve(tmp, f"writing {target.name}")  # a full disk fails here, never as SIGBUS while copying
    except BaseException:
        del out
        raise
    for s in range(0, array.shape[0], rows_per_slice):
        out[s : s + rows_per_slice] = array[s : s + rows_per_slice]
    out.flush()
    del out
    os.replace(tmp, target)


def _remove_empty_parent(path: Path) -> None:
    """Remove the temporary rows folder a moved file came from, once it is empty."""
    parent = path.parent
    if parent.name.startswith((".rows-", "aeinterp-rows-")) and not any(parent.iterdir()):
        parent.rmdir()


def open_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every member of an ``.npz``: uncompressed ones memory-mapped read-only, compressed ones (older runs) loaded."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    eager: list[str] = []
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.compress_type != zipfile.ZIP_STORED:
                eager.append(key)
                continue
            fh.seek(info.header_offset)
            header = fh.read(30)
            start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            if dtype.hasobject:
                raise ValueError(f"{path}: member {key!r} holds Python objects; refusing to load it (no pickle)")
            if int(np.prod(shape)) == 0:
                eager.append(key)
                continue
            out[key] = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape, order="F" if fortran else "C")
    if eager:
        with np.load(path, allow_pickle=False) as npz:
            out.update({k: npz[k] for k in eager})
    return out
