"""The Go engine (native) behind one policy: a handle in the shared library,
called through the bridge."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from crewcore.errors import ToolArgumentsError, ToolPolicyError
from crewcore.tools.failures import _args_problem
from crewcore.tools.fallback import _PyEngine
from crewcore.tools.policy import ToolPolicy

log = logging.getLogger("crewcore.tools")

# --------------------------------------------------------------------------
# the Go engine behind one policy


_gil_lib_handle: Any = None
#: bytes of the per-thread buffer tool_begin responses are written into
#: (larger ones come in C memory that is freed after copying)
_BUF_CAP = 16384


def _gil_lib() -> Any:
    """The library loaded through ``ctypes.PyDLL``: calls keep the GIL.

    A policy check takes microseconds in Go. Releasing the GIL around it (as
    ``ctypes.CDLL`` does) lets any other runnable Python thread -- CrewAI's
    event-bus workers run on every tool call -- take the GIL, and getting it
    back can take up to the 5 ms switch interval: measured, that turned a
    10 us call into 2 ms. Long calls (fetch, file reads) go through the
    ordinary CDLL binding, which releases the GIL.
    """
    global _gil_lib_handle
    if _gil_lib_handle is None:
        import ctypes

        from crewcore import _bridge

        lib = ctypes.PyDLL(str(_bridge.library_path()))
        lib.crewcore_free.argtypes = [ctypes.c_void_p]
        lib.crewcore_free.restype = None
        # int64 crewcore_tool_begin(h, req, len, buf, cap, &resp, &resp_len): see cabi/tools_fast.go
        lib.crewcore_tool_begin.argtypes = [
            ctypes.c_int64,
            ctypes.c_char_p,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_int64),
        ]
        lib.crewcore_tool_begin.restype = ctypes.c_int64
        _gil_lib_handle = lib
    return _gil_lib_handle


class _Engine:
    """One policy's state in the Go engine (a handle)."""

    def __init__(self, policy: ToolPolicy) -> None:
        from crewcore import _bridge

        self.policy = policy
        self._bridge = _bridge
        try:
            self.h = int(_bridge.call(["tool_policy_new", 0, policy._wire()]))
        except ToolPolicyError as e:
            raise ToolPolicyError(f"invalid ToolPolicy: {e}") from None
        _bridge.load()
        self._lib = _gil_lib()
        import msgpack

        self._packb = msgpack.packb
        self._unpackb = msgpack.unpackb
        self._begin_fn = self._lib.crewcore_tool_begin
        # the engine's deadline is start + the policy timeout (tools.Engine.Begin)
        # (the same float arithmetic as cabi's ms(): timeout_ms * 1e6, truncated)
        self._timeout_ns = int((policy.timeout or 0) * 1000.0 * 1e6)
        self._buf = threading.local()

    def close(self) -> None:
        h, self.h = self.h, 0
        if h and not self._bridge.forked():
            try:
                self._bridge.call(["tool_policy_free", h])
            except Exception:  # pragma: no cover - best effort at shutdown
                pass

    def __del__(self) -> None:  # pragma: no cover - finalizer
        try:
            self.close()
        except Exception:
            pass

    def begin(self, tool: str, args: Any, task: str, run: str, depth: int, flags: int = 0) -> list[Any]:
        """One bridge call: the engine's verdict for a call (see cabi/tools_fast.go).

        An allowed call without a cache key (the common case) comes back as
        the start time alone: no response buffer, no MessagePack decoding.
        """
        if self._bridge._forked:
            return self._twin().begin(tool, args, task, run, depth, flags)
        st = self._buf.__dict__
        refs = st.get("refs")
        if refs is None:
            refs = self._refs(st)
        try:
            # This thread's Packer: msgpack.packb builds one (and its
            # buffer) per call, which costs ~7 us more inside CrewAI's path.
            req = refs[3]((tool, args, task, run, depth, flags))
        except (TypeError, ValueError, OverflowError) as e:
            raise ToolArgumentsError(_args_problem(tool, args, e)) from None
        r = self._begin_fn(self.h, req, len(req), refs[2], _BUF_CAP, refs[0], refs[1])
        if r >= 0:
            return [0, r, r + self._timeout_ns if self._timeout_ns else 0, None]
        if r == -3:  # the cached value itself, still encoded (the executor decodes it)
            return [1, 0, 0, self._raw(st)]
        raw = self._raw(st)
        resp = self._unpackb(raw, raw=False) if raw else None
        if r == -2:
            raise self._bridge._error(resp)
        return resp

    def _refs(self, st: dict[str, Any]) -> tuple[Any, Any, int, Callable[[Any], bytes]]:
        """This thread's response slots and buffer, and its request packer
        (a Packer is not thread-safe; autoreset leaves it empty after an
        error too)."""
        import ctypes

        import msgpack

        out = st["out"] = ctypes.c_void_p()
        n = st["n"] = ctypes.c_int64()
        buf = st["buf"] = ctypes.create_string_buffer(_BUF_CAP)
        st["view"] = memoryview(buf).cast("B")
        pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        refs = st["refs"] = (ctypes.byref(out), ctypes.byref(n), ctypes.addressof(buf), pack)
        return refs

    def _raw(self, st: dict[str, Any]) -> Any:
        """The response the last call left: in this thread's buffer (a view
        valid until the thread's next call) or in C memory (copied, freed)."""
        import ctypes

        n = st["n"].value
        p = st["out"].value
        if not p:
            return st["view"][:n]
        try:
            return ctypes.string_at(p, n)
        finally:
            self._lib.crewcore_free(p)

    def _twin(self) -> _PyEngine:
        """After fork() the Go runtime is unusable here: a fresh Python engine."""
        tw = self.__dict__.get("_tw")
        if tw is None:
            log.warning("crewcore: forked after the native library was loaded; tool policies run in Python here")
            tw = self.__dict__["_tw"] = _PyEngine(self.policy)
        return tw

    def end(self, start: int, outcome: int, key: bytes | None, result: bytes | None) -> tuple[int, bool]:
        if self._bridge._forked:
            return self._twin().end(start, outcome, key, result)
        el, stored = self._bridge.call(["tool_end", self.h, start, outcome, key, result])
        return int(el), bool(stored)

    def forget(self, tool: str, args: Any, task: str, run: str) -> None:
        """Take this call out of its loop window (tools.Engine.Forget): a call
        whose tool raised is not a repeat. Only called when a tool raised."""
        if self._bridge._forked:
            return self._twin().forget(tool, args, task, run)
        try:
            self._bridge.call(["tool_forget", self.h, tool, args, task, run, 0])
        except (TypeError, ValueError, OverflowError) as e:
            raise ToolArgumentsError(_args_problem(tool, args, e)) from None

    def clock(self) -> int:
        if self._bridge._forked:
            return self._twin().clock()
        return int(self._bridge.call(["tool_clock", self.h]))

    def reset(self, key: str = "") -> None:
        if self._bridge._forked:
            return self._twin().reset(key)
        self._bridge.call(["tool_reset", self.h, key])

    def stats(self) -> dict[str, Any]:
        if self._bridge._forked:
            return self._twin().stats()
        st = dict(self._bridge.call(["tool_stats", self.h]))
        st["engine"] = "native"
        return st
