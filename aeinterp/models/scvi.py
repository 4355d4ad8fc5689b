"""scvi-tools models (``SCVI``, ``LinearSCVI``) as aeinterp models.

``aeinterp.explain(scvi_model, adata, "deepshap")`` wraps the model in
:class:`ScviAutoencoder`; scvi-tools itself is never imported by aeinterp (the
model is recognised by its attributes, :func:`is_scvi_model`).

What the adapter computes, as the model does
    ``encode``: the encoder's mean, ``qz.loc``, of ``log1p(counts)`` (when the
    model was set up with ``log_variational``, the default) and the cell's
    batch: exactly ``model.get_latent_representation()`` for a normal latent
    space. ``reconstruct``: the decoder's ``px_rate``, the expected counts
    ``exp(library) * px_scale``, from that code, the cell's library size and
    batch. Only the encoder is used for the ``latent`` target.

Per-cell covariates travel with the cells
    The input of the adapter is the gene counts **plus two columns**,
    ``scvi:library`` (the log of the cell's observed total count) and
    ``scvi:batch`` (the batch code scvi-tools registered). The dataset built
    for the model appends them to every cell and leaves them out of the
    feature groups: whatever rows an explainer draws, chunks or perturbs, each
    cell keeps its own library and batch (held fixed, never attributed).
    ``reconstruct`` passes the two columns through, so its output has the
    input's shape; ``decode(z)`` alone uses the median library and batch 0.

Not supported (a clear :class:`~aeinterp.errors.ModelError`): extra
categorical / continuous covariates, a batch *embedding*, and models whose
encoder is not scvi-tools' ``Encoder`` (DRVI's own encoder, say).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DataError, ModelError
from ..model import module_device, module_dtype

__all__ = ["is_scvi_model", "ScviAutoencoder", "COVARIATE_NAMES"]

COVARIATE_NAMES = ("scvi:library", "scvi:batch")
_UNSUPPORTED_KEYS = ("extra_categorical_covs", "extra_continuous_covs")


def is_scvi_model(obj: Any) -> bool:
    """True for a trained scvi-tools model object (duck-typed: scvi-tools is not imported)."""
    return (
        hasattr(obj, "adata_manager")
        and callable(getattr(obj, "get_latent_representation", None))
        and isinstance(getattr(obj, "module", None), nn.Module)
    )


def _row_sums(matrix: Any, block: int = 4096) -> np.ndarray:
    """Per-row sums of a dense, sparse or backed matrix (blocks of rows: never dense whole)."""
    if isinstance(matrix, np.ndarray):
        return matrix.sum(axis=1, dtype=np.float64)
    if hasattr(matrix, "tocsr") and hasattr(matrix, "nnz"):
        return np.asarray(matrix.sum(axis=1), dtype=np.float64).reshape(-1)
    n = int(matrix.shape[0])
    out = np.empty(n, dtype=np.float64)
    for s in range(0, n, block):
        part = matrix[s : s + block]
        out[s : s + block] = np.asarray(part.sum(axis=1), dtype=np.float64).reshape(-1)
    return out


class ScviAutoencoder:
    """An scvi-tools ``SCVI`` / ``LinearSCVI`` model as an :class:`aeinterp.Model` (see the module docstring)."""

    def __init__(self, model: Any, *, device: str | None = None) -> None:
        if not is_scvi_model(model):
            raise ModelError(f"{type(model).__name__} is not a trained scvi-tools model (no adata_manager / module)")
        if not getattr(model, "is_trained", True):
            raise ModelError(f"the {type(model).__name__} model is not trained; call model.train() first")
        module = model.module
        missing = [a for a in ("z_encoder", "decoder", "n_input", "n_latent") if not hasattr(module, a)]
        if missing:
            raise ModelError(
                f"{type(model).__name__}'s module {type(module).__name__} has no {', '.join(missing)}: only SCVI-like models (SCVI, LinearSCVI) are adapted"
            )
        enc = module.z_encoder
        if not (hasattr(enc, "encoder") and hasattr(enc, "mean_encoder")):
            raise ModelError(
                f"{type(model).__name__}'s encoder {type(enc).__name__} is not scvi-tools' Encoder; write an aeinterp.Model for it"
            )
        registry = getattr(model.adata_manager, "data_registry", {})
        extra = [k for k in _UNSUPPORTED_KEYS if k in registry]
        if extra:
            raise ModelError(f"the model was set up with {', '.join(extra)}: extra covariates are not adapted yet (batch and library are)")
        if getattr(module, "batch_representation", "one-hot") == "embedding":
            raise ModelError(
                "the model encodes batches as an embedding (batch_representation='embedding'); only one-hot batches are adapted"
            )
        if device is not None:
            from ..device import resolve_device

            module.to(resolve_device(device))
        self.scvi_model = model
        self.module = module  # what frozen() puts in eval mode and restores
        self.n_genes = int(module.n_input)
        self._latent_dim = int(module.n_latent)
        self._input_shape = (self.n_genes + len(COVARIATE_NAMES),)
        self.description = f"scvi-tools {type(model).__name__} ({self.n_genes} genes, {self._latent_dim} latents, {int(getattr(module, 'n_batch', 1))} batches)"
        self.reference_library = 0.0
        self.covariate_names = COVARIATE_NAMES

    # --- where the model's data lives ------------------------------------------------------
    @property
    def layer(self) -> str | None:
        """The AnnData matrix the model was registered on: ``None`` for X, else the layer name."""
        field = self.scvi_model.adata_manager.data_registry["X"]
        return None if getattr(field, "attr_name", "X") == "X" else str(field.attr_key)

    def covariates(self, adata: Any) -> np.ndarray:
        """``(cells, 2)``: each cell's log library size and batch code, from ``adata`` as the model registered it."""
        model = self.scvi_model
        try:
            adata = model._validate_anndata(adata)
            manager = model.get_anndata_manager(adata, required=True)
            counts = manager.get_from_registry("X")
            batch = np.asarray(manager.get_from_registry("batch"), dtype=np.float64).reshape(-1)
        except Exception as exc:  # scvi-tools' own validation errors name the mismatch
            raise DataError(f"the AnnData does not fit the {type(model).__name__} model: {type(exc).__name__}: {exc}") from None
        total = _row_sums(counts)
        if (total <= 0).any():
            raise DataError(f"{int((total <= 0).sum())} cells have no counts (library size 0); scvi-tools models need counts > 0 per cell")
        library = np.log(total)
        self.reference_library = float(np.median(library))
        return np.stack([library, batch], axis=1)

    # --- the Model protocol --------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self._latent_dim

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._input_shape

    @property
    def device(self) -> torch.device:
        return module_device(self.module)

    @property
    def dtype(self) -> torch.dtype:
        return module_dtype(self.module)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.dim() != 2 or x.shape[1] != self._input_shape[0]:
            raise ModelError(
                f"the scvi adapter takes (cells, {self.n_genes} genes + {len(COVARIATE_NAMES)} covariates), got {tuple(x.shape)}"
            )
        g = self.n_genes
        return x[:, :g], x[:, g : g + 1], x[:, g + 1 : g + 2].round().long()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        genes, _, batch = self._split(x)
        return self._encode(genes, batch)

    def _encode(self, genes: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        module = self.module
        inp = torch.log1p(genes) if getattr(module, "log_variational", True) else genes
        enc = module.z_encoder
        return enc.mean_encoder(enc.encoder(inp, batch))

    def _rate(self, z: torch.Tensor, library: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        module = self.module
        out = module.decoder(module.dispersion, z, library, batch)
        return out[2]  # px_rate: exp(library) * px_scale, the expected counts

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        genes, library, batch = self._split(x)
        rate = self._rate(self._encode(genes, batch), library, batch)
        return torch.cat([rate, x[:, self.n_genes :]], dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        library = torch.full((n, 1), self.reference_library, dtype=z.dtype, device=z.device)
        batch = torch.zeros((n, 1), dtype=torch.long, device=z.device)
        rate = self._rate(z, library, batch)
        return torch.cat([rate, library, batch.to(z.dtype)], dim=1)

    def __repr__(self) -> str:
        return f"ScviAutoencoder({self.description})"
