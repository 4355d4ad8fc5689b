"""Hostile files, full disks, concurrent runs and the messages of issue 27 (items 4, 10-16).

Each test is one case: it fails on the code before the fix (a traceback, a
SIGBUS, a silent wrong answer or a misleading message) and checks what the
user gets now.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

import aeinterp
from aeinterp.cli import main
from aeinterp.errors import DataError, ExplainerError, RecipeError, ResourceError
from aeinterp.run.lock import LOCK_FILE, OutputBusyError, OutputLock

RECIPE = (
    "data: {{path: {data}}}\nmodel: {{builtin: mlp, latent_dim: 2, options: {{hidden: [6]}}, train: {{epochs: {epochs}}}}}\ncache: false\n"
    "report: {{terminal: false, plots: false, html: false}}\nexplainers:\n{steps}output: {out}\n"
)


def _cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    return main(list(argv), console=Console(file=buf, width=200)), buf.getvalue()


def _recipe(
    folder: Path, steps: str = "  - name: zero_ablation\n", data: str = "d.csv", epochs: int = 2, out: str = "out", **extra: str
) -> Path:
    path = folder / "r.yaml"
    text = RECIPE.format(data=data, epochs=epochs, steps=steps, out=out)
    for key, value in extra.items():
        text += f"{key}: {value}\n"
    path.write_text(text)
    return path


def _csv(folder: Path, n: int = 40, d: int = 4) -> None:
    x = np.random.default_rng(0).normal(size=(n, d))
    (folder / "d.csv").write_text(",".join("abcdefgh"[:d]) + "\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in x) + "\n")


class AE(nn.Module):
    def __init__(self, d: int = 4, k: int = 2, dropout: bool = False) -> None:
        super().__init__()
        self.enc, self.dec = nn.Linear(d, k), nn.Linear(k, d)
        self.drop = nn.Dropout(0.5) if dropout else nn.Identity()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.enc(self.drop(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)


def _x(n: int = 30, d: int = 4) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)


# --- item 4: sizes checked before allocating ---------------------------------------------------


def test_sparse_h5ad_declaring_200k_by_200k_is_refused_with_the_estimate(tmp_path: Path) -> None:
    anndata = pytest.importorskip("anndata")
    import scipy.sparse as sp

    m = sp.csr_matrix((np.ones(5, np.float32), (np.arange(5), np.arange(5))), shape=(200_000, 200_000))
    anndata.AnnData(m).write_h5ad(tmp_path / "big.h5ad")
    code, out = _cli("run", str(_recipe(tmp_path, data="big.h5ad")))
    assert code == 2 and "internal error" not in out and "MemoryError" not in out
    # the sparse matrix is read sparse; making the rows dense is what is refused, with the estimate
    assert re.search(r"200,000 [x×] 200,000", out) and re.search(r"\d+(\.\d+)? GiB", out), out


def test_repeats_that_can_never_fit_are_refused_at_validate_time(tmp_path: Path) -> None:
    _csv(tmp_path)
    path = _recipe(tmp_path, steps="  - name: permutation\n    params: {repeats: 1000000000000}\n")
    start = time.monotonic()
    code, out = _cli("validate", str(path))
    assert code == 2 and "repeats" in out and "TiB" in out and "lower repeats" in out
    assert time.monotonic() - start < 30  # refused, not allocated until the memory runs out


def test_copy_sums_beyond_memory_fail_the_step_with_the_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEINTERP_MEMORY_LIMIT_MB", "20")  # the machine's memory as this test's bound
    _csv(tmp_path)
    code, out = _cli("run", str(_recipe(tmp_path, steps="  - name: permutation\n    params: {repeats: 400000}\n")))
    assert code == 1  # the step failed, the run went on and wrote results.json
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    error = doc["explainers"][0]["error"]
    assert "1,600,000 perturbed copies" in error and "MiB" in error and "lower repeats" in error


# --- items 10 and 11: no NaN as success, split: fit ---------------------------------------------


class LPNet(nn.Module):
    """ReLU then LPPool2d: the pool's gradient at 0 is undefined (the issue's case)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.pool = nn.LPPool2d(2, 2)
        self.enc = nn.Linear(2 * 4 * 4, 3)
        self.dec = nn.Linear(3, 64)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(self.pool(torch.relu(self.conv(x))).flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z).view(-1, 1, 8, 8)


