"""The witness file (`saferisk.witness_file`): the one module that writes and reads witnesses."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from saferisk.witness_file import (WitnessStore, format_ref, load_witness, save_witnesses, split_ref, witness_key,
                                   x0_key)


def test_store_round_trip_and_reference(tmp_path):
    store = WitnessStore()
    store.add("b", np.array([[1.0, 2.0]], dtype=np.float32), np.array([1.5, 2.5]))
    store.add("a", np.zeros((2, 2)), np.ones(4))
    path = tmp_path / "w" / "robustness-inf.npz"
    store.save(path)
    with np.load(path) as data:
        assert data.files == ["a/witness", "a/x0", "b/witness", "b/x0"]  # sorted keys
        assert all(data[k].dtype == np.float64 and data[k].ndim == 1 for k in data.files)
    ref = format_ref("w/robustness-inf.npz", "b")
    assert ref == "w/robustness-inf.npz#b" and split_ref(ref) == ("w/robustness-inf.npz", "b")
    x0, witness = load_witness(tmp_path, ref)
    assert x0.tolist() == [1.0, 2.0] and witness.tolist() == [1.5, 2.5]
    assert [p.name for p in path.parent.iterdir()] == ["robustness-inf.npz"]  # no temporary file left


def test_saved_bytes_are_np_savez_of_the_sorted_float64_rows(tmp_path):
    """The file format: exactly np.savez of '<key>/x0' and '<key>/witness' in sorted key order
    (what radius jobs wrote before this module existed: the bytes must not change)."""
    x0, w = torch.tensor([0.25, 0.5], dtype=torch.float32), torch.tensor([0.3, 0.45], dtype=torch.float32)
    store = WitnessStore()
    store.add("7", x0.double().numpy(), w.double().numpy())
    store.save(tmp_path / "w.npz")
    expected = io.BytesIO()
    np.savez(expected, **{"7/witness": w.double().numpy().reshape(-1), "7/x0": x0.double().numpy().reshape(-1)})
    assert (tmp_path / "w.npz").read_bytes() == expected.getvalue()
    assert x0_key("7") == "7/x0" and witness_key("7") == "7/witness"
    save_witnesses(tmp_path / "again.npz", dict(reversed(store.arrays.items())))  # any order in, sorted out
    assert (tmp_path / "again.npz").read_bytes() == expected.getvalue()


def test_load_errors_name_the_reference(tmp_path):
    with pytest.raises(KeyError, match="lacks '#<key>'"):
        load_witness(tmp_path, "w.npz")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_witness(tmp_path, "missing.npz#0")
    store = WitnessStore()
    store.add("0", np.zeros(2), np.ones(2))
    store.save(tmp_path / "w.npz")
    with pytest.raises(KeyError, match="has no array '1/x0'"):
        load_witness(tmp_path, "w.npz#1")
