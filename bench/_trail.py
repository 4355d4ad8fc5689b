"""The machine-readable side of the benchmarks: one JSON object per figure.

A bench script run with ``--json`` calls :func:`emit` for each figure it
measures; the line starts with :data:`MARK` so ``bench/run_all.py`` can pick
the figures out of the script's human-readable output. A figure is a ratio
*measured in the same run* (reference time / our time: larger is better), so
it stays comparable across machines and loads where seconds do not.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

MARK = "BENCH_FIGURE "
_ENABLED = False


def enable(on: bool = True) -> None:
    """Turn :func:`emit` on (a script's ``--json``)."""
    global _ENABLED
    _ENABLED = on


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(
    figure: str,
    ratio: float,
    *,
    ours_s: float | None = None,
    ref_s: float | None = None,
    reference: str = "",
    rss_mb: float | None = None,
    **extra: Any,
) -> None:
    """Print one figure as a :data:`MARK`-prefixed JSON line (only after :func:`enable`).

    ``ratio`` is the reference's time over ours (larger is better); ``rss_mb``
    the peak RSS that goes with our run (default: this process's so far).
    """
    if not _ENABLED:
        return
    record = {
        "figure": figure,
        "ratio": round(float(ratio), 4),
        "reference": reference,
        "ours_s": None if ours_s is None else round(float(ours_s), 4),
        "ref_s": None if ref_s is None else round(float(ref_s), 4),
        "peak_rss_mb": round(float(peak_rss_mb() if rss_mb is None else rss_mb), 1),
        **extra,
    }
    print(MARK + json.dumps(record, sort_keys=True), flush=True)
    sys.stdout.flush()
