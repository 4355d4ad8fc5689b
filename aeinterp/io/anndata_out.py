"""AnnData out: explanations written into an ``AnnData`` under documented keys.

For each explanation (``alias``: the recipe step's alias, the method name, or
the ``key`` given):

``adata.varm["aeinterp_<alias>"]``
    a DataFrame, genes (``var_names``) x targets (``z0``, ``z1``, ...): the
    importance of each gene for each target. Genes the explanation did not
    cover (e.g. ``raw`` held other genes) are NaN. Written when the
    explanation's features are genes of ``adata``; other feature groups go to
    ``uns`` only.
``adata.obsm["aeinterp_<alias>_values"]``
    cells x targets: each explained cell's target value (its latent code for
    the ``latent`` target), when the explainer kept them (DeepSHAP does).
``adata.obsm["aeinterp_<alias>_total"]``
    cells x targets: the sum over genes of each cell's absolute attribution,
    when per-cell attributions were kept (``local``).
    Cells that were not explained hold NaN in both.
``adata.uns["aeinterp"]["<alias>"]``
    ``explainer``, ``method``, ``target``, ``exact`` (when the explainer
    states whether its method is exact), ``targets`` (names), ``varm`` / ``obsm`` (the keys written) and
    ``record``: a JSON string of the params, seed, library versions, the
    matrix explained and the rest of ``extras``.

Everything is plain arrays, strings and DataFrames: ``adata.write_h5ad`` and
``anndata.read_h5ad`` round-trip it, and scanpy plots it (see
``docs/singlecell.md``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import DataError, require
from ..explanation import Explanation, jsonable

__all__ = ["write_explanations", "VARM_PREFIX", "UNS_KEY"]

VARM_PREFIX = "aeinterp_"
UNS_KEY = "aeinterp"


def _cells(exp: Explanation, n_obs: int) -> np.ndarray | None:
    """For each per-sample row of ``exp``, its cell (obs position); None when unknown."""
    rows = exp.arrays.get("explain_index")
    data = exp.extras.get("data", {}) if isinstance(exp.extras.get("data"), Mapping) else {}
    if rows is None:
        return None
    rows = np.asarray(rows, dtype=np.int64)
    if data.get("n_obs") not in (None, n_obs) or (rows.size and rows.max() >= n_obs):
        raise DataError(
            f"the explanation was computed on {data.get('n_obs', '?')} cells, but this AnnData has {n_obs}; write it into the AnnData it explains"
        )
    return rows


def _per_cell(values: np.ndarray, rows: np.ndarray, n_obs: int) -> np.ndarray:
    out = np.full((n_obs, values.shape[1]), np.nan, dtype=np.float32)
    out[rows[: len(values)]] = values[: len(rows)]
    return out


def _write_one(adata: Any, alias: str, exp: Explanation, pd: Any) -> dict[str, Any]:
    var_names = [str(v) for v in adata.var_names]
    position = {g: i for i, g in enumerate(var_names)}
    hits = [position.get(f) for f in exp.feature_names]
    written: dict[str, Any] = {"varm": "", "obsm": []}
    key = f"{VARM_PREFIX}{alias}"
    if any(h is not None for h in hits):
        table = np.full((len(var_names), len(exp.target_names)), np.nan, dtype=np.float64)
        for j, h in enumerate(hits):
            if h is not None:
                table[h] = exp.importance[:, j]
        adata.varm[key] = pd.DataFrame(table, index=adata.var_names.copy(), columns=[str(t) for t in exp.target_names])
        written["varm"] = key
        written["genes_missing"] = int(sum(h is None for h in hits))
    n_obs = int(adata.n_obs)
    per_sample = exp.arrays.get("target_values")
    rows = _cells(exp, n_obs)
    if rows is not None and per_sample is not None and np.ndim(per_sample) == 2 and len(per_sample) == len(rows):
        adata.obsm[f"{key}_values"] = _per_cell(np.asarray(per_sample, dtype=np.float32), rows, n_obs)
        written["obsm"].append(f"{key}_values")
    if rows is not None and exp.local is not None and len(exp.local) == len(rows):
        total = np.abs(np.asarray(exp.local, dtype=np.float32)).sum(axis=2)
        adata.obsm[f"{key}_total"] = _per_cell(total, rows, n_obs)
        written["obsm"].append(f"{key}_total")
    record = {
        "params": exp.params,
        "seed": exp.seed,
        "runtime_s": exp.runtime_s,
        "library_versions": exp.library_versions,
        "distribution": exp.distribution,
        "version": exp.version,
        "feature_names_not_in_var": None,
        "extras": {k: v for k, v in exp.extras.items() if k not in ("summary",)},
    }
    missing = [f for f, h in zip(exp.feature_names, hits) if h is None]
    record["feature_names_not_in_var"] = missing[:1000]  # type: ignore[assignment]
    if not written["varm"]:  # features are not genes of this AnnData (groups, other genes): keep the matrix in uns
        written["importance"] = np.asarray(exp.importance)
        written["features"] = np.asarray([str(f) for f in exp.feature_names])
    return {
        "explainer": exp.explainer,
        "method": str(exp.extras.get("method", exp.explainer)),
        "target": exp.target,
        **({"exact": bool(exp.extras["exact"])} if "exact" in exp.extras else {}),
        "targets": np.asarray([str(t) for t in exp.target_names]),
        "varm": written["varm"],
        "obsm": np.asarray(written["obsm"], dtype=str),
        "record": json.dumps(jsonable(record), default=str),
        **({k: written[k] for k in ("importance", "features") if k in written}),
    }


def write_explanations(adata: Any, explanations: Mapping[str, Explanation], run: Mapping[str, Any] | None = None) -> Any:
    """Write ``explanations`` (by alias) into ``adata`` in place (see the module docstring); returns ``adata``."""
    pd = require("pandas", "scverse", "to write explanations into an AnnData")
    if not all(hasattr(adata, a) for a in ("varm", "obsm", "uns", "var_names", "n_obs")):
        raise DataError(f"to_anndata needs an anndata.AnnData, got {type(adata).__name__}")
    if getattr(adata, "isbacked", False):
        raise DataError(
            "the AnnData is opened backed (read-only); load it with anndata.read_h5ad(path) or write to a copy: adata.to_memory()"
        )
    uns = dict(adata.uns.get(UNS_KEY, {}))
    for alias, exp in explanations.items():
        if not isinstance(exp, Explanation):
            raise DataError(f"{alias!r} is a {type(exp).__name__}, not an aeinterp Explanation")
        uns[str(alias)] = _write_one(adata, str(alias), exp, pd)
    if run:
        uns["_run"] = json.dumps(jsonable(dict(run)), default=str)
    adata.uns[UNS_KEY] = uns
    return adata


RESULTS_H5AD = "results.h5ad"


def _obs_and_genes(anndata: Any, info: Mapping[str, Any]) -> tuple[Any, Any]:
    """The input store's ``obs`` and the explained matrix's genes, without reading any matrix."""
    raw = info.get("matrix") == "raw.X"
    if info.get("source") == "zarr":
        from pathlib import Path

        from .anndata import _io
        from .anndata_zarr import open_zarr

        root = open_zarr(Path(info["path"]))
        read_elem = _io(anndata)[0]
        var = read_elem(root["raw"]["var"] if raw and "raw" in root else root["var"])
        return read_elem(root["obs"]), var.index
    source = anndata.read_h5ad(info["path"], backed="r")
    try:
        return source.obs.copy(), (source.raw.var_names if raw and source.raw is not None else source.var_names)
    finally:
        source.file.close()


def write_results_h5ad(out_path: Any, data: Any, explanations: Mapping[str, Explanation], run: Mapping[str, Any] | None = None) -> Any:
    """``results.h5ad`` of a recipe run on an ``.h5ad`` file or a ``.zarr`` store: the input's ``obs`` and the explained
    matrix's genes as ``var``, **no expression matrix** (join it to your data by ``obs_names`` /
    ``var_names``), and the explanations under the keys above. Returns the path."""
    anndata = require("anndata", "scverse", "to write results.h5ad")
    pd = require("pandas", "scverse", "to write results.h5ad")
    info = getattr(data, "info", {})
    obs, var_names = _obs_and_genes(anndata, info)
    var = pd.DataFrame(index=pd.Index([str(v) for v in var_names]))
    row_ids = getattr(data, "row_ids", None)
    rows = np.arange(len(obs)) if row_ids is None else np.asarray(row_ids)
    fixed = {}
    for alias, exp in explanations.items():  # per-sample rows -> rows of the file (dropped rows and splits accounted for)
        index = exp.arrays.get("explain_index", getattr(data, "explain_index", None))
        arrays = dict(exp.arrays)
        if index is not None:
            arrays["explain_index"] = rows[np.asarray(index, dtype=np.int64)]
        extras = {**exp.extras, "data": {"n_obs": int(len(obs)), **{k: v for k, v in info.items() if k != "n_obs"}}}
        fixed[alias] = exp.replace(arrays=arrays, extras=extras)
    adata = anndata.AnnData(obs=obs, var=var)
    write_explanations(adata, fixed, run=run)
    adata.write_h5ad(out_path)
    return out_path
