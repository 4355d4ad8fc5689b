"""Notebook display: matplotlib figures built without pyplot show as pictures, not as ``<Figure ...>``.

aeinterp builds figures with ``matplotlib.figure.Figure`` (no global pyplot
state), which IPython only knows how to print. :func:`enable_figure_display`
registers a PNG formatter for them in the running IPython shell, if any; the
Python API calls it, so figures returned to a notebook cell are drawn.
"""

from __future__ import annotations

import io
import sys
from typing import Any

__all__ = ["enable_figure_display", "figure_png"]


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def enable_figure_display() -> bool:
    """Register the PNG formatter in the active IPython shell; ``False`` outside IPython."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return False
    from matplotlib.figure import Figure

    shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)
    return True
