"""Explanation: shape checks, JSON/npz round trip without pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aeinterp import Explanation
from aeinterp.run.results import ResultsStore, load_results


def make(**kw) -> Explanation:  # noqa: ANN003
    base = dict(importance=np.arange(6.0).reshape(2, 3), feature_names=["a", "b", "c"], target_names=["z0", "z1"])
    return Explanation(**{**base, **kw})


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"expected \(targets, features\) = \(2, 3\)"):
        make(importance=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="local has shape"):
        make(local=np.zeros((5, 3, 2)))
    with pytest.raises(ValueError, match="reserved"):
        make(arrays={"importance": np.zeros(1)})


def test_top_features_and_normalized() -> None:
    e = make(importance=np.array([[0.1, 0.7, 0.2], [0.0, 0.0, 0.0]]))
    assert e.top_features(2)["z0"] == [("b", 0.7), ("c", 0.2)]
    np.testing.assert_allclose(e.normalized(), [[0.1, 0.7, 0.2], [0, 0, 0]])


def test_round_trip_through_results_json_and_npz(tmp_path) -> None:  # noqa: ANN001
    e = make(
        std=np.ones((2, 3)),
        local=np.random.default_rng(0).normal(size=(4, 2, 3)),
        arrays={"tiles": np.zeros((2, 8, 8))},
        extras={"gap": np.float32(0.5), "nan": float("nan"), "list": np.arange(3)},
        explainer="x",
        runtime_s=1.5,
    )
    store = ResultsStore(tmp_path, recipe={}, model={}, data={}, plugins=[])
    store.add("x", e)
    store.finish("complete")
    doc = json.loads((tmp_path / "results.json").read_text())  # strict JSON: NaN became null
    assert doc["explainers"][0]["extras"] == {"gap": 0.5, "nan": None, "list": [0, 1, 2]}
    back = load_results(tmp_path).explanations["x"]
    np.testing.assert_array_equal(back.importance, e.importance)
    np.testing.assert_array_equal(back.local, e.local)
    np.testing.assert_array_equal(back.arrays["tiles"], e.arrays["tiles"])
    assert back.runtime_s == 1.5 and back.feature_names == ["a", "b", "c"]
    with np.load(tmp_path / "x.npz", allow_pickle=False) as npz:  # no object arrays inside
        assert set(npz.files) == {"importance", "std", "local", "tiles"}


def test_ctrl_c_during_an_append_keeps_that_entry(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """A Ctrl-C that lands while an entry is being synced to disk is raised after the entry is recorded, so the
    steps written after it (the runner writes every finished step on Ctrl-C) do not overwrite it."""
    import os
    import signal

    import aeinterp.run.results as results_module

    store = ResultsStore(tmp_path, recipe={}, model={}, data={}, plugins=[])
    real_fsync, calls = os.fsync, []

    def fsync_then_ctrl_c(fd: int) -> None:
        real_fsync(fd)
        if not calls:
            calls.append(fd)
            os.kill(os.getpid(), signal.SIGINT)  # delivered while the append is still in progress

    monkeypatch.setattr(results_module.os, "fsync", fsync_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        store.add("first", make())
    store.add("second", make())
    store.finish("interrupted")
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [e["alias"] for e in doc["explainers"]] == ["first", "second"] and doc["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored


def test_library_versions_name_what_ran_and_what_is_installed_alike() -> None:
    from importlib.metadata import version

    from aeinterp.run.step import library_versions

    versions = library_versions("scikit-learn", "no-such-package-aeinterp")
    assert versions["torch"] == version("torch") and versions["numpy"] == version("numpy")
    assert versions["scikit-learn"] == version("scikit-learn")  # not imported under that name: read from the metadata
    assert "no-such-package-aeinterp" not in versions and versions["aeinterp"]
