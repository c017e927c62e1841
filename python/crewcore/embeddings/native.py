"""The Go engine of the embedding layer: the ``embed_*`` bridge ops
(cabi/embed.go, package embed).

Two bindings of the one library: cache lookups (microseconds) go through
``ctypes.PyDLL``, which keeps the GIL, so a hit never hands the GIL to
another thread (getting it back can take up to the 5 ms switch interval);
calls that wait for the provider go through the bridge's ``ctypes.CDLL``,
which releases the GIL for the whole HTTP exchange, so other threads run
and concurrent calls are batched in Go.
"""

from __future__ import annotations

import ctypes
import json
import threading
from typing import Any

from crewcore import _bridge
from crewcore.embeddings.config import ApiConfig

_tls = threading.local()
_gil_lib: Any = None
_lock = threading.Lock()


def _packer() -> Any:
    p = getattr(_tls, "packer", None)
    if p is None:
        import msgpack

        p = _tls.packer = msgpack.Packer(use_bin_type=True)
    return p


def _keep_gil_lib() -> Any:
    """The library through ``ctypes.PyDLL``: calls keep the GIL."""
    global _gil_lib
    if _gil_lib is None:
        with _lock:
            if _gil_lib is None:
                _bridge.load()
                lib = ctypes.PyDLL(str(_bridge.library_path()))
                lib.crewcore_call.argtypes = [ctypes.c_char_p, ctypes.c_int64,
                                              ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64)]
                lib.crewcore_call.restype = ctypes.c_int32
                lib.crewcore_free.argtypes = [ctypes.c_void_p]
                lib.crewcore_free.restype = None
                _gil_lib = lib
    return _gil_lib


def _call(lib: Any, req: list[Any]) -> Any:
    import msgpack

    try:
        data = _packer().pack(req)
    except UnicodeEncodeError as e:
        _tls.packer = None
        from crewcore.errors import InvalidArgumentError

        raise InvalidArgumentError(f"{req[0]}: a text is not valid UTF-8 ({e.reason} at position {e.start})") from None
    except (TypeError, ValueError, OverflowError) as e:
        _tls.packer = None
        from crewcore.errors import InvalidArgumentError

        raise InvalidArgumentError(f"{req[0]}: an argument cannot be encoded: {e}") from None
    out = ctypes.c_void_p()
    n = ctypes.c_int64()
    status = lib.crewcore_call(data, len(data), ctypes.byref(out), ctypes.byref(n))
    try:
        raw = ctypes.string_at(out.value, n.value) if out.value else b""
    finally:
        if out.value:
            lib.crewcore_free(out)
    resp = msgpack.unpackb(raw, raw=False) if raw else None
    if status != 0:
        raise _bridge._error(resp)
    return resp


def call_keep_gil(req: list[Any]) -> Any:
    """A short call (cache lookups): the GIL stays held."""
    return _call(_keep_gil_lib(), req)


def call_release_gil(req: list[Any]) -> Any:
    """A call that may wait (the provider): the GIL is released meanwhile."""
    return _call(_bridge.load(), req)


class NativeClient:
    """One Go embedding client (a handle): pooled connections, batching,
    retries, deadline and rate limit live in Go."""

    engine = "native"

    def __init__(self, api: ApiConfig, **options: Any) -> None:
        self.api = api
        self.h = int(call_release_gil(["embed_client_new", 0, json.dumps(api.go_config(**options))]))

    def fill(self, cache_h: int, ns: str, texts: list[str], timeout: float) -> tuple[int, int, bytes, int]:
        """Embed texts (no lookup; stored in the cache when cache_h != 0):
        (dim, n, raw float32 bytes, tokens)."""
        dim, n, buf, _hits, _misses, tokens, _warn = call_release_gil(
            ["embed_fill", self.h, cache_h, ns, texts, float(timeout)])
        return dim, n, buf, tokens

    def stats(self) -> dict[str, Any]:
        return dict(call_keep_gil(["embed_client_stats", self.h]))

    def close(self) -> None:
        if self.h:
            h, self.h = self.h, 0
            call_release_gil(["embed_client_close", h])


class NativeCache:
    """One cache (a handle, shared in Go by every opener of the same file or
    database in this process)."""

    engine = "native"

    def __init__(self, target: str, schema: str = "", max_bytes: int = 0, mem_bytes: int = 0) -> None:
        self.target = target
        h, off = call_release_gil(["embed_cache_open", 0, target, schema, int(max_bytes), int(mem_bytes)])
        self.h = int(h)
        #: Why the cache is off from the start ("" when on).
        self.off = str(off)

    def get(self, ns: str, texts: list[str]) -> tuple[int, bytes, bytes, str]:
        """(dim, mask: one byte per text (1 = hit), hit vectors' raw bytes, warning)."""
        dim, mask, buf, warn = call_keep_gil(["embed_cache_get", self.h, ns, texts])
        return dim, mask, buf, warn

    def put(self, ns: str, texts: list[str], dim: int, raw: bytes, tokens: list[int]) -> str:
        return str(call_release_gil(["embed_cache_put", self.h, ns, texts, dim, raw, tokens]))

    def stats(self) -> dict[str, Any]:
        return dict(call_release_gil(["embed_cache_stats", self.h]))

    def clear(self, ns: str = "") -> int:
        return int(call_release_gil(["embed_cache_clear", self.h, ns]))

    def flush(self) -> None:
        call_release_gil(["embed_cache_flush", self.h])

    def close(self) -> None:
        if self.h:
            h, self.h = self.h, 0
            call_release_gil(["embed_cache_close", h])
