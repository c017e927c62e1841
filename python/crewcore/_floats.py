"""Float lists to float32 bytes through the native library, in place.

CrewAI hands every embedding over as a list of Python floats; the engines
store float32. ``struct.pack`` costs about 20 ns a value (the list is
spread into an argument tuple first): 6 ms for a batch of 100 records of
3072 dimensions. ``crewcore_f32_list`` (cabi/floats.c) reads the list's
items where they are, about 1 ns a value.

It reads CPython's object layout, so it is used only where that layout is
the one it was written for: CPython with the GIL (not a free-threaded or
other build), after a self-test, and only once the bridge has loaded the
library (a process on the pure-Python engine never loads it for this). It
is called through ``ctypes.PyDLL``, which keeps the GIL, so no other thread
can change the list during the call. Anything it does not accept (an item
that is not an exact float, a value out of float32's range, NaN or infinity
when asked to check) makes ``f32_bytes`` return None and the caller takes
its ``struct`` path, which names the problem.
"""

from __future__ import annotations

import ctypes
import struct
import sys
import sysconfig
import threading
from typing import Any

from crewcore import _bridge

_fn: Any = None
_many: Any = None  # crewcore_f32_lists, when the library has it
_state = 0  # 0: not tried, 1: usable, -1: not usable here
_lock = threading.Lock()
_FLOAT = id(float)  # the address of PyFloat_Type in CPython
_LIST = id(list)
_arrays: dict[int, Any] = {}


def _layout_ok() -> bool:
    return (
        sys.implementation.name == "cpython"
        and not sysconfig.get_config_var("Py_GIL_DISABLED")
        and not sysconfig.get_config_var("Py_TRACE_REFS")
        and sys.byteorder == "little"
    )


def _setup() -> None:
    global _fn, _state
    with _lock:
        if _state != 0:
            return
        _state = -1
        if _bridge._lib is None or not _layout_ok():
            _state = 0  # the bridge may load later: try again then
            return
        try:
            fn = ctypes.PyDLL(str(_bridge.library_path())).crewcore_f32_list
        except (OSError, AttributeError):
            return  # an older library without it
        fn.argtypes = [ctypes.py_object, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32]
        fn.restype = ctypes.c_int64
        probe = [1.5, -2.25, 3.0e38, 1e-40, 0.1]
        out = bytearray(4 * len(probe))
        buf = (ctypes.c_char * len(out)).from_buffer(out)
        if fn(probe, _FLOAT, ctypes.addressof(buf), len(probe), 1) != len(probe):
            return
        del buf
        if bytes(out) != struct.pack(f"<{len(probe)}f", *probe):
            return
        out2 = bytearray(8)
        buf2 = (ctypes.c_char * 8).from_buffer(out2)
        if fn([1.0, 2], _FLOAT, ctypes.addressof(buf2), 2, 1) != -2:
            return  # an int must be refused
        del buf2
        _fn, _state = fn, 1
        _setup_many()


def _setup_many() -> None:
    """The batch form, after the same kind of self-test (an older library
    has none: batches then go list by list)."""
    global _many
    try:
        many = ctypes.PyDLL(str(_bridge.library_path())).crewcore_f32_lists
    except (OSError, AttributeError):
        return
    many.argtypes = [ctypes.py_object, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                     ctypes.c_int64, ctypes.c_int64, ctypes.c_int32]
    many.restype = ctypes.c_int64
    probe = [[1.5, -2.25], [3.0e38, 0.1]]
    out = bytearray(16)
    buf = (ctypes.c_char * 16).from_buffer(out)
    ok = many(probe, _LIST, _FLOAT, ctypes.addressof(buf), 2, 2, 1) == 2 and _same(probe, out)
    # an int in the second list, and a list of another length, are refused
    refused = many([[1.0, 2.0], [1.0, 2]], _LIST, _FLOAT, ctypes.addressof(buf), 2, 2, 1) == -2
    refused = refused and many([[1.0, 2.0], [1.0]], _LIST, _FLOAT, ctypes.addressof(buf), 2, 2, 1) == -2
    del buf
    if ok and refused:
        _many = many


def _same(lists: list[list[float]], out: bytearray) -> bool:
    return bytes(out) == b"".join(struct.pack(f"<{len(v)}f", *v) for v in lists)


def f32_bytes(vec: Any, check_finite: bool) -> bytes | None:
    """``vec`` (a list of floats) as little-endian float32 bytes, or None
    when the native conversion is unavailable or does not accept it."""
    if _state != 1:
        if _state == -1 or type(vec) is not list or _bridge._lib is None:
            return None
        _setup()
        if _state != 1:
            return None
    if type(vec) is not list:
        return None
    n = len(vec)
    arr = _arrays.get(n)
    if arr is None:
        arr = _arrays[n] = ctypes.c_char * (4 * n)
    out = bytearray(4 * n)
    view = arr.from_buffer(out)  # out is written through it: both stay alive for the call
    got = _fn(vec, _FLOAT, ctypes.addressof(view), n, 1 if check_finite else 0)
    del view
    return bytes(out) if got == n else None


def f32_many(vecs: list[Any], n: int, check_finite: bool) -> bytearray | None:
    """The lists in ``vecs`` (each a list of ``n`` floats) as one buffer of
    little-endian float32, one vector after the other, or None when the
    batch conversion is unavailable or does not accept one of them (the
    caller then converts them one by one, which names the problem)."""
    if _state != 1:
        if _state == -1 or _bridge._lib is None:
            return None
        _setup()
    if _many is None or type(vecs) is not list or n <= 0:
        return None
    out = bytearray(4 * n * len(vecs))
    view = (ctypes.c_char * len(out)).from_buffer(out)
    got = _many(vecs, _LIST, _FLOAT, ctypes.addressof(view), len(vecs), n, 1 if check_finite else 0)
    del view
    return out if got == len(vecs) else None