def test_deepshap_nan_attributions_fail_the_step() -> None:
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(20, 1, 8, 8)).astype(np.float32)
    with pytest.raises(ExplainerError, match=r"non-finite attributions .* 3 of 3 targets"):
        aeinterp.explain(LPNet(), x, "deepshap", background=x[:10], progress=False)


@pytest.mark.parametrize("method", ["jacobian", "integrated_gradients"])
def test_split_fit_keeps_local_for_the_fit_rows(method: str) -> None:
    from aeinterp.data import ArrayDataset, make_groups
    from aeinterp.models.loading import adapt
    from aeinterp.run.step import run_step

    x = _x(60)
    names = list("abcd")
    data = ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (4,), "auto", feature_names=names),
        fit_index=np.arange(45),
        explain_index=np.arange(45, 60),
    )
    model = adapt(AE().eval(), data)
    from aeinterp.plugins.manager import PluginHost

    entry = PluginHost().registry.get(method)
    e = run_step(entry.cls, model, data, params={"split": "fit"})
    assert e.local is not None and e.local.shape[0] == 45


# --- item 12: a full disk fails the step, not the process -----------------------------------------

_SPILL = textwrap.dedent("""
    import numpy as np, torch, sys
    from torch import nn
    import aeinterp
    from aeinterp.errors import AeinterpError
    torch.manual_seed(0)
    class AE(nn.Module):
        def __init__(self):
            super().__init__(); self.enc = nn.Linear(200, 4); self.dec = nn.Linear(4, 200)
        def encode(self, x): return self.enc(x)
        def decode(self, z): return self.dec(z)
    X = np.random.default_rng(0).normal(size=(2000, 200)).astype(np.float32)
    try:
        aeinterp.explain(AE(), X, "jacobian", local="full", local_max_mb=0.01, progress=False)
        print("COMPUTED")
    except AeinterpError as exc:
        print("REFUSED", type(exc).__name__, exc)
""")


