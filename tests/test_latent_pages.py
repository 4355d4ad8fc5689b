"""Latent pages on planted autoencoders: what drives each latent, what it does, when it is high, its relations.

Ground truth: ``z_j`` depends on exactly its planted inputs; ``z3`` depends on none (dead); ``z4`` is a copy of
``z0`` (its hidden block's weights copied); the decoder is linear, so each latent's output effect is its decoder
column times the distance between the quantiles it moves between.
"""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

import aeinterp
from aeinterp.cli import main
from aeinterp.explanation import Explanation
from aeinterp.report import load_values, render_reports
from aeinterp.report.latent_render import page_html
from aeinterp.report.latent_store import load_codes
from aeinterp.run.results import load_results
from aeinterp.testing.planted import planted_autoencoder

DEPS = ((0, 1), (2, 3, 4), (5,), (), (0, 1))
METHODS = ["deepshap", "integrated_gradients", "permutation"]


@pytest.fixture(scope="module")
def planted():  # noqa: ANN201
    p = planted_autoencoder(n_features=8, dependencies=DEPS, n_samples=300, seed=1)
    enc = p.model.module.encoder
    h = 4
    with torch.no_grad():  # z4 := z0 (same hidden block, same read-out)
        enc[0].weight[4 * h : 5 * h] = enc[0].weight[0:h]
        enc[0].bias[4 * h : 5 * h] = enc[0].bias[0:h]
        enc[2].weight[4, 4 * h : 5 * h] = enc[2].weight[0, 0:h]
    return p


@pytest.fixture(scope="module")
def exp(planted):  # noqa: ANN001, ANN201
    return aeinterp.explain_all(planted.model, planted.data.x, METHODS, progress=False, raise_errors=True)


@pytest.fixture(scope="module")
def out(exp, tmp_path_factory) -> Path:  # noqa: ANN001
    folder = tmp_path_factory.mktemp("latent-run")
    exp.report(folder)
    return folder


def _codes(planted, exp) -> np.ndarray:  # noqa: ANN001
    with torch.no_grad():  # the rows explain_all explained (every row of X)
        return planted.model.encode(torch.as_tensor(exp.data.x_explain)).numpy()


@pytest.mark.parametrize("j", [0, 1, 2, 4])
def test_each_planted_latent_page_names_its_planted_inputs_on_top(exp, out, j: int) -> None:  # noqa: ANN001
    want = {f"x{i}" for i in DEPS[j]}
    for page in (exp.latent(f"z{j}"), aeinterp.latent_page(out, f"z{j}")):
        assert set(page.top_inputs(len(want))) == want
        assert set(page.core) <= want
        assert page.agreement is not None and page.agreement >= 0.8
        assert [v.alias for v in page.steps] == METHODS  # every input-attribution step, by the generic rule
        for v in page.steps:  # each explainer's own ranking puts the planted inputs first
            assert {f for f, _ in v.top[: len(want)]} == want


def test_dead_latent_is_flagged_everywhere(exp, out) -> None:  # noqa: ANN001
    page = exp.latent("z3")
    assert page.flags and page.flags[0].startswith("dead")
    assert page.consensus == [] and page.agreement is None  # no explainer attributes it to any input
    assert aeinterp.code_page(out).summary.dead == ["z3"]
    html = (out / "report.html").read_text()
    row = re.search(r"data-latent-link=\"z3\">z3</a></td>.*?</tr>", html).group(0)
    assert ">dead<" in row


def test_duplicated_latent_is_listed_as_correlated(exp, out) -> None:  # noqa: ANN001
    name, r, mi = exp.latent("z0").correlated[0]
    assert name == "z4" and r >= 0.99 and mi > 1.0
    assert aeinterp.latent_page(out, "z4").correlated[0][:1] == ("z0",)
    dup = aeinterp.code_page(out).summary.duplicates
    assert [(a, b) for a, b, _ in dup] == [("z0", "z4")] and dup[0][2] >= 0.99


