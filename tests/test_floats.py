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


# --------------------------------------------------------------------------
# the batch form (crewcore_f32_lists) and to_rows(batch_vectors=True)


def test_batch_equals_list_by_list() -> None:
    rnd = random.Random(5)
    for n, count in ((1, 2), (7, 3), (3072, 100)):
        vecs = [[rnd.gauss(0, 1) for _ in range(n)] for _ in range(count)]
        buf = _floats.f32_many(vecs, n, True)
        assert buf is not None, "the batch conversion is not in use on this interpreter"
        assert bytes(buf) == b"".join(_pack(v) for v in vecs)


@pytest.mark.parametrize(
    "vecs, n, check",
    [
        ([[1.0, 2.0], [1.0, 2]], 2, True),  # an int in the second list
        ([[1.0, 2.0], [1.0]], 2, True),  # another length
        ([[1.0, 2.0], (1.0, 2.0)], 2, True),  # not a list
        ([[1.0, 2.0], None], 2, True),
        ([[1.0, 2.0], [1.0, float("nan")]], 2, True),
        ([[1.0, 2.0], [1.0, 1e39]], 2, False),  # out of float32's range
        ([[1.0, _Float(2.0)], [1.0, 2.0]], 2, True),  # a float subclass
    ],
)
def test_batch_refuses_what_a_single_list_would(vecs: list[object], n: int, check: bool) -> None:
    assert _floats.f32_many(vecs, n, check) is None


def _rows_plain(records: list[object], check: bool) -> list[validate.Row]:
    return [validate.to_row(r, check) for r in records]


def test_to_rows_batch_gives_the_same_rows() -> None:
    from conftest import rec

    rnd = random.Random(9)
    records = [rec(f"r{k}", [rnd.uniform(-1, 1) for _ in range(64)], scope="/a") for k in range(20)]
    for check in (True, False):
        fast = validate.to_rows(records, check, batch_vectors=True)
        assert all(isinstance(r.embedding, memoryview) for r in fast), "the batch path was not taken"
        plain = _rows_plain(records, check)
        assert [r._replace(embedding=bytes(r.embedding)) for r in fast] == plain


def test_to_rows_batch_falls_back_with_the_same_errors() -> None:
    from conftest import rec

    good = [0.5] * 8
    cases = [
        ([rec("a", good), rec("b", good[:-1] + [float("nan")])], "non-finite"),
        ([rec("a", good), rec("b", good[:-1] + [1e39])], "not a float32"),
    ]
    for records, words in cases:
        with pytest.raises(InvalidRecordError, match=words):
            validate.to_rows(records, True, batch_vectors=True)
    # mixed lengths and records without a vector: record by record, as before
    mixed = [rec("a", good), rec("b", good[:4]), rec("c", None)]
    rows = validate.to_rows(mixed, True, batch_vectors=True)
    assert [r.embedding for r in rows] == [_pack(good), _pack(good[:4]), None]


def test_native_save_of_a_batch_stores_the_exact_vectors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import rec

    from crewcore import MemoryStorage

    rnd = random.Random(3)
    vecs = [[rnd.uniform(-1, 1) for _ in range(256)] for _ in range(50)]
    st = MemoryStorage(tmp_path / "m.db", engine="native", return_embeddings=True)
    st.save([rec(f"r{k}", v, scope="/a") for k, v in enumerate(vecs)])
    for k in (0, 17, 49):
        got = st.get_record(f"r{k}")
        assert got is not None and _pack(got.embedding) == _pack(vecs[k])
    st.close()
