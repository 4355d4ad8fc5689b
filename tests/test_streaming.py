"""Streaming through the chunk seam: any chunking gives the one-chunk result (same seed), the first-layer
rank update equals the plain path, ``local`` on disk equals ``local`` in memory, anytime intervals cover the
full-data value, and large results are referenced from a compact, append-only results.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aeinterp_deepshap.explainer import DeepShap
from aeinterp_gradients.explainers import IntegratedGradients, Jacobian
from aeinterp_perturbation.explainers import Permutation, ZeroAblation

from aeinterp import explain
from aeinterp.explanation import Explanation
from aeinterp.run.results import ResultsStore, load_results
from aeinterp.testing import planted_autoencoder
from aeinterp.toolkit.chunks import LocalExecutor


def _mapped(a: np.ndarray) -> bool:
    """Whether ``a`` is (a view of) a memory map: read lazily from its file."""
    while isinstance(a, np.ndarray):
        if isinstance(a, np.memmap):
            return True
        a = a.base
    return False


CASES = [
    (Permutation, {"repeats": 2}),
    (ZeroAblation, {"baseline": "mean"}),
    (Jacobian, {}),
    (Jacobian, {"method": "input_x_gradient"}),
    (IntegratedGradients, {"steps": 8}),
    (IntegratedGradients, {"steps": 8, "factorize": "off", "baseline": "sample", "n_baselines": 3}),
    (DeepShap, {"n_background": 20}),
]


@pytest.fixture(scope="module")
def planted():  # noqa: ANN201
    return planted_autoencoder(n_samples=300)


@pytest.mark.parametrize(("cls", "params"), CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_chunked_result_equals_the_one_chunk_result(planted, cls, params) -> None:  # noqa: ANN001
    whole = explain(cls, planted.model, planted.data, params={**params, "chunk_size": 10_000}, seed=3)
    chunked = explain(cls, planted.model, planted.data, params={**params, "chunk_size": 7}, seed=3)
    # float32 models: an input with no effect moves its target by rounding only, which other block sizes round differently
    np.testing.assert_allclose(chunked.importance, whole.importance, rtol=1e-6, atol=1e-7 * np.abs(whole.importance).max())
    if whole.std is not None:
        np.testing.assert_allclose(chunked.std, whole.std, rtol=1e-5, atol=1e-8)
    if whole.local is not None:
        np.testing.assert_allclose(chunked.local, whole.local, rtol=1e-5, atol=1e-6)  # float32 blocks of other sizes
    for key, value in whole.arrays.items():
        np.testing.assert_allclose(chunked.arrays[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    assert chunked.extras["n_samples"] == whole.extras["n_samples"] == len(planted.data.explain_index)


class FourWorkers(LocalExecutor):
    """The local executor, claiming 4 workers (as a 4-CPU Ray cluster does) and counting the chunks it is given."""

    workers = 4

    def __init__(self) -> None:
        self.chunks: list[int] = []

    def map_chunks(self, explainer, model, data, state, chunks, **kw):  # noqa: ANN001, ANN003, ANN201
        self.chunks.append(len(chunks))
        return super().map_chunks(explainer, model, data, state, chunks, **kw)


@pytest.mark.parametrize(("cls", "params"), CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_chunk_invariant_explainers_give_parallel_executors_chunks(cls, params) -> None:  # noqa: ANN001
    """An executor of 4 workers gets at least 4 x 4 chunks (of at most 64 samples here), with the same values."""
    assert cls.capabilities.chunk_invariant
    big = planted_autoencoder(n_samples=4000)  # 1000 explained samples
    one = explain(cls, big.model, big.data, params=params, seed=3)
    four = FourWorkers()
    split = explain(cls, big.model, big.data, params=params, seed=3, executor=four)
    assert len(four.chunks) == 1 and four.chunks[0] >= 16  # 1000 / 16 = 63 < 64: chunks of (at most) 64 samples
    np.testing.assert_allclose(split.importance, one.importance, rtol=1e-6, atol=1e-9)


def test_feature_visualization_splits_over_targets_with_the_same_result() -> None:
    """One Adam loop over all targets' rows, or one per target (as on 4 workers): the same optimized inputs."""
    from aeinterp_visualize.feature_visualization import FeatureVisualization

    planted = planted_autoencoder(n_samples=300)
    params = {"steps": 40, "starts": 2}
    one = explain(FeatureVisualization, planted.model, planted.data, params=params, seed=1)
    four = FourWorkers()
    split = explain(FeatureVisualization, planted.model, planted.data, params=params, seed=1, executor=four)
    n_targets = one.importance.shape[0]
    assert four.chunks == [n_targets]  # one target per chunk
    np.testing.assert_allclose(split.arrays["optimized"], one.arrays["optimized"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.importance, one.importance, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(split.arrays["objective_trace"], one.arrays["objective_trace"], rtol=1e-5)


@pytest.mark.parametrize("cls", [Permutation, ZeroAblation])
@pytest.mark.parametrize("target", ["latent", "reconstruction", "reconstruction_error"])
def test_first_layer_rank_update_equals_the_plain_path(planted, cls, target: str) -> None:  # noqa: ANN001
    fast = explain(cls, planted.model, planted.data, target=target, params={"first_layer": "auto"}, seed=1)
    plain = explain(cls, planted.model, planted.data, target=target, params={"first_layer": "off"}, seed=1)
    assert fast.extras["path"] == "first-layer rank update", fast.extras["path_reason"]
    assert plain.extras["path"] == "generic"
    scale = np.abs(plain.importance).max()
    np.testing.assert_allclose(fast.importance, plain.importance, rtol=1e-5, atol=1e-6 * scale)
    assert scale > 0


def test_rank_update_on_a_builtin_mlp_and_flatten_first(tabular_model) -> None:  # noqa: ANN001
    model, data = tabular_model
    fast = explain(Permutation, model, data, params={"repeats": 1, "max_samples": 80})
    plain = explain(Permutation, model, data, params={"repeats": 1, "max_samples": 80, "first_layer": "off"})
    assert fast.extras["path"] == "first-layer rank update"
    np.testing.assert_allclose(fast.importance, plain.importance, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("cls", "params"), [(Jacobian, {}), (DeepShap, {"n_background": 20})])
def test_local_on_disk_equals_local_in_memory(planted, tmp_path, cls, params) -> None:  # noqa: ANN001
    memory = explain(cls, planted.model, planted.data, params={**params, "local": "full"})
    exp = cls({**params, "local": "full", "local_max_mb": 0.001, "chunk_size": 50})
    exp.rows_dir = tmp_path
    disk = explain(exp, planted.model, planted.data)
    assert _mapped(disk.local)
    assert "written to disk" in disk.extras["local_note"]
    np.testing.assert_allclose(np.asarray(disk.local), memory.local, rtol=1e-6)
    # saved next to results.json as its own .npy and read back lazily
    store = ResultsStore(tmp_path / "out", recipe={}, model={}, data={}, plugins=[])
    entry = store.add("jac", disk)
    store.finish("complete")
    assert entry["local_file"] == "jac.local.npy" and (tmp_path / "out" / "jac.local.npy").exists()
    back = load_results(tmp_path / "out").explanations["jac"]
    assert _mapped(back.local)
    np.testing.assert_allclose(np.asarray(back.local), memory.local, rtol=1e-6)
    assert not list((tmp_path).glob(".rows-*")), "the temporary rows folder is removed once the file has moved"


def test_local_auto_none_and_top_k(planted) -> None:  # noqa: ANN001
    full = explain(DeepShap, planted.model, planted.data, params={"n_background": 20})
    assert full.local is not None and full.extras["local"] == "memory"
    none = explain(DeepShap, planted.model, planted.data, params={"n_background": 20, "local_max_mb": 1e-4})
    assert none.local is None and "not kept" in none.extras["local_note"]
    np.testing.assert_allclose(none.importance, full.importance, rtol=1e-6)
    top = explain(Jacobian, planted.model, planted.data, params={"local": "top_k:2"})
    ref = explain(Jacobian, planted.model, planted.data).local
    assert top.local is None and top.arrays["local_top_index"].shape == (*ref.shape[:2], 2)
    expected = np.sort(np.abs(ref), axis=2)[:, :, ::-1][:, :, :2]
    np.testing.assert_allclose(np.abs(top.arrays["local_top_value"]), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="top_k"):
        Jacobian({"local": "top_k:zero"})


@pytest.mark.parametrize(("cls", "params"), [(Permutation, {"repeats": 1}), (DeepShap, {"n_background": 30}), (Jacobian, {})])
def test_anytime_intervals_cover_the_full_data_value(cls, params) -> None:  # noqa: ANN001
    planted = planted_autoencoder(n_samples=4000)
    full = explain(cls, planted.model, planted.data, params=params, seed=2)
    auto = explain(
        cls, planted.model, planted.data, params={**params, "max_samples": "auto", "first_round": 100, "anytime_tolerance": 0.1}, seed=2
    )
    facts = auto.extras["anytime"]
    assert facts["samples_used"] < len(planted.data.explain_index) and facts["stopped"] == "converged"
    hw = auto.arrays["importance_halfwidth"]
    assert hw.shape == full.importance.shape
    covered = np.abs(auto.importance - full.importance) <= hw + 1e-12
    assert covered.mean() >= 0.9, covered.mean()
    # the ranking agrees within the intervals: each target's top feature under auto is a full-data top feature or tied with it
    top = auto.importance.argmax(axis=1)
    rows = np.arange(len(top))
    assert (full.importance[rows, top] >= full.importance.max(axis=1) - 2 * hw[rows, top]).all()


def test_the_background_does_not_depend_on_max_samples() -> None:
    """An anytime estimate and the full-data result differ only in the samples averaged: same background, same
    per-sample values (DeepSHAP on 10**6 samples once compared an estimate with a result on another background)."""
    planted = planted_autoencoder(n_samples=800)
    runs = {
        m: explain(DeepShap, planted.model, planted.data, params={"n_background": 10, "max_samples": m, "local": "full"}, seed=5)
        for m in (None, "auto", 50)
    }
    backgrounds = [r.arrays["fit_index"] for r in runs.values()]
    assert all(np.array_equal(b, backgrounds[0]) for b in backgrounds)
    full, some = runs[None], runs[50]
    rows = {int(r): i for i, r in enumerate(full.arrays["explain_index"])}
    np.testing.assert_allclose(some.local, full.local[[rows[int(r)] for r in some.arrays["explain_index"]]], rtol=1e-5, atol=1e-7)


def _explanation(t: int, f: int) -> Explanation:
    rng = np.random.default_rng(0)
    return Explanation(
        importance=rng.random((t, f)),
        std=rng.random((t, f)),
        feature_names=[f"x{i}" for i in range(f)],
        target_names=[f"z{j}" for j in range(t)],
        explainer="demo",
    )


def test_large_matrices_are_referenced_and_memory_mapped(tmp_path) -> None:  # noqa: ANN001
    store = ResultsStore(tmp_path, recipe={"a": 1}, model={}, data={}, plugins=[])
    small, big = _explanation(3, 4), _explanation(200, 600)
    store.add("small", small)
    store.add("big", big)
    store.finish("complete")
    doc = json.loads((tmp_path / "results.json").read_text())
    s, b = doc["explainers"]
    assert s["inline"] and len(s["importance"]) == 3
    assert not b["inline"] and b["importance"] is None and b["shape"] == [200, 600] and b["has_std"]
    assert doc["status"] == "complete" and doc["layout"] == "append-v1"
    assert (tmp_path / "results.json").stat().st_size < 50_000  # compact: no matrix in the JSON
    back = load_results(tmp_path).explanations["big"]
    assert _mapped(back.importance) and _mapped(back.std)
    np.testing.assert_array_equal(back.importance, big.importance)
    np.testing.assert_array_equal(back.std, big.std)
    with np.load(tmp_path / "big.npz") as npz:  # uncompressed members
        assert set(npz.files) == {"importance", "std"}
    import zipfile

    assert all(i.compress_type == zipfile.ZIP_STORED for i in zipfile.ZipFile(tmp_path / "big.npz").infolist())


def test_each_step_appends_and_a_cut_append_is_repaired(tmp_path) -> None:  # noqa: ANN001
    store = ResultsStore(tmp_path, recipe={}, model={}, data={}, plugins=[])
    store.add("one", _explanation(2, 3))
    size_one = (tmp_path / "results.json").stat().st_size
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "running"
    store.add("two", _explanation(2, 3))
    text = (tmp_path / "results.json").read_text()
    assert text.count("\n") == 4 and (tmp_path / "results.json").stat().st_size > size_one
    (tmp_path / "results.json").write_text(text[: text.rindex("\n,") + 20])  # a crash in the middle of step two's append
    back = load_results(tmp_path)
    assert back.doc["status"] == "interrupted" and list(back.explanations) == ["one"]


def test_old_compressed_npz_files_still_load(tmp_path) -> None:  # noqa: ANN001
    e = _explanation(2, 3)
    np.savez_compressed(tmp_path / "old.npz", importance=e.importance, std=e.std)
    entry = {**e.to_json(), "alias": "old"}
    back = Explanation.from_json(json.loads(json.dumps(entry)), tmp_path / "old.npz")
    np.testing.assert_array_equal(back.importance, e.importance)


def test_ranking_is_stable_up_to_ties_within_the_intervals() -> None:
    from aeinterp.toolkit.streaming import converged, same_ranking

    now = np.array([[1.00, 0.90, 0.50, 0.10]])
    before = np.array([[0.90, 1.00, 0.50, 0.10]])  # features 0 and 1 swapped
    wide, narrow = np.full_like(now, 0.06), np.full_like(now, 0.01)
    assert same_ranking(now, wide, before, 2)  # 0.10 apart <= 0.06 + 0.06: a tie the data cannot order
    assert not same_ranking(now, narrow, before, 2)  # 0.10 apart > 0.02: a real change of order
    assert same_ranking(now, narrow, now.copy(), 4)
    # a feature entering the top-k past a clearly larger one is a change, however wide the others' intervals
    assert not same_ranking(np.array([[1.0, 0.2, 0.9]]), np.array([[0.01, 0.01, 0.01]]), np.array([[1.0, 0.9, 0.2]]), 2)
    ok, worst = converged(now, wide, before, tolerance=0.1, top_k=2)
    assert ok and worst == pytest.approx(0.06)
    assert not converged(now, narrow, before, tolerance=0.1, top_k=2)[0]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("n", [12, 700])  # one stage, and the two-stage block path (n >= 4 k TOPK_BLOCK)
def test_top_k_rows_equal_a_full_sort_of_the_magnitudes(dtype: str, n: int) -> None:
    import torch

    from aeinterp.toolkit.streaming import top_k_rows

    rng = np.random.default_rng(3)
    values = rng.normal(size=(3, 5, n)) * rng.choice([1e-3, 1.0, 1e3], size=(3, 5, n))  # signs and magnitudes spread
    values[0, 0, :4] = 0.0  # zeros (and -0.0) rank below every non-zero magnitude
    values[0, 1, :4] = -0.0
    values = values.astype(dtype)
    k = 4 if n == 12 else 9
    index, value = top_k_rows(torch.from_numpy(values), k)
    mag = np.abs(values.astype(np.float64))
    expected = -np.sort(-mag, axis=-1)[..., :k]
    np.testing.assert_array_equal(np.abs(value), expected.astype(np.float32))  # largest first, exact (kept as float32)
    np.testing.assert_array_equal(value, np.take_along_axis(values, index.astype(np.int64), -1).astype(np.float32))
    assert index.dtype == np.int32 and value.dtype == np.float32
    ref_index, _ = top_k_rows(values, k)  # numpy in, the same answer
    np.testing.assert_array_equal(ref_index, index)