def test_does_lists_the_decoder_columns_signed(planted, exp) -> None:  # noqa: ANN001
    z = _codes(planted, exp)
    w = planted.model.module.decoder.weight.detach().numpy()  # (outputs, latents): linear decoder
    for j in (0, 1, 2):
        lo, hi = np.quantile(z[:, j], [0.1, 0.9])
        effect = w[:, j] * (hi - lo)
        page = exp.latent(f"z{j}")
        dec = page.effects[0]
        assert dec["source"] == "decoder" and dec["signed"]
        for name, v in dec["up"] + dec["down"]:
            assert v == pytest.approx(float(effect[int(name[1:])]), rel=1e-4, abs=1e-6)
        assert {n for n, _ in dec["up"]} == {f"x{i}" for i in np.flatnonzero(effect > 0.05 * np.abs(effect).max())}
        assert {n for n, _ in dec["down"]} == {f"x{i}" for i in np.flatnonzero(effect < -0.05 * np.abs(effect).max())}


def test_when_high_shows_the_top_and_quantile_rows(planted, exp) -> None:  # noqa: ANN001
    z = _codes(planted, exp)
    page = exp.latent("z1")
    assert page.values is not None and len(page.values) == len(exp.data.explain_index)
    np.testing.assert_allclose(page.values, z[:, 1], rtol=1e-5, atol=1e-6)
    best = np.sort(z[:, 1])[::-1][:5]
    np.testing.assert_allclose([r["z"] for r in page.top_rows], best, rtol=1e-5)
    assert [r["sample"] for r in page.top_rows] == [int(exp.data.explain_index[i]) for i in np.argsort(-z[:, 1], kind="stable")[:5]]
    x = exp.data.x_explain
    first = page.top_rows[0]
    assert first["values"] == pytest.approx([float(x[first["row"], int(f[1:])]) for f in page.row_features], rel=1e-6)
    for r, q in zip(page.quantile_rows, (0.05, 0.25, 0.5, 0.75, 0.95)):
        assert abs(r["z"] - np.quantile(z[:, 1], q)) <= np.ptp(z[:, 1]) / 20
    html = page_html(page)
    assert "aria-label='histogram'" in html and "top-activating samples" in html


def test_html_ranks_a_signed_explainer_by_its_importance(exp, out) -> None:  # noqa: ANN001
    """The per-step card of a latent follows the step's importance (a mean signed attribution cancels)."""
    e = exp["deepshap"]
    assert e.local is not None
    html = (out / "report.html").read_text()
    for j in (0, 1, 2):
        section = re.search(rf"<section class=\"latent-view\" data-latent=\"z{j}\".*?</section>", html, re.S).group(0)
        card = section.split('<a href="#step-deepshap">deepshap</a>')[1].split("</div></div>")[0]
        shown = re.findall(r"<span class='l' title='([^']+)'>", card)
        k = len(DEPS[j])
        expected = [e.feature_names[i] for i in np.argsort(-e.importance[j], kind="stable")[:k]]
        assert shown[:k] == expected
        stepview = re.search(r"data-step='deepshap'>.*?</div></div>", section, re.S).group(0)
        assert re.findall(r"<span class='l'>([^<]+)</span>", stepview)[:k] == expected


def test_terminal_page_fits_80_columns(exp, out) -> None:  # noqa: ANN001
    buf = StringIO()
    Console(file=buf, width=80, color_system=None).print(exp.latent("z1"))
    text = buf.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "drives: x" in text and "does: [decoder]" in text and "top-activating samples" in text
    cli = StringIO()
    assert main(["show", str(out), "--latent", "z1"], console=Console(file=cli, width=80, color_system=None)) == 0
    shown = cli.getvalue()
    assert max(len(line) for line in shown.splitlines()) <= 80
    assert re.search(r"drives: (x[234], ){2}x[234]", shown), shown
    overview = StringIO()
    assert main(["show", str(out)], console=Console(file=overview, width=80, color_system=None)) == 0
    assert "the code as a whole" in overview.getvalue() and "z3" in overview.getvalue()
    bad = StringIO()
    assert main(["show", str(out), "--latent", "z9"], console=Console(file=bad, width=80, color_system=None)) != 0
    assert "no latent 'z9'" in bad.getvalue()


def test_pages_rebuild_from_the_results_folder_alone(exp, out) -> None:  # noqa: ANN001
    (out / "report.html").unlink()
    results = load_results(out)
    render_reports(results, None, console=None, options=type("O", (), {"plots": False, "html": True, "top_k": 5})())
    html = (out / "report.html").read_text()
    assert html.count("data-latent-page=") == 5 and 'id="code"' in html and "aria-label='beeswarm'" in html
    assert load_codes(out) is not None and load_values(out) is not None
    facts = results.doc["latent_codes"]  # the label-free code facts, for machine readers of results.json
    assert facts["file"] == "latent_codes.npz" and facts["dead"] == ["z3"] and [d[:2] for d in facts["duplicates"]] == [["z0", "z4"]]
    a, b = exp.latent("z2"), aeinterp.latent_page(results, "z2")
    assert a.core == b.core and [c[0] for c in a.correlated] == [c[0] for c in b.correlated]
    np.testing.assert_allclose([c[1:] for c in a.correlated], [c[1:] for c in b.correlated], rtol=1e-6)
    assert a.effects == b.effects and a.top_rows == b.top_rows and a.consensus == b.consensus


