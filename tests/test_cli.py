"""The command line end to end: real recipes, real models, exit codes, messages."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from aeinterp import cli
from aeinterp.runner import Runner
from tests.fixtures import test_plugins as tp


def run_cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    code = cli.main(list(argv), console=Console(file=buf, width=120))
    return code, buf.getvalue()


RECIPE = """\
data:
  builtin: synthetic_tabular
model:
  builtin: mlp
  latent_dim: 3
  options: {hidden: [16]}
  train: {epochs: 40, lr: 0.005}
explainers:
  - name: permutation
    params: {repeats: 2}
  - name: zero_ablation
output: out
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return path


def test_run_prints_report_and_writes_the_result_contract(recipe: Path) -> None:
    code, out = run_cli("run", str(recipe))
    assert code == 0, out
    assert "top features per target" in out and "z0" in out and "a1" in out
    results = json.loads((recipe.parent / "out/results.json").read_text())
    assert results["status"] == "complete" and results["aeinterp_version"]
    assert results["data"]["name"] == "synthetic_tabular" and results["model"]["latent_dim"] == 3
    entry = results["explainers"][0]
    for key in (
        "name",
        "alias",
        "target",
        "status",
        "feature_names",
        "target_names",
        "importance",
        "std",
        "runtime_s",
        "params",
        "extras",
        "arrays",
    ):
        assert key in entry, key
    assert entry["feature_names"] == ["a1", "a2", "b1", "b2", "c1", "c2", "noise1", "noise2"]
    assert np.asarray(entry["importance"]).shape == (3, 8)
    with np.load(recipe.parent / "out" / entry["arrays"], allow_pickle=False) as npz:
        np.testing.assert_allclose(npz["importance"], entry["importance"])
    assert (recipe.parent / "out/permutation.png").exists() and (recipe.parent / "out/report.html").exists()


def test_out_and_set_override_the_recipe(recipe: Path, tmp_path: Path) -> None:
    code, out = run_cli("run", str(recipe), "--out", str(tmp_path / "elsewhere"), "--set", "explainers.0.params.repeats=1", "--quiet")
    assert code == 0, out
    results = json.loads((tmp_path / "elsewhere/results.json").read_text())
    assert results["explainers"][0]["params"]["repeats"] == 1


def test_validate_reports_line_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECIPE.replace("name: zero_ablation", "name: zero_ablaton"))
    code, out = run_cli("validate", str(bad))
    assert code == 2
    assert "explainers[1].name (line 11): unknown explainer 'zero_ablaton'; did you mean 'zero_ablation'?" in out
    assert "Traceback" not in out
    good = tmp_path / "good.yaml"
    good.write_text(RECIPE)
    assert run_cli("validate", str(good))[0] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("builtin: synthetic_tabular", "path: missing.csv"), "data file not found"),
        (("model:\n  builtin: mlp", "model:\n  path: nope.pt\n  builtin_: mlp"), "unknown key 'builtin_'"),
        (
            ("  builtin: mlp\n  latent_dim: 3\n  options: {hidden: [16]}\n  train: {epochs: 40, lr: 0.005}", "  path: nope.pt"),
            "model file not found",
        ),
    ],
)
def test_bad_input_is_a_message_and_exit_2(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.replace(*change))
    code, out = run_cli("run", str(path))
    assert code == 2 and message in out and "Traceback" not in out, out


def test_nan_data_is_refused_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b,c\n1,2,3\n4,nan,6\n7,8,9\n1,1,1\n2,2,2\n")
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.replace("builtin: synthetic_tabular", "path: d.csv"))
    code, out = run_cli("run", str(path))
    assert code == 2 and "nan: drop" in out


def test_model_that_does_not_fit_the_data(tmp_path: Path) -> None:
    module = nn.Module()
    module.encoder = nn.Linear(5, 2)
    module.decoder = nn.Linear(2, 5)
    torch.save(module.state_dict(), tmp_path / "m.pt")
    path = tmp_path / "r.yaml"
    path.write_text(
        RECIPE.replace("  builtin: mlp\n  latent_dim: 3\n  options: {hidden: [16]}\n  train: {epochs: 40, lr: 0.005}", "  path: m.pt")
    )
    code, out = run_cli("run", str(path))
    assert code == 2 and "state dict" in out and "factory" in out


