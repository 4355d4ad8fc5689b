"""Fuzzing the recipe front door (issue 12): recipe dicts, YAML texts and ``--set`` paths.

Whatever comes in, ``aeinterp validate`` ends with exit 0 or 2 and a message, never an internal
error (exit 3) or a traceback. Examples are bounded so this runs in seconds in CI.
"""

from __future__ import annotations

import functools
import io

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from aeinterp import cli
from aeinterp.errors import RecipeError
from aeinterp.recipe.schema import parse_recipe, plan_steps
from aeinterp.runner import Runner

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

BASE = {
    "seed": 0,
    "data": {"builtin": "synthetic_tabular", "split": {"seed": 1, "explain_fraction": 0.25}},
    "model": {"builtin": "mlp", "latent_dim": 2, "options": {"hidden": [8]}, "train": {"epochs": 2}},
    "explainers": [{"name": "permutation", "params": {"repeats": 2}}, {"name": "zero_ablation", "alias": "z"}],
    "targets": ["latent"],
    "output": "out",
}
KEYS = [
    "seed",
    "data",
    "model",
    "explainers",
    "targets",
    "output",
    "report",
    "builtin",
    "path",
    "latent_dim",
    "factory",
    "head",
    "task_dims",
    "save",
    "kwargs",
    "options",
    "train",
    "epochs",
    "name",
    "alias",
    "params",
    "timeout",
    "split",
    "explain_fraction",
    "groups",
    "kind",
    "trust",
    "format",
    "[/x]",
    "[bold]",
    "",
    "0",
    "-1",
    "x" * 300,
]
NAMES = [
    "permutation",
    "zero_ablation",
    "jacobian",
    "activation_atlas",
    "follower",
    "breast_cancer",
    "mlp",
    "latent",
    "prediction",
    "reconstruction",
    "builtins:open",
    "os:system",
    "math:sqrt",
    "../x",
    "/etc/passwd",
    "t.grid",
    "[/x]",
]


@functools.cache
def _runner() -> Runner:
    return Runner(quiet=True)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NAMES),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=20,
)


@st.composite
def mutated_recipes(draw: st.DrawFn) -> dict:
    """The base recipe with a few values replaced, removed or added at random paths."""
    import copy

    recipe = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 6))):
        node = recipe
        for _depth in range(draw(st.integers(0, 3))):
            if isinstance(node, dict) and node:
                child = node[draw(st.sampled_from(sorted(node, key=str)))]
            elif isinstance(node, list) and node:
                child = node[draw(st.integers(0, len(node) - 1))]
            else:
                break
            if not isinstance(child, (dict, list)):
                break
            node = child
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if isinstance(node, dict):
            key = draw(st.sampled_from(sorted(node, key=str))) if node and action != "add" else draw(st.sampled_from(KEYS))
            if action == "delete":
                node.pop(key, None)
            else:
                node[key] = draw(values)
        elif isinstance(node, list):
            if action == "delete" and node:
                node.pop(draw(st.integers(0, len(node) - 1)))
            else:
                node.append(draw(values))
    return recipe


def _validate_text(text: str, overrides: list[str] = ()) -> None:  # noqa: B006
    registry = _runner().registry
    try:
        plan_steps(parse_recipe(text, overrides=overrides, registry=registry), registry)
    except RecipeError as exc:
        assert str(exc) and len(str(exc)) < 60_000


@FUZZ
@given(mutated_recipes())
def test_mutated_recipe_dicts_validate_or_say_why(recipe: dict) -> None:
    _validate_text(yaml.safe_dump(recipe, allow_unicode=True))


YAML_BITS = [
    "\n",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!!",
    "'",
    '"',
    "#",
    "|",
    ">",
    "? ",
    "<<: *a",
    "\t",
    "  ",
    "~",
    "null",
    "1e400",
    "-1",
    "0x1F",
    ".nan",
    "2024-01-01",
    "[/x]",
    "\x00",
    "\ufeff",
    "é",
]


@FUZZ
@given(st.data())
def test_random_yaml_texts_validate_or_say_why(data: st.DataObject) -> None:
    base = yaml.safe_dump(BASE)
    pieces = data.draw(st.lists(st.one_of(st.sampled_from(YAML_BITS), st.sampled_from(KEYS), st.text(max_size=6)), max_size=12))
    at = data.draw(st.integers(0, len(base)))
    cut = data.draw(st.integers(0, 40))
    _validate_text(base[:at] + "".join(pieces) + base[at + cut :])


segments = st.one_of(st.sampled_from(KEYS), st.sampled_from(["0", "1", "5", "-1", "01", "１", "٣"]), st.text(max_size=5))


@FUZZ
@given(
    st.lists(
        st.tuples(st.lists(segments, min_size=1, max_size=5), st.one_of(st.sampled_from(YAML_BITS + NAMES), st.text(max_size=12))),
        min_size=1,
        max_size=3,
    )
)
def test_set_paths_validate_or_say_why(items: list) -> None:
    overrides = [".".join(path) + "=" + value for path, value in items]
    _validate_text(yaml.safe_dump(BASE), overrides)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(recipe=mutated_recipes())