def _small_disk(tmp_path: Path, command: str) -> subprocess.CompletedProcess:
    """``command`` with a 1 MiB tmpfs mounted at tmp_path/disk (a private mount namespace; skipped where there is none)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {disk}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {probe.stderr.decode()[:200]}")
    env = {**os.environ, "TMPDIR": str(disk)}
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {disk} && {command}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow  # a fresh Python process importing torch and aeinterp (20-30 s on a loaded 2-core machine)
def test_full_disk_during_an_api_spill_is_an_error_not_sigbus(tmp_path: Path) -> None:
    (tmp_path / "spill.py").write_text(_SPILL)
    done = _small_disk(tmp_path, f"{sys.executable} {tmp_path / 'spill.py'}; echo rc=$?; ls -A {tmp_path / 'disk'}")
    assert "rc=0" in done.stdout, done.stdout + done.stderr  # before: rc=135 (SIGBUS)
    assert "REFUSED ResourceError" in done.stdout and "MiB are free" in done.stdout
    assert "aeinterp-rows-" not in done.stdout.split("rc=0", 1)[1]  # nothing left behind on the disk


@pytest.mark.slow  # a fresh `aeinterp run` process (20-30 s on a loaded 2-core machine)
def test_full_disk_in_the_output_folder_fails_the_step_and_keeps_the_run(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(1500, 120))
    (tmp_path / "d.csv").write_text(
        ",".join(f"f{i}" for i in range(120)) + "\n" + "\n".join(",".join(f"{v:.3f}" for v in r) for r in x) + "\n"
    )
    path = _recipe(
        tmp_path,
        steps="  - name: zero_ablation\n  - name: jacobian\n    params: {local: full, local_max_mb: 0.01}\n",
        out="disk/out",
        epochs=1,
    )
    done = _small_disk(
        tmp_path, f"{sys.executable} -m aeinterp.cli run {path} --quiet; echo rc=$?; cat {tmp_path / 'disk/out/results.json'}"
    )
    assert "rc=1" in done.stdout, done.stdout + done.stderr  # steps failed, the process did not die
    doc = json.loads(done.stdout[done.stdout.index("{") :])
    assert doc["status"] == "failed"
    status = {e["alias"]: e["status"] for e in doc["explainers"]}
    assert status == {"zero_ablation": "ok", "jacobian": "error"}
    assert "MiB are free" in next(e["error"] for e in doc["explainers"] if e["alias"] == "jacobian")


def test_resource_error_is_an_aeinterp_error() -> None:
    assert issubclass(ResourceError, aeinterp.errors.AeinterpError)


# --- item 13: reserved output names ----------------------------------------------------------------


@pytest.mark.parametrize("alias", ["split", "report_values", "Split", "report_values.npz", "results.json"])
def test_reserved_aliases_are_refused_at_validate_time(tmp_path: Path, alias: str) -> None:
    _csv(tmp_path)
    code, out = _cli("validate", str(_recipe(tmp_path, steps=f"  - name: zero_ablation\n    alias: {alias}\n")))
    assert code == 2 and "is reserved" in out


@pytest.mark.parametrize("save", ["split", "split.npz", "report_values", "report_values.npz", "results.json", ".aeinterp.lock"])
def test_reserved_model_save_names_are_refused(tmp_path: Path, save: str) -> None:
    _csv(tmp_path)
    path = _recipe(tmp_path)
    path.write_text(path.read_text().replace("train: {epochs: 2}}", f"train: {{epochs: 2}}, save: '{save}'}}"))
    code, out = _cli("validate", str(path))
    assert code == 2 and "would overwrite aeinterp's own output" in out


# --- item 14: temporary spill files removed at exit ------------------------------------------------


@pytest.mark.slow  # a fresh Python process, to see what is left after it exits (about 20 s)
def test_api_spill_folders_are_removed_at_exit(tmp_path: Path) -> None:
    script = _SPILL.replace(
        'print("COMPUTED")', 'import glob, os; print("DURING", len(glob.glob(os.path.join(os.environ["TMPDIR"], "aeinterp-rows-*"))))'
    )
    (tmp_path / "spill.py").write_text(script)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    done = subprocess.run(
        [sys.executable, str(tmp_path / "spill.py")], capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp)}, timeout=300
    )
    assert "DURING 1" in done.stdout, done.stdout + done.stderr  # the result's local lives there while the process runs
    assert list(tmp.glob("aeinterp-rows-*")) == []  # and is gone after it exits


# --- item 15: one run per output folder ------------------------------------------------------------

_WAITING_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from aeinterp import Explainer, Explanation, hookimpl
    from aeinterp.runner import Runner
    from aeinterp.targets import Target, target_names_for
    from aeinterp.explainer import ALL_TARGETS
    from aeinterp import Capabilities

    class Waiting(Explainer):
        name = "waiting"
        capabilities = Capabilities(targets=ALL_TARGETS)
        def explain(self, model, data, *, target, rng):
            while not Path(sys.argv[2]).exists():  # holds the run open until the test says so
                time.sleep(0.05)
            names = target_names_for(model, data, target)
            return Explanation(importance=np.ones((len(names), len(data.group_names))), feature_names=data.group_names,
                               target_names=names, target=Target(target).value)

    class Plugin:
        @hookimpl
        def aeinterp_register_explainers(self, registry):
            registry.add(Waiting)

    outcome = Runner(plugins=[Plugin()], quiet=True).run_file(sys.argv[1])
    print("FIRST", "ok" if outcome.ok else outcome.failures)
""")


@pytest.mark.slow  # a second Python process running a recipe while this one tries (20-40 s on a loaded machine)
def test_second_run_into_the_same_folder_is_told_who_writes_there(tmp_path: Path) -> None:
    _csv(tmp_path)
    path = _recipe(tmp_path, steps="  - name: waiting\n")
    (tmp_path / "first.py").write_text(_WAITING_RUN)
    go = tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, str(tmp_path / "first.py"), str(path), str(go)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lock = tmp_path / "out" / LOCK_FILE
        deadline = time.monotonic() + 240
        while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lock.exists(), "the first run never took the lock"
        code, out = _cli("run", str(_recipe(tmp_path)), "--quiet")  # the same output folder
        assert code == 2 and f"pid {first.pid}" in out and "is writing to" in out
    finally:
        go.touch()
        output = first.communicate(timeout=300)[0]
    assert "FIRST ok" in output, output  # the first run was not disturbed
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["status"] == "complete" and doc["explainers"][0]["alias"] == "waiting"
    assert not (tmp_path / "out" / LOCK_FILE).exists()


def test_a_dead_runs_lock_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": int(dead), "host": "x"}))
    with OutputLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(OutputBusyError, match=f"pid {os.getpid()}"):
            OutputLock(tmp_path).acquire()  # held: a second lock in this process is refused too
    assert not (tmp_path / LOCK_FILE).exists()


