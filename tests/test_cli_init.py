"""`aeinterp init`: a shipped recipe (or the genes example with its CSV) written into a folder, ready to run."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from aeinterp.cli import main
from aeinterp.runner import Runner

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    code = main(list(argv), console=Console(file=buf, width=200))
    return code, buf.getvalue()


def test_init_writes_the_shipped_quickstart_with_its_output_beside_it(tmp_path: Path) -> None:
    code, out = _cli("init", "quickstart", "--dir", str(tmp_path))
    assert code == 0 and "aeinterp run" in out
    text = (tmp_path / "quickstart.yaml").read_text()
    source = (CONFIGS / "quickstart.yaml").read_text()
    assert text.splitlines()[0] == "# aeinterp run quickstart.yaml"
    assert "output: out/quickstart" in text and "../out" not in text
    assert text.splitlines()[1:-1] == source.splitlines()[1:-1]  # otherwise the same recipe as configs/
    loaded, steps = Runner(quiet=True).validate(tmp_path / "quickstart.yaml")
    assert len(steps) == 5


def test_init_names_and_refusals(tmp_path: Path) -> None:
    assert _cli("init", "sequence", "--dir", str(tmp_path))[0] == 0
    assert (tmp_path / "sequence.yaml").read_text().startswith("# aeinterp run sequence.yaml\n")
    code, out = _cli("init", "sequence", "--dir", str(tmp_path))
    assert code == 2 and "--force" in out
    assert _cli("init", "sequence", "--dir", str(tmp_path), "--force")[0] == 0
    code, out = _cli("init", "nonsense", "--dir", str(tmp_path))
    assert code == 2 and "quickstart" in out and "genes" in out
    code, out = _cli("init", "--list")
    assert code == 0 and "image_perturbation" in out and "genes" in out


def test_the_genes_example_reads_its_index_column_and_names_the_rows(tmp_path: Path) -> None:
    assert _cli("init", "genes", "--dir", str(tmp_path))[0] == 0
    header = (tmp_path / "genes.csv").read_text().splitlines()[0]
    assert header.startswith(",prog0_gene0")  # pandas' default df.to_csv() layout: an unnamed index column first
    runner = Runner(quiet=True, cache=False)
    loaded, steps = runner.validate(tmp_path / "genes.yaml")
    outcome = runner.run(loaded, steps, out=tmp_path / "out")
    assert outcome.ok
    from aeinterp import load

    e = load(tmp_path / "out").explanations["deepshap"]
    assert e.feature_names[0] == "prog0_gene0" and len(e.feature_names) == 40
    assert all(n.startswith("cell_") for n in e.sample_names) and len(e.sample_names) == 75
    # a program's genes drive one latent: every latent's top input is a program gene, never a noise gene
    assert all(not name.startswith("noise") for name, _ in (row[0] for row in e.top_features(1).values()))


def test_help_examples_run_from_an_installed_package() -> None:
    buf = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        main(["--help"])
    assert "aeinterp init quickstart && aeinterp run quickstart.yaml" in buf.getvalue()
    assert "configs/" not in buf.getvalue()
