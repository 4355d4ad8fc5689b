"""symbolic_regression: planted formulas, tree-based usage, fidelity on the held-out split, backends."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch
from aeinterp_symbolic import formulas as F
from aeinterp_symbolic.backends import SearchSettings
from aeinterp_symbolic.explainer import SymbolicRegression
from aeinterp_symbolic.inputs import screen
from aeinterp_symbolic.julia import PySRUnavailableError, find_julia, pysr_problems, require_pysr
from aeinterp_symbolic.search import choose
from torch import nn

from aeinterp import TorchAutoencoder, explain
from aeinterp.data import ArrayDataset, element_names, make_groups, split_indices
from aeinterp.errors import AeinterpError, DataError
from aeinterp.explanation import Explanation
from aeinterp.model import evaluate
from aeinterp.testing import ExplainerConformance

FAST = {"population_size": 100, "generations": 15, "max_size": 15, "threads": 2, "time_budget": None, "seed": 1}


class TestSymbolicConformance(ExplainerConformance):
    explainer = SymbolicRegression
    # linear planted latents: the formula must use exactly the planted inputs (no tie-breaking luck);
    # the non-linear planted formulas are tested below
    params = {**FAST, "operators": ["add", "sub", "mul"]}
    ground_truth = True
    linear_planted = True

    @pytest.mark.parametrize("target", ["latent", "reconstruction", "reconstruction_error"])
    def test_shapes_for_each_target(self, planted, target: str) -> None:  # noqa: ANN001
        """As the base test, except that decoder formulas have the latent code as their inputs."""
        if target != "reconstruction":
            super().test_shapes_for_each_target(planted, target)
            return
        # decoder formulas: rows are reconstructed features, columns the latent code
        result = self._run(planted, target)
        k = len(planted.dependencies)
        assert set(result.extras["dims"]) == set(range(planted.data.n_features))
        assert result.importance.shape == (planted.data.n_features, k)
        assert result.feature_names == [f"z{j}" for j in range(k)]
        assert np.isfinite(result.importance).all()
        assert result.target == "reconstruction"
        assert min(f["r2"] for f in result.extras["formulas"]) > 0.99  # the planted decoder is linear

    def test_planted_formulas_are_exact(self, planted) -> None:  # noqa: ANN001
        result = self._run(planted)
        assert (result.arrays["usage"] == planted.relevant()).all()
        assert result.arrays["r2"].min() > 0.9999


# --- planted formulas ------------------------------------------------------------------------


class PlantedFormulas(nn.Module):
    """z0 = 2*x3 - x7, z1 = sin(x1)*x2, z2 = x5^2, z3 = 3*x10 + 1; the decoder sums the code."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.decoder = nn.Linear(4, n_features, bias=False)
        self.decoder.weight.data.fill_(1.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([2 * x[:, 3] - x[:, 7], torch.sin(x[:, 1]) * x[:, 2], x[:, 5] ** 2, 3 * x[:, 10] + 1], dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


PLANTED = {0: {3, 7}, 1: {1, 2}, 2: {5}, 3: {10}}


def _tabular(x: np.ndarray, names: list[str] | None = None) -> ArrayDataset:
    d = x.shape[1]
    names = names or element_names("tabular", (d,))
    fit, ex = split_indices(len(x), seed=0)
    return ArrayDataset(
        x=x, kind="tabular", feature_names=names, groups=make_groups("tabular", (d,), feature_names=names), fit_index=fit, explain_index=ex
    )


@pytest.fixture(scope="module")
def formulas_case() -> tuple[TorchAutoencoder, ArrayDataset]:
    x = np.random.default_rng(0).normal(size=(400, 12)).astype(np.float32)  # float32, as loaders give
    return TorchAutoencoder(PlantedFormulas(12), (12,)), _tabular(x)


@pytest.fixture(scope="module")
def planted_result(formulas_case) -> Explanation:  # noqa: ANN001
    model, data = formulas_case
    params = {**FAST, "population_size": 300, "generations": 40, "max_size": 20, "operators": ["add", "sub", "mul", "div", "sin", "square"]}
    return explain(SymbolicRegression, model, data, seed=0, params=params)


def test_planted_formulas_recovered_with_exactly_the_planted_variables(planted_result: Explanation) -> None:
    r = planted_result
    for t, deps in PLANTED.items():
        rec = r.extras["formulas"][t]
        assert set(rec["features"]) == {f"x{j}" for j in deps}, rec
        assert rec["r2"] >= 0.99 and rec["explained"], rec
        assert set(np.flatnonzero(r.arrays["usage"][t])) == deps
    assert r.extras["not_explained"] == []


def test_exact_formulas_are_algebraically_equivalent(planted_result: Explanation) -> None:
    x = {f"x{j}": sympy.Symbol(f"x{j}") for j in range(12)}
    truth = {0: 2 * x["x3"] - x["x7"], 2: x["x5"] ** 2, 3: 3 * x["x10"] + 1}
    for t, expected in truth.items():
        got = sympy.sympify(planted_result.extras["formulas"][t]["formula"], locals=x)
        diff = sympy.simplify(got - expected)
        assert diff == 0 or abs(float(diff)) < 1e-3, (t, got)


def test_usage_comes_from_the_tree_x1_is_not_x10(planted_result: Explanation) -> None:
    names = planted_result.feature_names
    row = planted_result.importance[3]  # z3 = 3*x10 + 1
    assert row[names.index("x10")] > 0.99
    assert row[names.index("x1")] == 0.0 and row[names.index("x0")] == 0.0
    # and at the level of the expression tree
    s = F.make_symbols(12)
    expr = 3 * s[10] + sympy.sin(s[11])
    assert {i for i, sym in enumerate(s) if sym in expr.free_symbols} == {10, 11}


def test_fidelity_is_measured_on_the_held_out_split(planted_result: Explanation, formulas_case) -> None:  # noqa: ANN001
    model, data = formulas_case
    z = model.encode(torch.as_tensor(data.x_explain)).double().numpy()
    syms = {n: sympy.Symbol(n) for n in data.feature_names}
    for t in range(4):
        rec = planted_result.extras["formulas"][t]
        f = sympy.lambdify(list(syms.values()), sympy.sympify(rec["formula"], locals=syms), "numpy")
        pred = np.broadcast_to(f(*data.x_explain.astype(np.float64).T), (len(z),))
        r2, rmse = F.r2_rmse(z[:, t], pred)
        assert r2 == pytest.approx(rec["r2_displayed"], abs=1e-9)
        assert r2 == pytest.approx(rec["r2"], abs=1e-3)
    assert planted_result.arrays["r2"].shape == (4,)


def test_importance_weightings(planted_result: Explanation, formulas_case) -> None:  # noqa: ANN001
    r = planted_result
    usage, r2 = r.arrays["usage"], r.arrays["r2"]
    np.testing.assert_allclose(r.importance, np.clip(r2, 0, 1)[:, None] * usage)
    sens = r.arrays["sensitivity"]
    assert sens[0, 3] == pytest.approx(2.0, rel=1e-3) and sens[0, 7] == pytest.approx(1.0, rel=1e-3)
    assert sens[3, 10] == pytest.approx(3.0, rel=1e-3)
    assert (sens[usage == 0] == 0).all()
    model, data = formulas_case
    fast = {**FAST, "dims": [0], "operators": ["add", "sub", "mul"]}
    zero_one = explain(SymbolicRegression, model, data, seed=0, params={**fast, "importance": "usage"})
    assert set(np.unique(zero_one.importance)) == {0.0, 1.0}
    by_sens = explain(SymbolicRegression, model, data, seed=0, params={**fast, "importance": "sensitivity"})
    assert by_sens.importance[0, 3] == pytest.approx(2.0 * by_sens.arrays["r2"][0], rel=1e-3)


def test_dims_restrict_the_targets(formulas_case) -> None:  # noqa: ANN001
    model, data = formulas_case
    r = explain(SymbolicRegression, model, data, seed=0, params={**FAST, "dims": [2], "operators": ["add", "mul", "square"]})
    assert r.extras["dims"] == [2] and [f["target"] for f in r.extras["formulas"]] == ["z2"]
    # only the searched rows: no zero rows a report could call dead latents
    assert r.target_names == ["z2"] and r.importance.shape == (1, 12) and r.arrays["r2"].shape == (1,)
    assert r.extras["n_rows_total"] == 4 and r.extras["formulas"][0]["index"] == 2
    assert r.extras["never_used"] == [n for n in data.feature_names if n != "x5"] == r.extras["redundant_features"]
    with pytest.raises(DataError, match="out of range"):
        explain(SymbolicRegression, model, data, seed=0, params={**FAST, "dims": [7]})


def test_pyoperon_predict_gets_float64(formulas_case) -> None:  # noqa: ANN001
    """pyoperon 0.6.2 returns garbage for float32 input to predict; our predictor must not."""
    from aeinterp_symbolic._operon import OperonBackend

    _, data = formulas_case
    x32 = data.x_fit[:, :4]
    assert x32.dtype == np.float32
    y = 2 * x32[:, 3].astype(np.float64) - x32[:, 0]
    syms = F.make_symbols(4)
    settings = SearchSettings(
        operators=("add", "sub", "mul"),
        max_size=10,
        generations=10,
        population_size=100,
        time_budget=None,
        threads=1,
        seed=0,
        optimizer_iterations=5,
    )
    result = OperonBackend().search(x32.astype(np.float64), y, syms, ["a", "b", "c", "d"], settings)
    for cand in result.candidates:
        via_engine = cand.predict(x32)  # float32 in
        via_sympy = F.compile_expr(cand.expr, syms)(x32.astype(np.float64))
        np.testing.assert_allclose(via_engine, via_sympy, rtol=1e-4, atol=1e-4)
    best = max(F.r2_rmse(y, c.predict(x32))[0] for c in result.candidates)
    assert best > 0.999


def test_operon_trees_translate_to_sympy_exactly() -> None:
    """Each operator, operand order of sub/div/pow, n-ary nodes and variable weights, against Operon's evaluator."""
    import pyoperon as op
    from aeinterp_symbolic._operon import tree_to_sympy

    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(0.5, 2.0, 50), rng.uniform(-1.0, 1.0, 50), np.zeros(50)])
    ds = op.Dataset(np.asfortranarray(x))
    variables = sorted(ds.Variables, key=lambda v: v.Index)
    columns = {v.Hash: v.Index for v in variables}
    syms = F.make_symbols(3)

    def var(i: int, w: float = 1.0):  # noqa: ANN202
        node = op.Node.Variable(w)
        node.HashValue = node.CalculatedHashValue = variables[i].Hash
        return node

    def node(kind: str, arity: int | None = None):  # noqa: ANN202
        n = op.Node(getattr(op.NodeType, kind))
        if arity is not None:
            n.Arity = arity
        return n

    trees = [[var(0, 1.5), var(1), node(k)] for k in ("Add", "Sub", "Mul", "Div", "Pow", "Aq", "Powabs")]
    trees += [
        [var(1, 0.7), node(k)] for k in ("Square", "Exp", "Sin", "Cos", "Tan", "Tanh", "Sinh", "Cosh", "Atan", "Abs", "Logabs", "Sqrtabs")
    ]
    trees += [[var(0), node(k)] for k in ("Sqrt", "Log")]
    trees += [
        [var(0), var(1), op.Node.Constant(3.0), node("Sub", 3)],
        [var(0), var(1), op.Node.Constant(3.0), node("Div", 3)],
        [var(0), node("Sub", 1)],
    ]
    dt = op.DispatchTable()
    for nodes in trees:
        tree = op.Tree(nodes).UpdateNodes()
        want = op.Evaluate(dt, tree, ds, op.Range(0, 50))
        got = F.compile_expr(tree_to_sympy(tree, columns, syms), syms)(x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(tree_to_sympy(tree, columns, syms)))