# --- item 16: messages ------------------------------------------------------------------------------


def test_duplicate_names_are_refused_from_h5ad_and_the_api(tmp_path: Path) -> None:
    anndata = pytest.importorskip("anndata")
    ad = anndata.AnnData(_x(20, 3))
    ad.var_names = ["g1", "g2", "g1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad.write_h5ad(tmp_path / "dup.h5ad")
    code, out = _cli("run", str(_recipe(tmp_path, data="dup.h5ad")))
    assert code == 2 and "repeated feature names 'g1'" in out
    with pytest.raises(DataError, match="repeated feature names 'a'"):
        aeinterp.explain(AE(), _x(), "zero_ablation", feature_names=["a", "b", "a", "c"], progress=False)


@pytest.mark.parametrize(("key", "where"), [("seed", "top"), ("max_samples", "params"), ("repeats", "params")])
def test_booleans_are_not_numbers(tmp_path: Path, key: str, where: str) -> None:
    _csv(tmp_path)
    steps = f"  - name: permutation\n    params: {{{key}: true}}\n" if where == "params" else "  - name: permutation\n"
    path = _recipe(tmp_path, steps=steps, **({key: "true"} if where == "top" else {}))
    code, out = _cli("validate", str(path))
    assert code == 2 and "got true (a boolean)" in out and key in out


def test_float64_beyond_float32_is_named_not_reported_as_inf(tmp_path: Path) -> None:
    x = _x().astype(np.float64)
    x[3, 2] = 1e300
    with pytest.raises(DataError, match=r"1e\+300 in row 3, column 'c'.*float32"):
        aeinterp.explain(AE(), x, "zero_ablation", feature_names=list("abcd"), progress=False)
    np.save(tmp_path / "big.npy", x)
    code, out = _cli("run", str(_recipe(tmp_path, data="big.npy")))
    assert code == 2 and "beyond the float32 range" in out and "NaN" not in out


def test_dataframe_text_column_is_named() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(_x(), columns=list("abcd"))
    df.insert(2, "city", "Paris")
    with pytest.raises(DataError, match="column 'city' is not numeric"):
        aeinterp.explain(AE(5), df, "zero_ablation", progress=False)


def test_train_mode_model_is_explained_in_eval_mode_and_says_so() -> None:
    model = AE(dropout=True)
    assert model.training
    with pytest.warns(UserWarning, match="training mode.*Dropout"):
        e = aeinterp.explain(model, _x(), "zero_ablation", progress=False)
    assert "training mode" in e.extras["model_mode"] and model.training  # left as found
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "model_mode" not in aeinterp.explain(model.eval(), _x(), "zero_ablation", progress=False).extras


@pytest.mark.parametrize("case", ["two_fit_samples", "one_row_fit_split"])
def test_feature_visualization_with_few_fit_samples(case: str) -> None:
    x = _x()
    kw = {"background": x, "max_fit_samples": 2} if case == "two_fit_samples" else {"background": x[:1]}
    e = aeinterp.explain(AE().eval(), x, "feature_visualization", progress=False, steps=10, **kw)
    assert np.isfinite(e.importance).all() and e.importance.shape == (2, 4)


def test_one_dimensional_npy_gets_advice_that_works(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.arange(10.0))
    code, out = _cli("run", str(_recipe(tmp_path, data="one.npy")))
    assert code == 2 and "2-D, samples x features" in out and "kind: sequence" not in out


def test_truncated_npy_says_truncated(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.ones((100, 4)))
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[: len(raw) // 2])
    code, out = _cli("run", str(_recipe(tmp_path, data="t.npy")))
    assert code == 2 and "is truncated" in out and "(100, 4)" in out and "mmap length" not in out


def test_empty_feature_group_is_called_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="feature group 'h' is empty"):
        aeinterp.explain(AE(), _x(), "zero_ablation", groups={"g": ["a"], "h": []}, feature_names=list("abcd"), progress=False)


def test_recipe_error_type_for_reserved_names_is_recipe_error(tmp_path: Path) -> None:
    from aeinterp.runner import Runner

    _csv(tmp_path)
    with pytest.raises(RecipeError):
        Runner(quiet=True).validate(_recipe(tmp_path, steps="  - name: zero_ablation\n    alias: split\n"))
