"""Hostile runs (issue 12): misbehaving plugins fail only their step, models that give NaN or no
gradients are caught, results survive signals and odd terminals, files honour the umask."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from aeinterp import cli, run_explainer
from aeinterp.errors import CapabilityError, ModelError
from aeinterp.io.datasets import load_dataset
from aeinterp.model import TorchAutoencoder
from aeinterp.plugins.manager import PluginHost, PluginWarning
from aeinterp.runner import RunInterrupted, Runner
from tests.fixtures import hostile_plugins as hp
from tests.fixtures import test_plugins as tp

BASE = """\
data:
  builtin: synthetic_tabular
model:
  builtin: mlp
  latent_dim: 2
  options: {hidden: [8]}
  train: {epochs: 3}
explainers:
  - name: zero_ablation
output: out
"""


def recipe_with(tmp_path: Path, *steps: str, extra: str = "") -> Path:
    text = BASE.replace("  - name: zero_ablation\n", "".join(f"  - name: {s}\n" for s in steps) + "  - name: zero_ablation\n") + extra
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def runner(**kw) -> Runner:  # noqa: ANN003
    return Runner(plugins=[hp.hostile_plugin, tp.crashing_plugin], quiet=True, **kw)


def statuses(out_dir: Path) -> dict[str, str]:
    doc = json.loads((out_dir / "results.json").read_text())
    return {e["alias"]: e["status"] for e in doc["explainers"]}


# --- a misbehaving plugin fails only its step ---------------------------------------------
def test_extras_with_sets_and_numpy_scalars_are_converted(tmp_path: Path) -> None:
    outcome = runner().run_file(recipe_with(tmp_path, "set_extras"))
    assert outcome.ok, outcome.failures
    entry = json.loads((tmp_path / "out/results.json").read_text())["explainers"][0]
    assert entry["extras"] == {"tags": ["a", "b"], "n": 3, "x": 0.5}


@pytest.mark.parametrize(
    "step, message",
    [
        ("object_extras", "extras['thing'] holds a object, which is not JSON data"),
        ("object_array", "array 'blob' has dtype object"),
        ("unrelated", "1 feature names (q), but the data has 8 feature groups"),
        ("wrong_local", "local attributions for"),
    ],
)
def test_an_unusable_result_fails_its_step_and_keeps_the_others(tmp_path: Path, step: str, message: str) -> None:
    outcome = runner().run_file(recipe_with(tmp_path, step))
    assert [f["alias"] for f in outcome.failures] == [step]
    assert message in outcome.failures[0]["error"], outcome.failures[0]["error"]
    assert statuses(tmp_path / "out") == {step: "error", "zero_ablation": "ok"}
    assert not (tmp_path / "out" / f"{step}.npz").exists()
    with np.load(tmp_path / "out/zero_ablation.npz", allow_pickle=False) as npz:
        assert npz["importance"].shape == (2, 8)


@pytest.mark.parametrize("how", ["recipe", "cli"])
def test_a_hanging_step_times_out_and_the_run_goes_on(tmp_path: Path, monkeypatch, how: str) -> None:  # noqa: ANN001
    hp.RELEASE.clear()
    recipe = recipe_with(tmp_path, "hanging")
    if how == "recipe":
        recipe.write_text(recipe.read_text().replace("  - name: hanging\n", "  - name: hanging\n    timeout: 1\n"))
        args: list[str] = []
    else:
        args = ["--timeout", "1"]
    monkeypatch.setattr(
        cli, "_runner", lambda a, console, quiet=False: Runner(plugins=[hp.hostile_plugin], console=console, quiet=quiet, timeout=a.timeout)
    )
    buf = io.StringIO()
    start = time.perf_counter()
    try:
        code = cli.main(["run", str(recipe), "--quiet", *args], console=Console(file=buf, width=200))
    finally:
        hp.RELEASE.set()
    assert time.perf_counter() - start < 30
    assert code == 1, buf.getvalue()
    doc = json.loads((tmp_path / "out/results.json").read_text())
    assert doc["status"] == "failed"
    failed = doc["explainers"][0]
    assert failed["status"] == "error" and failed["error_type"] == "StepTimeout" and "within its timeout of 1 s" in failed["error"]
    assert doc["explainers"][1]["status"] == "ok"


def test_a_plugin_claiming_a_builtin_name_leaves_the_builtins_other_explainers(monkeypatch) -> None:  # noqa: ANN001
    import aeinterp_perturbation

    with pytest.warns(PluginWarning, match="claimed by two plugins"):
        host = PluginHost(autoload=False, plugins=[tp.duplicate_plugin, aeinterp_perturbation])  # the claimant registers first
    assert "permutation" not in host.registry and "zero_ablation" in host.registry
    assert all(i.status == "loaded" for i in host.infos)


# --- nothing wrong is reported as success ----------------------------------------------------
def _npy_recipe(tmp_path: Path, factory: str, steps: str = "  - name: zero_ablation\n") -> Path:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((40, 8), dtype=np.float32))
    module = getattr(hp, factory.split(":")[1])()
    torch.save(module.state_dict(), tmp_path / "w.pt")
    path = tmp_path / "r.yaml"
    path.write_text(f"data:\n  path: x.npy\n  standardize: false\nmodel:\n  path: w.pt\n  factory: {factory}\nexplainers:\n{steps}")
    return path


def test_an_encoder_returning_nan_fails_before_any_explainer(tmp_path: Path) -> None:
    recipe = _npy_recipe(tmp_path, "tests.fixtures.hostile_plugins:NaNEncoder")
    buf = io.StringIO()
    code = cli.main(["run", str(recipe)], console=Console(file=buf, width=200))
    out = buf.getvalue()
    assert code == 2, out
    assert "the model's latent output is NaN for explained sample" in out
    assert not (tmp_path / "out" / "zero_ablation.npz").exists()


def _tabular() -> object:
    return load_dataset(builtin="synthetic_tabular")


@pytest.mark.parametrize(
    "encoder, cause",
    [
        (hp.NoGradEncoder, "does not depend on the input through autograd"),
        (hp.DetachEncoder, "does not depend on the input through autograd"),
        (hp.NumpyEncoder, "does not depend on the input through autograd"),
    ],
)
@pytest.mark.parametrize("explainer", ["jacobian", "integrated_gradients", "feature_visualization"])
def test_gradient_explainers_refuse_a_model_without_a_gradient_path(encoder, cause: str, explainer: str) -> None:  # noqa: ANN001
    data = _tabular()
    model = TorchAutoencoder(encoder(), data.sample_shape)
    entry = PluginHost().registry[explainer]
    with pytest.raises(CapabilityError, match=cause) as info:
        run_explainer(entry.cls, model, data, target="latent")
    assert "no_grad" in str(info.value) and "detach" in str(info.value)
    # a perturbation explainer still works on it
    assert run_explainer(PluginHost().registry["zero_ablation"].cls, model, data).importance.shape == (2, 8)


def test_the_gradient_check_leaves_the_model_as_found() -> None:
    data = _tabular()
    module = hp.NaNEncoder(cut=10.0)
    module.train()
    model = TorchAutoencoder(module, data.sample_shape)
    from aeinterp.toolkit.checks import check_gradient_path

    check_gradient_path(model, data, "latent")
    assert module.training and all(p.requires_grad for p in module.parameters()) and all(p.grad is None for p in module.parameters())


def test_nan_outputs_are_caught_for_the_python_api_too() -> None:
    data = _tabular()
    model = TorchAutoencoder(hp.NaNEncoder(cut=-10.0), data.sample_shape)
    with pytest.raises(ModelError, match="reconstruction output is NaN for explained sample 0"):
        run_explainer(PluginHost().registry["zero_ablation"].cls, model, data, target="reconstruction")


# --- signals and files ---------------------------------------------------------------------
def _send_later(sig: int, delay: float) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, (os.getpid(), sig))
    timer.start()
    return timer


def test_sigterm_during_a_step_is_an_interrupt_with_results_kept(tmp_path: Path) -> None:
    hp.RELEASE.clear()
    recipe = recipe_with(tmp_path, "hanging")
    recipe.write_text(
        recipe.read_text().replace("  - name: hanging\n", "  - name: permutation\n    params: {repeats: 1}\n  - name: hanging\n")
    )
    timer = _send_later(signal.SIGTERM, 4.0)
    try:
        with pytest.raises(RunInterrupted) as info:
            runner().run_file(recipe)
    finally:
        timer.cancel()
        hp.RELEASE.set()
    assert info.value.results == tmp_path / "out/results.json"
    doc = json.loads((tmp_path / "out/results.json").read_text())
    assert doc["status"] == "interrupted" and doc["finished"]
    assert [e["alias"] for e in doc["explainers"]] == ["permutation"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_ctrl_c_while_training_does_not_claim_results_exist(tmp_path: Path) -> None:
    recipe = recipe_with(tmp_path)
    recipe.write_text(recipe.read_text().replace("epochs: 3", "epochs: 100000000"))
    buf = io.StringIO()
    # Ctrl-C raises KeyboardInterrupt even where this process started with SIGINT ignored (a background job of a
    # shell without job control, `cmd &` in a script): without this the training below would never stop
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = _send_later(signal.SIGINT, 3.0)
    try:
        code = cli.main(["run", str(recipe)], console=Console(file=buf, width=200))
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    out = buf.getvalue()
    assert code == 130, out
    assert "no results were written" in out and "results.json" not in out
    assert not (tmp_path / "out/results.json").exists()


def test_ctrl_c_after_a_step_names_the_results_file(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    recipe = recipe_with(tmp_path, "interrupting")
    monkeypatch.setattr(cli, "_runner", lambda a, console, quiet=False: Runner(plugins=[tp.crashing_plugin], console=console, quiet=True))
    buf = io.StringIO()
    code = cli.main(["run", str(recipe)], console=Console(file=buf, width=200))
    assert code == 130 and "finished steps are in" in buf.getvalue() and "results.json" in buf.getvalue()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_results_honour_the_umask_and_leave_no_temporary_files(tmp_path: Path, umask: int, mode: int) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".results.json.dead.tmp").write_text("{")  # left by a run killed mid-write
    (out / "old.npz.tmp.npz").write_text("")
    old = os.umask(umask)
    try:
        runner().run_file(recipe_with(tmp_path))
    finally:
        os.umask(old)
    assert (out / "results.json").stat().st_mode & 0o777 == mode
    assert (out / "zero_ablation.npz").stat().st_mode & 0o777 == mode
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.tmp.npz")) and not list(out.glob(".*.tmp"))


def test_an_ascii_terminal_gets_plain_text(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((60, 3), dtype=np.float32))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(BASE.replace("builtin: synthetic_tabular", "path: x.npy\n  feature_names: [café, naïve, c]"))
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "MPLBACKEND": "Agg", "COLUMNS": "120"}
    proc = subprocess.run(
        [sys.executable, "-m", "aeinterp.cli", "run", str(recipe)], capture_output=True, env=env, timeout=300, cwd=tmp_path
    )
    out = proc.stdout.decode("ascii") + proc.stderr.decode("ascii")
    assert proc.returncode == 0, out
    assert "ok zero_ablation" in out and "caf?" in out
    assert json.loads((tmp_path / "out/results.json").read_text())["status"] == "complete"
