"""Every recipe in configs/ opens with the command that runs it, validates, and runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aeinterp.runner import Runner

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(quiet=True)


def test_there_are_configs() -> None:
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_runs(path: Path, runner: Runner, tmp_path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first == f"# aeinterp run configs/{path.name}", f"{path.name} must open with its run command"
    loaded, steps = runner.validate(path)
    assert steps
    outcome = runner.run(loaded, steps, out=tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    errors = {e["alias"]: e.get("error") for e in results["explainers"] if e["status"] != "ok"}
    assert not errors and outcome.ok
    assert (tmp_path / "report.html").exists()
