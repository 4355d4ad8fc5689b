"""The chunk seam: a ChunkedExplainer gives the same result whatever the chunking of its partials' sums,
and chunk generators depend only on the base seed and the chunk index."""

from __future__ import annotations

import numpy as np
import pytest

from aeinterp import ArrayDataset, Capabilities, ExplainerParams, Explanation, RegistrationError
from aeinterp.plugins.registry import ExplainerRegistry
from aeinterp.targets import Target
from aeinterp.toolkit.chunks import ChunkedExplainer, Partial, chunk_rng, combine, split_units


class MeanAbsInput(ChunkedExplainer):
    """Importance of feature j for every target: mean |x_j| plus noise from the chunk's generator."""

    name = "mean_abs_input"
    capabilities = Capabilities(splits="samples", local=True)

    class Params(ExplainerParams):
        chunk: int = 7
        noise: float = 0.0

    def prepare(self, model, data, *, target, rng):
        return {"x": np.asarray(data.x_explain, dtype=np.float64).reshape(len(data.x_explain), -1)}

    def units(self, model, data, state, *, target):
        return np.arange(len(state["x"])), self.params.chunk

    def explain_chunk(self, model, data, state, units, *, target, rng):
        a = np.abs(state["x"][units]) + self.params.noise * rng.standard_normal((len(units), state["x"].shape[1]))
        return Partial(sums={"abs": a.sum(0)}, rows={"local": a}, count=len(units))

    def finish(self, model, data, state, total, *, target):
        imp = np.tile(total.sums["abs"] / total.count, (2, 1))
        local = np.repeat(total.rows["local"][:, None, :], 2, axis=1)
        return Explanation(importance=imp, feature_names=list(data.feature_names), target_names=["z0", "z1"], local=local)


def _data(n: int = 23) -> ArrayDataset:
    x = np.random.default_rng(0).standard_normal((n, 3)).astype(np.float32)
    from aeinterp.data import make_groups

    names = ["a", "b", "c"]
    return ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (3,), "auto", feature_names=names, x=x),
        fit_index=np.arange(n),
        explain_index=np.arange(n),
    )


def test_chunked_explainer_reduces_partials_in_unit_order() -> None:
    data = _data()
    exp = MeanAbsInput({"chunk": 5}).explain(None, data, target=Target.LATENT, rng=np.random.default_rng(0))
    x = np.abs(data.x_explain.astype(np.float64))
    np.testing.assert_allclose(exp.importance[0], x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(exp.local[:, 1, :], x, rtol=1e-12)


def test_chunked_result_depends_on_seed_not_on_executor_order() -> None:
    data = _data()
    a = MeanAbsInput({"noise": 0.1}).explain(None, data, target=Target.LATENT, rng=np.random.default_rng(3))
    b = MeanAbsInput({"noise": 0.1}).explain(None, data, target=Target.LATENT, rng=np.random.default_rng(3))
    c = MeanAbsInput({"noise": 0.1}).explain(None, data, target=Target.LATENT, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a.importance, b.importance)
    assert not np.allclose(a.importance, c.importance)
    # chunks run in any order give the same partials
    chunks = split_units(np.arange(23), 7)
    assert [len(c) for c in chunks] == [7, 7, 7, 2]
    r1 = chunk_rng(11, 2).standard_normal(3)
    chunk_rng(11, 0).standard_normal(3)
    np.testing.assert_array_equal(r1, chunk_rng(11, 2).standard_normal(3))


def test_partials_with_different_keys_do_not_combine() -> None:
    with pytest.raises(ValueError, match="different keys"):
        combine([Partial(sums={"a": np.ones(2)}, count=1), Partial(sums={"b": np.ones(2)}, count=1)])


def test_registry_checks_splits() -> None:
    from aeinterp import Explainer

    class Bad(Explainer):
        name = "bad_splits"
        capabilities = Capabilities(splits="samples")

        def explain(self, model, data, *, target, rng):  # pragma: no cover - never registered
            raise NotImplementedError

    with pytest.raises(RegistrationError, match="ChunkedExplainer"):
        ExplainerRegistry().add(Bad)
    ExplainerRegistry().add(MeanAbsInput)
