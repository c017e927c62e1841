"""The native float-list conversion (crewcore/_floats.py, cabi/floats.c):
the same bytes as struct.pack, and every value it does not accept left to
the struct path, which names the problem."""

from __future__ import annotations

import math
import random
import struct

import pytest

from crewcore import _bridge, _floats
from crewcore.errors import InvalidRecordError
from crewcore.memory import validate


@pytest.fixture(autouse=True)
def _loaded() -> None:
    _bridge.load()


def _pack(v: list[float]) -> bytes:
    return struct.pack(f"<{len(v)}f", *v)


def test_in_use_on_this_interpreter() -> None:
    rnd = random.Random(7)
    v = [rnd.uniform(-1, 1) for _ in range(3072)]
    assert _floats.f32_bytes(v, True) == _pack(v)
    assert _floats._state == 1, "the native conversion did not set itself up on CPython"


@pytest.mark.parametrize(
    "vec",
    [
        [0.0, -0.0, 1.0, -1.0],
        [1e-45, 1e-40, 1.17549435e-38, 3.4028234e38, -3.4028234e38],
        [0.1, 0.2, 0.3, 1 / 3, math.pi, -math.e],
        [1e-300, -1e-300],  # underflow to (signed) zero, as struct does
    ],
)
def test_same_bytes_as_struct(vec: list[float]) -> None:
    assert _floats.f32_bytes(vec, True) == _pack(vec)


def test_random_lists_of_every_length() -> None:
    rnd = random.Random(11)
    for n in range(1, 300):
        v = [rnd.gauss(0, 10 ** rnd.randint(-30, 30)) for _ in range(n)]
        assert _floats.f32_bytes(v, True) == _pack(v), n


@pytest.mark.parametrize(
    "vec, check",
    [
        ([1.0, 2], True),  # an int
        ([1.0, True], True),  # a bool
        ([1.0, "2"], True),
        ([1.0, None], True),
        ([1.0, float("nan")], True),
        ([1.0, float("inf")], True),
        ([1e39], False),  # out of float32's range
        ([-1e39], True),
        ((1.0, 2.0), True),  # not a list: the struct path
    ],
)
def test_refused_values_go_to_the_struct_path(vec: object, check: bool) -> None:
    assert _floats.f32_bytes(vec, check) is None


def test_nan_passes_when_not_checked() -> None:
    b = _floats.f32_bytes([1.0, float("nan")], False)
    assert b is not None and math.isnan(struct.unpack("<2f", b)[1])


class _Float(float):
    pass


def test_float_subclass_is_left_to_struct() -> None:
    v = [1.0, _Float(2.5)]
    assert _floats.f32_bytes(v, True) is None
    assert validate.vector_bytes(v) == _pack([1.0, 2.5])


@pytest.mark.parametrize(
    "vec, words",
    [
        ([1.0, float("nan")], "non-finite"),
        ([1.0, "x"], "not a float32"),
        ([1e39], "not a float32"),
    ],
)
def test_vector_bytes_errors_unchanged(vec: list[object], words: str) -> None:
    with pytest.raises(InvalidRecordError, match=words):
        validate.vector_bytes(vec)
