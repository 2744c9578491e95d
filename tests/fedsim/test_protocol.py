"""Flat vectors in Flower ``ArrayRecord``s: fedsim's own .npy encoding must be Flower's."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from fedsim.protocol import (
    array_to_numpy,
    from_array_record,
    from_shared_array_record,
    to_array_record,
)

ARRAYS = [
    np.arange(5, dtype=np.float32),
    np.linspace(-1.0, 1.0, 6186),
    np.zeros(0, dtype=np.float64),
    np.ones((3, 4), dtype=np.float16),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_to_array_record_writes_what_flower_writes(array: np.ndarray) -> None:
    ours = to_array_record("w", torch.from_numpy(array))["w"]
    flowers = Array(array)
    assert (ours.dtype, tuple(ours.shape), ours.stype) == (
        flowers.dtype,
        tuple(flowers.shape),
        flowers.stype,
    )
    saved = io.BytesIO()
    np.save(saved, array, allow_pickle=False)
    assert ours.data == flowers.data == saved.getvalue()
    np.testing.assert_array_equal(ours.numpy(), array)  # Flower's reader reads it


@pytest.mark.parametrize(
    "array", [*ARRAYS, np.arange(6, dtype=">f8").reshape(2, 3)], ids=lambda a: a.dtype.str
)
def test_array_to_numpy_reads_what_flower_reads(array: np.ndarray) -> None:
    ours, flowers = array_to_numpy(Array(array)), Array(array).numpy()
    assert ours.dtype == flowers.dtype and ours.shape == flowers.shape
    np.testing.assert_array_equal(ours, flowers)


def test_array_to_numpy_falls_back_to_flower_for_everything_else() -> None:
    ints = array_to_numpy(Array(np.arange(4)))  # not a float: np.load
    np.testing.assert_array_equal(ints, np.arange(4))
    good = Array(np.arange(4, dtype=np.float64))
    lying = Array(dtype="float64", shape=(5,), stype=good.stype, data=good.data)  # 4 values
    assert array_to_numpy(lying).shape == lying.numpy().shape == (4,)  # the bytes decide
    truncated = Array(dtype="float64", shape=(4,), stype=good.stype, data=good.data[:-8])
    with pytest.raises(ValueError):
        array_to_numpy(truncated)
    garbage = Array(dtype="no such dtype", shape=(4,), stype=good.stype, data=b"\x00" * 16)
    with pytest.raises(ValueError):
        array_to_numpy(garbage)
    other = Array(dtype="float64", shape=(4,), stype="torch.Tensor", data=good.data)
    with pytest.raises(TypeError):
        array_to_numpy(other)


def test_pickled_objects_are_refused() -> None:
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    array = Array(dtype="object", shape=(1,), stype="numpy.ndarray", data=pickled.getvalue())
    with pytest.raises(ValueError):
        array_to_numpy(array)


def test_from_array_record_returns_a_writable_copy() -> None:
    record = to_array_record("w", torch.tensor([1.0, 2.0, 3.0]))
    first = from_array_record(record, "w")
    first += 1
    assert from_array_record(record, "w").tolist() == [1.0, 2.0, 3.0]


def test_shared_record_is_decoded_once_per_distinct_bytes() -> None:
    record = to_array_record("shared-test", torch.tensor([1.0, 2.0]))
    copy = ArrayRecord()
    copy["shared-test"] = record["shared-test"]  # the same Array in a second message
    first = from_shared_array_record(record, "shared-test")
    assert from_shared_array_record(copy, "shared-test") is first
    same_values = to_array_record("shared-test", torch.tensor([1.0, 2.0]))  # new bytes object
    again = from_shared_array_record(same_values, "shared-test")
    assert again is not first and again.tolist() == [1.0, 2.0]
    changed = to_array_record("shared-test", torch.tensor([5.0, 6.0]))
    assert from_shared_array_record(changed, "shared-test").tolist() == [5.0, 6.0]
