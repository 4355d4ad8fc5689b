"""The Ray executor on a real local Ray cluster (2 CPUs on 127.0.0.1, one per test session).

A recipe run with ``executor: ray`` gives the values of the local run; a task's
error is its step's failure with the worker's message; a killed worker is re-run
or its step fails saying so; Ray is only imported when it is used.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import Field
from rich.console import Console

from aeinterp import Capabilities, ExplainerParams, Explanation, MissingDependencyError, RecipeError, hookimpl
from aeinterp.model import as_tensor
from aeinterp.run.results import load_results
from aeinterp.toolkit.chunks import ChunkedExplainer, Partial

ROOT = Path(__file__).resolve().parent.parent


class NoisyMeanAbs(ChunkedExplainer):
    """Importance of input j for every latent: mean over samples of |x_j| * |z| plus noise from the chunk's generator.

    ``die`` makes the worker running chunk ``at_chunk`` kill itself (``once``: the
    first time only, remembered by a marker file; ``always``); ``fail`` raises there.
    """

    name = "noisy_mean_abs"
    capabilities = Capabilities(splits="samples", local=True)

    class Params(ExplainerParams):
        chunk: int = 16
        noise: float = 0.05
        die: str = Field("never", pattern="^(never|once|always)$")
        fail: bool = False
        at_chunk: int = 1
        marker: str | None = None
        sleep: float = 0.0
        touch: str | None = None  # a file created when the step finishes (on the driver)

    def prepare(self, model, data, *, target, rng):  # noqa: ANN001, ANN201
        x = np.asarray(data.x_explain, dtype=np.float64).reshape(len(data.x_explain), -1)
        return {"x": x, "scale": rng.uniform(0.5, 1.5, size=x.shape[1])}

    def units(self, model, data, state, *, target):  # noqa: ANN001, ANN201
        return np.arange(len(state["x"])), self.params.chunk

    def explain_chunk(self, model, data, state, units, *, target, rng):  # noqa: ANN001, ANN201
        p = self.params
        if units[0] // p.chunk == p.at_chunk:
            if p.fail:
                raise ValueError(f"chunk {p.at_chunk} refused its rows")
            if p.die == "always" or (p.die == "once" and not Path(str(p.marker)).exists()):
                Path(str(p.marker)).touch()
                os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(p.sleep)
        with torch.no_grad():
            z = np.abs(model.encode(as_tensor(data.x_explain[units], model)).double().numpy())  # samples x latents
        a = np.abs(state["x"][units]) * state["scale"] + p.noise * rng.standard_normal((len(units), state["x"].shape[1]))
        return Partial(sums={"s": np.einsum("nk,nj->kj", z, a)}, rows={"local": z[:, :, None] * a[:, None, :]}, count=len(units))

    def finish(self, model, data, state, total, *, target):  # noqa: ANN001, ANN201
        if self.params.touch:
            Path(self.params.touch).touch()
        names = list(data.feature_names)
        k = total.sums["s"].shape[0]
        return Explanation(
            importance=total.sums["s"] / total.count,
            feature_names=names,
            target_names=[f"z{i}" for i in range(k)],
            local=total.rows["local"],
        )


class ray_test_plugin:  # noqa: N801 - a plugin object, like a module
    __version__ = "1.0"

    @staticmethod
    @hookimpl
    def aeinterp_register_explainers(registry):  # noqa: ANN001, ANN205
        registry.add(NoisyMeanAbs)


@pytest.fixture(scope="session")
def ray_cluster():  # noqa: ANN201
    """One local cluster for the session; its workers import this module (for NoisyMeanAbs) from tests/."""
    ray = pytest.importorskip("ray")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "tests"), str(ROOT), old) if p)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    yield ray
    ray.shutdown()


RECIPE = """\
seed: 3
data: {builtin: synthetic_tabular, max_samples: 300}
model:
  builtin: mlp
  latent_dim: 3
  options: {hidden: [12]}
  train: {epochs: 15, lr: 0.005}
