"""Hostile and broken input (issue 12): recipes that try to run code or write outside their folder,
bad values that must be exit 2 with a located message, printed text full of rich markup, corrupt
model files. Each test is one case of the issue; misbehaving plugins, models and signals are in
tests/test_hostile_run.py."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from aeinterp import cli
from aeinterp.errors import ModelError, RecipeError
from aeinterp.models.architectures import CHECKPOINT_FORMAT
from aeinterp.models.loading import load_module, resolve_factory
from aeinterp.recipe.schema import parse_recipe
from aeinterp.runner import Runner
from tests.fixtures import hostile_plugins as hp

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


def run_cli(*argv: str, runner_plugins: list | None = None, monkeypatch=None) -> tuple[int, str]:  # noqa: ANN001
    buf = io.StringIO()
    code = cli.main(list(argv), console=Console(file=buf, width=200))
    return code, buf.getvalue()


def bad_input(out: str) -> None:
    assert "Traceback" not in out and "internal error" not in out, out


@pytest.fixture
def hostile_cli(monkeypatch):  # noqa: ANN001, ANN201
    """The CLI with the misbehaving test plugins registered next to the built-ins."""
    real = cli._runner

    def runner(args, console, quiet=False):  # noqa: ANN001, ANN202
        r = real(args, console, quiet)
        return Runner(plugins=[hp.hostile_plugin], console=console, quiet=quiet, timeout=r.timeout, trusted_factories=r.trusted_factories)

    monkeypatch.setattr(cli, "_runner", runner)


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def state_dict_recipe(tmp_path: Path, model_lines: str, data: str = "x.npy") -> Path:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40, 8), dtype=np.float32))
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    return write(tmp_path, f"data:\n  path: {data}\nmodel:\n  path: w.pt\n{model_lines}\nexplainers:\n  - name: zero_ablation\n")


# --- a recipe cannot run code ----------------------------------------------------------
@pytest.mark.parametrize(
    "factory, kwargs",
    [
        ("builtins:open", "{file: PWNED, mode: w}"),
        ("io:open", "{file: PWNED, mode: w}"),
        ("os:system", "{command: 'touch PWNED'}"),
        ("subprocess:run", "{args: [touch, PWNED]}"),
        ("pathlib:Path.touch", "{self: PWNED}"),
        ("torch:save", "{obj: 1, f: PWNED}"),
    ],
)
def test_a_factory_that_is_no_module_class_is_never_called(tmp_path: Path, monkeypatch, factory: str, kwargs: str) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    recipe = state_dict_recipe(tmp_path, f"  factory: '{factory}'\n  kwargs: {kwargs}")
    code, out = run_cli("run", str(recipe))
    assert code == 2, out
    bad_input(out)
    assert not (tmp_path / "PWNED").exists()
    assert "not called" in out


def test_a_head_from_the_standard_library_is_never_called(tmp_path: Path) -> None:
    recipe = write(tmp_path, BASE.replace("  train: {epochs: 3}\n", "  train: {epochs: 3}\n  head: 'math:sqrt'\n  task_dims: [0]\n"))
    code, out = run_cli("run", str(recipe))
    assert code == 2 and "head 'math:sqrt' names the Python standard library" in out, out
    assert not (tmp_path / "out" / "results.json").exists()


USER_MODULE = """
import pathlib
from torch import nn
import aeinterp

class AE(nn.Module):
    def __init__(self, n=8, k=2):
        super().__init__()
        self.enc, self.dec = nn.Linear(n, k), nn.Linear(k, n)
    def encode(self, x):
        return self.enc(x)
    def decode(self, z):
        return self.dec(z)

def sneaky(**kw):
    pathlib.Path(__file__).with_name("CALLED").write_text("yes")
    return AE(**kw)

@aeinterp.factory
def marked(**kw):
    return AE(**kw)
