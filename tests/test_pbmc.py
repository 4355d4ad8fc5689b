"""The single-cell example (examples/pbmc.ipynb) runs top to bottom on scanpy's bundled pbmc68k_reduced,
writes its results into the AnnData, and recovers known marker genes (issue #25's biology check)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "pbmc.ipynb"


def _text(cell) -> str:  # noqa: ANN001
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append(o["text"])
        elif "data" in o:
            out.append(o["data"].get("text/plain", ""))
    return "".join(out)


@pytest.mark.slow  # ~30 s on one core: trains an autoencoder on 700 x 765 and explains every cell
def test_pbmc_notebook_finds_marker_genes(tmp_path: Path) -> None:
    pytest.importorskip("scanpy", reason="the pbmc example needs scanpy (aeinterp[scverse]) for its bundled data set")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    saved = {k: os.environ.get(k) for k in ("MPLBACKEND", "OMP_NUM_THREADS")}
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["OMP_NUM_THREADS"] = "1"  # a small model: one thread is fastest on a shared machine
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    joined = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "700 cells x 765 genes" in joined
    assert "matrix: raw.X" in joined and "method: deeplift_rescale" in joined
    assert "aeinterp_deepshap" in joined and "aeinterp_deepshap_values" in joined
    found = re.search(r"markers in top 20: deepshap (\d+)/(\d+), correlation (\d+)/(\d+)", joined)
    assert found, joined[-2000:]
    shap, total, corr = int(found.group(1)), int(found.group(2)), int(found.group(3))
    assert total == 10
    # chance: 10 markers x 20/765 = 0.26 expected hits. Both rankings recover markers far above it.
    assert shap >= 3 and corr >= 3
    # The honest relation measured on this model (seed 0): DeepSHAP does not beat the correlation baseline
    # (3 seeds: 13/30 vs 14/30); it is within 3 markers of it either way. Tightening this needs a better default summary.
    assert abs(shap - corr) <= 3
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
