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
from ..toolkit.memory import check_fits

__all__ = ["check_dense_fits", "check_unique_names"]


def check_dense_fits(shape: Sequence[int], dtype: Any, what: str) -> None:
    """Refuse (:class:`DataError`) a dense array of ``shape`` and ``dtype`` that does not fit in memory, before it is made.

    ``what`` names the source (``"X of cells.h5ad"``); the message gives the shape and the estimate.
    """
    dims = [int(d) for d in shape]
    nbytes = float(np.prod([float(d) for d in dims])) * np.dtype(dtype).itemsize
    shown = " × ".join(f"{d:,}" for d in dims)
    check_fits(
        nbytes, f"{what} as a dense {np.dtype(dtype).name} array ({shown})",
        "select fewer samples or features (max_samples:, a smaller file), or use a machine with more memory",
    )


def check_unique_names(names: Sequence[str], what: str) -> None:
    """Refuse duplicated feature names (results and reports are keyed by them), naming the first few."""
    counts = Counter(str(n) for n in names)
    dupes = [n for n, c in counts.items() if c > 1]
    if dupes:
        shown = ", ".join(repr(n) for n in dupes[:5]) + (f" and {len(dupes) - 5} more" if len(dupes) > 5 else "")
        raise DataError(f"{what} repeat feature names: {shown}; every feature needs its own name (rename them, e.g. make them unique)")