def test_selection_rule_prefers_the_simplest_within_parsimony() -> None:
    assert choose([0.5, 0.985, 0.99, 0.999], [3, 7, 9, 20], parsimony=0.02) == 1
    assert choose([0.5, 0.985, 0.99, 0.999], [3, 7, 9, 20], parsimony=0.0) == 3
    assert choose([-math.inf, 0.9, 0.9], [1, 5, 4], parsimony=0.01) == 2
    assert choose([-math.inf], [1], parsimony=0.01) is None


def test_rendering_uses_real_names_in_text_and_latex() -> None:
    s = F.make_symbols(3)
    expr = F.round_floats(sympy.Float(2.00000001) * s[0] - s[2] + sympy.Float(0.123456789), 4)
    names = {s[0]: "mean radius", s[1]: "x1", s[2]: "worst_area"}
    assert F.render_text(expr, names) == "2*`mean radius` - worst_area + 0.1235"
    latex = F.render_latex(expr, names)
    assert r"\mathrm{mean\ radius}" in latex and r"\mathrm{worst\_area}" in latex


def test_time_budget_is_honoured(formulas_case) -> None:  # noqa: ANN001
    model, data = formulas_case
    params = {**FAST, "dims": [1], "generations": 10**6, "time_budget": 1.0}
    r = explain(SymbolicRegression, model, data, seed=0, params=params)
    rec = r.extras["formulas"][0]
    assert rec["search_s"] < 2.0 and rec["generations"] < 10**6