class WideAE(nn.Module):
    def __init__(self, n: int = 5) -> None:
        super().__init__()
        self.encoder = nn.Linear(n, 2)
        self.decoder = nn.Linear(2, n)

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def test_minimal_recipe_form_from_the_issue(tmp_path: Path) -> None:
    """TorchScript file + CSV with a header + permutation and zero_ablation, exactly as documented."""
    torch.jit.script(WideAE(3)).save(str(tmp_path / "model.pt"))
    rng = np.random.default_rng(0)
    rows = "\n".join(",".join(f"{v:.4f}" for v in r) for r in rng.normal(size=(40, 3)))
    (tmp_path / "data.csv").write_text("a,b,c\n" + rows + "\n")
    (tmp_path / "r.yaml").write_text(
        "model:\n  path: model.pt\ndata:\n  path: data.csv\n  kind: tabular\n  feature_names: [a, b, c]\n"
        "explainers:\n  - name: permutation\n    params: {repeats: 5}\n  - name: zero_ablation\noutput: out/\n"
    )
    code, out = run_cli("run", str(tmp_path / "r.yaml"))
    assert code == 0, out
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert [e["status"] for e in results["explainers"]] == ["ok", "ok"]
    assert results["explainers"][0]["feature_names"] == ["a", "b", "c"]


def test_torchscript_with_wrong_input_width_is_explained(tmp_path: Path) -> None:
    torch.jit.script(WideAE(5)).save(str(tmp_path / "model.pt"))
    (tmp_path / "r.yaml").write_text(
        RECIPE.replace("  builtin: mlp\n  latent_dim: 3\n  options: {hidden: [16]}\n  train: {epochs: 40, lr: 0.005}", "  path: model.pt")
    )
    code, out = run_cli("run", str(tmp_path / "r.yaml"))
    assert code == 2 and "the model cannot encode the data: samples have shape (8,)" in out


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    torch.save(WideAE(8), tmp_path / "m.pt")
    (tmp_path / "r.yaml").write_text(
        RECIPE.replace("  builtin: mlp\n  latent_dim: 3\n  options: {hidden: [16]}\n  train: {epochs: 40, lr: 0.005}", "  path: m.pt")
    )
    code, out = run_cli("run", str(tmp_path / "r.yaml"), "--quiet")
    assert code == 2 and "trust: true" in out
    code, out = run_cli("run", str(tmp_path / "r.yaml"), "--quiet", "--set", "model.trust=true")
    assert code == 0, out