def test_code_page_scores_known_factors(planted, exp) -> None:  # noqa: ANN001
    z = _codes(planted, exp)
    page = exp.code(factors=z[:, [2, 1, 0]], factor_names=["c", "b", "a"])
    s = page.summary
    assert s.factor_names == ["c", "b", "a"]
    # factors c and b live in one latent each; a lives in z0 and its copy z4, so its gaps are 0
    mig = s.scores["mig_per_factor"]
    assert mig[0] > 0.6 and mig[1] > 0.6 and mig[2] == pytest.approx(0.0, abs=1e-9)
    assert s.scores["sap"] == pytest.approx(2 / 3, abs=0.02)
    assert s.total_correlation > 1.0  # z0 and z4 are the same latent
    assert "MIG" in page._repr_html_() and "total correlation" in page._repr_html_()


def test_beeswarm_from_per_sample_top_features_when_local_is_over_budget(planted) -> None:  # noqa: ANN001
    full = aeinterp.explain(planted.model, planted.data.x, "deepshap", progress=False)
    # just over the 3-features budget: the full array (n x 5 x 8 float32) does not fit, each sample's top 3 do
    n = len(full.local)
    mb = n * 5 * 3 * 8 / 2**20 * 1.01
    small = aeinterp.explain_all(planted.model, planted.data.x, [("deepshap", {"local_max_mb": mb})], progress=False, raise_errors=True)
    e = small["deepshap"]
    assert e.local is None and e.arrays["local_top_index"].shape == (n, 5, 3) and e.extras["local"] == "top_k:3"
    view = small.latent("z1").steps[0]
    assert view.signed is not None
    order = [int(f[1:]) for f, _ in view.top]
    for col, f in enumerate(order[:3]):  # a planted input is in every sample's top 3 of z1: its values are exact
        np.testing.assert_allclose(view.signed[:, col], full.local[:, 1, f], rtol=1e-5, atol=1e-7)
    assert "aria-label='beeswarm'" in page_html(small.latent("z1"))


def test_a_third_party_result_lands_by_what_it_declares(planted, exp) -> None:  # noqa: ANN001
    names, feats = [f"z{i}" for i in range(5)], [f"x{i}" for i in range(8)]
    effect = np.zeros((5, 8))
    effect[1, 6], effect[1, 7] = 2.0, -3.0
    mine = Explanation(
        importance=np.abs(effect), feature_names=feats, target_names=names, arrays={"output_effect": effect}, explainer="mine"
    )
    hidden = Explanation(
        importance=np.ones((5, 8)),
        feature_names=feats,
        target_names=names,
        extras={"latent_section": "none", "summary": ["z1: hidden"]},
        explainer="other",
    )
    extended = aeinterp.api.Explanations(
        {**exp.explanations, "mine": mine, "other": hidden}, data=exp.data, model_info=exp.model_info, model=exp.model
    )
    page = extended.latent("z1")
    got = [e for e in page.effects if e["source"] == "mine"][0]
    assert got["up"] == [("x6", 2.0)] and got["down"] == [("x7", -3.0)]
    assert [v.alias for v in page.steps] == METHODS and not any(a == "other" for a, _ in page.lines)


@pytest.mark.parametrize(("shape", "kind", "mark"), [((1, 6, 6), "image", "<img class='ex'"), ((12, 3), "sequence", "<svg width='120'")])
def test_image_and_sequence_pages_show_the_samples(tmp_path: Path, shape: tuple[int, ...], kind: str, mark: str) -> None:
    torch.manual_seed(0)
    x = np.random.default_rng(0).random((60, *shape)).astype(np.float32)
    size = int(np.prod(shape))

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(size, 2))
            self.dec = torch.nn.Sequential(torch.nn.Linear(2, size), torch.nn.Unflatten(1, shape))

        def encode(self, v: torch.Tensor) -> torch.Tensor:
            return self.enc(v)

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return self.dec(z)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.decode(self.encode(v))

    exp = aeinterp.explain_all(Tiny(), x, ["integrated_gradients"], progress=False, raise_errors=True)
    page = exp.latent("z0")
    assert page.data_kind == kind and page.examples
    html = page_html(page)
    assert html.count(mark) == 10  # the five top-activating and the five quantile samples, drawn
    exp.report(tmp_path)
    assert aeinterp.latent_page(tmp_path, "z1").examples  # kept in latent_codes.npz


