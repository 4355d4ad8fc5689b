"""Your model and arrays as aeinterp sees them: :func:`as_dataset` and :func:`as_model`.

NumPy arrays, torch tensors, DataFrames (their columns as feature names, their
index as row labels), scipy sparse matrices and AnnData objects become an
:class:`aeinterp.data.ArrayDataset` whose explain split is exactly ``X``; an
``nn.Module``, a TorchScript module or an scvi-tools model becomes a
:class:`aeinterp.model.Model`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import ArrayDataset, element_names, make_groups
from ..errors import AeinterpError, DataError
from ..explanation import Explanation
from ..io.checks import check_float32_range, check_unique_names
from ..report import views as _views  # noqa: F401  (exp.plot and notebook display on every result)

if TYPE_CHECKING:
    pass

__all__ = ["row_labels", "as_dataset", "as_model"]


_KIND_BY_NDIM = {2: "tabular", 3: "sequence", 4: "image"}


# --- inputs ------------------------------------------------------------------------------


def _to_array(x: Any, what: str) -> tuple[np.ndarray, list[str] | None]:
    """A numpy array and, for a pandas DataFrame, its column names."""
    names = None
    if hasattr(x, "columns") and hasattr(x, "to_numpy"):  # pandas DataFrame, without importing pandas
        names = [str(c) for c in x.columns]
        text = [(str(c), t) for c, t in zip(x.columns, getattr(x, "dtypes", [])) if getattr(t, "kind", "O") not in "biuf"]
        if text:  # name the column, as the CSV reader does
            more = f" (and {len(text) - 1} more columns)" if len(text) > 1 else ""
            raise DataError(
                f"{what}'s column {text[0][0]!r} is not numeric (dtype {text[0][1]}){more}; encode categorical columns first or drop them"
            )
        x = x.to_numpy()
    elif hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{what} cannot be read as an array: {exc}") from None
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise DataError(f"{what} is not numeric (dtype {arr.dtype}); encode categorical columns first")
    if arr.ndim < 2:
        raise DataError(f"{what} has shape {arr.shape}; give a batch of samples, e.g. (samples, features)")
    return arr, names


def row_labels(X: Any, sample_names: Sequence[Any] | None = None) -> list[str] | None:
    """The labels of ``X``'s rows: ``sample_names`` when given, else a pandas DataFrame's index unless it is
    the default 0..n-1 (then positions say the same), else an AnnData's ``obs_names``; None otherwise."""
    n = len(X) if hasattr(X, "__len__") else None
    if sample_names is not None:
        labels = [str(v) for v in sample_names]
        if n is not None and len(labels) != n:
            raise DataError(f"sample_names has {len(labels)} labels for {n} rows of X")
        return labels
    index = getattr(X, "obs_names", None) if hasattr(X, "obs") else getattr(X, "index", None)
    if index is None or not hasattr(X, "shape") or callable(index):
        return None
    values = list(index)
    if len(values) != X.shape[0]:
        return None
    if type(index).__name__ == "RangeIndex" and list(values) == list(range(len(values))):
        return None
    return [str(v) for v in values]


