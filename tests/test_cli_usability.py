"""The command line as people expect it: a cheap --version, helpful --help, -o, completion, editor schema."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from aeinterp.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> tuple[int, str]:
    buf = io.StringIO()
    code = main(list(args), console=Console(file=buf, width=200))
    return code, buf.getvalue()


def test_version_imports_no_torch() -> None:
    code = "import sys\nfrom aeinterp.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0].startswith("aeinterp ")
    assert out.stdout.strip().endswith("False False")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_help_has_an_example_and_describes_its_arguments(command: str, capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text and f"aeinterp {command}" in text
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]  # noqa: SLF001
    for action in sub._actions:  # noqa: SLF001
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"


def test_defaults_are_shown() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()  # noqa: SLF001
    assert "training epochs (default: 100)" in text.replace("\n", " ").replace("  ", " ") or "(default: 100)" in text
    assert "(default: 0)" in text  # a zero default is a real default


def test_run_takes_dash_o(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "data: {builtin: synthetic_tabular}\nmodel: {builtin: mlp, latent_dim: 2, options: {hidden: [8]}, train: {epochs: 2}}\n"
        "explainers: [{name: permutation, params: {repeats: 1}}]\noutput: elsewhere\n"
    )
    code, out = _cli("run", str(recipe), "-o", str(tmp_path / "chosen"), "--quiet")
    assert code == 0, out
    assert (tmp_path / "chosen" / "results.json").exists() and not (tmp_path / "elsewhere").exists()


def test_schema_file_for_editors_lists_datasets_and_explainer_params(tmp_path: Path) -> None:
    target = tmp_path / "schema" / "recipe.schema.json"
    code, out = _cli("schema", "-o", str(target))
    assert code == 0 and "yaml-language-server: $schema=" in out
    schema = json.loads(target.read_text())
    builtin = schema["$defs"]["DataSection"]["properties"]["builtin"]
    assert builtin["anyOf"][0]["enum"] == ["breast_cancer", "digits", "sines", "synthetic_tabular", "wine"]
    variants = {v["properties"]["name"]["const"]: v for v in schema["properties"]["explainers"]["items"]["anyOf"]}
    assert {"permutation", "deepshap", "integrated_gradients"} <= set(variants)
    perm = schema["$defs"][variants["permutation"]["properties"]["params"]["$ref"].split("/")[-1]]
    assert "repeats" in perm["properties"]


def test_completion_script() -> None:
    pytest.importorskip("shtab")
    code, out = _cli("completion", "bash")
    assert code == 0 and "_shtab_aeinterp" in out and "validate" in out
