"""Dataset loaders, feature groups and splits."""

from __future__ import annotations

import numpy as np
import pytest

from aeinterp import DataError
from aeinterp.data import make_groups
from aeinterp.io.datasets import load_dataset


def test_builtin_sets_have_the_documented_shapes() -> None:
    bc = load_dataset(builtin="breast_cancer")
    assert bc.kind == "tabular" and bc.x.shape == (569, 30) and bc.feature_names[0] == "mean radius"
    np.testing.assert_allclose(bc.x_fit.mean(axis=0), 0, atol=1e-5)  # standardized on the fit split
    digits = load_dataset(builtin="digits")
    assert digits.kind == "image" and digits.x.shape == (1797, 1, 8, 8) and len(digits.groups) == 64
    assert digits.x.max() <= 1.0
    sines = load_dataset(builtin="sines")
    assert sines.kind == "sequence" and sines.sample_shape == (24, 3)
    assert sines.group_names == ["sine", "cosine", "walk"]
    assert len(sines.groups[0].indices) == 24 and sines.feature_names[1] == "cosine@t0"
    assert len(load_dataset(builtin="wine").feature_names) == 13


def test_unknown_builtin_suggests_the_nearest() -> None:
    with pytest.raises(DataError, match="did you mean 'breast_cancer'"):
        load_dataset(builtin="breast_cancr")


def test_split_is_disjoint_seeded_and_sized() -> None:
    a = load_dataset(builtin="wine", explain_fraction=0.2, split_seed=1)
    b = load_dataset(builtin="wine", explain_fraction=0.2, split_seed=1)
    assert not set(a.fit_index) & set(a.explain_index)
    assert len(a.fit_index) + len(a.explain_index) == 178 and len(a.explain_index) == round(178 * 0.2)
    np.testing.assert_array_equal(a.explain_index, b.explain_index)
    assert len(load_dataset(builtin="wine", explain_size=10).explain_index) == 10


def test_csv_with_header_and_label(tmp_path) -> None:  # noqa: ANN001
    p = tmp_path / "d.csv"
    p.write_text("a,b,c,label\n1,2,3,x\n4,5,6,y\n7,8,9,x\n10,11,12,y\n")
    d = load_dataset(path=p, label="label")
    assert d.feature_names == ["a", "b", "c"] and d.x.shape == (4, 3)
    assert sorted(d.labels.tolist()) == ["x", "x", "y", "y"]
    with pytest.raises(DataError, match="column 'label' is not numeric"):
        load_dataset(path=p)


def test_nan_is_refused_or_dropped(tmp_path) -> None:  # noqa: ANN001
    p = tmp_path / "d.csv"
    p.write_text("a,b\n1,2\nnan,3\n4,5\n6,7\n")
    with pytest.raises(DataError, match="NaN or infinite values in 1 of 4 samples"):
        load_dataset(path=p)
    with pytest.warns(UserWarning, match="dropping 1 of 4"):
        d = load_dataset(path=p, nan="drop")
    assert d.x.shape == (3, 2)


def test_npy_npz_kinds(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    np.save(tmp_path / "s.npy", rng.normal(size=(20, 5, 2)))
    with pytest.raises(DataError, match="say whether it is `kind: sequence`"):
        load_dataset(path=tmp_path / "s.npy")
    s = load_dataset(path=tmp_path / "s.npy", kind="sequence", feature_names=["u", "v"])
    assert s.group_names == ["u", "v"] and s.feature_names[:2] == ["u@t0", "v@t0"]
    np.savez(tmp_path / "i.npz", x=rng.normal(size=(10, 6, 6)), y=np.arange(10))
    img = load_dataset(path=tmp_path / "i.npz", kind="image")
    assert img.x.shape == (10, 1, 6, 6) and img.labels is not None
    with pytest.raises(DataError, match="not found"):
        load_dataset(path=tmp_path / "missing.csv")


def test_group_specs() -> None:
    names = [f"px[{i},{j}]" for i in range(4) for j in range(4)]
    patches = make_groups("image", (1, 4, 4), "patches:2", feature_names=names)
    assert len(patches) == 4 and sorted(patches[0].indices.tolist()) == [0, 1, 4, 5]
    steps = make_groups("sequence", (3, 2), "steps", feature_names=[f"e{i}" for i in range(6)])
    assert [g.indices.tolist() for g in steps] == [[0, 1], [2, 3], [4, 5]]
    user = make_groups("tabular", (3,), {"ab": ["a", "b"]}, feature_names=["a", "b", "c"])
    assert [(g.name, g.indices.tolist()) for g in user] == [("ab", [0, 1]), ("c", [2])]
    with pytest.raises(DataError, match="unknown features: z"):
        make_groups("tabular", (3,), {"ab": ["a", "z"]}, feature_names=["a", "b", "c"])
    with pytest.raises(DataError, match="do not apply to tabular"):
        make_groups("tabular", (3,), "patches:2", feature_names=["a", "b", "c"])


def test_correlation_groups_join_correlated_columns() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 2))
    x = np.column_stack([base[:, 0], base[:, 0] * 2 + 0.01 * rng.normal(size=200), base[:, 1]])
    groups = make_groups("tabular", (3,), "correlation:0.9", feature_names=["a", "b", "c"], x=x)
    assert sorted(sorted(g.indices.tolist()) for g in groups) == [[0, 1], [2]]
