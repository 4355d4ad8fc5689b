"""bench/run_all.py's trail logic on a synthetic trail: comparison, the regression flag, the table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_all():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("bench_run_all", ROOT / "bench" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MACHINE = {"host": "a", "cpu": "Test CPU", "cores": 4}


def rec(ratio: float, load: float = 0.1, commit: str = "abc", figure: str = "deepshap/n200", machine: dict | None = None) -> dict:
    return {
        "figure": figure,
        "ratio": ratio,
        "commit": commit,
        "machine": machine or MACHINE,
        "load_per_core_start": load,
        "load_per_core_end": load,
        "ours_s": 1.0,
        "ref_s": ratio,
        "peak_rss_mb": 100.0,
        "reference": "shap",
        "date": "2026-12-07T21:00:00+00:00",
    }


def test_first_figure_is_new(run_all) -> None:  # noqa: ANN001
    assert run_all.compare([], rec(10.0))["status"] == "new"
    assert run_all.compare([rec(10.0, figure="other")], rec(10.0))["status"] == "new"


def test_change_against_the_last_line_of_the_same_figure(run_all) -> None:  # noqa: ANN001
    trail = [rec(100.0, commit="old"), rec(50.0, figure="other"), rec(10.0, commit="last")]
    verdict = run_all.compare(trail, rec(9.0))
    assert verdict["status"] == "ok" and verdict["before"]["commit"] == "last"
    assert verdict["change"] == pytest.approx(-0.1)


def test_a_fall_beyond_the_threshold_on_quiet_runs_is_a_regression(run_all) -> None:  # noqa: ANN001
    verdict = run_all.compare([rec(10.0)], rec(6.9))
    assert verdict["status"] == "regression" and verdict["change"] == pytest.approx(-0.31)
    assert "REGRESSION" in run_all.describe(rec(6.9), verdict)
    assert run_all.compare([rec(10.0)], rec(7.1))["status"] == "ok"  # within 30 %
    assert run_all.compare([rec(10.0)], rec(30.0))["status"] == "ok"  # faster is never flagged


def test_a_loaded_run_on_either_side_makes_the_fall_unreliable(run_all) -> None:  # noqa: ANN001
    assert run_all.compare([rec(10.0, load=2.0)], rec(5.0))["status"] == "unreliable"
    assert run_all.compare([rec(10.0)], rec(5.0, load=0.5))["status"] == "unreliable"  # 0.5 per core is not quiet
    text = run_all.describe(rec(5.0, load=3.0), run_all.compare([rec(10.0)], rec(5.0, load=3.0)))
    assert "unreliable" in text and "REGRESSION" not in text


def test_another_machine_is_not_compared(run_all) -> None:  # noqa: ANN001
    other = {**MACHINE, "cpu": "Other CPU"}
    assert run_all.compare([rec(10.0, machine=other)], rec(1.0))["status"] == "other-machine"


def test_trail_round_trip_and_markdown(run_all, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "trail.jsonl"
    path.write_text(json.dumps(rec(10.0, commit="c1")) + "\nnot json\n\n" + json.dumps(rec(12.5, commit="c2")) + "\n")
    trail = run_all.read_trail(path)
    assert [r["commit"] for r in trail] == ["c1", "c2"]
    table = run_all.markdown(trail).splitlines()
    assert len(table) == 3 and "12.50x" in table[2] and "c2" in table[2]  # only the latest line per figure


def test_tables_are_rewritten_between_their_markers_only(run_all, tmp_path: Path) -> None:  # noqa: ANN001
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Bench\n\nbefore\n{run_all.TABLE_START}\n| old | table |\n{run_all.TABLE_END}\nafter\n")
    run_all.write_tables([rec(10.0, commit="c1"), rec(20.0, commit="c2", figure="jacobian/n200")], [doc])
    text = doc.read_text()
    assert text.startswith("# Bench\n\nbefore\n") and text.endswith(f"{run_all.TABLE_END}\nafter\n")
    assert "old" not in text and "| jacobian/n200 |" in text and "20.00x" in text and "10.00x" in text
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        run_all.write_tables([rec(1.0)], [bare])
    assert bare.read_text() == "no markers\n"


def test_figures_are_picked_out_of_a_scripts_output(run_all) -> None:  # noqa: ANN001
    out = "some report\n" + run_all.MARK + json.dumps({"figure": "f", "ratio": 2.0}) + "\nmore\n"
    assert run_all.parse_figures(out) == [{"figure": "f", "ratio": 2.0}]
