"""saferisk.data.spec: one parsed spec, describe (cheap) and load, through every reader."""

from __future__ import annotations

from tests.paths import REPO
from pathlib import Path

import numpy as np
import pytest

from saferisk.data.spec import InputSetSpec, SelectionError, describe, load
from saferisk.data.shards import fingerprint
from saferisk.errors import DataError

ROOT = REPO
SEEDS = {"selection": 3, "samples": 5}


def _png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode="L").save(path)


@pytest.fixture
def sources(tmp_path):
    """One small source per format, each with 6 rows of 4 features (box: a region)."""
    rng = np.random.default_rng(0)
    X = rng.random((6, 4))
    y = np.array([0, 1, 0, 1, 0, 1])
    np.save(tmp_path / "a.npy", X)
    np.savez(tmp_path / "a.npz", X=X, y=y)
    (tmp_path / "a.csv").write_text("f0,f1,f2,f3,label\n" + "\n".join(
        ",".join(f"{v:.17g}" for v in row) + f",{label}" for row, label in zip(X, y)) + "\n")
    for i in range(6):
        _png(tmp_path / "png" / str(y[i]) / f"img{i}.png", (X[i].reshape(2, 2) * 255).astype(np.uint8))
    return {"npy": {"path": str(tmp_path / "a.npy")},
            "npz": {"path": str(tmp_path / "a.npz")},
            "csv": {"path": str(tmp_path / "a.csv"), "labels": "label"},
            "png": {"path": str(tmp_path / "png")},
            "box": {"box": {"lower": [0.0, 0.0, 0.0, 0.0], "upper": [1.0, 2.0, 3.0, 4.0]}, "samples": 5}}


@pytest.mark.parametrize("fmt", ["npy", "npz", "csv", "png", "box"])
def test_describe_and_load_agree_for_every_format(sources, tmp_path, fmt):
    entry = {**sources[fmt], "selection": {"indices": [4, 1, 2]}}
    spec = InputSetSpec.from_config("s", entry, tmp_path, SEEDS)
    info = describe(spec)
    assert info.n_rows == 3 and info.positions == [4, 1, 2] and info.n_features == 4
    assert info.has_labels == (fmt in ("npz", "csv", "png"))
    data = load(spec)
    assert len(data) == 3 and data.n_features == 4 and data.name == "s"
    # the shard path: rows at source positions, fingerprint re-checked
    shard = load(spec, info.positions[1:], expected_fingerprint=info.shard_fingerprint(1, 3))
    np.testing.assert_array_equal(shard.X, data.X[1:])
    assert shard.ids == data.ids[1:]
    with pytest.raises(DataError, match="changed while the workflow ran"):
        load(spec, info.positions[1:], expected_fingerprint=info.shard_fingerprint(0, 2))
    with pytest.raises(DataError, match="changed since the workflow was parsed"):
        load(spec, [99])


def test_box_rows_do_not_depend_on_how_many_are_drawn(sources, tmp_path):
    spec = InputSetSpec.from_config("b", sources["box"], tmp_path, SEEDS)
    full = load(spec)
    assert full.ids == ["box"] + [f"sample-{i}" for i in range(5)]
    np.testing.assert_array_equal(full.X[0], [0.5, 1.0, 1.5, 2.0])
    few = load(spec, [0, 3])
    np.testing.assert_array_equal(few.X, full.X[[0, 3]])
    assert full.domain.upper.tolist() == [1.0, 2.0, 3.0, 4.0] and full.is_box


def test_row_digests_follow_content_not_file_times(sources, tmp_path):
    spec = InputSetSpec.from_config("s", sources["npz"], tmp_path, SEEDS)
    before = describe(spec).row_digests
    X = np.load(tmp_path / "a.npz")["X"]
    X[2, 0] += 1.0
    np.savez(tmp_path / "a.npz", X=X, y=np.array([0, 1, 0, 1, 0, 1]))
    after = describe(spec).row_digests
    assert [b == a for b, a in zip(before, after)] == [True, True, False, True, True, True]
    assert fingerprint(before[:2]) == fingerprint(after[:2]) != fingerprint(after[:3])


def test_selection_per_class_is_the_same_draw_in_describe_and_load(sources, tmp_path):
    for fmt in ("npz", "csv", "png"):  # png: labels from the class sub-folders
        spec = InputSetSpec.from_config("s", {**sources[fmt], "selection": {"per_class": 2}}, tmp_path, SEEDS)
        info = describe(spec)
        data = load(spec)
        assert info.n_rows == 4 and sorted(np.bincount(data.labels).tolist()) == [2, 2]
        assert load(spec, info.positions).ids == data.ids


def test_spec_errors_name_the_config_key(sources, tmp_path):
    with pytest.raises(DataError, match=r"input_sets\.s\.path: not found"):
        InputSetSpec.from_config("s", {"path": "nope.npz"}, tmp_path, SEEDS)
    with pytest.raises(DataError, match=r"input_sets\.s: give a `path`"):
        InputSetSpec.from_config("s", {}, tmp_path, SEEDS)
    with pytest.raises(DataError, match=r"input_sets\.s\.box: .*lower > upper at feature 0"):
        InputSetSpec.from_config("s", {"box": {"lower": [2.0], "upper": [1.0]}}, tmp_path, SEEDS)
    spec = InputSetSpec.from_config("s", {**sources["npy"], "selection": {"per_class": 1}}, tmp_path, SEEDS)
    with pytest.raises(SelectionError, match=r"input_sets\.s\.selection\.per_class: .*no labels"):
        describe(spec)


def test_from_path_reads_every_row_with_its_own_domain(sources, tmp_path):
    data = load(InputSetSpec.from_path(tmp_path / "png"))
    assert data.name == "png" and len(data) == 6 and data.image_shape == (1, 2, 2)
    assert float(data.domain.upper.max()) == 1.0  # PNG pixels: the set brings [0, 1]
    (tmp_path / "region.json").write_text('{"lower": [0, 1], "upper": [2, 3]}')
    box = load(InputSetSpec.from_path(tmp_path / "region.json"))
    assert box.is_box and box.X.tolist() == [[1.0, 2.0]] and box.source.endswith("region.json")
