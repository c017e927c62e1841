"""Shared HTTP clients for CrewAI's OpenAI LLMs (``install(llm_clients=True)``).

Every ``LLM(model="gpt-...")`` CrewAI builds (one per Agent, usually built per
run by a ``@CrewBase`` crew) eagerly makes two OpenAI clients, each with a new
httpx transport whose SSL context loads the CA bundle
(``load_verify_locations``: ~45 ms of CPU apiece on this machine, ~90 ms per
LLM): in crewcore's profile of a whole crew run (bench/bench_crew.py
``--profile a``) it was the largest item left, 36% of the run.

The seam: CrewAI's ``OpenAICompletion`` passes the dict of
``_get_client_params()`` to ``OpenAI(...)`` / ``AsyncOpenAI(...)``, and an
``http_client`` in it is how the OpenAI SDK takes a caller's HTTP client (it
is also what ``LLM(client_params={"http_client": ...})`` does). While
installed, the sync client of every such LLM gets one process-wide
``httpx.Client`` (the SDK's defaults: timeouts, limits, redirects; its
keep-alive connections reused across LLMs and runs; ``close()`` leaves it
open for the other LLMs), and the async client a new ``httpx.AsyncClient``
sharing one SSL context (an AsyncClient's connections belong to an event
loop, and CrewAI runs one loop per task, so those are not shared). LLMs with
an ``interceptor`` or their own ``http_client`` are left alone; after fork a
child makes its own. ``uninstall`` restores CrewAI's methods.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_lock = threading.Lock()
_tls = threading.local()
_state: dict[str, Any] = {}
#: Environment that changes what an httpx client verifies or where it connects.
_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
        "http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _env_key() -> tuple[Any, ...]:
    return (os.getpid(), *(os.environ.get(k) for k in _ENV))


def _ssl_context() -> Any:
    """One verified SSL context per process and environment (what httpx would build)."""
    key = _env_key()
    ctx = _state.get("ctx")
    if ctx is None or ctx[0] != key:
        import httpx._config as cfg

        ctx = (key, cfg.create_ssl_context(verify=True, trust_env=True))
        _state["ctx"] = ctx
    return ctx[1]


def _sync_client() -> Any:
    key = _env_key()
    c = _state.get("sync")
    if c is None or c[0] != key:
        with _lock:
            c = _state.get("sync")
            if c is None or c[0] != key:
                from openai import DefaultHttpxClient

                class SharedHttpxClient(DefaultHttpxClient):  # type: ignore[misc, valid-type]
                    """The process's shared client: one LLM's close() must not close it for the others."""

                    def close(self) -> None:
                        return None

                    def __del__(self) -> None:
                        return None

                c = (key, SharedHttpxClient(verify=_ssl_context()))
                _state["sync"] = c
    return c[1]


def _async_client() -> Any:
    from openai import DefaultAsyncHttpxClient

    return DefaultAsyncHttpxClient(verify=_ssl_context())


def install_llm_clients() -> None:
    """Give CrewAI's OpenAI LLMs the shared clients (see the module doc)."""
    from crewai.llms.providers.openai.completion import OpenAICompletion as C

    with _lock:
        if "orig" in _state:
            return
        orig = {name: getattr(C, name) for name in ("_get_client_params", "_build_sync_client", "_build_async_client")}

        def _build_sync_client(self: Any) -> Any:
            if getattr(self, "interceptor", None) is not None:
                return orig["_build_sync_client"](self)
            _tls.kind = "sync"
            try:
                return orig["_build_sync_client"](self)
            finally:
                _tls.kind = None

        def _build_async_client(self: Any) -> Any:
            if getattr(self, "interceptor", None) is not None:
                return orig["_build_async_client"](self)
            _tls.kind = "async"
            try:
                return orig["_build_async_client"](self)
            finally:
                _tls.kind = None

        def _get_client_params(self: Any) -> Any:
            params = orig["_get_client_params"](self)
            kind = getattr(_tls, "kind", None)
            if kind and isinstance(params, dict) and "http_client" not in params:
                params["http_client"] = _sync_client() if kind == "sync" else _async_client()
            return params

        for fn in (_build_sync_client, _build_async_client, _get_client_params):
            fn.__wrapped__ = orig[fn.__name__]  # type: ignore[attr-defined]
            fn.crewcore = True  # type: ignore[attr-defined]
            setattr(C, fn.__name__, fn)
        _state["orig"] = orig


def uninstall_llm_clients() -> None:
    """Put CrewAI's methods back (LLMs built meanwhile keep their clients)."""
    with _lock:
        orig = _state.pop("orig", None)
        if orig is None:
            return
        from crewai.llms.providers.openai.completion import OpenAICompletion as C

        for name, fn in orig.items():
            if getattr(getattr(C, name), "crewcore", False):
                setattr(C, name, fn)


def installed() -> bool:
    return "orig" in _state


__all__ = ["install_llm_clients", "installed", "uninstall_llm_clients"]