def test_unknown_latent_is_a_clear_error(exp) -> None:  # noqa: ANN001
    with pytest.raises(aeinterp.AeinterpError, match="no latent 'z7'.*z0, z1"):
        exp.latent("z7")


@pytest.mark.slow  # starts a Jupyter kernel (~20 s on a loaded machine)
def test_notebook_renders_a_latent_page(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import aeinterp\nfrom aeinterp.testing.planted import planted_autoencoder\np = planted_autoencoder(n_samples=200)\n"
            "exp = aeinterp.explain_all(p.model, p.data.x, ['deepshap', 'permutation'], progress=False)"
        ),
        nbformat.v4.new_code_cell("exp.latent('z1')"),
    ]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    html = "".join(o.get("data", {}).get("text/html", "") for o in nb.cells[1].outputs)
    assert "data-latent-page='z1'" in html and "What drives it" in html and "font:14px" in html


def _factor_recipe(tmp_path: Path, size: list[str] | None = None) -> Path:
    """Six columns driven by two known factors (a number and a category) that are kept out of the features."""
    rng = np.random.default_rng(0)
    n = 240
    size_values = rng.normal(size=n)
    kind = rng.choice(["round", "square"], size=n)
    k = (kind == "square").astype(float)
    x = np.column_stack([size_values, 2 * size_values, k, -k, rng.normal(size=n) * 0.1, rng.normal(size=n) * 0.1])
    x = x + 0.05 * rng.normal(size=x.shape)
    rows = [",".join([*(f"{v:.5f}" for v in r), (size or [f"{s:.5f}" for s in size_values])[i], kind[i]]) for i, r in enumerate(x)]
    (tmp_path / "d.csv").write_text("a,b,c,d,e,f,size,kind\n" + "\n".join(rows) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "data: {path: d.csv, factors: [size, kind]}\n"
        "model: {builtin: mlp, latent_dim: 2, options: {hidden: [8]}, train: {epochs: 60}}\n"
        "cache: false\nreport: {terminal: false, plots: false, html: true}\n"
        "explainers:\n  - name: permutation\noutput: out\n"
    )
    return recipe


def test_recipe_factors_are_kept_out_of_the_features_and_score_the_code(tmp_path: Path) -> None:
    recipe = _factor_recipe(tmp_path)
    code = main(["run", str(recipe), "--quiet"], console=Console(file=StringIO(), width=120))
    assert code == 0
    results = load_results(tmp_path / "out")
    assert results.explanations["permutation"].feature_names == ["a", "b", "c", "d", "e", "f"]
    codes = load_codes(tmp_path / "out")
    assert codes is not None and codes.factor_names == ["size", "kind"]
    assert codes.factors.shape == (len(codes.codes), 2)
    table = np.genfromtxt(tmp_path / "d.csv", delimiter=",", skip_header=1, dtype=str)
    rows = np.asarray(codes.sample_index)  # the explained rows, in the codes' order
    np.testing.assert_allclose(codes.factors[:, 0], table[rows, 6].astype(float))
    np.testing.assert_array_equal(codes.factors[:, 1], (table[rows, 7] == "square").astype(float))  # sorted categories: round 0
    from aeinterp.report import latent_source
    from aeinterp.report.code_page import build_code_page

    page = build_code_page(latent_source(results))
    assert page.factor_source == "the data's factors" and page.summary.factor_names == ["size", "kind"]
    assert 0.0 <= page.summary.scores["mig"] <= 1.0 and page.summary.scores["informativeness"] > 0.6  # the code carries both factors
    assert "MIG" in (tmp_path / "out" / "report.html").read_text()


def test_a_factor_with_a_missing_value_is_refused(tmp_path: Path) -> None:
    recipe = _factor_recipe(tmp_path, size=["1.0"] * 239 + [""])
    buf = StringIO()
    code = main(["run", str(recipe), "--quiet"], console=Console(file=buf, width=200))
    assert code != 0 and "factor column 'size' has missing" in buf.getvalue() and "Traceback" not in buf.getvalue()
