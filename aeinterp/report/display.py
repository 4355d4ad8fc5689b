"""Notebook display: matplotlib figures built without pyplot show as pictures, not as ``<Figure ...>``.

aeinterp builds figures with ``matplotlib.figure.Figure`` (no global pyplot
state), which IPython only knows how to print. :func:`enable_figure_display`
registers a PNG formatter for them in the running IPython shell, if any; the
Python API calls it, so figures returned to a notebook cell are drawn.

Size: the PNG is drawn at :data:`NOTEBOOK_DPI` pixels per inch and shown at
that size (a notebook shows 96 CSS pixels per inch), so a figure's 8 pt labels
read as about 9 pt; the figures keep to about 10 inches wide
(:data:`NOTEBOOK_MAX_PX`) so a notebook does not shrink them. It is drawn at
twice the resolution for sharp text on high-density screens (the ``width``
metadata keeps its displayed size).
"""

from __future__ import annotations

import io
import struct
import sys
from typing import Any

__all__ = ["enable_figure_display", "figure_png", "png_size", "NOTEBOOK_DPI", "NOTEBOOK_MAX_PX"]

NOTEBOOK_DPI = 110  # displayed pixels per figure inch (8 pt labels show as 8 * 110 / 96 = 9.2 pt)
NOTEBOOK_MAX_PX = 1150  # the widest a figure is shown; wider ones are scaled down to it


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's header."""
    return struct.unpack(">II", png[16:24])


def notebook_png(fig: Any) -> tuple[bytes, dict[str, int]]:
    """PNG bytes at twice :data:`NOTEBOOK_DPI` and the metadata that shows them at :data:`NOTEBOOK_DPI`."""
    png = figure_png(fig, dpi=2 * NOTEBOOK_DPI)
    width, height = png_size(png)
    shown = min(width // 2, NOTEBOOK_MAX_PX)
    return png, {"width": shown, "height": round(height * shown / width)}


def enable_figure_display() -> bool:
    """Register the PNG formatter in the active IPython shell; ``False`` outside IPython."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return False
    from matplotlib.figure import Figure

    shell.display_formatter.formatters["image/png"].for_type(Figure, notebook_png)
    return True
