"""Checks the readers call before they trust a file: declared sizes that fit, names that are unique.

Kept apart from the readers so each reader (CSV, Parquet, ``.h5ad``, arrays)
calls the same rule with one line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from ..resources import check_fits

__all__ = ["check_dense_fits", "check_unique_names", "check_float32_range", "open_npy"]


def check_dense_fits(shape: Sequence[int], dtype: Any, what: str) -> None:
    """Refuse (:class:`DataError`) a dense array of ``shape`` and ``dtype`` that does not fit in memory, before it is made.

    ``what`` names the source (``"X of cells.h5ad"``); the message gives the shape and the estimate.
    """
    dims = [int(d) for d in shape]
    nbytes = float(np.prod([float(d) for d in dims])) * np.dtype(dtype).itemsize
    shown = " × ".join(f"{d:,}" for d in dims)
    check_fits(
        nbytes,
        f"{what} as a dense {np.dtype(dtype).name} array ({shown})",
        "select fewer samples or features (max_samples:, a smaller file), or use a machine with more memory",
    )


def check_unique_names(names: Sequence[str], what: str) -> None:
    """Refuse duplicated feature names (results and reports are keyed by them), naming the first few."""
    counts = Counter(str(n) for n in names)
    dupes = [n for n, c in counts.items() if c > 1]
    if dupes:
        shown = ", ".join(repr(n) for n in dupes[:5]) + (f" and {len(dupes) - 5} more" if len(dupes) > 5 else "")
        raise DataError(f"{what}: repeated feature names {shown}; every feature needs its own name (rename the repeats)")


_F32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(x: Any, what: str, names: Sequence[str] | None = None) -> None:
    """Refuse finite values that float32 (the samples' dtype) cannot hold: they would turn into inf and be reported as such.

    Read in row blocks (a memory-mapped file is not copied whole); names the first column and value out of range.
    """
    arr = np.asarray(x) if not hasattr(x, "dtype") else x
    if arr.dtype.kind not in "fiu" or arr.dtype.itemsize <= 4 and arr.dtype.kind == "f" or arr.size == 0:
        return
    if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 4:
        return
    rows = max(1, (16 * 2**20) // max(1, arr[:1].nbytes))
    for start in range(0, arr.shape[0], rows):
        block = np.asarray(arr[start : start + rows], dtype=np.float64).reshape(min(rows, arr.shape[0] - start), -1)
        big = np.isfinite(block) & (np.abs(block) > _F32_MAX)
        if big.any():
            r, c = (int(v[0]) for v in np.nonzero(big))
            column = f"column {names[c]!r}" if names is not None and c < len(names) else f"element {c}"
            raise DataError(
                f"{what}: the value {block[r, c]:.6g} in row {start + r}, {column}, is beyond the float32 range (|x| <= {_F32_MAX:.4g}) "
                "the samples are computed in; rescale that column (e.g. standardize: true or log-transform it)"
            )


def open_npy(path: Any) -> np.ndarray:
    """An ``.npy`` file memory-mapped read-only; a file shorter than its header declares is a :class:`DataError` saying it is truncated."""
    from pathlib import Path

    path = Path(path)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "mmap length is greater than file size" not in str(exc) and "cannot reshape" not in str(exc):
            raise
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(fh)
            offset = fh.tell()
        need = offset + int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        have = path.stat().st_size
        raise DataError(
            f"{path} is truncated: its header declares {dtype.name} data of shape {tuple(shape)} ({need:,} bytes with the header), "
            f"but the file has {have:,} bytes ({have * 100 // max(need, 1)} %); copy or save it again"
        ) from None
