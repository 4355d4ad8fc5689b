"""Reports read Explanations only: terminal (captured rich console), PNG and HTML."""

from __future__ import annotations

import io
import re

import numpy as np
from rich.console import Console

from aeinterp import Explanation
from aeinterp.report import render_reports
from aeinterp.report.summary import agreements, dead_targets, redundant_features
from aeinterp.run.results import ResultsStore, load_results


def explanation(name: str, imp: np.ndarray) -> Explanation:
    return Explanation(
        importance=imp,
        feature_names=["alpha", "beta", "gamma", "delta"],
        target_names=["z0", "z1", "z2"],
        explainer=name,
        distribution="dist",
        version="1.0",
        runtime_s=0.25,
        extras={"unit": "u"},
    )


IMP = np.array([[0.9, 0.1, 0.0, 0.0], [0.0, 0.8, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0]])


def test_summary_facts() -> None:
    e = explanation("a", IMP)
    assert redundant_features(e) == ["delta"]
    assert dead_targets(e) == ["z2"]
    pairs = agreements({"a": e, "b": explanation("b", IMP * 2)})
    assert len(pairs) == 1 and pairs[0].spearman == 1.0 and pairs[0].top1 == 1.0


def test_terminal_html_and_pngs(tmp_path) -> None:  # noqa: ANN001
    store = ResultsStore(
        tmp_path, recipe={}, model={"description": "M", "latent_dim": 3}, data={"name": "d", "kind": "tabular"}, plugins=[]
    )
    store.add("first", explanation("first", IMP))
    store.add("second", explanation("second", IMP[:, ::-1].copy()))
    store.add_error("third", "broken", "latent", RuntimeError("kaput"), params={})
    store.finish("failed")
    buf = io.StringIO()
    results = load_results(tmp_path)
    written = render_reports(results, None, console=Console(file=buf, width=100))
    out = buf.getvalue()
    assert "first — first (dist 1.0)" in out
    assert re.search(r"z0\s+alpha 0\.9, beta 0\.1\s+│", out)
    assert "redundant features" not in out  # "first" finds delta redundant, "second" alpha: they do not agree
    assert "dead latents: z2" in out
    assert "agreement between explainers" in out and "third failed" in out and "kaput" in out
    names = sorted(p.name for p in written)
    assert names == ["first.png", "first.summary.png", "report.html", "second.png", "second.summary.png"]
    assert all(p.stat().st_size > 1000 for p in written)
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "http://" not in html and "https://" not in html and "<script src" not in html and "<link" not in html  # self-contained
    assert "kaput" in html and "Redundant features" in html and "Dead latents</b>: z2" in html