"""


def _user_model(tmp_path: Path, factory: str) -> Path:
    (tmp_path / "usermodels.py").write_text(USER_MODULE)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40, 8), dtype=np.float32))
    import importlib
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        sys.modules.pop("usermodels", None)
        module = importlib.import_module("usermodels").AE()
        torch.save(module.state_dict(), tmp_path / "w.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("usermodels", None)
    return write(
        tmp_path,
        f"data:\n  path: x.npy\nmodel:\n  path: w.pt\n  factory: '{factory}'\n  kwargs: {{n: 8, k: 2}}\nexplainers:\n  - name: zero_ablation\n",
    )


def test_an_unmarked_function_is_refused_a_marked_one_or_a_trusted_one_runs(tmp_path: Path) -> None:
    recipe = _user_model(tmp_path, "usermodels:sneaky")
    code, out = run_cli("run", str(recipe), "--quiet")
    assert code == 2 and "usermodels:sneaky' is a function, not a torch.nn.Module subclass, so it was not called" in out, out
    assert not (tmp_path / "CALLED").exists()
    code, out = run_cli("run", str(recipe), "--quiet", "--trust-factory", "usermodels:sneaky")
    assert code == 0, out
    assert (tmp_path / "CALLED").exists()
    recipe.write_text(recipe.read_text().replace("usermodels:sneaky", "usermodels:marked"))
    code, out = run_cli("run", str(recipe), "--quiet")
    assert code == 0, out
    sys_modules_clean()


def sys_modules_clean() -> None:
    import sys

    sys.modules.pop("usermodels", None)


def test_resolve_factory_checks_before_calling() -> None:
    assert resolve_factory("torch.nn:Linear") is torch.nn.Linear
    with pytest.raises(ModelError, match="not called"):
        resolve_factory("torch:zeros")
    with pytest.raises(ModelError, match="standard library"):
        resolve_factory("os.path:join")
    with pytest.raises(ModelError, match="no attribute"):
        resolve_factory("torch.nn:Linear.__init__.__globals__")


# --- nothing is written outside the output folder ---------------------------------------
@pytest.mark.parametrize("save", ["../victim.txt", "/tmp/victim.txt", "sub/../../victim.txt", "~/victim.txt"])
def test_model_save_stays_inside_the_output_folder(tmp_path: Path, save: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    recipe = write(tmp_path, BASE.replace("  train: {epochs: 3}\n", f"  train: {{epochs: 3}}\n  save: '{save}'\n"))
    for command in ("validate", "run"):
        code, out = run_cli(command, str(recipe))
        assert code == 2 and "must be a relative path inside the output folder" in out, out
    assert victim.read_text() == "precious"


def test_model_save_inside_the_folder_still_works(tmp_path: Path) -> None:
    recipe = write(tmp_path, BASE.replace("  train: {epochs: 3}\n", "  train: {epochs: 3}\n  save: models/ae.pt\n"))
    code, out = run_cli("run", str(recipe), "--quiet")
    assert code == 0, out
    assert (tmp_path / "out/models/ae.pt").exists()


def test_model_save_must_not_overwrite_results(tmp_path: Path) -> None:
    recipe = write(tmp_path, BASE.replace("  train: {epochs: 3}\n", "  train: {epochs: 3}\n  save: zero_ablation.npz\n"))
    code, out = run_cli("validate", str(recipe))
    assert code == 2 and "would overwrite the files of step 'zero_ablation'" in out, out


def test_an_alias_cannot_collide_with_another_steps_figures(tmp_path: Path) -> None:
    text = BASE.replace("  - name: zero_ablation\n", "  - name: zero_ablation\n    alias: t\n  - name: permutation\n    alias: t.grid\n")
    code, out = run_cli("validate", str(write(tmp_path, text)))
    assert code == 2 and "result name 't.grid' starts with 't.'" in out, out


# --- the recipe loader has limits -----------------------------------------------------
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdef", "bcdefg")
)


@pytest.mark.parametrize("where", ["top", "kwargs"])
def test_an_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path: Path, where: str) -> None:
    if where == "top":
        text = BOMB + BASE
    else:
        text = BASE.replace("  train: {epochs: 3}\n", "  train: {epochs: 3}\n  options: " + "{hidden: [8], x: " + "[" * 1 + "1]}\n")
        text = BOMB + text.replace("  options: {hidden: [8]}\n", "").replace("x: [1]", "x: *g")
    start = time.perf_counter()
    code, out = run_cli("validate", str(write(tmp_path, text)))
    assert time.perf_counter() - start < 5
    assert code == 2 and "expands to more than 100,000 values" in out, out
    assert len(out) < 2000


def test_duplicate_keys_are_an_error_with_both_lines(tmp_path: Path) -> None:
    text = BASE + "model:\n  builtin: mlp\n  latent_dim: 5\n"
    code, out = run_cli("validate", str(write(tmp_path, text)))
    assert code == 2 and "duplicate key 'model' at lines 3 and 11" in out, out
    nested = BASE.replace("  latent_dim: 2\n", "  latent_dim: 2\n  latent_dim: 3\n")
    code, out = run_cli("validate", str(write(tmp_path, nested)))
    assert code == 2 and "duplicate key 'latent_dim' at lines 5 and 6" in out, out


@pytest.mark.parametrize("text", ["x: " + "[" * 3000 + "]" * 3000 + "\n", "x:\n" + "".join(" " * i + "- \n" for i in range(0, 600, 2))])
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    code, out = run_cli("validate", str(write(tmp_path, text)))
    assert code == 2 and "nests deeper than 100 levels" in out, out


def test_recursive_aliases_and_odd_tags_are_refused() -> None:
    with pytest.raises(RecipeError, match="recursive"):
        parse_recipe("a: &a [1, *a]\n")
    for tag in ("!!binary aGk=", "!!set {a, b}", "!!python/name:os.system ''", "!!omap [a: 1]"):
        with pytest.raises(RecipeError, match="unsupported YAML tag"):
            parse_recipe(f"x: {tag}\n")


def test_error_output_is_bounded(tmp_path: Path) -> None:
    keys = "".join(f"  bogus_key_{i}: {'y' * 2000}\n" for i in range(300))
    text = BASE.replace("output: out\n", "output: out\nreport:\n" + keys)
    code, out = run_cli("validate", str(write(tmp_path, text)))
    assert code == 2 and "more problems" in out
    assert len(out) < 60_000


# --- validate catches what run would, all at once -------------------------------------
def test_validate_reports_every_typo_at_once(tmp_path: Path) -> None:
    text = """\
