"""As a user installs it: build the wheel, install it into a fresh virtual environment, use it outside the repo.

Slow (a fresh venv with torch: about two minutes on 2 cores); it is part of CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"
#: what the wheel's private source copy leaves out: environments, build output, caches, run outputs
_NOT_SOURCES = (
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "out",
    "site",
    "test-artifacts",
    "node_modules",
    ".hypothesis",
)
BUILTINS = {
    "permutation",
    "zero_ablation",
    "mutual_information",
    "jacobian",
    "integrated_gradients",
    "deepshap",
    "symbolic_regression",
    "latent_size_law",
    "feature_visualization",
    "activation_atlas",
    "latent_traversal",
    "component_contributions",
    "output_effects",
    "invariance",
    "interactions",
    "faithfulness",
    "weight_importance",
}

pytestmark = pytest.mark.slow


def _run(cmd: list[str | Path], cwd: Path, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AEINTERP_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=env, **kw)


@pytest.fixture(scope="module")
def user_env(tmp_path_factory) -> Path:  # noqa: ANN001
    """A fresh venv holding torch (pinned CPU build) and the aeinterp wheel built from this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    # built from a private copy of the sources: setuptools builds in the source tree's build/ folder, and with xdist
    # every worker that runs a test of this module builds at once; two builds in one tree packed an empty wheel
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SOURCES))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", work / "dist", source], cwd=work)
    assert built.returncode == 0, built.stderr
    wheels = list((work / "dist").glob("aeinterp-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as whl:
        assert "aeinterp/cli.py" in whl.namelist() and "aeinterp_deepshap/__init__.py" in whl.namelist()
    venv.EnvBuilder(with_pip=True).create(work / "venv")
    bin_ = work / "venv" / "bin"
    pip = [bin_ / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", CONSTRAINTS]
    for step in (["torch==2.13.0"], [wheels[0]]):
        done = _run([*pip, *step], cwd=work, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    return bin_


def test_the_wheel_lists_every_builtin_explainer(user_env: Path, tmp_path: Path) -> None:
    out = _run([user_env / "aeinterp", "plugins", "--json"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    listed = {e["name"]: e for e in json.loads(out.stdout)["explainers"]}
    assert BUILTINS <= set(listed), BUILTINS - set(listed)
    assert {e["distribution"] for e in listed.values()} == {"aeinterp"}
    version = _run([user_env / "aeinterp", "--version"], cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("aeinterp ")


def test_a_recipe_runs_end_to_end_from_the_wheel(user_env: Path, tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        textwrap.dedent("""\
        seed: 0
        data: {builtin: synthetic_tabular}
        model: {builtin: mlp, latent_dim: 3, options: {hidden: [16]}, train: {epochs: 20}}
        explainers:
          - {name: permutation, params: {repeats: 2}}
          - {name: deepshap}
        output: out
        """)
    )
    ran = _run([user_env / "aeinterp", "run", "r.yaml", "--quiet"], cwd=tmp_path, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["status"] == "complete" and [e["alias"] for e in doc["explainers"]] == ["permutation", "deepshap"]
    assert (tmp_path / "out" / "report.html").exists()
    # the code ran from the installed wheel, not from this checkout
    where = _run(
        [user_env / "python", "-c", "import aeinterp, aeinterp_deepshap; print(aeinterp.__file__, aeinterp_deepshap.__file__)"],
        cwd=tmp_path,
    )
    assert str(ROOT) not in where.stdout and "site-packages" in where.stdout


def test_three_lines_of_python_on_your_own_module(user_env: Path, tmp_path: Path) -> None:
    script = textwrap.dedent("""\
        import numpy as np, torch
        from torch import nn
        import aeinterp

        torch.manual_seed(0)
        net = nn.Module()
        net.encoder = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
        net.decoder = nn.Linear(2, 5)
        X = np.random.default_rng(0).standard_normal((50, 5)).astype(np.float32)
        exp = aeinterp.explain(net, X, "deepshap", progress=False)
        with torch.no_grad():
            z = net.encoder(torch.as_tensor(X)).numpy()
        print(exp.extras["method"], exp.local.shape, float(np.abs(exp.local.sum(2) - (z - z.mean(0))).max()))
        """)
    (tmp_path / "mine.py").write_text(script)
    out = _run([user_env / "python", "mine.py"], cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    method, shape, err = out.stdout.strip().split(" ", 1)[0], out.stdout.split("(")[1].split(")")[0], float(out.stdout.split()[-1])
    assert method == "deeplift_rescale" and shape == "50, 2, 5" and err < 1e-5


def test_an_explainer_that_is_not_installed_says_how_to_get_it(user_env: Path, tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("data: {builtin: wine}\nmodel: {builtin: mlp, latent_dim: 2}\nexplainers: [{name: permutation}]\n")
    env_cmd = [user_env / "aeinterp", "--block-plugins", "aeinterp", "validate", "r.yaml"]
    out = _run(env_cmd, cwd=tmp_path)
    assert out.returncode == 2
    text = " ".join(out.stderr.split())
    assert "unknown explainer 'permutation'" in text and "pip install aeinterp" in text and "(blocked)" in text


def test_init_writes_a_recipe_that_runs_in_an_empty_folder(user_env: Path, tmp_path: Path) -> None:
    """The README's first CLI example after `pip install`: the recipes ship in the wheel."""
    init = _run([user_env / "aeinterp", "init", "quickstart"], cwd=tmp_path)
    assert init.returncode == 0, init.stdout + init.stderr
    assert (tmp_path / "quickstart.yaml").read_text().startswith("# aeinterp run quickstart.yaml")
    ran = _run([user_env / "aeinterp", "run", "quickstart.yaml", "--quiet", "--no-cache"], cwd=tmp_path, timeout=900)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    doc = json.loads((tmp_path / "out" / "quickstart" / "results.json").read_text())
    assert doc["status"] == "complete" and len(doc["explainers"]) == 5
    genes = _run([user_env / "aeinterp", "init", "genes", "--dir", "g"], cwd=tmp_path)
    assert genes.returncode == 0 and (tmp_path / "g" / "genes.csv").exists(), genes.stderr
    helped = _run([user_env / "aeinterp", "--help"], cwd=tmp_path)
    assert "aeinterp init quickstart && aeinterp run quickstart.yaml" in helped.stdout