def test_progress_reports_each_target(formulas_case) -> None:  # noqa: ANN001
    class Recorder:
        def __init__(self) -> None:
            self.steps: list[tuple[str, int]] = []

        def track(self, iterable, *, total=None, description=""):  # noqa: ANN001, ANN201
            for item in iterable:
                self.steps.append((description, total))
                yield item

    model, data = formulas_case
    rec = Recorder()
    SymbolicRegression({**FAST, "dims": [0, 2], "operators": ["add", "sub", "mul"]}, progress=rec).explain(
        model, data, target="latent", rng=np.random.default_rng(0)
    )
    assert rec.steps == [("symbolic regression (latent)", 2)] * 2


def test_reconstruction_target_gives_decoder_formulas(formulas_case) -> None:  # noqa: ANN001
    model, data = formulas_case
    r = explain(
        SymbolicRegression,
        model,
        data,
        target="reconstruction",
        seed=0,
        params={**FAST, "dims": [0, 5], "operators": ["add", "sub", "mul"]},
    )
    assert r.feature_names == ["z0", "z1", "z2", "z3"] and r.target_names[0] == "x0^"
    for rec in r.extras["formulas"]:
        assert set(rec["features"]) == {"z0", "z1", "z2", "z3"} and rec["r2"] > 0.99


def test_sequences_are_explained_through_group_means() -> None:
    class SeqEncoder(nn.Module):
        def encode(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, T, F)
            m = x.mean(dim=1)
            return torch.stack([2 * m[:, 1], m[:, 0] - m[:, 2]], dim=1)

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return z[:, None, :1].expand(-1, 6, 3)

    x = np.random.default_rng(1).normal(size=(300, 6, 3)).astype(np.float32)
    names = element_names("sequence", (6, 3), ["temp", "flow", "load"])
    fit, ex = split_indices(300, seed=0)
    groups = make_groups("sequence", (6, 3), feature_names=names, base_names=["temp", "flow", "load"])
    data = ArrayDataset(x=x, kind="sequence", feature_names=names, groups=groups, fit_index=fit, explain_index=ex)
    r = explain(
        SymbolicRegression, TorchAutoencoder(SeqEncoder(), (6, 3)), data, seed=0, params={**FAST, "operators": ["add", "sub", "mul"]}
    )
    assert r.feature_names == ["temp", "flow", "load"]
    assert r.extras["formulas"][0]["formula"] == "2*flow"
    assert set(r.extras["formulas"][1]["features"]) == {"temp", "load"} and r.arrays["r2"].min() > 0.999
    assert "mean of its elements" in r.extras["inputs"]