seed: -1
data:
  builtin: breast_cancr
  split: {seed: 100000000000000000000000000000}
model:
  builtin: mlpp
  latent_dim: 2
explainers:
  - name: zero_ablaton
  - name: activation_atlas
    targets: [reconstruction]
  - name: permutation
    params: {repeatz: 2}
"""
    code, out = run_cli("validate", str(write(tmp_path, text)))
    assert code == 2, out
    expected = [
        "seed (line 1): Input should be greater than or equal to 0",
        "data.builtin (line 3): Value error, unknown builtin dataset 'breast_cancr'; did you mean 'breast_cancer'?",
        "data.split.seed (line 4): Input should be less than or equal to 4294967295",
        "model.builtin (line 6): Value error, unknown builtin model 'mlpp'; did you mean 'mlp'?",
        "explainers[0].name (line 9): unknown explainer 'zero_ablaton'",
        "explainers[1].targets (line 11): activation_atlas cannot explain target 'reconstruction'",
        "explainers[2].params.repeatz (line 13): unknown key 'repeatz'; did you mean 'repeats'?",
    ]
    for line in expected:
        assert line in out, (line, out)


@pytest.mark.parametrize(
    ("data", "kind"), [("builtin: digits", "image"), ("builtin: sines", "sequence"), ("path: x.npy\n  kind: image", "image")]
)
def test_an_explainer_for_other_data_kinds_fails_at_validate_time(tmp_path: Path, data: str, kind: str) -> None:
    """weight_importance reads an MLP's weights (tabular only): validate says so before any data or model is loaded."""
    text = f"data:\n  {data}\nmodel:\n  builtin: mlp\n  latent_dim: 2\nexplainers:\n  - name: permutation\n  - name: weight_importance\n"
    code, out = run_cli("validate", str(write(tmp_path, text)))
    assert code == 2, out
    assert (
        f"explainers[1].name (line {8 + data.count(chr(10))}): weight_importance works on tabular data; the data section holds {kind} data"
        in out
    ), out
    assert "explainers[0]" not in out, out  # permutation takes every kind


