"""The Ray executor against an unlucky cluster (issue 27, items 5, 6 and 7), on real local clusters only.

- concurrent first use: a fresh executor (no ``ray.init`` by a fixture) running
  three independent steps connects once; every step succeeds;
- a step's ``timeout`` is honoured on Ray: its task is cancelled, the step fails
  with StepTimeout, the other steps are kept;
- an address where nothing listens (``127.0.0.1:1``) fails the run at once with
  a clear message instead of retrying for minutes.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
from rich.console import Console

from aeinterp.cli import main
from aeinterp.run.executors import make_executor
from aeinterp.run.executors.ray import RayConnectionError, RayExecutor
from aeinterp.runner import Runner
from tests.fixtures import hostile_plugins as hp

ROOT = Path(__file__).resolve().parent.parent

STEPS = """\
data: {builtin: synthetic_tabular, max_samples: 120}
model: {builtin: mlp, latent_dim: 2, options: {hidden: [8]}, train: {epochs: 3}}
cache: false
executor: {kind: ray, address: local, num_cpus: 1}
report: {plots: false, html: false, terminal: false}
explainers:
"""


@pytest.fixture()
def fresh_ray(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """No Ray connection before the test (the executor must make it); the workers can import aeinterp and tests/."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    paths = [str(ROOT), *(str(p) for p in sorted((ROOT / "plugins").glob("*/src"))), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    yield ray
    ray.shutdown()


@pytest.mark.slow  # starts a local Ray cluster (20-60 s on a loaded 2-core machine)
def test_concurrent_first_use_connects_once_and_every_step_runs(fresh_ray, tmp_path: Path) -> None:  # noqa: ANN001
    recipe = tmp_path / "r.yaml"
    recipe.write_text(STEPS + "  - name: zero_ablation\n  - name: permutation\n    params: {repeats: 2}\n  - name: jacobian\n")
    assert not fresh_ray.is_initialized()
    outcome = Runner(quiet=True).run_file(recipe, out=tmp_path / "out")  # the executor comes from the recipe: fresh, unconnected
    assert outcome.ok, outcome.failures  # before: two steps failed with "Perhaps you called ray.init twice by accident?"
    assert sorted(outcome.explanations) == ["jacobian", "permutation", "zero_ablation"]
    assert fresh_ray.is_initialized() and len(fresh_ray.nodes()) == 1  # one local cluster, not one per step


@pytest.mark.slow  # starts a local Ray cluster and waits out a timeout
def test_step_timeout_is_honoured_on_ray(fresh_ray, tmp_path: Path) -> None:  # noqa: ANN001
    recipe = tmp_path / "r.yaml"
    recipe.write_text(STEPS + "  - name: hanging\n    timeout: 5\n  - name: zero_ablation\n")
    runner = Runner(plugins=[hp.hostile_plugin], quiet=True)
    runner.executor = make_executor({"kind": "ray", "address": "local", "num_cpus": 1})
    runner.executor.connect()  # the cluster's start is not part of the step's time
    start = time.monotonic()
    outcome = runner.run_file(recipe, out=tmp_path / "out")
    took = time.monotonic() - start
    assert [f["alias"] for f in outcome.failures] == ["hanging"]
    assert "timeout of 5 s" in outcome.failures[0]["error"] and "cancelled" in outcome.failures[0]["error"]
    assert "zero_ablation" in outcome.explanations
    assert took < 55  # the hanging task waits 60 s in its worker: it was cancelled, not waited for
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [e["status"] for e in doc["explainers"]] == ["error", "ok"] and doc["status"] == "failed"


def test_nothing_listening_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(STEPS.replace("address: local", "address: '127.0.0.1:1'") + "  - name: zero_ablation\n")
    buf = io.StringIO()
    start = time.monotonic()
    code = main(["run", str(recipe)], console=Console(file=buf, width=200))
    assert time.monotonic() - start < 60  # before: still retrying at 200 s
    out = buf.getvalue()
    assert code == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in out and "connection refused" in out
    assert not (tmp_path / "out" / "results.json").exists()  # failed before any step was recorded
    with pytest.raises(RayConnectionError, match="ray://127.0.0.1:1"):
        RayExecutor(address="ray://127.0.0.1:1", connect_timeout=2).check_reachable()


def test_connect_timeout_is_validated() -> None:
    from aeinterp.errors import RecipeError

    with pytest.raises(RecipeError, match="connect_timeout"):
        make_executor({"kind": "ray", "connect_timeout": 0})
    assert make_executor({"kind": "ray", "connect_timeout": 3}).connect_timeout == 3.0