def test_images_with_a_prescreen_of_pixels(image_model) -> None:  # noqa: ANN001
    model, data = image_model
    params = {**FAST, "dims": [0, 1], "max_features": 8, "prescreen": "correlation", "operators": ["add", "sub", "mul"]}
    r = explain(SymbolicRegression, model, data, seed=0, params=params)
    assert r.importance.shape == (2, 64) and r.feature_names == data.group_names
    z = evaluate(model.encode, data.x_fit, model=model).double().numpy()
    pixels = data.x_fit.reshape(len(z), -1).astype(np.float64)  # one channel: a pixel group is one element
    for rec, t in zip(r.extras["formulas"], (0, 1)):
        corr = np.abs([np.corrcoef(pixels[:, j], z[:, t])[0, 1] if pixels[:, j].std() > 0 else 0.0 for j in range(64)])
        top = {data.group_names[j] for j in np.argsort(-corr)[:12]}
        assert rec["inputs_considered"] == 8 and set(rec["features"]) <= top
        assert rec["r2"] > 0.5


def test_screening_by_name_and_by_prescreen(formulas_case) -> None:  # noqa: ANN001
    model, data = formulas_case
    x = data.x_fit.astype(np.float64)
    y = np.column_stack([2 * x[:, 3] - x[:, 7], np.sin(x[:, 1]) * x[:, 2]])
    names = data.feature_names
    rng = np.random.default_rng(0)
    mi = screen(x, y, names, features=None, max_features=2, method="mutual_info", rng=rng)
    assert [set(c) for c in mi] == [{3, 7}, {1, 2}]
    corr = screen(x, y, names, features=None, max_features=2, method="correlation", rng=rng)
    assert set(corr[0]) == {3, 7}
    assert [list(c) for c in screen(x, y, names, features=["x7", "x3"], max_features=None, method="variance", rng=rng)] == [[3, 7]] * 2
    with pytest.raises(DataError, match="did you mean 'x3'"):
        screen(x, y, names, features=["x33"], max_features=None, method="variance", rng=rng)
    r = explain(
        SymbolicRegression,
        model,
        data,
        seed=0,
        params={**FAST, "dims": [0], "features": ["x3", "x7", "x1"], "operators": ["add", "sub", "mul"]},
    )
    assert r.extras["formulas"][0]["inputs_considered"] == 3 and r.extras["formulas"][0]["features"] == ["x3", "x7"]


def test_figures_survive_a_round_trip(planted_result: Explanation, tmp_path: Path) -> None:
    path = tmp_path / "sr.npz"
    planted_result.save_arrays(path)
    again = Explanation.from_json(json.loads(json.dumps(planted_result.to_json())), path)
    figs = SymbolicRegression.figures(again)
    assert set(figs) == {"fidelity", "pareto", "usage"}
    assert all(f.axes for f in figs.values())


# --- pysr / Julia ----------------------------------------------------------------------------


def _no_julia_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    for var in ("PYTHON_JULIACALL_BINDIR", "PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE", "PYTHON_JULIAPKG_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", str(tmp_path / "julia_env"))


def test_find_julia_respects_the_environment(tmp_path: Path) -> None:
    bindir = tmp_path / "julia-1.11" / "bin"
    bindir.mkdir(parents=True)
    exe = bindir / "julia"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    base = {"PATH": str(tmp_path / "nowhere"), "PYTHON_JULIAPKG_PROJECT": str(tmp_path / "proj")}
    assert not find_julia(base).available
    assert find_julia({**base, "PYTHON_JULIACALL_BINDIR": str(bindir)}).source == "PYTHON_JULIACALL_BINDIR"
    assert find_julia({**base, "PYTHON_JULIAPKG_EXE": str(exe)}).executable == str(exe)
    assert find_julia({**base, "PATH": str(bindir)}).source == "PATH"
    installed = tmp_path / "proj" / "pyjuliapkg" / "install" / "bin"
    installed.mkdir(parents=True)
    (installed / "julia").write_text("#!/bin/sh\n")
    (installed / "julia").chmod(0o755)
    assert find_julia(base).source == "juliapkg install"
    offline = find_julia({"PATH": "", "PYTHON_JULIAPKG_PROJECT": str(tmp_path / "none"), "PYTHON_JULIAPKG_OFFLINE": "yes"})
    assert offline.offline and not offline.available
    assert any(
        "offline" in p.lower()
        for p in pysr_problems(environ={"PATH": "", "PYTHON_JULIAPKG_PROJECT": str(tmp_path), "PYTHON_JULIAPKG_OFFLINE": "yes"})
    )


def test_missing_julia_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, formulas_case) -> None:  # noqa: ANN001
    _no_julia_env(monkeypatch, tmp_path)
    with pytest.raises(PySRUnavailableError) as info:
        require_pysr()
    msg = str(info.value)
    for needle in (
        "no Julia runtime was found",
        "julialang.org",
        "PYTHON_JULIAPKG_EXE",
        "PYTHON_JULIACALL_BINDIR",
        "PYTHON_JULIAPKG_OFFLINE",
        "backend: pyoperon",
    ):
        assert needle in msg
    assert isinstance(info.value, AeinterpError) and info.value.plugin == "symbolic_regression"
    model, data = formulas_case
    with pytest.raises(PySRUnavailableError, match="Julia"):  # up front, from check(), through the public API
        explain(SymbolicRegression, model, data, params={"backend": "pysr"})
    assert "juliacall" not in sys.modules