def test_prediction_needs_a_supervised_model_at_validate_time(tmp_path: Path) -> None:
    text = BASE.replace("  - name: zero_ablation\n", "  - name: zero_ablation\n    targets: [prediction]\n")
    code, out = run_cli("validate", str(write(tmp_path, text)))
    assert code == 2 and "target 'prediction' needs a supervised model" in out, out


# --- --set paths ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "item, message",
    [
        ("explainers.0.name.x=1", "explainers.0.name is a str value, not a section or a list"),
        ("model.latent_dim.x=1", "model.latent_dim is a int value"),
        ("targets.0.x=1", "there is no list targets to index into"),
        ("explainers.-1.name=x", "explainers.-1 is not an existing list item"),
        ("explainers.5.name=x", "explainers.5 is not an existing list item"),
        ("a..b=1", "has an empty part"),
        ("=1", "expected key.path=value"),
        ("model.options.widths.0=1", "there is no list model.options.widths to index into"),
        ("model.kwargs=" + BOMB.replace("\n", ", ").join("{}"), "expands to more than"),
    ],
)
def test_set_paths_that_do_not_fit_are_exit_2(tmp_path: Path, item: str, message: str) -> None:
    code, out = run_cli("validate", str(write(tmp_path, BASE)), "--set", item)
    assert code == 2 and message in out, out
    bad_input(out)


def test_set_with_a_number_key_in_a_section_is_a_string_key(tmp_path: Path) -> None:
    code, out = run_cli("validate", str(write(tmp_path, BASE)), "--set", "model.options.hidden=[4]", "--set", "model.train.epochs=1")
    assert code == 0, out


# --- markup in everything we print ------------------------------------------------------
@pytest.mark.parametrize("markup", ["[/x]", "[bold]"])
def test_markup_in_keys_and_paths_is_printed_as_is(tmp_path: Path, markup: str) -> None:
    code, out = run_cli("validate", str(write(tmp_path, BASE + f"'{markup}': 1\n")))
    assert code == 2 and f"unknown key '{markup}'" in out, out
    code, out = run_cli("run", str(write(tmp_path, BASE.replace("builtin: synthetic_tabular", f"path: 'nope{markup}.csv'"))))
    assert code == 2 and f"nope{markup}.csv" in out, out
    folder = tmp_path / "d[bold]"
    folder.mkdir()
    code, out = run_cli("validate", str(write(folder, BASE)))
    assert code == 0 and "d[bold]" in out, out


@pytest.mark.parametrize("markup", ["[/x]", "[bold]"])
def test_markup_in_feature_names_reaches_the_report_unchanged(tmp_path: Path, markup: str) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((60, 3), dtype=np.float32))
    text = BASE.replace("builtin: synthetic_tabular", f"path: x.npy\n  feature_names: ['{markup}a', 'b{markup}', c]")
    code, out = run_cli("run", str(write(tmp_path, text)))
    assert code == 0, out
    assert f"{markup}a" in out and f"b{markup}" in out
    code, out = run_cli("report", str(tmp_path / "out"), "--no-html")
    assert code == 0 and f"{markup}a" in out, out


