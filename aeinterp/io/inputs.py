"""In-memory inputs that are not plain arrays: AnnData objects and scipy sparse matrices.

:func:`lazy_dataset` is what :func:`aeinterp.explain` calls first: it returns
``None`` for an ordinary array (which ``aeinterp.api.as_dataset`` reads as
before), a dataset for an AnnData or a sparse matrix, and a clear
:class:`~aeinterp.errors.DataError` for AnnData-only options given with
other inputs. :func:`adapter_dataset` builds the dataset of a model adapter
that reads its own matrix and appends per-row covariates
(:class:`aeinterp.models.scvi.ScviAutoencoder`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import ArrayDataset, element_names, make_groups
from ..errors import DataError
from .anndata import anndata_dataset, cells_dataset, is_anndata
from .rows import LazyRows, is_sparse

__all__ = ["lazy_dataset", "adapter_dataset", "store_dataset", "STORE_SUFFIXES"]


def _no_anndata_options(what: str, layer: Any, labels: Any, split: Any) -> None:
    given = [n for n, v in (("layer", layer), ("labels", labels), ("split", split)) if v is not None]
    if given:
        raise DataError(f"{', '.join(given)} select{'s' if len(given) == 1 else ''} parts of an AnnData; X is {what}")


def lazy_dataset(
    X: Any,
    *,
    background: Any = None,
    feature_names: Sequence[str] | None = None,
    kind: str | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    layer: str | None = None,
    labels: str | None = None,
    split: str | None = None,
) -> ArrayDataset | None:
    """The dataset of an AnnData or a scipy sparse ``X`` (None for anything else; see the module docstring)."""
    if isinstance(X, (str, Path)) and Path(X).suffix in STORE_SUFFIXES:
        if kind not in (None, "tabular"):
            raise DataError(f"an AnnData store is tabular data (cells x genes), not {kind}")
        if background is not None or feature_names is not None:
            raise DataError(
                "background= / feature_names= with an AnnData store: mark the explained cells in an obs column and pass "
                "split=<column>; the genes are named by its var_names"
            )
        return store_dataset(Path(X), layer=layer, labels=labels, split=split, groups=groups)
    if kind not in (None, "tabular") and (is_anndata(X) or is_sparse(X)):
        raise DataError(f"an AnnData or sparse matrix is tabular data (cells x genes), not {kind}")
    if is_anndata(X):
        if background is not None:
            raise DataError(
                "background= with an AnnData: mark the explained cells in an obs column and pass split=<column> "
                "(cells whose value is 'test' are explained, the others are the background)"
            )
        if feature_names is not None:
            raise DataError("feature_names= with an AnnData: the genes are named by adata.var_names")
        return anndata_dataset(X, layer=layer, labels=labels, split=split, groups=groups)
    if not is_sparse(X):
        _no_anndata_options(f"a {type(X).__name__}", layer, labels, split)
        if is_sparse(background):
            raise DataError("background is sparse but X is not; give both sparse (scipy) or both dense")
        return None
    _no_anndata_options("a sparse matrix", layer, labels, split)
    return _sparse_dataset(X, background, feature_names, groups)


#: paths ``aeinterp.explain`` reads itself: AnnData stores (other files go through a recipe or your own reader)
STORE_SUFFIXES = (".h5ad", ".zarr")


def store_dataset(
    path: Path,
    *,
    layer: str | None = None,
    labels: str | None = None,
    split: str | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
) -> ArrayDataset:
    """The dataset of an ``.h5ad`` file or an AnnData ``.zarr`` store, read as a recipe reads it (sparse stays
    sparse, large stores backed) and used as an AnnData object is (every cell explained unless ``split``)."""
    from .readers import read_file

    table = read_file(path, key=layer)
    columns = table.columns

    def obs_column(name: str, role: str) -> Any:
        if not isinstance(name, str) or name not in columns:
            raise DataError(f"{path.name}'s obs has no column {name!r} for the {role} (obs columns: {', '.join(columns) or 'none'})")
        return columns[name]

    info = dict(table.info)
    return cells_dataset(
        table.x,
        list(table.feature_names or []),
        description=f"{path.name} {info.get('matrix', 'X')}",
        info=info,
        obs_column=obs_column,
        obs_names=[str(v) for v in table.index] if table.index is not None else [str(i) for i in range(len(table.x))],
        labels=labels,
        split=split,
        groups=groups,
    )


def _sparse_dataset(X: Any, background: Any, feature_names: Sequence[str] | None, groups: Any) -> ArrayDataset:
    import scipy.sparse as sp

    if X.ndim != 2:
        raise DataError(f"a sparse X must be 2-D (samples, features), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number) and X.dtype != bool:
        raise DataError(f"the sparse X is not numeric (dtype {X.dtype})")
    n = int(X.shape[0])
    if n == 0:
        raise DataError("X holds no samples")
    matrix = sp.csr_matrix(X)
    fit_index = explain_index = np.arange(n)
    if background is not None:
        b = background if is_sparse(background) else sp.csr_matrix(np.asarray(background, dtype=np.float32))
        if b.shape[1:] != X.shape[1:]:
            raise DataError(f"background samples have shape {b.shape[1:]}, X's samples {X.shape[1:]}")
        if b.shape[0] == 0:
            raise DataError("background holds no samples")
        matrix = sp.vstack([matrix, sp.csr_matrix(b)], format="csr")
        fit_index = np.arange(n, matrix.shape[0])
    if not np.isfinite(matrix.data).all():
        raise DataError("X or background has NaN or infinite values; clean or drop those rows")
    x = LazyRows(matrix, description="sparse matrix")
    names = element_names("tabular", (x.shape[1],), feature_names)
    if isinstance(groups, str) and groups.startswith("correlation"):
        raise DataError("correlation groups are not computed on sparse data; give groups as a mapping")
    grp = make_groups("tabular", (x.shape[1],), groups, feature_names=names)
    info = {
        "source": "scipy sparse",
        "matrix": f"{type(X).__name__} ({matrix.nnz:,} stored values)",
        "storage": "sparse CSR in memory, densified a chunk of rows at a time",
    }
    return ArrayDataset(
        x=x,  # type: ignore[arg-type]
        kind="tabular",
        feature_names=names,
        groups=grp,
        fit_index=fit_index,
        explain_index=explain_index,
        name="sparse",
        info=info,
        check_finite=False,
    )


def adapter_dataset(
    adapter: Any,
    X: Any,
    *,
    layer: str | None = None,
    labels: str | None = None,
    split: str | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    background: Any = None,
) -> ArrayDataset:
    """The dataset of an adapter that reads its registered AnnData matrix and appends per-cell covariates
    (``adapter.layer``, ``adapter.covariates(adata)``, ``adapter.covariate_names``)."""
    name = type(getattr(adapter, "scvi_model", adapter)).__name__
    if not is_anndata(X):
        raise DataError(f"a {name} model explains an AnnData (the one it was set up on, or one like it), not a {type(X).__name__}")
    if background is not None:
        raise DataError("background= with an AnnData: mark the explained cells in an obs column and pass split=<column>")
    registered = adapter.layer
    if layer not in (None, registered) and not (layer == "X" and registered is None):
        raise DataError(
            f"the {name} model was set up on {'X' if registered is None else 'layer ' + repr(registered)}; "
            f"layer={layer!r} would feed it another matrix (leave layer= out)"
        )
    extra = adapter.covariates(X)
    data = anndata_dataset(X, layer=registered, labels=labels, split=split, groups=groups, extra=extra, extra_names=adapter.covariate_names)
    return data