@pytest.mark.skipif(bool(pysr_problems()), reason="pysr backend unavailable: " + "; ".join(pysr_problems())[:300])
def test_pysr_backend_recovers_a_planted_formula(formulas_case) -> None:  # noqa: ANN001
    model, data = formulas_case
    params = {
        "backend": "pysr",
        "dims": [0, 2],
        "generations": 20,
        "population_size": 30,
        "threads": 1,
        "seed": 0,
        "operators": ["add", "sub", "mul", "square"],
    }
    r = explain(SymbolicRegression, model, data, seed=0, params=params)
    for t, deps in ((0, {3, 7}), (2, {5})):
        rec = next(f for f in r.extras["formulas"] if f["target"] == f"z{t}")
        assert set(rec["features"]) == {f"x{j}" for j in deps} and rec["r2"] >= 0.99


def test_missing_julia_in_a_run_leaves_other_steps_ok(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run_recipe) -> None:  # noqa: ANN001
    _no_julia_env(monkeypatch, tmp_path)
    recipe = {
        "seed": 0,
        "data": {"builtin": "synthetic_tabular", "max_samples": 200},
        "model": {"builtin": "mlp", "latent_dim": 2, "options": {"hidden": [8]}, "train": {"epochs": 3}},
        "explainers": [
            {"name": "symbolic_regression", "alias": "sr_pysr", "params": {"backend": "pysr"}},
            {"name": "symbolic_regression", "alias": "sr_operon", "params": {**FAST, "generations": 5}},
            {"name": "permutation", "params": {"repeats": 1}},
        ],
        "output": "out",
    }
    results = run_recipe(recipe)
    status = {e["alias"]: e for e in results["explainers"]}
    assert status["sr_pysr"]["status"] == "error" and "no Julia runtime was found" in status["sr_pysr"]["error"]
    assert status["sr_operon"]["status"] == "ok" and status["permutation"]["status"] == "ok"


# --- discovery, law --------------------------------------------------------------------------


