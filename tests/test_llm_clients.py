"""install(llm_clients=True): CrewAI's OpenAI LLMs share one HTTP client
(crewcore/llm/), checked with CrewAI's real LLM class and the OpenAI SDK
against `crewcore mockllm` over real HTTP."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any, Iterator

import httpx
import pytest

from conftest import REPO

import crewcore
from crewcore import llm as llm_clients


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    exe = next((str(p) for p in (REPO / "python/crewcore/_lib/crewcore", REPO / "bin/crewcore") if p.exists()), None)
    assert exe, "the crewcore command is not built (make build)"
    proc = subprocess.Popen([exe, "mockllm", "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().split("mockllm listening on ", 1)[1].strip()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch, server: str, tmp_path: Any) -> Iterator[str]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-mockllm")
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path))
    crewcore.install(embeddings=False)
    yield server
    crewcore.uninstall()


def make(url: str, **kw: Any) -> Any:
    from crewai import LLM

    return LLM(model="gpt-4o-mini", base_url=url, api_key="sk-mockllm", **kw)


def test_llms_share_one_client_and_still_answer(installed: str) -> None:
    a, b = make(installed), make(installed)
    assert a._client._client is b._client._client  # one httpx.Client for both
    assert a._async_client._client is not b._async_client._client  # async clients belong to event loops
    ctx = a._client._client._transport._pool._ssl_context
    assert b._async_client._client._transport._pool._ssl_context is ctx
    assert "Mock answer" in a.call("Say something about Zephyr.")
    a._client.close()  # one LLM closing its client leaves the shared one open
    assert "Mock answer" in b.call("Say something about Zephyr.")
    for _ in range(2):  # two event loops, each with the LLM's own async client
        assert "Mock answer" in asyncio.run(b.acall("Say something async."))


def test_interceptors_and_uninstall_are_left_alone(installed: str) -> None:
    from crewai.llms.hooks.base import BaseInterceptor

    class Passthrough(BaseInterceptor[httpx.Request, httpx.Response]):
        def on_outbound(self, message: httpx.Request) -> httpx.Request:
            return message

        def on_inbound(self, message: httpx.Response) -> httpx.Response:
            return message

    shared = make(installed)._client._client
    mine = make(installed, interceptor=Passthrough())
    assert mine._client._client is not shared  # CrewAI's own transport with the interceptor
    crewcore.uninstall()
    assert not llm_clients.installed()
    after = make(installed)
    assert after._client._client is not shared
    assert "Mock answer" in after.call("hello")
    crewcore.install(embeddings=False, llm_clients=False)
    assert not llm_clients.installed()
    assert make(installed)._client._client is not shared


def test_a_child_after_fork_gets_its_own_client(installed: str) -> None:
    import os

    parent = make(installed)._client._client
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            child = make(installed)
            ok = child._client._client is not parent and "Mock answer" in child.call("from the child")
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
