"""Tests of the ``faithfulness`` step: deletion / insertion against random order, and model randomisation.

Ground truth: on a planted encoder the true ranking beats random order for
every latent and a deliberately shuffled ranking does not; on a trained MLP
the rank correlation of a gradient explainer drops when the encoder's
weights are re-initialised.
"""

from __future__ import annotations

import aeinterp_faithfulness
import aeinterp_gradients
import aeinterp_perturbation
import numpy as np
import pytest
import yaml
from aeinterp_faithfulness.explainer import Faithfulness, spearman_rows

from aeinterp import Explanation, RecipeError, Runner, run_explainer
from aeinterp.testing import planted_autoencoder


def _ranking(planted, importance: np.ndarray) -> Explanation:  # noqa: ANN001
    return Explanation(
        importance=importance,
        feature_names=planted.data.group_names,
        target_names=[f"z{j}" for j in range(len(planted.dependencies))],
        target="latent",
    )


@pytest.mark.parametrize("replace", ["baseline", "permutation"])
def test_true_ranking_beats_random_and_a_shuffled_one_does_not(replace: str) -> None:
    planted = planted_autoencoder(n_features=10)
    truth = planted.relevant().astype(float)
    # deliberately shuffled: every latent's scores moved onto features it does not read, the rest in reverse order
    shuffled = np.roll(truth, 5, axis=1) + 0.01 * np.arange(10)
    results = {"true": _ranking(planted, truth), "shuffled": _ranking(planted, shuffled)}
    step = Faithfulness({"explanations": ["true", "shuffled"], "randomization": False, "replace": replace}, results=results)
    result = run_explainer(step, planted.model, planted.data, target="latent", seed=0)
    assert result.feature_names == ["true", "shuffled", "random order"]
    assert result.importance.shape == (3, 3)
    table = result.extras["table"]
    for name in ("z0", "z1", "z2"):
        assert table["true"][name]["faithful"] is True
        assert table["true"][name]["gain"] > 0.15
        assert table["true"][name]["beats_random_fraction"] >= 0.9
        assert table["shuffled"][name]["faithful"] is False
        assert table["shuffled"][name]["auc"] < table["shuffled"][name]["random_auc"]
    assert sorted(result.extras["not_faithful"]) == [["shuffled", "z0"], ["shuffled", "z1"], ["shuffled", "z2"]]
    lines = result.extras["summary"]
    assert lines[0] == "true: faithful for z0, z1, z2"
    assert lines[1].startswith("shuffled: faithful for no target; not faithful for z0 (AUC")
    # curves: 0 at no group removed, 1 at all removed; the true deletion curve is done once the planted groups are gone
    dele = result.arrays["deletion_true"]
    fr = result.arrays["fractions"]
    assert np.allclose(dele[:, 0], 0) and np.allclose(dele[:, -1], 1)
    k = int(np.argmax(fr >= 0.3))  # 3 of 10 groups removed: z0 (2 inputs) and z2 (1 input) have lost everything
    if replace == "baseline":
        np.testing.assert_allclose(dele[[0, 2], k], 1.0, atol=1e-5)
    figures = Faithfulness.figures(result)
    assert set(figures) == {"curves", "table"}
    texts = [t.get_text() for t in figures["table"].axes[0].texts]
    assert sum("not faithful" in t for t in texts) == 3


def test_spearman_rows_matches_scipy() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 9)), rng.normal(size=(4, 9))
    b[1] = a[1] * 2 + 1
    ours = spearman_rows(a, b)
    for t in range(4):
        assert ours[t] == pytest.approx(spearmanr(a[t], b[t]).statistic)
    assert np.isnan(spearman_rows(np.ones((1, 3)), b[:1, :3])[0])


def _recipe(tmp_path, explainers: list) -> dict:  # noqa: ANN001
    return {
        "seed": 0,
        "data": {"builtin": "synthetic_tabular"},
        "model": {
            "builtin": "mlp",
            "latent_dim": 3,
            "options": {"hidden": [16], "activation": "tanh"},
            "train": {"epochs": 60, "lr": 0.01},
        },
        "explainers": explainers,
        "output": str(tmp_path / "out"),
        "report": {"terminal": False, "html": False, "plots": False},
    }


def test_randomisation_drops_rank_correlation_of_a_gradient_explainer(run_recipe, tmp_path) -> None:  # noqa: ANN001
    doc = run_recipe(
        _recipe(
            tmp_path,
            [
                {"name": "jacobian", "alias": "saliency"},
                {"name": "permutation", "params": {"repeats": 2}},
                {"name": "faithfulness", "params": {"explanations": ["saliency", "permutation"], "random_orders": 10, "steps": 8}},
            ],
        ),
        plugins=[aeinterp_gradients, aeinterp_perturbation, aeinterp_faithfulness],
    )
    step = next(e for e in doc["explainers"] if e["alias"] == "faithfulness")
    assert step["status"] == "ok", step.get("error")
    info = step["extras"]["randomization"]["saliency"]
    assert info["layers"] == [1, 2] and info["of_layers"] == 2
    assert info["rank_correlation"][-1] < 0.5 and info["insensitive"] is False
    assert any("saliency: rank correlation after randomising all 2 encoder layers" in line for line in step["extras"]["summary"])
    # a trained model's explanations are faithful on its planted factors
    assert all(row["faithful"] for row in step["extras"]["table"]["saliency"].values())


def test_explanations_list_is_validated_alias_by_alias(tmp_path) -> None:  # noqa: ANN001
    recipe = _recipe(
        tmp_path,
        [
            {"name": "jacobian", "alias": "saliency"},
            {"name": "faithfulness", "params": {"explanations": ["saliency", "salincy"]}},
        ],
    )
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    runner = Runner(autoload=False, plugins=[aeinterp_gradients, aeinterp_faithfulness])
    with pytest.raises(RecipeError) as info:
        runner.validate(path)
    message = str(info.value)
    assert "explainers[1].params.explanations[1]" in message and "did you mean 'saliency'" in message
    assert "explanations[0]" not in message


def test_randomisation_runs_on_a_copy_and_leaves_the_model_as_it_was() -> None:
    from aeinterp_perturbation.explainers import Permutation

    from aeinterp.testing.conformance import assert_same_state, model_state

    planted = planted_autoencoder(n_features=10)
    module = planted.model.module
    module.train()
    try:
        before = model_state(module)
        perm = run_explainer(Permutation, planted.model, planted.data, target="latent", seed=0, params={"repeats": 1})
        step = Faithfulness({"explanations": ["perm"], "random_orders": 5, "steps": 5}, results={"perm": perm})
        result = run_explainer(step, planted.model, planted.data, target="latent", seed=0)
        assert_same_state(before, model_state(module))
    finally:
        module.eval()
    info = result.extras["randomization"]["perm"]
    assert info["explainer"] == "permutation" and info["of_layers"] == 2 and len(info["rank_correlation"]) == 2
    # the planted encoder's blocks are zero outside the planted inputs; re-initialised layers read every input
    assert info["rank_correlation"][-1] < 0.9