def test_discovery_imports_no_heavy_library() -> None:
    code = (
        "import sys; from importlib.metadata import entry_points;"
        "ep = [e for e in entry_points(group='aeinterp') if e.name == 'symbolic'][0];"
        "from aeinterp.plugins.registry import ExplainerRegistry; r = ExplainerRegistry(); ep.load().aeinterp_register_explainers(r);"
        "assert 'symbolic_regression' in r;"
        "print([m for m in ('sympy', 'pyoperon', 'pysr', 'juliacall', 'sklearn') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_latent_size_law() -> None:
    from aeinterp_symbolic.law import latent_size_law

    x = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    law = latent_size_law(
        _tabular(x),
        sizes=[1, 2, 3, 6],
        options={"hidden": [8]},
        train={"epochs": 8, "lr": 3e-3},
        params={"generations": 10, "population_size": 50, "threads": 2},
    )
    assert law.sizes == [1, 2, 3, 6] and len(law.errors) == 4 and all(e > 0 for e in law.errors)
    syms = {"latent_size": sympy.Symbol("latent_size")}
    f = sympy.lambdify(list(syms.values()), sympy.sympify(law.formula, locals=syms), "numpy")
    pred = np.broadcast_to(f(np.array(law.sizes, dtype=float)), (4,))
    np.testing.assert_allclose(pred, law.fitted, rtol=1e-3)  # the printed law is the fitted one
    np.testing.assert_allclose(np.array(law.fit_ratio), pred / np.array(law.errors), rtol=1e-3)
    log_r2 = F.r2_rmse(np.log(law.errors), np.log(pred))[0]
    assert log_r2 == pytest.approx(law.r2_in_sample, abs=1e-3)  # fitted and judged on log error
    assert len(law.loso_ratio) == 4 and {c["family"] for c in law.candidates} >= {"power+plateau", "exp+plateau", "power", "symbolic"}
    assert json.dumps(law.to_json()) and any(line.startswith("error = ") for line in law.lines())


def test_law_recovers_a_known_power_law_and_its_plateau() -> None:
    """Truth: error = 0.01 + 0.5 * L^-1.2 (3 % multiplicative noise): the plateau is found within 10 %."""
    from aeinterp_symbolic.lawfit import fit_law

    sizes = np.array([1, 2, 4, 8, 16, 32, 64])
    truth = 0.01 + 0.5 * sizes**-1.2
    noisy = truth * np.exp(np.random.default_rng(0).normal(0, 0.03, size=len(sizes)))
    law = fit_law(sizes, noisy)
    assert law.family == "power+plateau" and law.plateau == pytest.approx(0.01, rel=0.1)
    assert law.plateau_above == [] and law.warnings == []
    assert all(0.85 < r < 1.15 for r in law.loso_ratio)  # each size predicted from the others
    exact = fit_law(sizes, truth)
    assert exact.plateau == pytest.approx(0.01, rel=1e-4) and exact.loso_rms_log < 1e-4


def test_law_says_when_its_plateau_lies_above_measured_errors() -> None:
    """Errors of the issue (an exponential fitted on the raw scale put its plateau above L = 16 and 32)."""
    from aeinterp_symbolic.lawfit import fit_law

    sizes, errors = [2, 4, 8, 16, 32], [0.35, 0.12, 0.03, 0.0052, 0.0027]
    law = fit_law(sizes, errors, families=["exp+plateau"])
    assert law.plateau_above == [32] and law.plateau > errors[-1]
    assert "plateau" in law.warnings[0] and "above the measured error at latent size 32" in law.warnings[0]
    assert min(law.fit_ratio) > 0.5 and max(law.fit_ratio) < 2.0  # on log error no size is missed by 2x
    best = fit_law(sizes, errors)
    assert best.loso_rms_log <= law.loso_rms_log


USER_MODEL = """
import torch
from torch import nn


class TinyAE(nn.Module):
    \"\"\"A user's autoencoder: the latent size is the `code` keyword; encode/decode are named differently.\"\"\"

    def __init__(self, n_in, code, width=16):
        super().__init__()
        self.down = nn.Sequential(nn.Linear(n_in, width), nn.Tanh(), nn.Linear(width, code))
        self.up = nn.Sequential(nn.Linear(code, width), nn.Tanh(), nn.Linear(width, n_in))

    def compress(self, x):
        return self.down(x)

    def expand(self, z):
        return self.up(z)


CALLS = []


def fit(module, x_fit, *, epochs, lr, batch_size, seed):
    CALLS.append((epochs, lr, seed))
    x = torch.as_tensor(x_fit)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        loss = (module.expand(module.compress(x)) - x).pow(2).mean()
        loss.backward()
        opt.step()
"""


def test_law_trains_the_users_own_architecture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aeinterp_symbolic.law import latent_size_law
    from aeinterp_symbolic.law_explainer import LatentSizeLawExplainer

    from aeinterp.errors import ModelError

    (tmp_path / "my_models.py").write_text(USER_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    # data of intrinsic dimension 3: the error falls until L = 3, then flattens
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 3)) @ rng.normal(size=(3, 8)) + 0.05 * rng.normal(size=(300, 8))).astype(np.float32)
    data = _tabular(x)
    common = {"factory": "my_models:TinyAE", "kwargs": {"n_in": 8}, "latent_kwarg": "code", "encoder": "compress", "decoder": "expand"}
    law = latent_size_law(data, sizes=[1, 2, 3, 4], train={"epochs": 150, "lr": 1e-2}, symbolic=False, **common)
    assert law.architecture == "my_models:TinyAE" and law.trainer == "builtin"
    assert law.errors[0] > 3 * law.errors[2] and law.errors[3] < law.errors[1]
    import my_models  # noqa: PLC0415 - the module the factory named

    explained = explain(
        LatentSizeLawExplainer,
        None,
        data,
        target="reconstruction_error",
        params={**common, "trainer": "my_models:fit", "sizes": [1, 2, 4], "epochs": 30, "lr": 1e-2, "symbolic": False},
    )
    assert my_models.CALLS and {c[:2] for c in my_models.CALLS} == {(30, 1e-2)} and len(my_models.CALLS) == 3
    assert explained.extras["architecture"] == "my_models:TinyAE" and explained.extras["trainer"] == "my_models:fit"
    assert explained.extras["feature_axis"] == "latent size" and explained.arrays["errors"].shape == (3,)
    with pytest.raises(ModelError, match="code of 8 dims, not 1"):
        latent_size_law(
            data,
            sizes=[1, 2, 4],
            factory="my_models:TinyAE",
            kwargs={"n_in": 8, "code": 8},
            latent_kwarg="width",
            symbolic=False,
            train={"epochs": 1},
            encoder="compress",
            decoder="expand",
        )
    with pytest.raises(ModelError, match="no attribute"):
        latent_size_law(data, sizes=[1, 2, 4], factory="my_models:Nope", symbolic=False)


def test_features_from_an_earlier_step_limits_each_search(formulas_case) -> None:  # noqa: ANN001
    """`features_from` reads another step's importance: each latent searches only its top inputs."""
    from aeinterp_perturbation.explainers import ZeroAblation

    from aeinterp import run_explainer

    model, data = formulas_case
    earlier = run_explainer(ZeroAblation, model, data)
    params = {**FAST, "dims": [0, 2], "features_from": "ablation", "max_features": 2, "operators": ["add", "sub", "mul"]}
    r = SymbolicRegression(params, results={"ablation": earlier}).explain(model, data, target="latent", rng=np.random.default_rng(0))
    for row, d in enumerate((0, 2)):
        top2 = {data.group_names[i] for i in np.argsort(-earlier.importance[d])[:2]}
        used = {data.group_names[i] for i in np.flatnonzero(r.arrays["usage"][row])}
        assert used <= top2 and used, (d, used, top2)