def as_dataset(
    X: Any,
    *,
    background: Any = None,
    feature_names: Sequence[str] | None = None,
    kind: str | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    dtype: Any = np.float32,
    sample_names: Sequence[Any] | None = None,
    layer: str | None = None,
    labels: str | None = None,
    split: str | None = None,
) -> ArrayDataset:
    """An :class:`ArrayDataset` whose explain split is exactly ``X`` and whose fit split is ``background``.

    An AnnData ``X`` is read by :func:`aeinterp.io.anndata.anndata_dataset` (``layer``: ``X``, ``raw``
    or a layer; ``labels`` / ``split``: ``obs`` columns); a scipy sparse matrix stays sparse
    (:func:`aeinterp.io.inputs.lazy_dataset`).

    ``X`` and ``background`` are numpy arrays, torch tensors or pandas
    DataFrames (feature names from the columns); ``kind`` is inferred from the
    number of dimensions (2: tabular, 3: sequence, 4: image; pass
    ``kind="image"`` for ``(N, H, W)`` images). Row labels (the dataset's
    ``row_names``) come from ``sample_names`` or a DataFrame's index (:func:`row_labels`).
    """
    from ..io.inputs import lazy_dataset

    lazy = lazy_dataset(
        X, background=background, feature_names=feature_names, kind=kind, groups=groups, layer=layer, labels=labels, split=split
    )
    if lazy is not None:
        return lazy
    rows = row_labels(X, sample_names)
    x, df_names = _to_array(X, "X")
    if kind == "image" and x.ndim == 3:
        x = x[:, None]
    kind = kind or _KIND_BY_NDIM.get(x.ndim)
    if kind is None:
        raise DataError(f"X has shape {x.shape}; pass kind='tabular' | 'sequence' | 'image'")
    names = list(feature_names) if feature_names is not None else df_names
    if names is not None:
        check_unique_names([str(v) for v in names], "feature_names" if feature_names is not None else "X's columns")
    n = len(x)
    if n == 0:
        raise DataError("X holds no samples")
    explain_index = np.arange(n)
    fit_index = explain_index
    if background is not None:
        b, b_names = _to_array(background, "background")
        if kind == "image" and b.ndim == 3:
            b = b[:, None]
        if b.shape[1:] != x.shape[1:]:
            raise DataError(f"background samples have shape {b.shape[1:]}, X's samples {x.shape[1:]}")
        if df_names is not None and b_names is not None and b_names != df_names:
            raise DataError("background's columns differ from X's columns; use the same columns in the same order")
        if len(b) == 0:
            raise DataError("background holds no samples")
        x = np.concatenate([x, b])
        fit_index = np.arange(n, n + len(b))
        if rows is not None:
            rows = rows + (row_labels(background) or [f"background:{i}" for i in range(len(b))])
    if np.dtype(dtype) == np.float32:
        check_float32_range(x, "X" if background is None else "X and background", names)
    x = np.ascontiguousarray(x, dtype=dtype)
    if not np.isfinite(x).all():
        where = "X" if not np.isfinite(x[:n]).all() else "background"
        bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
        raise DataError(f"{where} has NaN or infinite values (first in row {bad if where == 'X' else bad - n}); clean or drop those rows")
    if kind == "image" and names is not None:
        raise DataError("feature_names do not apply to image data (pixels are named by position)")
    try:
        element = element_names(kind, x.shape[1:], names)  # type: ignore[arg-type]
    except Exception as exc:
        raise DataError(f"feature names do not fit X of shape {(n, *x.shape[1:])}: {exc}") from None
    grp = make_groups(kind, x.shape[1:], groups, feature_names=element, x=x[fit_index], base_names=names)  # type: ignore[arg-type]
    return ArrayDataset(
        x=x,
        kind=kind,  # type: ignore[arg-type]
        feature_names=element,
        groups=grp,
        fit_index=fit_index,
        explain_index=explain_index,
        name="array",
        row_names=rows,  # type: ignore[arg-type]
    )  # type: ignore[arg-type]


def as_model(
    model: Any,
    data: ArrayDataset,
    *,
    encoder: str | None = None,
    decoder: str | None = None,
    code: int | str | None = None,
    device: str | None = None,
) -> Any:
    """``model`` as an :class:`aeinterp.Model`: an nn.Module or TorchScript module is adapted and checked
    against ``data``; anything that already satisfies the protocol is used as is."""
    from torch import nn

    from ..model import Model
    from ..models.loading import adapt

    if isinstance(model, nn.Module):
        return adapt(model, data, encoder=encoder, decoder=decoder, code=code, description=type(model).__name__, device=device)
    if isinstance(model, Model):
        return model
    raise AeinterpError(
        f"model is a {type(model).__name__}; give a torch.nn.Module (with encoder/decoder submodules or encode/decode "
        "methods), a TorchScript module, or an object with encode, decode, latent_dim and input_shape (aeinterp.Model)"
    )


def _inputs(model: Any, X: Any, **kw: Any) -> tuple[ArrayDataset, Any]:
    """The dataset and the adapted model (an scvi-tools model reads its own registered matrix and covariates)."""
    from ..models.scvi import is_scvi_model

    if is_scvi_model(model):
        from ..io.inputs import adapter_dataset
        from ..models.scvi import ScviAutoencoder

        adapter = ScviAutoencoder(model, device=kw["device"])
        return adapter_dataset(adapter, X, **{k: kw[k] for k in ("layer", "labels", "split", "groups", "background")}), adapter
    model_kw = {k: kw.pop(k) for k in ("encoder", "decoder", "code", "device")}
    data = as_dataset(X, dtype=_float_dtype(model), **kw)
    return data, as_model(model, data, **model_kw)


def _with_source(result: Explanation, data: ArrayDataset) -> Explanation:
    """Say which matrix was explained (AnnData / sparse input), and which rows (for ``to_anndata``)."""
    if "matrix" not in data.info:
        return result
    arrays = dict(result.arrays)
    arrays.setdefault("explain_index", np.asarray(data.explain_index, dtype=np.int64))
    return result.replace(extras={**result.extras, "data": {k: v for k, v in data.info.items()}}, arrays=arrays)


def _float_dtype(model: Any) -> Any:
    """float64 data for a float64 model, float32 otherwise."""
    import torch

    params = getattr(model, "parameters", None)
    if callable(params):
        for prm in params():
            if prm.is_floating_point():
                return np.float64 if prm.dtype == torch.float64 else np.float32
    return np.float32


# --- several explainers -------------------------------------------------------------
