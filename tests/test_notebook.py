"""The example notebook runs top to bottom in a real kernel, and says what it should."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def _text(cell) -> str:  # noqa: ANN001
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append(o["text"])
        elif "data" in o:
            out.append(o["data"].get("text/plain", ""))
    return "".join(out)


def test_quickstart_notebook_executes_and_explains_every_latent_on_the_test_rows(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_backup = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        if env_backup is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backup
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    texts = [_text(c) for c in code_cells]
    joined = "\n".join(texts)
    assert "method: deeplift_rescale" in joined
    assert "per-sample attributions: (150, 3, 8)" in joined  # exactly the 150 test rows, 3 latents, 8 inputs
    err = float(joined.split("max additivity error:")[1].split()[0])
    assert err < 1e-4
    assert "deepshap vs permutation: Spearman" in joined
    noise = [float(v) for v in joined.split("noise inputs per latent:")[1].split("]")[0].strip(" [").split()]
    assert len(noise) == 3 and max(noise) < 0.1  # the two noise inputs barely matter to any latent
    # the explanation and the DataFrame display as rich outputs, the figure as a PNG
    assert any("image/png" in o.get("data", {}) for c in code_cells for o in c.get("outputs", []))
    assert any("text/html" in o.get("data", {}) for c in code_cells for o in c.get("outputs", []))
    assert "report.html" in joined and "results.json" in joined
