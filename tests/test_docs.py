"""The docs keep up with the code: hooks, CLI options, README commands."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from aeinterp import cli
from aeinterp.plugins import hookspecs

ROOT = Path(__file__).resolve().parent.parent


def test_every_hook_is_documented_with_its_signature() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    hooks = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("aeinterp_")]
    assert hooks
    for hook in hooks:
        params = ", ".join(inspect.signature(hook).parameters)
        assert f"`{hook.__name__}({params})`" in text, f"CONTRIBUTING.md lacks {hook.__name__}({params})"


def test_every_cli_command_and_option_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    parser = cli.build_parser()
    for action in parser._actions:
        for opt in action.option_strings:
            if opt not in ("-h", "--help", "--version"):
                assert opt in readme, opt
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, subparser in sub.choices.items():
        assert f"aeinterp {name}" in readme, name
        for action in subparser._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert opt in readme, f"{name} {opt}"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "python3 .ci/dev.py quickstart" in readme and "python3 .ci/dev.py test" in readme
    assert re.search(r"python3 \.ci/dev\.py test", (ROOT / ".ci/run").read_text())