def test_state_dict_with_factory(tmp_path: Path) -> None:
    (tmp_path / "mymodels.py").write_text(
        "from torch import nn\n"
        "class AE(nn.Module):\n"
        "    def __init__(self, n, k):\n"
        "        super().__init__()\n"
        "        self.enc = nn.Linear(n, k)\n"
        "        self.dec = nn.Linear(k, n)\n"
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        import mymodels  # noqa: PLC0415

        torch.save(mymodels.AE(8, 2).state_dict(), tmp_path / "w.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mymodels", None)
    (tmp_path / "r.yaml").write_text(
        RECIPE.replace(
            "  builtin: mlp\n  latent_dim: 3\n  options: {hidden: [16]}\n  train: {epochs: 40, lr: 0.005}",
            "  path: w.pt\n  factory: mymodels:AE\n  kwargs: {n: 8, k: 2}\n  encoder: enc\n  decoder: dec",
        )
    )
    code, out = run_cli("run", str(tmp_path / "r.yaml"), "--quiet")
    assert code == 0, out
    assert json.loads((tmp_path / "out/results.json").read_text())["model"]["latent_dim"] == 2


def test_a_failing_step_keeps_the_others_and_exits_1(recipe: Path, monkeypatch) -> None:  # noqa: ANN001
    text = RECIPE.replace("  - name: zero_ablation\n", "  - name: crashing\n  - name: zero_ablation\n")
    recipe.write_text(text)
    monkeypatch.setattr(
        cli, "_runner", lambda args, console, quiet=False: Runner(plugins=[tp.crashing_plugin], console=console, quiet=quiet)
    )
    code, out = run_cli("run", str(recipe))
    assert code == 1
    assert "crashing" in out and "boom inside the plugin" in out and "1 step(s) failed" in out
    results = json.loads((recipe.parent / "out/results.json").read_text())
    status = {e["alias"]: e["status"] for e in results["explainers"]}
    assert status == {"permutation": "ok", "crashing": "error", "zero_ablation": "ok"}
    failed = next(e for e in results["explainers"] if e["alias"] == "crashing")
    assert failed["distribution"] == "crashing_plugin" and failed["error_type"] == "ValueError" and "ValueError" in failed["traceback"]
    assert results["status"] == "failed"


def test_an_unsupported_target_is_refused_before_running(recipe: Path, monkeypatch) -> None:  # noqa: ANN001
    recipe.write_text(
        RECIPE.replace("  - name: zero_ablation\n", "  - name: latent_only\n    targets: [reconstruction]\n  - name: zero_ablation\n")
    )
    monkeypatch.setattr(
        cli, "_runner", lambda args, console, quiet=False: Runner(plugins=[tp.crashing_plugin], console=console, quiet=quiet)
    )
    code, out = run_cli("run", str(recipe))
    assert code == 2 and "explainers[1].targets (line 12): latent_only cannot explain target 'reconstruction'" in out, out
    assert not (recipe.parent / "out").exists()


def test_interrupted_run_keeps_finished_results(recipe: Path) -> None:
    recipe.write_text(RECIPE.replace("  - name: zero_ablation\n", "  - name: interrupting\n  - name: zero_ablation\n"))
    runner = Runner(plugins=[tp.crashing_plugin], quiet=True)
    with pytest.raises(KeyboardInterrupt):
        runner.run_file(recipe)
    results = json.loads((recipe.parent / "out/results.json").read_text())
    assert results["status"] == "interrupted"
    assert [e["alias"] for e in results["explainers"]] == ["permutation"]
    assert (recipe.parent / "out/permutation.npz").exists()


def test_report_re_renders_a_finished_run(recipe: Path) -> None:
    assert run_cli("run", str(recipe), "--quiet")[0] == 0
    html = recipe.parent / "out/report.html"
    html.unlink()
    from aeinterp.run.lock import OutputLock

    with OutputLock(recipe.parent / "out"):  # a run still writing there: the report waits for it, never writes beside it
        code, out = run_cli("report", str(recipe.parent / "out"))
    assert code != 0 and "another aeinterp run" in out and not html.exists()
    code, out = run_cli("report", str(recipe.parent / "out"))
    assert code == 0 and "top features per target" in out and html.exists()


def test_plugins_lists_the_builtins_with_their_distribution() -> None:
    code, out = run_cli("--allow-plugins", "perturbation", "plugins", "--json")
    assert code == 0
    payload = json.loads(out)
    by_name = {e["name"]: e for e in payload["explainers"]}
    assert by_name["permutation"]["distribution"] == "aeinterp"
    assert by_name["zero_ablation"]["capabilities"]["targets"] == [
        "latent",
        "latent_pca",
        "prediction",
        "reconstruction",
        "reconstruction_error",
    ]


def test_schema_is_json() -> None:
    code, out = run_cli("--allow-plugins", "perturbation", "schema")
    assert code == 0 and json.loads(out)["title"] == "Recipe"


def test_train_saves_a_checkpoint_and_torchscript(tmp_path: Path) -> None:
    code, out = run_cli(
        "train", "--data", "builtin:wine", "--latent-dim", "2", "--epochs", "3", "--option", "hidden=[8]", "-o", str(tmp_path / "m.pt")
    )
    assert code == 0 and "held-out reconstruction MSE" in out, out
    code, out = run_cli(
        "train",
        "--data",
        "builtin:sines",
        "--arch",
        "lstm",
        "--latent-dim",
        "2",
        "--epochs",
        "1",
        "--option",
        "hidden=4",
        "--torchscript",
        "-o",
        str(tmp_path / "s.pt"),
    )
    assert code == 0, out
    scripted = torch.jit.load(str(tmp_path / "s.pt"))
    assert scripted.encode(torch.randn(3, 24, 3)).shape == (3, 2)
    (tmp_path / "r.yaml").write_text("data: {builtin: wine}\nmodel: {path: m.pt}\nexplainers: [{name: zero_ablation}]\n")
    code, out = run_cli("run", str(tmp_path / "r.yaml"), "--quiet")
    assert code == 0, out


def test_a_step_can_read_an_earlier_step_by_alias(recipe: Path) -> None:
    recipe.write_text(
        RECIPE.replace(
            "  - name: zero_ablation\n", "  - name: follower\n    params: {source: permutation, top_k: 2}\n  - name: zero_ablation\n"
        )
    )
    outcome = Runner(plugins=[tp.crashing_plugin], quiet=True).run_file(recipe)
    perm, follow = outcome.explanations["permutation"], outcome.explanations["follower"]
    top = np.argsort(-perm.importance, axis=1)[:, :2]
    assert (follow.importance.sum(axis=1) == 2).all()
    assert all(follow.importance[r, top[r]].all() for r in range(len(top)))


def test_a_step_reference_must_name_an_earlier_step(recipe: Path) -> None:
    from aeinterp import RecipeError

    recipe.write_text(
        RECIPE.replace("  - name: permutation\n", "  - name: follower\n    params: {source: zero_ablaton}\n  - name: permutation\n")
    )
    with pytest.raises(RecipeError) as info:
        Runner(plugins=[tp.crashing_plugin], quiet=True).validate(recipe)
    assert info.value.problems == [
        "explainers[0].params.source (line 10): 'zero_ablaton' is not the alias of an earlier step (there are no earlier steps)"
    ]
