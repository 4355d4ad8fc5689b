"""Recipe validation: located errors, suggestions, overrides, schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from aeinterp import RecipeError
from aeinterp.plugins.manager import PluginHost
from aeinterp.recipe.schema import apply_overrides, load_recipe, parse_recipe, plan_steps, recipe_schema

GOOD = """\
data:
  builtin: breast_cancer
model:
  builtin: mlp
  latent_dim: 3
explainers:
  - name: permutation
    params: {repeats: 2}
  - name: zero_ablation
output: out
"""


@pytest.fixture(scope="module")
def registry():  # noqa: ANN201
    return PluginHost(autoload=True).registry


def problems(text: str, registry) -> list[str]:  # noqa: ANN001
    with pytest.raises(RecipeError) as info:
        plan_steps(parse_recipe(text), registry)
    return info.value.problems


def test_good_recipe_plans_steps(registry) -> None:  # noqa: ANN001
    steps = plan_steps(parse_recipe(GOOD), registry)
    assert [(s.alias, s.target.value) for s in steps] == [("permutation", "latent"), ("zero_ablation", "latent")]
    assert steps[0].params.repeats == 2


def test_misspelled_key_gets_line_and_suggestion(registry) -> None:  # noqa: ANN001
    text = GOOD.replace("  latent_dim: 3", "  latent_dims: 3")
    found = problems(text, registry)
    assert any("model.latent_dims (line 5): unknown key 'latent_dims'; did you mean 'latent_dim'?" in p for p in found), found


def test_misspelled_explainer_gets_nearest_name(registry) -> None:  # noqa: ANN001
    found = problems(GOOD.replace("name: permutation", "name: permutaton"), registry)
    assert found == [
        "explainers[0].name (line 7): unknown explainer 'permutaton'; did you mean 'permutation'? (installed: "
        + ", ".join(registry.names())
        + ")"
    ]


def test_bad_params_are_located_in_the_second_pass(registry) -> None:  # noqa: ANN001
    text = GOOD.replace("params: {repeats: 2}", "params: {repeats: 0, repeat: 3}")
    found = problems(text, registry)
    assert any(p.startswith("explainers[0].params.repeats (line 8): Input should be greater than or equal to 1") for p in found), found
    assert any("explainers[0].params.repeat (line 8): unknown key 'repeat'; did you mean 'repeats'?" in p for p in found), found


def test_all_first_pass_problems_are_reported_at_once(registry) -> None:  # noqa: ANN001
    text = "data:\n  builtin: wine\n  kind: tabluar\nexplainers: []\n"
    found = problems(text, registry)
    joined = "\n".join(found)
    assert "data.kind (line 3): Input should be 'tabular', 'image' or 'sequence', got 'tabluar'" in joined
    assert "model: required key is missing" in joined
    assert "explainers (line 4): List should have at least 1 item" in joined


def test_yaml_syntax_error_has_the_line() -> None:
    with pytest.raises(RecipeError, match="YAML syntax error at line 4"):
        parse_recipe("data:\n  builtin: wine\n  kind: [unclosed\nmodel: {}\n")


def test_duplicate_result_names_need_an_alias(registry) -> None:  # noqa: ANN001
    text = GOOD.replace("output: out\n", "  - name: permutation\noutput: out\n")
    found = problems(text, registry)
    assert any("result name 'permutation' is already used by explainers[0]; give this step an `alias:`" in p for p in found)
    text = GOOD.replace(
        "output: out\n", "  - name: permutation\n    alias: perm2\n    targets: [latent, reconstruction_error]\noutput: out\n"
    )
    steps = plan_steps(parse_recipe(text), registry)
    assert [s.alias for s in steps][-2:] == ["perm2-latent", "perm2-reconstruction_error"]


def test_overrides_set_nested_values_and_list_items() -> None:
    raw = {"explainers": [{"name": "permutation", "params": {"repeats": 5}}], "model": {"latent_dim": 3}}
    apply_overrides(raw, ["explainers.0.params.repeats=2", "model.latent_dim=8", "model.options.hidden=[4, 4]"])
    assert raw["explainers"][0]["params"]["repeats"] == 2 and raw["model"]["latent_dim"] == 8
    assert raw["model"]["options"]["hidden"] == [4, 4]
    with pytest.raises(RecipeError, match="not an existing list item"):
        apply_overrides(raw, ["explainers.3.name=x"])


def test_relative_paths_resolve_against_the_recipe_folder(tmp_path: Path) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "r.yaml").write_text(GOOD)
    loaded = load_recipe(folder / "r.yaml")
    assert loaded.base_dir == folder.resolve()


def test_schema_includes_installed_explainers(registry) -> None:  # noqa: ANN001
    schema = recipe_schema(registry)
    names = [v["properties"]["name"]["const"] for v in schema["properties"]["explainers"]["items"]["anyOf"]]
    assert "permutation" in names and "zero_ablation" in names
    assert schema["$defs"]["Params_permutation"]["properties"]["repeats"]["default"] == 5


def test_recipes_hold_no_code() -> None:
    # python tags are refused before anything is constructed
    with pytest.raises(RecipeError, match="line 1: unsupported YAML tag !!python/object/apply:os.system"):
        parse_recipe("data: !!python/object/apply:os.system ['echo hi']\n")