explainers:
  - name: noisy_mean_abs
    alias: noisy
    params: {chunk: 13}
  - name: permutation
    params: {repeats: 2}
  - name: symbolic_regression
    params: {features_from: noisy, max_features: 3, dims: [0, 2], generations: 6, population_size: 60,
             time_budget: null, threads: 1, max_samples: 150, operators: [add, sub, mul]}
  - name: noisy_mean_abs
    alias: noisy2
    params: {chunk: 40, noise: 0.2}
  - name: feature_visualization
    params: {steps: 15, starts: 1, max_fit_samples: 100}
report: {plots: false, html: false, terminal: false}
"""


def _runner(**kw):  # noqa: ANN003, ANN202
    from aeinterp.runner import Runner

    return Runner(plugins=[ray_test_plugin], quiet=True, **kw)


def _arrays(out: Path) -> tuple[list[str], dict[str, Explanation], dict]:
    res = load_results(out)
    return [e["alias"] for e in res.entries], res.explanations, res.doc


@pytest.mark.slow
def test_recipe_on_ray_gives_the_local_results(ray_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from aeinterp import cli

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    local = _runner().run_file(recipe, out=tmp_path / "local")
    assert local.ok, local.failures
    monkeypatch.setattr(cli, "_runner", lambda args, console, quiet=False: _runner())
    code = cli.main(
        ["run", str(recipe), "--executor", "ray", "--out", str(tmp_path / "ray"), "--quiet"], console=Console(file=io.StringIO())
    )
    assert code == 0
    order_l, exp_l, doc_l = _arrays(tmp_path / "local")
    order_r, exp_r, doc_r = _arrays(tmp_path / "ray")
    assert (
        order_l == order_r == ["noisy", "permutation", "symbolic_regression", "noisy2", "feature_visualization"]
    )  # recipe order, however they finished
    assert doc_r["recipe"]["executor"]["kind"] == "ray" and doc_l["recipe"]["executor"]["kind"] == "local"
    for alias in order_l:
        a, b = exp_l[alias], exp_r[alias]
        np.testing.assert_allclose(b.importance, a.importance, rtol=1e-10, atol=1e-12, err_msg=alias)
        if a.local is not None:
            np.testing.assert_allclose(b.local, a.local, rtol=1e-10, atol=1e-12, err_msg=alias)
    # feature visualization ran one task per latent on Ray, one Adam loop for all of them locally
    np.testing.assert_allclose(
        exp_r["feature_visualization"].arrays["optimized"], exp_l["feature_visualization"].arrays["optimized"], rtol=1e-5, atol=1e-6
    )
    assert [f["formula"] for f in exp_r["symbolic_regression"].extras["formulas"]] == [
        f["formula"] for f in exp_l["symbolic_regression"].extras["formulas"]
    ]
    # the noise came from the chunks' own generators: other chunking, other values
    assert not np.allclose(exp_l["noisy"].importance, exp_l["noisy2"].importance)


@pytest.mark.slow
def test_killed_worker_is_rerun_and_a_dead_or_failing_chunk_fails_only_its_step(ray_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    from aeinterp import explain
    from aeinterp.run.executors import make_executor

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""\
seed: 1
data: {{builtin: synthetic_tabular, max_samples: 200}}
model: {{builtin: mlp, latent_dim: 2, options: {{hidden: [8]}}, train: {{epochs: 5}}}}
executor: {{kind: ray, max_retries: 1}}
explainers:
  - {{name: noisy_mean_abs, alias: rerun, params: {{die: once, marker: "{tmp_path / "once"}", chunk: 10}}}}
  - {{name: noisy_mean_abs, alias: dead, params: {{die: always, marker: "{tmp_path / "always"}", chunk: 10}}}}
  - {{name: noisy_mean_abs, alias: failing, params: {{fail: true, chunk: 10}}}}
  - {{name: noisy_mean_abs, alias: fine, params: {{chunk: 10}}}}
report: {{plots: false, html: false, terminal: false}}
""")
    runner = _runner()
    outcome = runner.run_file(recipe, out=tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    by = {e["alias"]: e for e in doc["explainers"]}
    assert doc["status"] == "failed" and [e["alias"] for e in doc["explainers"]] == ["rerun", "dead", "failing", "fine"]
    assert (tmp_path / "once").exists() and by["rerun"]["status"] == "ok" and by["fine"]["status"] == "ok"
    assert by["dead"]["status"] == "error" and "worker died" in by["dead"]["error"] and "max_retries" in by["dead"]["error"]
    assert by["dead"]["error_type"] == "ChunkLostError"
    assert by["failing"]["status"] == "error" and "ValueError: chunk 1 refused its rows" in by["failing"]["error"]
    assert "raised in a Ray worker" in by["failing"]["traceback"]
    assert {f["alias"] for f in outcome.failures} == {"dead", "failing"}
    # the re-run chunk gave exactly what the local run gives
    loaded, _ = runner.validate(recipe)
    data = runner.load_data(loaded)
    model, _ = runner.load_model(loaded, data, tmp_path / "m")
    want = explain(NoisyMeanAbs, model, data, seed=1, params={"chunk": 10})
    got = load_results(tmp_path / "out").explanations["rerun"]
    np.testing.assert_allclose(got.importance, want.importance, rtol=1e-10)

    # Python API: the same executor object works for a single explainer
    class Recorder:
        def __init__(self) -> None:
            self.steps: list[tuple[str, int]] = []

        def track(self, iterable, *, total=None, description=""):  # noqa: ANN001, ANN201
            for item in iterable:
                self.steps.append((description, total))
                yield item

    rec = Recorder()
    again = explain(NoisyMeanAbs, model, data, seed=1, params={"chunk": 10}, progress=rec, executor=make_executor({"kind": "ray"}))
    np.testing.assert_allclose(again.importance, want.importance, rtol=1e-10)
    n_chunks = -(-len(data.x_explain) // 10)
    assert rec.steps == [("samples chunks on ray", n_chunks)] * n_chunks  # the bar advances once per arriving partial


@pytest.mark.slow
def test_ctrl_c_cancels_remote_tasks_and_keeps_finished_steps(ray_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    import threading

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""\
data: {{builtin: synthetic_tabular, max_samples: 120}}
model: {{builtin: mlp, latent_dim: 2, options: {{hidden: [8]}}, train: {{epochs: 3}}}}
executor: {{kind: ray}}
explainers:
  - {{name: noisy_mean_abs, alias: quick, params: {{chunk: 30}}}}
  - {{name: noisy_mean_abs, alias: slow, params: {{chunk: 1, sleep: 20.0}}}}
  - {{name: noisy_mean_abs, alias: later, params: {{chunk: 30, touch: "{tmp_path / "later.done"}"}}}}
report: {{plots: false, html: false, terminal: false}}
""")
    out = tmp_path / "out"
    sent: list[float] = []
    ready: list[bool] = []

    def quick_is_written() -> bool:  # among the entries (the recipe in the header names every alias too)
        try:
            return "quick" in [e["alias"] for e in json.loads((out / "results.json").read_text())["explainers"]]
        except (OSError, ValueError, KeyError):
            return False

    def interrupt_when_quick_is_written() -> None:
        deadline = time.time() + 300  # cold Ray workers under a loaded CI machine: quick took 100 s in one run
        # quick written, later finished but not yet written (slow is before it); under load quick can finish after later
        while not ((tmp_path / "later.done").exists() and quick_is_written()):
            if time.time() > deadline:
                break
            time.sleep(0.05)
        else:
            ready.append(True)
        time.sleep(0.5)
        sent.append(time.time())
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    threading.Thread(target=interrupt_when_quick_is_written, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        _runner().run_file(recipe, out=out)
    assert ready, "quick was not written and later not finished within 300 s"
    # 30 chunks of 20 s on 2 CPUs: the slow step had minutes to go; it stopped at once instead
    assert sent and time.time() - sent[0] < 5
    doc = json.loads((out / "results.json").read_text())
    # every finished step is kept, in recipe order, also the one that finished after the unfinished one
    assert doc["status"] == "interrupted" and [e["alias"] for e in doc["explainers"]] == ["quick", "later"]
    ray = ray_cluster
    # the cluster is free again: cancelled tasks do not hold its CPUs
    assert ray.get(ray.remote(lambda: 1).remote(), timeout=60) == 1


@pytest.mark.slow
def test_ray_runs_use_the_cache_like_local_runs(ray_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    """Unchanged steps come from the cache without a task (values identical); a changed step and its dependents recompute."""

    def recipe(noise: float) -> Path:
        path = tmp_path / "recipe.yaml"
        path.write_text(f"""\
seed: 2
cache: {tmp_path / "cache"}
data: {{builtin: synthetic_tabular, max_samples: 120}}
model: {{builtin: mlp, latent_dim: 2, options: {{hidden: [8]}}, train: {{epochs: 3}}}}
executor: {{kind: ray}}
explainers:
  - {{name: noisy_mean_abs, alias: first, params: {{chunk: 30, noise: {noise}}}}}
  - {{name: noisy_mean_abs, alias: other, params: {{chunk: 40}}}}
  - {{name: symbolic_regression, params: {{features_from: first, max_features: 2, dims: [0], generations: 3, population_size: 40,
                                         time_budget: null, threads: 1, max_samples: 80, operators: [add, mul]}}}}
report: {{plots: false, html: false, terminal: false}}
""")
        return path

    def run(path: Path, out: str) -> tuple[dict, dict[str, Explanation], str]:
        buf = io.StringIO()
        from aeinterp.runner import Runner

        outcome = Runner(plugins=[ray_test_plugin], console=Console(file=buf, width=200)).run_file(path, out=tmp_path / out)
        assert outcome.ok, outcome.failures
        res = load_results(tmp_path / out)
        return {e["alias"]: bool(e.get("cached")) for e in res.entries}, res.explanations, buf.getvalue()

    cached1, exp1, _ = run(recipe(0.05), "a")
    cached2, exp2, said2 = run(recipe(0.05), "b")
    assert cached1 == {"first": False, "other": False, "symbolic_regression": False}
    assert cached2 == {"first": True, "other": True, "symbolic_regression": True}
    assert "first (noisy_mean_abs) on latent: cached" in said2
    for alias, e in exp1.items():
        np.testing.assert_array_equal(exp2[alias].importance, e.importance)
    # a changed param recomputes its step and the step reading it (StepRef), not the third one
    cached3, exp3, _ = run(recipe(0.3), "c")
    assert cached3 == {"first": False, "other": True, "symbolic_regression": False}
    assert not np.allclose(exp3["first"].importance, exp1["first"].importance)


def test_memory_mapped_data_reaches_workers_as_its_path(ray_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    """A .npy data set travels as its file region (not its bytes) and is mapped by the worker; the values are the driver's."""
    import pickle

    from aeinterp.io.datasets import load_dataset
    from aeinterp.run.executors.ray import RayExecutor
    from aeinterp.run.executors.transfer import ByPath, file_region

    x = np.random.default_rng(0).normal(size=(3000, 40)).astype(np.float32)
    np.save(tmp_path / "cells.npy", x)
    data = load_dataset(path=tmp_path / "cells.npy", split_seed=0)
    assert isinstance(data.x, np.memmap)
    ray = ray_cluster

    @ray.remote
    def look(d):  # noqa: ANN001, ANN202
        mapped = isinstance(d.x, np.memmap) and getattr(d.x, "_mmap", None) is not None  # a map of the file, not a copy
        return mapped, str(d.x.filename), np.asarray(d.x_explain).copy(), np.asarray(d.x_fit).copy(), d.feature_names

    by_path = RayExecutor(data_from_path=True)
    kind, filename, explain, fit, names = ray.get(look.remote(by_path.put(data)))
    assert kind and Path(filename) == (tmp_path / "cells.npy").resolve()
    np.testing.assert_array_equal(explain, data.x_explain)
    np.testing.assert_array_equal(fit, data.x_fit)
    assert names == data.feature_names
    indices = data.fit_index.nbytes + data.explain_index.nbytes + data.row_ids.nbytes
    assert len(pickle.dumps(ByPath(data, file_region(data.x)))) < indices + 8192  # the split's indices, not the samples

    # a slice of the map (rows 100..) starts later in the file: the worker maps the same rows
    from aeinterp.data import ArrayDataset

    part = ArrayDataset(
        x=data.x[100:],
        kind="tabular",
        feature_names=data.feature_names,
        groups=data.groups,
        fit_index=np.arange(0, 50),
        explain_index=np.arange(50, 80),
    )
    kind, _, explain, fit, _ = ray.get(look.remote(by_path.put(part)))
    assert kind
    np.testing.assert_array_equal(explain, x[150:180])
    np.testing.assert_array_equal(fit, x[100:150])

    # data_from_path: false sends the samples
    kind, _, explain, *_ = ray.get(look.remote(RayExecutor(data_from_path=False).put(data)))
    assert not kind
    np.testing.assert_array_equal(explain, data.x_explain)

    # the file changed after the run read it: the worker refuses, saying why
    executor = RayExecutor()
    ref = executor.put(part)
    np.save(tmp_path / "cells.npy", x[:10])
    with pytest.raises(
        RuntimeError, match=r"running chunk 1: its inputs could not be read there: the data file .*cells.npy .* is not the one the run read"
    ) as err:
        executor._get(look.remote(ref), "chunk 1")
    assert "Traceback" not in str(err.value)


def test_gpus_the_cluster_lacks_fail_the_step_instead_of_waiting_forever(ray_cluster) -> None:  # noqa: ANN001
    from aeinterp import explain
    from aeinterp.testing.planted import planted_autoencoder

    planted = planted_autoencoder(n_features=6, dependencies=[[0, 1], [2]], n_samples=60)
    start = time.perf_counter()
    from aeinterp.errors import ExplainerError

    with pytest.raises(ExplainerError, match=r"num_gpus is 1, but the Ray cluster has 0 GPU\(s\): its tasks would never start"):
        explain(planted.model.module, planted.data.x, "permutation", executor={"kind": "ray", "num_gpus": 1})
    assert time.perf_counter() - start < 60
    # a model that is not on the CPU needs GPUs for its tasks (here a model on torch's meta device stands for one on a GPU)
    from aeinterp import TorchAutoencoder
    from aeinterp.run.executors.ray import RayExecutor

    elsewhere = TorchAutoencoder(planted_autoencoder(n_features=6, dependencies=[[0]]).model.module.to("meta"), (6,))
    with pytest.raises(RuntimeError, match=r"the model runs on meta \(device:\), but the Ray tasks ask for no GPU"):
        RayExecutor()._model_ref(elsewhere)


def test_executor_section_is_validated() -> None:
    from aeinterp.recipe.schema import parse_recipe
    from aeinterp.run.executors import make_executor

    base = "data: {builtin: wine}\nmodel: {builtin: mlp, latent_dim: 2}\nexplainers: [{name: permutation}]\n"
    assert parse_recipe(base).recipe.executor.kind == "local"
    ok = parse_recipe(base + "executor: {kind: ray, address: 'ray://head.example:10001', num_cpus: 2, num_gpus: 0.5}").recipe.executor
    assert (ok.kind, ok.address, ok.num_cpus, ok.num_gpus) == ("ray", "ray://head.example:10001", 2, 0.5)
    with pytest.raises(RecipeError, match=r"executor\.kind.*'dask'"):
        parse_recipe(base + "executor: {kind: dask}")
    with pytest.raises(RecipeError, match=r"executor\.address.*ray://host:port"):
        parse_recipe(base + "executor: {kind: ray, address: 'http://head:8265'}")
    with pytest.raises(RecipeError, match=r"executor\.num_cpus"):
        parse_recipe(base + "executor: {kind: ray, num_cpus: 0}")
    with pytest.raises(RecipeError, match="executor.kind"):
        make_executor({"kind": "spark"})
    assert make_executor(None).kind == make_executor("local").kind == "local"


def test_local_runs_import_no_ray_and_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "import sys, aeinterp.runner, aeinterp.cli\n"
        "from aeinterp.run.executors import make_executor\n"
        "make_executor('local'); make_executor({'kind': 'ray'})\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    from aeinterp.run.executors.ray import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like to import
    with pytest.raises(MissingDependencyError, match=r"pip install 'aeinterp\[ray\]'"):
        RayExecutor().connect()


def test_steps_depend_on_the_steps_their_step_refs_name(tmp_path: Path) -> None:
    from aeinterp.run.keys import step_dependencies

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    _, steps = _runner().validate(recipe)
    assert step_dependencies(steps) == {
        "noisy": set(),
        "permutation": set(),
        "symbolic_regression": {"noisy"},
        "noisy2": set(),
        "feature_visualization": set(),
    }