def test_markup_in_an_explainers_error_keeps_the_run(tmp_path: Path, hostile_cli) -> None:  # noqa: ANN001
    text = BASE.replace("  - name: zero_ablation\n", "  - name: markup_message\n  - name: zero_ablation\n")
    code, out = run_cli("run", str(write(tmp_path, text)))
    assert code == 1, out
    assert "closing [/x] tag and [bold] never closed" in out
    doc = json.loads((tmp_path / "out/results.json").read_text())
    assert [e["status"] for e in doc["explainers"]] == ["error", "ok"] and doc["status"] == "failed"


def test_markup_in_a_plugin_docstring_is_listed_as_is(hostile_cli) -> None:  # noqa: ANN001
    code, out = run_cli("plugins")
    assert code == 0, out
    assert "Docstring with markup [/x] and [bold] unclosed." in out


def test_schema_survives_a_plugin_whose_params_have_no_json_schema(hostile_cli, capsys) -> None:  # noqa: ANN001
    code, out = run_cli("schema")
    assert code == 0, out
    assert "explainer 'no_schema'" in capsys.readouterr().err
    schema = json.loads(out)
    assert schema["$defs"]["Params_no_schema"]["type"] == "object"
    assert "repeats" in schema["$defs"]["Params_permutation"]["properties"]


# --- bad values: exit 2 with a message --------------------------------------------------
def test_an_absurd_latent_dim_is_refused_before_allocating(tmp_path: Path) -> None:
    start = time.perf_counter()
    code, out = run_cli("run", str(write(tmp_path, BASE.replace("latent_dim: 2", "latent_dim: 1000000000"))))
    assert code == 2 and "latent_dim 1,000,000,000" in out and "would need" in out and " GB " in out, out
    assert time.perf_counter() - start < 30


def test_a_checkpoint_asking_for_huge_layers_is_refused_before_allocating(tmp_path: Path) -> None:
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "architecture": "mlp",
        "config": {"input_shape": [8], "latent_dim": 2, "hidden": [10**6, 10**6]},
        "state_dict": {},
    }
    torch.save(ckpt, tmp_path / "big.pt")
    with pytest.raises(ModelError, match="would need .* GB"):
        load_module(tmp_path / "big.pt")


def test_a_checkpoint_without_config_is_exit_2(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40, 8), dtype=np.float32))
    torch.save({"format": CHECKPOINT_FORMAT, "architecture": "mlp", "state_dict": {}}, tmp_path / "w.pt")
    recipe = write(tmp_path, "data:\n  path: x.npy\nmodel:\n  path: w.pt\nexplainers:\n  - name: zero_ablation\n")
    code, out = run_cli("run", str(recipe))
    assert code == 2 and "lacks config" in out, out


def test_output_naming_an_existing_file_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    recipe = write(tmp_path, BASE.replace("output: out", "output: taken"))
    code, out = run_cli("validate", str(recipe))
    assert code == 2 and "is a file, not a folder" in out, out
    code, out = run_cli("run", str(write(tmp_path, BASE, "ok.yaml")), "--out", str(tmp_path / "taken"))
    assert code == 2 and "is a file" in out, out
    assert (tmp_path / "taken").read_text() == "x"