def test_the_cli_prints_every_outcome_without_internal_errors(
    recipe: dict, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    monkeypatch.setattr(cli, "_runner", lambda args, console, quiet=False: _runner())
    buf = io.StringIO()
    code = cli.main(["validate", str(path)], console=Console(file=buf, width=120))
    assert code in (0, 2), buf.getvalue()
    assert "internal error" not in buf.getvalue()


# --- issue 27: cache manifests, terminal text and HTML text -------------------------------------

import json as _json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from aeinterp.run.cache import Cache, file_hash, safe_figure_name  # noqa: E402
from aeinterp.text import UNSAFE, safe_console, script_json, terminal_safe  # noqa: E402

_CACHE_ROOT = Path(tempfile.mkdtemp(prefix="aeinterp-fuzz-cache-"))
PATHS = [
    "0.png",
    "1.png",
    "/etc/hostname",
    "../0.png",
    "x/../../..",
    "..",
    ".",
    "",
    "0.png/",
    "./0.png",
    "00.png",
    "figures.json",
    "\\..\\0.png",
    "0.png\x00",
    "~/0.png",
    "1.PNG",
    "-1.png",
    "9" * 30 + ".png",
]
FIG_NAMES = ["", "own", "x/../../../../ESCAPED", "..", "a..b", "../up", "/abs", "ok.name", "-dash", "_u", "\x1b]0;x\x07", "<b>", "a" * 200]
path_like = st.sampled_from(PATHS) | st.text(max_size=12)
name_like = st.sampled_from(FIG_NAMES) | st.text(max_size=12)


def _figure_entry(key: str) -> Path:
    cache = Cache(_CACHE_ROOT)
    png = _CACHE_ROOT / "src.png"
    png.write_bytes(b"\x89PNG-fuzz")
    if cache.load_figures(key) is None:
        cache.save_figures(key, {"": png, "own": png})
    return cache._dir("figures", key)


@FUZZ
@given(
    files=st.dictionaries(name_like, path_like, max_size=4),
    hashes=st.dictionaries(path_like, st.sampled_from(["", "0" * 40]) | st.text(max_size=4), max_size=3),
    keep_hashes=st.booleans(),
)
def test_fuzzed_figure_manifest_never_points_outside_its_entry(files: dict, hashes: dict, keep_hashes: bool) -> None:
    key = "f" * 40
    folder = _figure_entry(key)
    manifest = folder / "figures.json"
    original = manifest.read_text()
    try:
        doc = _json.loads(original)
        doc["files"] = files
        if keep_hashes:  # the attacker recomputes the hashes of whatever the names point at, where that can be read
            doc["hashes"] = {
                f: (file_hash(folder / f) if isinstance(f, str) and f and (folder / f).is_file() else "0") for f in files.values()
            }
        else:
            doc["hashes"] = hashes
        manifest.write_text(_json.dumps(doc))
        loaded = Cache(_CACHE_ROOT).load_figures(key)
        if loaded is not None:
            for name, path in loaded.items():
                assert name == "" or safe_figure_name(name)
                assert path.parent == folder and not path.is_symlink() and path.resolve().parent == folder.resolve()
    finally:
        manifest.write_text(original)


@FUZZ
@given(local_file=st.none() | path_like, files=st.dictionaries(path_like, st.text(max_size=4), max_size=3))
def test_fuzzed_step_entry_never_reads_outside_its_entry(local_file: object, files: dict) -> None:
    from aeinterp.explanation import Explanation

    cache = Cache(_CACHE_ROOT)
    key = "s" * 40
    if cache.load_step(key) is None:
        cache.save_step(
            key, Explanation(importance=np.ones((2, 3)), feature_names=list("abc"), target_names=["z0", "z1"], local=np.ones((4, 2, 3)))
        )
    folder = cache._dir("steps", key)
    result = folder / "result.json"
    original = result.read_text()
    try:
        doc = _json.loads(original)
        doc["local_file"] = local_file
        doc["files"] = {**doc["files"], **files}
        result.write_text(_json.dumps(doc))
        loaded = cache.load_step(key)
        if loaded is not None:  # only the names the entry wrote, with the hashes it wrote
            assert doc["local_file"] in (None, "arrays.local.npy") and set(doc["files"]) <= {"arrays.npz", "arrays.local.npy"}
    finally:
        result.write_text(original)


any_text = st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x2FFF), max_size=40)


@FUZZ
@given(text=any_text)
def test_fuzzed_terminal_text_has_no_control_characters(text: str) -> None:
    safe = terminal_safe(text)
    assert not UNSAFE.search(safe) and terminal_safe(safe) == safe
    buf = io.StringIO()
    safe_console(Console(file=buf, width=80)).print(text, markup=False, highlight=False)
    assert not UNSAFE.search(buf.getvalue())


@FUZZ
@given(names=st.lists(any_text, min_size=1, max_size=4, unique=True))
def test_fuzzed_html_text_stays_inert(names: list[str]) -> None:
    from aeinterp.explanation import Explanation
    from aeinterp.report.html import _step

    text = script_json({"cols": names})
    assert not set(text) & set("<>&\u2028\u2029") and _json.loads(text)["cols"] == names
    e = Explanation(
        importance=np.arange(2.0 * len(names)).reshape(2, len(names)), feature_names=names, target_names=["z0", "z1"], explainer="fuzz"
    )
    step = _step("fuzz", e, [], 3)
    assert "<" not in str(step["matrix_json"]) and _json.loads(str(step["matrix_json"]))["cols"] == names
    for name in names:
        if "<" in name:
            assert name not in str(step["heatmap"])  # escaped in the table's HTML
