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
    nb = _execute(NOTEBOOK, tmp_path)
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


_LABELLED_CELLS = [
    """import numpy as np, pandas as pd, torch
from torch import nn
from sklearn.datasets import load_breast_cancer
import aeinterp
raw = load_breast_cancer(as_frame=True).data
X = ((raw - raw.mean()) / raw.std()).astype("float32")
X.index = [f"cell_{i}" for i in range(len(X))]
torch.manual_seed(0)
model = nn.Module()
model.encoder = nn.Sequential(nn.Linear(30, 16), nn.Tanh(), nn.Linear(16, 4))
model.decoder = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 30))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
xt = torch.as_tensor(X.to_numpy())
for _ in range(150):
    opt.zero_grad(); loss = ((model.decoder(model.encoder(xt)) - xt) ** 2).mean(); loss.backward(); opt.step()
print("trained, loss", round(loss.item(), 3))""",
    'exp = aeinterp.explain(model, X.iloc[100:160], "deepshap", background=X.iloc[300:400])\nexp',
    "print(repr(exp))",
    'exp.to_pandas("local").head(3)',
    'exp.plot.waterfall(sample="cell_110", data=X.iloc[100:160])',
    'perm = aeinterp.explain(model, X.iloc[100:160], "permutation")\nperm',
]


@pytest.mark.slow  # a real Jupyter kernel importing torch and training a model: ~60 s on 2 shared cores
def test_a_notebook_shows_progress_without_widget_warnings_readable_figures_and_row_labels(tmp_path: Path) -> None:
    """A DataFrame with named rows in a real kernel: progress without rich's ipywidgets warning, the figure
    shown at 110 px per inch (8 pt labels read as 9.2 pt) and no wider than 1150 px, the row labels in the
    DataFrame view and the waterfall, a short repr, and a footer offering only the figures that draw."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import base64
    import struct

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in _LABELLED_CELLS])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "executed.ipynb")
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    everything = "\n".join(o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values()) for o in outputs)
    assert "ipywidgets" not in everything and "UserWarning" not in everything
    stderr = "".join(o["text"] for o in nb.cells[1].outputs if o.get("name") == "stderr")
    assert stderr.startswith("\rdeepshap [") and stderr.endswith(" s\n")  # a text progress line, closed with its time

    from html import unescape

    exp_html = unescape(next(o["data"]["text/html"] for o in nb.cells[1].outputs if "text/html" in o.get("data", {})))
    assert ".plot.beeswarm(data=X)" in exp_html and "sample='cell_100'" in exp_html and ".plot.image(" not in exp_html
    perm_html = unescape(next(o["data"]["text/html"] for o in nb.cells[5].outputs if "text/html" in o.get("data", {})))
    assert ".beeswarm" not in perm_html and ".waterfall" not in perm_html and ".image(" not in perm_html and ".plot.bar()" in perm_html

    text = _text(nb.cells[2])
    assert text.startswith("Explanation(deepshap on latent: 4 targets x 30 features") and len(text) < 500
    assert "rows 'cell_100'..'cell_159'" in text

    frame = nb.cells[3].outputs[0]["data"]["text/html"]
    assert "cell_100" in frame and ">row<" in frame

    png_out = next(o for o in nb.cells[4].outputs if "image/png" in o.get("data", {}))
    png = base64.b64decode(png_out["data"]["image/png"])
    width, height = struct.unpack(">II", png[16:24])
    shown = png_out["metadata"]["image/png"]["width"]
    assert shown == width // 2 <= 1150  # drawn at 220 dpi, shown at 110 px per inch: not scaled down
    assert 500 < shown  # a 7.5-inch waterfall, not a 640-px thumbnail


def _execute(path: Path, tmp_path: Path):  # noqa: ANN202
    """Run a notebook in a real kernel as a user's Jupyter would (inline figures), and return it with outputs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(path, as_version=4)
    env_backup = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        if env_backup is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backup
    return nb


@pytest.mark.slow  # a real Jupyter kernel importing torch and training a model for a few seconds: ~20-40 s on 2 shared cores
@pytest.mark.parametrize(("name", "frame_rows", "frame_columns"), [("image", 4, 64), ("sequence", 3, 60)])
def test_example_notebook_runs_and_shows_figures_and_the_dataframe(name: str, frame_rows: int, frame_columns: int, tmp_path: Path) -> None:
    """examples/image.ipynb and examples/sequence.ipynb run clean: no error, drawn figures, no widget or
    user warnings in the streams, and the DataFrame view with one row per latent and one column per pixel/cell."""
    nb = _execute(ROOT / "examples" / f"{name}.ipynb", tmp_path)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    streams = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "ipywidgets" not in streams and "UserWarning" not in streams
    frame_cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.strip() == "exp.to_pandas()")
    plain = frame_cell.outputs[0]["data"]["text/plain"]
    assert f"[{frame_rows} rows x {frame_columns} columns]" in plain
