"""Input sets: loaders for every format (and bad input), selection, validation, shards, npz."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saferisk.data.domain import Domain, load_domain_file
from saferisk.data.formats import BoxSource, read_box
from saferisk.data.inputs import InputSet, load_npz_input_set, npz_bytes, save_npz, validate
from saferisk.data.selection import select, stratified_positions
from saferisk.data.shards import shard_count, shard_range
from saferisk.data.spec import load_path
from saferisk.errors import DataError


def load_input_set(path, **options):
    return load_path(path, **options)


def box_input_set(lower, upper, name="box"):
    return BoxSource(read_box({"lower": lower, "upper": upper}), name=name).read()


def shard(input_set, size):
    """Consecutive shards as the plan cuts them (saferisk.data.shards)."""
    return [input_set.subset(range(*shard_range(k, len(input_set), size)), name=f"{input_set.name}.shard{k:03d}")
            for k in range(shard_count(len(input_set), size))]


def _digits(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8)), np.arange(n) % 3


# ----------------------------------------------------------------------------- loaders

def test_npy_rows_and_shaped(tmp_path):
    X, _ = _digits()
    np.save(tmp_path / "shaped.npy", X)
    np.save(tmp_path / "flat.npy", X.reshape(12, 64).astype(np.float32))
    shaped, flat = load_input_set(tmp_path / "shaped.npy"), load_input_set(tmp_path / "flat.npy")
    assert shaped.X.shape == (12, 64) and shaped.X.dtype == np.float64
    assert shaped.image_shape == (8, 8) and flat.image_shape is None
    np.testing.assert_allclose(shaped.X, X.reshape(12, 64))
    assert shaped.ids == [str(i) for i in range(12)]
    assert len(shaped.sha256) == 64 and shaped.source.endswith("shaped.npy")


def test_npz_default_and_custom_keys(tmp_path):
    X, y = _digits()
    np.savez(tmp_path / "a.npz", X=X, y=y)
    np.savez(tmp_path / "b.npz", images=X, targets=y)
    a = load_input_set(tmp_path / "a.npz")
    assert a.labels.tolist() == y.tolist() and a.X.shape == (12, 64)
    b = load_input_set(tmp_path / "b.npz", x_key="images", labels="targets")
    np.testing.assert_array_equal(a.X, b.X)
    with pytest.raises(DataError, match=r"b\.npz.*no inputs array.*images"):
        load_input_set(tmp_path / "b.npz")
    with pytest.raises(DataError, match="no array 'nope'"):
        load_input_set(tmp_path / "a.npz", labels="nope")


def test_npz_label_count_mismatch(tmp_path):
    X, y = _digits()
    np.savez(tmp_path / "bad.npz", X=X, y=y[:5])
    with pytest.raises(DataError, match="5 labels"):
        load_input_set(tmp_path / "bad.npz")


def test_csv_features_labels_ids(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,speed,angle,label\nr7,1.5,0.25,1\nr8,2.0,-0.5,0\n")
    s = load_input_set(path, labels="label", id_column="id")
    assert s.feature_names == ["speed", "angle"]
    assert s.ids == ["r7", "r8"] and s.labels.tolist() == [1, 0]
    np.testing.assert_array_equal(s.X, [[1.5, 0.25], [2.0, -0.5]])
    with pytest.raises(DataError, match="no label column 'cls'"):
        load_input_set(path, labels="cls")


def test_csv_text_cell_names_row_and_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(DataError, match=r"t\.csv: row 1 column 'b'"):
        load_input_set(path)


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_nan_and_inf_rows_named(tmp_path, suffix):
    X = np.zeros((5, 3))
    X[3, 1] = np.nan
    X[4, 0] = np.inf
    path = tmp_path / f"nan{suffix}"
    if suffix == ".npy":
        np.save(path, X)
    else:
        path.write_text("a,b,c\n" + "\n".join(",".join(str(v) for v in row) for row in X) + "\n")
    with pytest.raises(DataError, match=rf"nan\{suffix}: row 3 feature 1 is nan"):
        load_input_set(path)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match="not found.*nope.npy"):
        load_input_set(tmp_path / "nope.npy")
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(DataError, match="unknown input set format"):
        load_input_set(tmp_path / "x.txt")
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="broken.npy: not a readable"):
        load_input_set(tmp_path / "broken.npy")


def _png(path, array, mode):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_png_folder_class_subfolders(tmp_path):
    rng = np.random.default_rng(1)
    pixels = {}
    for cls in ("0", "1"):
        for k in range(2):
            array = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            pixels[f"{cls}/img{k}.png"] = array
            _png(tmp_path / "digits" / cls / f"img{k}.png", array, "L")
    s = load_input_set(tmp_path / "digits")
    assert s.ids == sorted(pixels)
    assert s.labels.tolist() == [0, 0, 1, 1]
    assert s.image_shape == (1, 8, 8) and s.X.shape == (4, 64)
    np.testing.assert_allclose(s.X[2], pixels["1/img0.png"].reshape(-1) / 255.0)
    assert s.X.min() >= 0 and s.X.max() <= 1
    assert float(s.domain.lower.min()) == 0.0 and float(s.domain.upper.max()) == 1.0


def test_png_folder_rgb_with_labels_csv(tmp_path):
    rng = np.random.default_rng(2)
    arrays = [rng.integers(0, 256, (4, 5, 3), dtype=np.uint8) for _ in range(3)]
    for k, array in enumerate(arrays):
        _png(tmp_path / "imgs" / f"{k}.png", array, "RGB")
    (tmp_path / "labels.csv").write_text("file,label\n0.png,4\n1.png,2\n2.png,4\n")
    s = load_input_set(tmp_path / "imgs", labels=str(tmp_path / "labels.csv"))
    assert s.image_shape == (3, 4, 5) and s.labels.tolist() == [4, 2, 4]
    np.testing.assert_allclose(s.X[1], arrays[1].transpose(2, 0, 1).reshape(-1) / 255.0)
    (tmp_path / "labels.csv").write_text("file,label\n0.png,4\n")
    with pytest.raises(DataError, match="no label for image '1.png'"):
        load_input_set(tmp_path / "imgs", labels=str(tmp_path / "labels.csv"))


def test_png_folder_size_mismatch_and_empty(tmp_path):
    _png(tmp_path / "f" / "a.png", np.zeros((8, 8), np.uint8), "L")
    _png(tmp_path / "f" / "b.png", np.zeros((7, 8), np.uint8), "L")
    with pytest.raises(DataError, match=r"b\.png: image shape"):
        load_input_set(tmp_path / "f")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no PNG images"):
        load_input_set(tmp_path / "empty")


def test_box_input_set():
    s = box_input_set([0.0, -1.0], [1.0, 3.0], name="region")
    np.testing.assert_array_equal(s.X, [[0.5, 1.0]])
    assert s.is_box and s.ids == ["box"]
    np.testing.assert_array_equal(s.domain.upper.numpy(), [1.0, 3.0])
    with pytest.raises(DataError, match="lower > upper at feature 1"):
        box_input_set([0.0, 2.0], [1.0, 1.0])


# ----------------------------------------------------------------------------- selection

def test_selection_first_indices_stratified():
    X, y = _digits(30)
    s = InputSet("d", X.reshape(30, -1), labels=y)
    assert select(s, first=4).ids == ["0", "1", "2", "3"]
    assert select(s, indices=[5, 2]).ids == ["5", "2"]
    a = s.subset(stratified_positions(s.labels, per_class=3, seed=7))
    b = select(s, per_class=3, seed=7)
    assert a.ids == b.ids and len(a) == 9
    assert sorted(np.bincount(a.labels).tolist()) == [3, 3, 3]
    assert select(s, per_class=3, seed=8).ids != a.ids  # the seed matters (30 rows, 10 per class)
    with pytest.raises(DataError, match="out of range"):
        select(s, indices=[30])
    with pytest.raises(DataError, match="choose one"):
        select(s, first=2, per_class=1)
    with pytest.raises(DataError, match="no labels"):
        select(InputSet("n", X.reshape(30, -1)), per_class=2)


# ----------------------------------------------------------------------------- validation

def test_validate_reshapes_and_checks_count(tmp_path):
    X, _ = _digits()
    np.save(tmp_path / "d.npy", X)  # (N, 8, 8) for a model taking (1, 8, 8)
    v = validate(load_input_set(tmp_path / "d.npy"), 64, (1, 8, 8), Domain.scalar(0, 1, 64))
    assert v.image_shape == (1, 8, 8) and v.X.shape == (12, 64)
    with pytest.raises(DataError, match=r"d\.npy: each input has 64 elements.*model takes 100"):
        validate(load_input_set(tmp_path / "d.npy"), 100, (1, 10, 10))
    np.save(tmp_path / "one.npy", X[0])  # one sample without its batch axis
    assert validate(load_input_set(tmp_path / "one.npy"), 64, (1, 8, 8)).X.shape == (1, 64)


def test_validate_domain_tolerance_clip_and_error():
    X = np.array([[0.5, 1.0 + 5e-7], [0.2, -3e-7]])
    s = InputSet("t", X, ids=["a", "b"], source="t.npy")
    v = validate(s, 2, domain=Domain.scalar(0.0, 1.0, 2))
    assert v.X.max() == 1.0 and v.X.min() == 0.0
    bad = InputSet("t", np.array([[0.5, 0.5], [0.5, 1.01]]), ids=["r0", "r9"], source="t.npy")
    with pytest.raises(DataError, match=r"t\.npy: row r9 feature 1 = 1\.01 is outside the domain"):
        validate(bad, 2, domain=Domain.scalar(0.0, 1.0, 2))


def test_domain_file_loader(tmp_path):
    np.save(tmp_path / "dom.npy", np.array([[0.0, -1.0], [1.0, 2.0]]))
    d = load_domain_file(tmp_path / "dom.npy", 2)
    assert d.lower.tolist() == [0.0, -1.0] and d.upper.tolist() == [1.0, 2.0]
    (tmp_path / "dom.csv").write_text("feature,lower,upper\nspeed,0,10\nangle,-3.5,3.5\n")
    d = load_domain_file(tmp_path / "dom.csv")
    assert d.upper.tolist() == [10.0, 3.5]
    (tmp_path / "bad.csv").write_text("lower,upper\n0,1\n2,1\n")
    with pytest.raises(DataError, match=r"bad\.csv: domain lower > upper at feature 1"):
        load_domain_file(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="3 input features"):
        load_domain_file(tmp_path / "dom.csv", 3)
    with pytest.raises(DataError, match="not found"):
        load_domain_file(tmp_path / "none.npy")


# ----------------------------------------------------------------------------- shards and npz

def test_shards_deterministic_and_npz_byte_identical(tmp_path):
    X, y = _digits(11)
    s = InputSet("digits", X.reshape(11, -1), labels=y, image_shape=(1, 8, 8),
                 domain=Domain.scalar(0, 1, 64), source="d.npy", sha256="ab" * 32)
    shards = shard(s, 4)
    assert [len(p) for p in shards] == [4, 4, 3]
    assert [p.name for p in shards] == ["digits.shard000", "digits.shard001", "digits.shard002"]
    assert sum((p.ids for p in shards), []) == s.ids
    assert [p.ids for p in shard(s, 4)] == [p.ids for p in shards]
    save_npz(shards[1], tmp_path / "a.npz")
    save_npz(shard(s, 4)[1], tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert npz_bytes(shards[1]) == (tmp_path / "a.npz").read_bytes()
    back = load_npz_input_set(tmp_path / "a.npz")
    assert back.name == "digits.shard001" and back.ids == shards[1].ids
    np.testing.assert_array_equal(back.X, shards[1].X)
    assert back.labels.tolist() == shards[1].labels.tolist()
    assert back.image_shape == (1, 8, 8) and back.sha256 == "ab" * 32
    assert torch.equal(back.domain.upper, s.domain.upper)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as data:  # plain arrays, no pickles
        assert data["X"].shape == (4, 64)


def test_box_set_npz_round_trip(tmp_path):
    import dataclasses

    s = dataclasses.replace(box_input_set([0.0, 1.0], [2.0, 3.0]), feature_names=["a", "b"])
    save_npz(s, tmp_path / "box.npz")
    back = load_npz_input_set(tmp_path / "box.npz")
    assert back.is_box and back.feature_names == ["a", "b"]
    np.testing.assert_array_equal(back.box_upper, [2.0, 3.0])