def test_data_and_model_paths_that_are_folders_are_exit_2(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    code, out = run_cli("run", str(write(tmp_path, BASE.replace("builtin: synthetic_tabular", "path: d.csv"))))
    assert code == 2 and "is a folder" in out, out
    np.save(tmp_path / "x.npy", np.zeros((10, 8), dtype=np.float32))
    (tmp_path / "m.pt").mkdir()
    code, out = run_cli("run", str(write(tmp_path, "data:\n  path: x.npy\nmodel:\n  path: m.pt\nexplainers:\n  - name: zero_ablation\n")))
    assert code == 2 and "is a folder" in out, out


def test_upper_case_npy_and_truncated_npz_are_not_internal_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40, 8), dtype=np.float32))
    (tmp_path / "x.npy").rename(tmp_path / "data.NPY")
    code, out = run_cli("run", str(write(tmp_path, BASE.replace("builtin: synthetic_tabular", "path: data.NPY"))), "--quiet")
    assert code in (0, 2), out
    bad_input(out)
    np.savez(tmp_path / "full.npz", x=np.random.default_rng(0).random((40, 8)))
    blob = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(blob[: len(blob) // 2])
    code, out = run_cli("run", str(write(tmp_path, BASE.replace("builtin: synthetic_tabular", "path: cut.npz"))))
    assert code == 2 and "cut.npz" in out, out
    bad_input(out)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--lr", "-1"], "--lr must be a positive finite number, got -1.0"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--seed", "-3"], "--seed must be between 0 and 4294967295"),
    ],
)
def test_train_refuses_bad_numbers(tmp_path: Path, argv: list[str], message: str) -> None:
    code, out = run_cli("train", "--data", "builtin:synthetic_tabular", "--latent-dim", "2", "-o", str(tmp_path / "m.pt"), *argv)
    assert code == 2 and message in out, out
    assert not (tmp_path / "m.pt").exists()


def test_train_output_under_a_file_or_onto_a_folder_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    code, out = run_cli(
        "train", "--data", "builtin:synthetic_tabular", "--latent-dim", "2", "-o", str(tmp_path / "data.csv/x.pt"), "--epochs", "1"
    )
    assert code == 2 and "data.csv is a file, not a folder" in out, out
    code, out = run_cli("train", "--data", "builtin:synthetic_tabular", "--latent-dim", "2", "-o", str(tmp_path), "--epochs", "1")
    assert code == 2 and "is a folder" in out, out


@pytest.mark.parametrize(
    "content",
    [
        "[1, 2]",
        '"text"',
        '{"explainers": 5}',
        '{"data": "x", "explainers": []}',
        '{"explainers": [{"alias": 3}]}',
        '{"explainers": [{"status": "ok", "alias": "a", "name": "x", "feature_names": ["f"], "target_names": ["t"], "importance": [[1, 2, 3]]}]}',
        '{"explainers": [{"status": "ok", "alias": "a", "arrays": "../../etc/passwd"}]}',
        "\xff\xfe",
    ],
)
def test_report_on_a_tampered_results_file_is_exit_2(tmp_path: Path, content: str) -> None:
    (tmp_path / "results.json").write_text(content, encoding="latin-1")
    code, out = run_cli("report", str(tmp_path), "--no-html")
    assert code == 2, out
    bad_input(out)


# --- corrupt model files: never the `trust: true` advice --------------------------------
@pytest.mark.parametrize(
    "content, says",
    [
        (b'{"weights": [1, 2]}', "is JSON text"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "is HTML or XML text"),
        (bytes(np.random.default_rng(0).integers(1, 255, 4096, dtype=np.uint8)), "unrecognised binary content"),
        (b"", "is empty"),
        (b"just some notes\nabout a model\n", "is a text file"),
        (b"PK\x03\x04garbage-zip", "damaged or truncated"),
    ],
)
def test_a_corrupt_model_file_gets_no_trust_advice(tmp_path: Path, content: bytes, says: str) -> None:
    (tmp_path / "m.pt").write_bytes(content)
    with pytest.raises(ModelError) as info:
        load_module(tmp_path / "m.pt")
    assert says in str(info.value) and "trust" not in str(info.value)


def test_a_real_pickled_module_still_gets_the_trust_advice(tmp_path: Path) -> None:
    torch.save(hp.NoGradEncoder(), tmp_path / "m.pt")
    with pytest.raises(ModelError, match="set `trust: true`"):
        load_module(tmp_path / "m.pt")


def test_the_bundled_datasets_load_as_the_kind_validate_assumes() -> None:
    from aeinterp.io.datasets import BUILTIN_DATASETS, BUILTIN_KINDS, load_dataset

    assert set(BUILTIN_KINDS) == set(BUILTIN_DATASETS)
    for name, kind in BUILTIN_KINDS.items():
        assert load_dataset(builtin=name, max_samples=20).kind == kind, name
