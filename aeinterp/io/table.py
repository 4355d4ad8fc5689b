"""What a data file holds once read: :class:`RawTable` (samples, feature names, other columns, row labels).

Every reader returns one (:mod:`.readers` for CSV, Parquet, ``.npy``/``.npz``;
:mod:`.anndata` for ``.h5ad``), and :mod:`.datasets` turns it into a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["RawTable"]


@dataclass
class RawTable:
    """What a file holds: samples, their feature names, and the other named columns."""

    x: np.ndarray
    feature_names: list[str] | None = None
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    #: the row labels (the ``index:`` column), or None
    index: np.ndarray | None = None
    #: what was read, for the dataset's description (e.g. which AnnData matrix, sparse or backed)
    info: dict[str, Any] = field(default_factory=dict)

    def column(self, name: str, source: str, role: str) -> np.ndarray:
        if name not in self.columns:
            have = ", ".join(self.columns) or "none"
            raise DataError(f"{source}: no column {name!r} for the {role} (columns that are not features: {have})")
        return self.columns[name]
