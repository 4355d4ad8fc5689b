"""Messages users read, each pinned by a regression test: what a cached step says, which shape an error
quotes, which language an error speaks (Python for the Python API), name suggestions, the training line."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from torch import nn

import aeinterp
from aeinterp.errors import AeinterpError, DataError, ModelError
from aeinterp.explanation import Explanation
from aeinterp.run.cache import Cache
from aeinterp.runner import Runner

ROOT = Path(__file__).resolve().parent.parent


def test_a_cached_step_drops_the_facts_of_the_run_that_computed_it(tmp_path: Path) -> None:
    note = "numba compiled the KSG kernels in this run (3.0 s, once per machine); later runs load them from /elsewhere/numba"
    e = Explanation(
        importance=np.ones((1, 2)),
        feature_names=["a", "b"],
        target_names=["z0"],
        extras={
            "summary": [note, "z0: a"],
            "numba_kernels": {"compiled": True, "cache_dir": "/elsewhere/numba"},
            "unit": "nats",
            "run_facts": {"keys": ["numba_kernels"], "summary": [note]},
        },
    )
    cache = Cache(tmp_path)
    cache.save_step("k" * 64, e)
    back = cache.load_step("k" * 64)
    assert back is not None and back.extras == {"summary": ["z0: a"], "unit": "nats"}
    assert "/elsewhere" not in (tmp_path / "steps").joinpath("kk", "k" * 64, "result.json").read_text()


@pytest.mark.slow  # numba compiles (or loads) the KSG kernels: ~20 s on 2 shared cores
def test_a_cached_mutual_information_step_does_not_say_it_compiled(tmp_path: Path) -> None:
    pytest.importorskip("numba")
    (tmp_path / "r.yaml").write_text(
        textwrap.dedent("""\
        seed: 0
        data: {builtin: synthetic_tabular}
        model: {builtin: mlp, latent_dim: 2, options: {hidden: [8]}, train: {epochs: 3}}
        explainers:
          - {name: mutual_information, params: {backend: numba}}
        output: out
        """)
    )
    runner = Runner(quiet=True, cache=tmp_path / "cache")
    for out in ("first", "second"):
        loaded, steps = runner.validate(tmp_path / "r.yaml")
        assert runner.run(loaded, steps, out=tmp_path / out).ok
    first = json.loads((tmp_path / "first" / "results.json").read_text())["explainers"][0]
    second = json.loads((tmp_path / "second" / "results.json").read_text())["explainers"][0]
    assert "numba_kernels" in first["extras"]  # the run that computed it reports its kernels
    assert "numba_kernels" not in second["extras"] and "run_facts" not in second["extras"]
    assert not any("compiled" in line for line in second["extras"].get("summary", []))
    assert second["importance"] == first["importance"]


class _NoEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 2), nn.Linear(2, 4)


def test_the_python_api_speaks_python_about_a_missing_encoder() -> None:
    with pytest.raises(ModelError, match=r'encoder="<name>" in Python') as err:
        aeinterp.explain(_NoEncoder(), np.random.rand(10, 4), "permutation", progress=False)
    assert str(err.value).index("Python") < str(err.value).index("recipe")


def test_feature_names_error_quotes_the_shape_of_X_not_X_plus_background() -> None:
    from aeinterp.api import as_dataset

    with pytest.raises(DataError, match=r"X of shape \(10, 4\)"):
        as_dataset(np.random.rand(10, 4), background=np.random.rand(50, 4), feature_names=["a", "b"])


def test_a_wrongly_cased_explainer_name_gets_the_right_suggestion() -> None:
    with pytest.raises(AeinterpError, match="did you mean 'deepshap'"):
        aeinterp.explain(_NoEncoder(), np.random.rand(10, 4), "deepSHAP", progress=False)
    with pytest.raises(AeinterpError, match="did you mean 'permutation'"):
        aeinterp.explain(_NoEncoder(), np.random.rand(10, 4), "Permutaton", progress=False)


def test_a_freshly_trained_builtin_model_prints_its_training_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        textwrap.dedent("""\
        seed: 0
        data: {builtin: synthetic_tabular}
        model: {builtin: mlp, latent_dim: 2, options: {hidden: [8]}, train: {epochs: 4}}
        explainers:
          - {name: permutation, params: {repeats: 1}}
        output: out
        """)
    )
    buf = io.StringIO()
    runner = Runner(cache=False, console=Console(file=buf, width=200))
    loaded, steps = runner.validate(tmp_path / "r.yaml")
    runner.run(loaded, steps, out=tmp_path / "out")
    line = next(line for line in buf.getvalue().splitlines() if line.startswith("model: builtin"))
    assert "trained 4 epochs, final train loss " in line
    loss = float(line.split("final train loss ")[1].split(",")[0])
    training = json.loads((tmp_path / "out" / "results.json").read_text())["model"]["training"]
    assert loss == pytest.approx(training["final_train_loss"], rel=1e-3)


def test_the_lstm_deepshap_recipe_no_longer_says_it_falls_back() -> None:
    text = (ROOT / "configs" / "deepshap_sequence.yaml").read_text()
    assert "expected gradients" not in text and "eg_samples" not in text and "exact" in text