def test_latent_size_law_step_reports_errors_and_a_law(tmp_path: Path) -> None:
    from aeinterp_symbolic.law_explainer import LatentSizeLawExplainer

    from aeinterp.io.datasets import load_dataset
    from aeinterp.report.plots import write_plots
    from aeinterp.runner import Runner

    data = load_dataset(builtin="wine")
    params = {"sizes": [1, 2, 4, 8], "epochs": 15, "generations": 10, "population_size": 50, "time_budget": None, "threads": 1}
    r = explain(LatentSizeLawExplainer, None, data, target="reconstruction_error", params=params)
    assert r.feature_names == ["latent=1", "latent=2", "latent=4", "latent=8"]
    errors = r.arrays["errors"]
    assert errors.shape == (4,) and errors[-1] < errors[0]  # more latent dims reconstruct better
    np.testing.assert_allclose(r.importance[0], (errors[0] - errors) / errors[0])
    assert "latent_size" in r.extras["law"] and any(line.startswith("error = ") for line in r.extras["summary"])
    assert r.extras["fitted_on"].startswith("log error") and len(r.extras["loso_ratio"]) == 4
    paths = write_plots(tmp_path, {"law": r}, Runner(allow=["symbolic"], quiet=True).registry)
    assert [p.name for p in paths["law"]] == ["law.png", "law.law.png"]


# --- the sparse linear baseline, the adaptive size cap, the usage table -------------------------


