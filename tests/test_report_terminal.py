"""The terminal report fits its terminal: widths 80, 120 and 200 through an injected rich.Console."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from rich.console import Console

from aeinterp import Explanation
from aeinterp.report import render_reports
from aeinterp.report.summary import verdicts
from aeinterp.report.terminal import fmt, print_report
from aeinterp.run.results import ResultsStore, load_results

N_FEATURES, N_LATENTS = 200, 40
NAMES = [f"gene_{i:03d}_expression_level" for i in range(N_FEATURES)]
CUT_NUMBER = re.compile(r"\d…|\.…|-…")


def _wide(name: str, seed: int, std: bool) -> Explanation:
    rng = np.random.default_rng(seed)
    imp = rng.random((N_LATENTS, N_FEATURES)) * np.logspace(0, -3, N_FEATURES)  # values from ~1 down to ~1e-3
    imp[:, 150:] = 0.0  # 50 inputs nothing depends on
    return Explanation(
        importance=imp,
        std=(np.full_like(imp, 0.01) if std else np.zeros_like(imp)),
        feature_names=NAMES,
        target_names=[f"z{j}" for j in range(N_LATENTS)],
        explainer=name,
        distribution="dist",
        version="1.0",
        runtime_s=0.5,
        extras={"unit": "root mean squared change of the target"},
    )


@pytest.fixture(scope="module")
def wide_results(tmp_path_factory):  # noqa: ANN001, ANN201
    out = tmp_path_factory.mktemp("wide")
    store = ResultsStore(
        out, recipe={}, model={"description": "M", "latent_dim": N_LATENTS}, data={"name": "genes", "kind": "tabular"}, plugins=[]
    )
    store.add("permutation", _wide("permutation", 0, std=False))
    store.add("repeated", _wide("repeated", 1, std=True))
    store.finish("complete")
    return load_results(out)


def _render(results, width: int, **kw) -> str:  # noqa: ANN001
    buf = io.StringIO()
    print_report(Console(file=buf, width=width, color_system=None), results, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("width", [80, 120, 200])
def test_fits_the_width_and_never_cuts_a_number(wide_results, width: int) -> None:  # noqa: ANN001
    out = _render(wide_results, width)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    assert not CUT_NUMBER.search(out), CUT_NUMBER.search(out)
    for name in NAMES[:3]:
        assert name in out  # names wrap, they are not cut to "gene_00…"
    # the one-line-per-latent summary comes first, before any step's panel
    summary_at = out.index("latents: top 3 inputs")
    assert summary_at < out.index("permutation — permutation")
    assert all(re.search(rf"^z{j}\s", out, re.M) for j in range(N_LATENTS))
    # as many target columns as fit; the rest counted
    header = next(line for line in lines if re.match(r"│ feature\s+z", line))
    shown = len(re.findall(r"\bz\d+\b", header))
    if width < 200:
        assert f"… {N_LATENTS - shown} more targets" in out
    assert shown >= (width - 40) // 8


def test_more_columns_on_wider_terminals(wide_results) -> None:  # noqa: ANN001
    counts = []
    for width in (80, 120, 200):
        header = next(line for line in _render(wide_results, width).splitlines() if re.match(r"│ feature\s+z", line))
        counts.append(len(re.findall(r"\bz\d+\b", header)))
    assert counts[0] < counts[1] < counts[2]


def test_plus_minus_only_where_there_is_spread(wide_results) -> None:  # noqa: ANN001
    out = _render(wide_results, 120)
    flat, repeated = out.split("repeated — repeated")
    assert "±" not in flat.split("permutation — permutation")[1]
    assert "±0.01" in repeated


def test_targets_and_top_k_choose_what_is_shown(wide_results) -> None:  # noqa: ANN001
    out = _render(wide_results, 200, targets="z3,z7", top_k=2)
    header = next(line for line in out.splitlines() if re.match(r"│ feature\s+z", line))
    assert re.findall(r"\bz\d+\b", header) == ["z3", "z7"]
    rows = [line for line in out.splitlines() if re.match(r"│ z\d+\s", line)]
    assert {r.split()[1] for r in rows} == {"z3", "z7"}
    assert all(r.count("gene_") == 2 for r in rows)  # top 2 features each
    counted = _render(wide_results, 200, targets="5")
    header = next(line for line in counted.splitlines() if re.match(r"│ feature\s+z", line))
    assert len(re.findall(r"\bz\d+\b", header)) == 5


def test_fmt_never_loses_magnitude() -> None:
    assert [fmt(v) for v in (0.5, 0.000123, 12345.0, -0.00042, 0.0)] == ["0.5", "1.2e-04", "1.2e+04", "-4.2e-04", "0"]


def test_verdicts_are_one_set_with_their_basis_and_unexplained_latents_are_not_dead(tmp_path) -> None:  # noqa: ANN001
    imp = np.zeros((4, 5))
    imp[0] = [1.0, 0.5, 0.0, 0.0, 0.0]
    imp[1] = [0.0, 0.8, 0.3, 0.0, 0.01]
    # a formula search that explained only z0..z2 (z2 depends on nothing), and a second explainer of z0, z1
    symbolic = Explanation(
        importance=imp, feature_names=list("abcde"), target_names=["z0", "z1", "z2", "z3"], explainer="symbolic", extras={"dims": [0, 1, 2]}
    )
    other = Explanation(
        importance=np.vstack([imp[:2], np.zeros((2, 5))]) + np.array([0, 0, 0, 0, 0.4]),
        feature_names=list("abcde"),
        target_names=["z0", "z1", "z2", "z3"],
        explainer="other",
        extras={"dims": [0, 1]},
    )
    traversal = Explanation(
        importance=np.zeros((4, 5)),
        feature_names=list("abcde"),
        target_names=["z0", "z1", "z2", "z3"],
        explainer="latent_traversal",
        extras={"feature_axis": "output"},
    )
    store = ResultsStore(
        tmp_path, recipe={}, model={"description": "M", "latent_dim": 4}, data={"name": "d", "kind": "tabular"}, plugins=[]
    )
    for alias, e in (("symbolic", symbolic), ("other", other), ("traversal", traversal)):
        store.add(alias, e)
    store.finish("complete")
    results = load_results(tmp_path)
    v = verdicts(results.explanations, 4)
    assert v.not_explained == ["z3"] and v.dead == ["z2"]  # z3 was explained by no step: not "dead"
    assert v.redundant == ["d"]  # e: 0.01 is below 5 % for symbolic, but "other" depends on it
    assert v.judged_by == ["symbolic", "other"]  # the traversal's axis is the outputs
    buf = io.StringIO()
    render_reports(results, None, console=Console(file=buf, width=100), options=None)
    out = buf.getvalue()
    assert re.search(r"dead latents: z2\s+— every explainer", out)
    assert "not explained: z3" in out and "redundant features: d" in out and "5 %" in out
    assert "z3" in out and not re.search(r"dead latents:.*z3", out)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["verdicts"]["dead"] == ["z2"] and doc["verdicts"]["redundant"] == ["d"] and doc["verdicts"]["not_explained"] == ["z3"]
    assert "5 %" in doc["verdicts"]["basis"]["redundant"]
    html = (tmp_path / "report.html").read_text()
    assert "not explained" in html and "z3" in html
