"""Rows read on demand: a sparse or on-disk matrix behind the ndarray interface explainers use.

:class:`LazyRows` wraps a scipy sparse matrix, an AnnData backed sparse dataset
(``anndata.io.sparse_dataset``) or an h5py dataset. It has ``shape``,
``dtype``, ``ndim`` and ``len``; indexing it by a row, a slice or an array of
row indices returns **dense float32 rows** (``x[rows]``), and
:meth:`LazyRows.rows_view` gives a lazy subset of rows (what a dataset's fit /
explain split holds). So an explainer that reads chunks of samples
(DeepSHAP, integrated gradients, permutation, ...) densifies one chunk at a
time, and a matrix far larger than memory can be explained.

Whole-matrix access (``np.asarray(x)``, a slice of every row) is refused with
a :class:`~aeinterp.errors.DataError` when the dense result would exceed the
*dense budget*: ``AEINTERP_DENSE_BUDGET_MB`` (default 2048 MiB). Explainers that
need every row at once (feature visualisation, dependence) then say so
instead of exhausting the machine's memory.

Extra dense columns (per-row covariates such as a cell's library size and
batch, see :mod:`aeinterp.models.scvi`) can be appended: they travel with
their rows through every subset and chunk. Standardisation (``center`` /
``scale``, fitted in one streaming pass by :func:`column_stats`) is applied
to each chunk as it is read.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["LazyRows", "column_stats", "dense_budget_bytes", "is_sparse", "BLOCK_BYTES"]

#: dense bytes densified at a time by streaming passes (statistics, finiteness, hashing)
BLOCK_BYTES = 64 * 2**20
#: dense rows kept for reads of a few columns of rows (permutation's donors of one gene): at most this many bytes
CACHE_BYTES = 256 * 2**20  # permutation draws donors uniformly over its explained rows: they must all fit, or every gene
# re-reads its donor rows from disk (2,048 of scvi #3383's 10,000-gene cells, 80 MB, ran > 14 min with 64 MiB, vs 8.5 s for 128)


def dense_budget_bytes() -> int:
    """The largest dense array one access may build, in bytes (``AEINTERP_DENSE_BUDGET_MB``, default 2048)."""
    try:
        mb = float(os.environ.get("AEINTERP_DENSE_BUDGET_MB", "2048"))
    except ValueError:
        raise DataError("AEINTERP_DENSE_BUDGET_MB must be a number of MiB") from None
    return int(mb * 2**20)


def is_sparse(x: Any) -> bool:
    """True for a scipy sparse matrix / array (without importing scipy)."""
    return hasattr(x, "tocsr") and hasattr(x, "nnz")


class LazyRows:
    """A ``(rows, columns)`` matrix densified a block of rows at a time (see the module docstring).

    ``source``: a scipy sparse matrix (CSR is fastest), an AnnData backed
    sparse dataset, an h5py dataset, or any array-like indexable by sorted row
    indices. ``index``: the rows of ``source`` this view holds (default all).
    ``extra``: dense columns ``(source rows, C)`` appended to every row.
    ``center`` / ``scale``: per-column arrays applied to the source columns as
    ``(x - center) / scale``. ``description`` says which matrix this is.
    """

    def __init__(
        self,
        source: Any,
        *,
        index: np.ndarray | None = None,
        extra: np.ndarray | None = None,
        center: np.ndarray | None = None,
        scale: np.ndarray | None = None,
        dtype: Any = np.float32,
        description: str = "",
        fingerprint: str | None = None,
    ) -> None:
        if len(getattr(source, "shape", ())) != 2:
            raise DataError(f"a lazily read matrix must have 2 dimensions, got shape {getattr(source, 'shape', None)}")
        self.source = source
        self._n_source = int(source.shape[0])
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        if extra is not None:
            extra = np.asarray(extra, dtype=np.float64)
            if extra.ndim != 2 or extra.shape[0] != self._n_source:
                raise DataError(f"extra columns have shape {extra.shape}, expected ({self._n_source}, C)")
        self.extra = extra
        self.center, self.scale = center, scale
        self._dtype = np.dtype(dtype)
        self.description = description
        self._fingerprint = fingerprint
        #: an object kept alive with the rows (the open h5py file of a backed matrix)
        self.keepalive: Any = None
        self._cache: tuple[np.ndarray, np.ndarray] | None = None  # (sorted source rows, their dense rows)

    # --- the ndarray interface ----------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        n = self._n_source if self.index is None else len(self.index)
        return (n, int(self.source.shape[1]) + (0 if self.extra is None else self.extra.shape[1]))

    @property
    def ndim(self) -> int:
        return 2

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def itemsize(self) -> int:
        return self._dtype.itemsize

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the matrix *dense* (what ``np.asarray`` would allocate)."""
        return self.size * self.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        what = f", {self.description}" if self.description else ""
        return f"LazyRows(shape={self.shape}, dtype={self._dtype}{what})"

    def _replace(self, **changes: Any) -> LazyRows:
        kw = {
            "index": self.index,
            "extra": self.extra,
            "center": self.center,
            "scale": self.scale,
            "dtype": self._dtype,
            "description": self.description,
            "fingerprint": self._fingerprint,
        }
        kw.update(changes)
        out = LazyRows(self.source, **kw)
        out.keepalive = self.keepalive
        return out

    def _source_rows(self, key: Any) -> np.ndarray:
        """The source rows selected by ``key`` (slice, int array, bool mask) of this view."""
        n = self.shape[0]
        if isinstance(key, slice):
            sel = np.arange(n)[key]
        else:
            sel = np.asarray(key)
            if sel.dtype == bool:
                if sel.shape != (n,):
                    raise IndexError(f"boolean row mask of shape {sel.shape} for {n} rows")
                sel = np.flatnonzero(sel)
            elif not np.issubdtype(sel.dtype, np.integer):
                if sel.size == 0:
                    sel = sel.astype(np.int64)
                else:
                    raise IndexError(f"rows must be integers, a slice or a boolean mask, not {sel.dtype}")
            sel = sel.astype(np.int64).reshape(-1)
            if sel.size and (sel.min() < -n or sel.max() >= n):
                raise IndexError(f"row index out of range for {n} rows")
            sel = np.where(sel < 0, sel + n, sel)
        return sel if self.index is None else self.index[sel]

    def rows_view(self, index: Any) -> LazyRows:
        """A lazy view of some rows (nothing is read)."""
        return self._replace(index=self._source_rows(index))

    def astype(self, dtype: Any, copy: bool = True) -> LazyRows:  # noqa: ARG002 - ndarray's signature
        return self._replace(dtype=dtype)

    def reshape(self, *shape: Any) -> Any:
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        n, d = self.shape
        if shape in ((n, d), (n, -1), (-1, d)):
            return self
        return np.asarray(self).reshape(shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple[Any, ...] = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(key, (int, np.integer)):
            out = self.read(self._source_rows(np.array([int(key)])))[0]
            return out[rest] if rest else out
        if key is Ellipsis:
            key = slice(None)
        if isinstance(key, slice):
            out = self.read(self._source_rows(key))
            return out[(slice(None), *rest)] if rest else out
        arr = np.asarray(key)
        if arr.dtype == bool:
            arr = self._source_rows(arr) if self.index is None else np.flatnonzero(arr)
        if arr.ndim == 1 and not rest:
            return self.read(self._source_rows(arr))
        # numpy's fancy indexing (rows broadcast against columns): read each row once, then index the block
        uniq, inverse = np.unique(arr, return_inverse=True)
        if rest:  # a few columns of some rows, again and again (permutation's donors, one gene at a time): cached rows
            hit = self._cached(self._source_rows(uniq))
            if hit is not None:
                block, pos = hit
                return block[(pos[inverse].reshape(arr.shape), *rest)]
        block = self.read(self._source_rows(uniq))
        return block[(inverse.reshape(arr.shape), *rest)]

    def _cached(self, src: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(cached dense rows, positions of src in them)``, adding the missing rows of ``src`` (sorted, unique
        source rows) while the cache stays within :data:`CACHE_BYTES`; None when they do not fit."""
        rows, block = self._cache if self._cache is not None else (np.zeros(0, dtype=np.int64), None)
        missing = np.setdiff1d(src, rows, assume_unique=True)
        if missing.size:
            row_bytes = self.shape[1] * self.itemsize
            if (len(rows) + len(missing)) * row_bytes > CACHE_BYTES:
                if len(src) * row_bytes > CACHE_BYTES:
                    return None
                rows, block, missing = np.zeros(0, dtype=np.int64), None, src  # start over with these rows
            new = self.read(missing)
            merged = np.concatenate([rows, missing])
            order = np.argsort(merged, kind="stable")
            block = new if block is None else np.concatenate([block, new])
            rows, block = merged[order], block[order]
            self._cache = (rows, block)
        return block, np.searchsorted(rows, src)  # type: ignore[return-value]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:  # noqa: ARG002
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __iter__(self) -> Any:
        for block in self.blocks():
            yield from block

    # --- reading ---------------------------------------------------------------------------
    def read(self, rows: np.ndarray) -> np.ndarray:
        """Dense rows of the *source* (in the order given), within the dense budget."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n_cols = self.shape[1]
        need = len(rows) * n_cols * self.itemsize
        if need > dense_budget_bytes():
            raise DataError(
                f"reading {len(rows):,} rows of the {self._n_source:,} x {self.source.shape[1]:,} matrix"
                f"{' (' + self.description + ')' if self.description else ''} dense would take {need / 2**30:.1f} GiB, more than the "
                f"dense budget of {dense_budget_bytes() / 2**30:.1f} GiB (AEINTERP_DENSE_BUDGET_MB); explainers that read chunks of rows "
                "(deepshap, integrated_gradients, permutation) stream it, or give max_samples: to use fewer rows"
            )
        out = np.empty((len(rows), n_cols), dtype=self._dtype)
        if len(rows) == 0:
            return out
        n_src = int(self.source.shape[1])
        uniq, inverse = np.unique(rows, return_inverse=True)
        block = self._read_sorted(uniq)
        genes = block[inverse] if len(uniq) != len(rows) or not np.array_equal(uniq, rows) else block
        if self.center is not None:
            genes = genes - self.center
        if self.scale is not None:
            genes = genes / self.scale
        out[:, :n_src] = genes
        if self.extra is not None:
            out[:, n_src:] = self.extra[rows]
        return out

    def _read_sorted(self, rows: np.ndarray) -> np.ndarray:
        """Dense float rows of the source for sorted unique ``rows`` (contiguous runs read as slices)."""
        contiguous = rows[-1] - rows[0] == len(rows) - 1
        key: Any = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows
        part = self.source[key]
        if hasattr(part, "toarray"):
            part = part.toarray()
        return np.asarray(part, dtype=np.float64 if self._dtype == np.float64 else np.float32)

    def block_rows(self) -> int:
        """Rows per block of the streaming passes (:attr:`BLOCK_BYTES` of dense rows)."""
        return max(1, BLOCK_BYTES // max(1, self.shape[1] * 8))

    def blocks(self, rows: np.ndarray | None = None) -> Any:
        """Dense blocks of this view's rows (or of the view's ``rows``), in order."""
        sel = np.arange(self.shape[0]) if rows is None else np.asarray(rows)
        step = self.block_rows()
        for s in range(0, len(sel), step):
            yield self[sel[s : s + step]]

    # --- streaming statistics ------------------------------------------------------------------
    def mean(self, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:
        if axis not in (0, -2):
            return np.asarray(self).mean(axis=axis, dtype=dtype, keepdims=keepdims)
        m, _ = column_stats(self)
        return m[None] if keepdims else m

    def std(self, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:
        if axis not in (0, -2):
            return np.asarray(self).std(axis=axis, dtype=dtype, keepdims=keepdims)
        _, s = column_stats(self)
        return s[None] if keepdims else s

    def finite_rows(self) -> np.ndarray:
        """Whether each row is finite: the stored values are checked (not the implicit zeros)."""
        plain = self.extra is None and self.center is None and self.scale is None
        data = getattr(self.source, "data", None)
        if isinstance(data, np.ndarray) and is_sparse(self.source) and plain:
            if np.isfinite(data).all():
                return np.ones(self.shape[0], dtype=bool)
        group = getattr(self.source, "group", None)  # a backed AnnData sparse dataset: its stored values, in slices
        if plain and group is not None and "data" in group:
            stored, step = group["data"], 2**22
            if all(np.isfinite(stored[s : s + step]).all() for s in range(0, stored.shape[0], step)):
                return np.ones(self.shape[0], dtype=bool)
        out = np.empty(self.shape[0], dtype=bool)
        start = 0
        for block in self.blocks():
            out[start : start + len(block)] = np.isfinite(block).all(axis=1)
            start += len(block)
        return out

    def fingerprint(self) -> str:
        """A hash of what this view reads: the source's identity (file, layer) or content, the rows, the transforms."""
        h = hashlib.sha256()
        if self._fingerprint is not None:
            h.update(self._fingerprint.encode())
        elif is_sparse(self.source):
            csr = self.source
            for part in (csr.data, getattr(csr, "indices", np.zeros(0)), getattr(csr, "indptr", np.zeros(0))):
                h.update(np.ascontiguousarray(part).tobytes())
        else:
            for block in self._replace(index=None, extra=None, center=None, scale=None).blocks():
                h.update(np.ascontiguousarray(block).tobytes())
        for part in (self.index, self.extra, self.center, self.scale):
            h.update(b"-" if part is None else np.ascontiguousarray(part).tobytes())
        h.update(f"{self.shape}{self._dtype.str}".encode())
        return h.hexdigest()


def column_stats(x: Any, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and (population) standard deviation of ``x``'s ``rows``, in one streaming pass.

    Sums are accumulated in float64 block by block (Chan et al.'s pairwise
    update of the centred sum of squares), so a lazily read matrix is never
    dense whole.
    """
    sel = np.arange(x.shape[0]) if rows is None else np.asarray(rows)
    if len(sel) == 0:
        raise DataError("no rows to compute column statistics on")
    lazy = x if isinstance(x, LazyRows) else None
    step = lazy.block_rows() if lazy is not None else max(1, BLOCK_BYTES // max(1, int(np.prod(x.shape[1:])) * 8))
    n, mean, m2 = 0, None, None
    for s in range(0, len(sel), step):
        block = np.asarray(x[sel[s : s + step]], dtype=np.float64).reshape(min(step, len(sel) - s), -1)
        b_n, b_mean = block.shape[0], block.mean(axis=0)
        b_m2 = ((block - b_mean) ** 2).sum(axis=0)
        if mean is None:
            n, mean, m2 = b_n, b_mean, b_m2
            continue
        delta = b_mean - mean
        total = n + b_n
        mean = mean + delta * (b_n / total)
        m2 = m2 + b_m2 + delta**2 * (n * b_n / total)
        n = total
    return mean, np.sqrt(m2 / n)  # type: ignore[operator, return-value]