class ManyInputs(nn.Module):
    """z0 nearly linear in 30 of 40 inputs (plus a small interaction); z1 = x0 * x1 (not linear at all)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.linspace(0.3, 1.2, 30)
        self.decoder = nn.Linear(2, 40)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z0 = x[:, :30] @ self.w + 0.1 * torch.tanh(x[:, 0] * x[:, 1])
        return torch.stack([z0, x[:, 0] * x[:, 1]], dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


@pytest.fixture(scope="module")
def many_inputs() -> tuple[TorchAutoencoder, ArrayDataset, Explanation]:
    x = np.random.default_rng(3).normal(size=(600, 40)).astype(np.float32)
    model, data = TorchAutoencoder(ManyInputs(), (40,)), _tabular(x)
    params = {**FAST, "max_size": 15, "max_size_limit": 30, "operators": ["add", "sub", "mul"], "generations": 10}
    return model, data, explain(SymbolicRegression, model, data, seed=0, params=params)


def test_a_nearly_linear_latent_is_at_least_as_faithful_as_linear_regression(many_inputs) -> None:  # noqa: ANN001
    from sklearn.linear_model import LassoCV, LinearRegression

    model, data, r = many_inputs
    z_fit = evaluate(model.encode, data.x_fit, model=model).double().numpy()
    z_test = evaluate(model.encode, data.x_explain, model=model).double().numpy()
    ols = LinearRegression().fit(data.x_fit, z_fit[:, 0]).score(data.x_explain, z_test[:, 0])
    lasso = LassoCV(cv=3).fit(data.x_fit, z_fit[:, 0])
    lasso_r2, lasso_k = lasso.score(data.x_explain, z_test[:, 0]), int(np.count_nonzero(lasso.coef_))
    rec = r.extras["formulas"][0]
    # no closed form of <= 30 nodes can hold 30 weighted inputs: the linear candidate wins, and says so
    assert rec["family"] == "linear" and rec["closed_form"]["max_size"] <= 30
    assert rec["r2"] >= min(ols, lasso_r2) - 0.005 and rec["r2"] > 0.99
    assert len(rec["features"]) <= max(lasso_k, 30) and set(rec["features"]) <= {f"x{i}" for i in range(30)}
    base = rec["linear_baseline"]
    assert base["ols_r2"] == pytest.approx(ols, abs=0.005) and rec["r2"] >= base["r2"] - 1e-9
    assert rec["closed_form"]["r2"] < rec["r2"]
    line = r.extras["summary"][0]
    assert line.startswith(f"z0 ~ linear in {len(rec['features'])} inputs, R^2 ") and "best closed form with <= " in line
    np.testing.assert_allclose(r.arrays["linear_r2"][0], base["r2"])
    # z1 = x0 * x1: linear regression explains nothing, the closed form does
    rec1 = r.extras["formulas"][1]
    assert rec1["family"] == "closed form" and rec1["features"] == ["x0", "x1"] and rec1["r2"] > 0.999
    assert rec1["linear_baseline"]["r2"] < 0.1


def test_usage_table_matches_the_formulas(many_inputs, tmp_path: Path) -> None:  # noqa: ANN001
    _, data, r = many_inputs
    usage = r.extras["feature_usage"]
    recs = r.extras["formulas"]
    assert usage["n_formulas"] == len(recs) == 2
    for row in usage["table"]:
        users = [f for f in recs if row["feature"] in f["features"]]
        assert row["formulas"] == len(users)
        assert row["weighted"] == pytest.approx(sum(max(f["r2"], 0.0) for f in users))
    never = [n for n in data.feature_names if not any(n in f["features"] for f in recs)]
    assert usage["never_used"] == never == r.extras["never_used"] == r.extras["redundant_features"]
    assert set(never) >= {f"x{i}" for i in range(30, 40)}
    np.testing.assert_array_equal(r.arrays["usage_count"], r.arrays["usage"].sum(axis=0))
    weighted = [row["weighted"] for row in usage["table"]]
    assert weighted == sorted(weighted, reverse=True)
    assert r.extras["summary"][-1].startswith("feature usage (formulas using each input, of 2): x0 2, x1 2")
    assert f"never used ({len(never)} of 40)" in r.extras["summary"][-1]
    fig = SymbolicRegression.figures(r)["usage"]
    fig.savefig(tmp_path / "usage.png")
    assert len(fig.axes[0].patches) == 2 * (40 - len(never))


def test_the_size_cap_grows_while_the_front_improves(formulas_case) -> None:  # noqa: ANN001
    """A sum of 8 inputs needs ~15 nodes: from max_size 5 the cap doubles until the front stops improving."""

    class SumOf8(nn.Module):
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :8].sum(dim=1, keepdim=True)

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return z.expand(-1, 12)

    _, data = formulas_case
    model = TorchAutoencoder(SumOf8(), (12,))
    base = {**FAST, "max_size": 5, "max_size_limit": 40, "linear_baseline": False, "operators": ["add", "sub"], "generations": 20}
    r = explain(SymbolicRegression, model, data, seed=0, params=base)
    rec = r.extras["formulas"][0]
    sizes = [q["max_size"] for q in rec["rounds"]]
    assert sizes[:3] == [5, 10, 20] and rec["size_cap"] == sizes[-1]
    best = [q["best_r2_validation"] for q in rec["rounds"]]
    assert best[1] > best[0] + 0.002 and best[2] > best[1] + 0.002  # each growth was earned
    assert rec["stopped_by"] in {"converged", "size limit", "exact"} and rec["r2"] > 0.999
    fixed = explain(SymbolicRegression, model, data, seed=0, params={**base, "grow_size": False})
    rec = fixed.extras["formulas"][0]
    assert rec["stopped_by"] == "fixed" and [q["max_size"] for q in rec["rounds"]] == [5] and rec["r2"] < 0.99
    assert rec["linear_baseline"] == {} and "sparse linear" not in fixed.extras["summary"][0]


def test_selection_floor_of_the_linear_baseline() -> None:
    # the simplest formula within parsimony of the best is below the baseline: the baseline's level is required
    assert choose([0.90, 0.95, 0.96], [5, 30, 40], parsimony=0.1, floor=0.95) == 1
    # a formula with more inputs than the baseline must beat it by parsimony
    assert choose([0.955, 0.95], [20, 41], parsimony=0.01, floor=0.95, n_inputs=[25, 20], floor_inputs=20) == 1
    assert choose([0.97, 0.95], [20, 41], parsimony=0.01, floor=0.95, n_inputs=[25, 20], floor_inputs=20) == 0
    assert choose([0.97, 0.95], [20, 41], parsimony=0.03, floor=0.95, n_inputs=[25, 20], floor_inputs=20) == 1


def _prints_ok_in_a_subprocess(code: str) -> None:
    """Run ``code`` in a fresh interpreter with a 120 s timeout (a hang fails the test instead of the suite) and expect ``ok``."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_simplify_returns_on_nested_tanh_formulas() -> None:
    """sympy.simplify never returned on this 45-operation formula the search found (bench_ray's symbolic case hung in it)."""
    code = (
        "import sympy, numpy as np\n"
        "from aeinterp_symbolic import formulas as F\n"
        "xs = F.make_symbols(16)\n"
        "e = sympy.sympify('1.00235617160797*tanh(0.067931592464447*x13 + 0.000382104131858796*x14 + 0.0889875516295433*x4"
        " + 0.0480127558112144*x6 - 0.036341980099678*x7 - (-0.094056211411953*x11 + 0.0710524842143059*x4 + 0.365949630737305)"
        "*tanh(0.502308249473572*x14 + 2.17841625213623)*tanh(0.207235798239708*x10 - 0.0761124938726425*x2 + 0.879754796624184)"
        " - 0.275974018561831*(0.593039989471436*x12 + 0.215573876525234*x15 + 0.13644115626812*x4 + tanh(0.593553364276886*x12)"
        " + 2.62878531217575)*tanh(0.0644590631127357*x9 - 0.181834205985069) - tanh(0.0219671744853258*x11)) + 0.000410344044212252',"
        " locals={str(s): s for s in xs})\n"
        "out = F.simplify(e)\n"
        "x = np.random.default_rng(0).normal(size=(50, 16))\n"
        "assert sympy.count_ops(out) <= sympy.count_ops(e)\n"
        "np.testing.assert_allclose(F.compile_expr(out, xs)(x), F.compile_expr(e, xs)(x), rtol=1e-12)\n"
        "print('ok')\n"
    )
    _prints_ok_in_a_subprocess(code)


def test_render_text_of_a_nested_tanh_formula_prints_without_re_evaluating() -> None:
    """Substituting display symbols rebuilt this formula and sympy's tanh(...).is_real never returned (a search's
    Pareto front row hung the whole step); printing under other names returns at once."""
    code = (
        "import sympy\n"
        "from aeinterp_symbolic import formulas as F\n"
        "xs = F.make_symbols(16)\n"
        f"e = sympy.sympify(open({str(Path(__file__).parents[1] / 'fixtures' / 'nested_tanh_formula.txt')!r}).read(), locals={{str(s): s for s in xs}})\n"
        "text = F.render_text(e, {s: f'gene {s}' for s in xs})\n"
        "assert text.startswith('0.002447 - 1.009*tanh(tanh(-0.01499*`gene x2`'), text\n"
        "assert sympy.sympify(F.render_text(e, {s: str(s) for s in xs}), locals={str(s): s for s in xs}) == e\n"
        "print('ok')\n"
    )
    _prints_ok_in_a_subprocess(code)
