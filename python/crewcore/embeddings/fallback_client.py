"""The pure-Python embedding client: the Go client's twin (package embed,
client.go and attempt.go) for processes without the library.

Same request (``encoding_format: base64``), same decoding to the provider's
float32 values, same retry policy (429, 408, 409, 5xx, connection errors,
attempt timeouts, malformed answers and a wrong dimension are retried with
backoff and jitter, ``Retry-After`` / ``retry-after-ms`` honoured, all within
the call's deadline), same client-side rate limit, same batching of
concurrent calls (leader/followers: while ``max_in_flight`` calls run, new
calls queue and the next call takes every queued text), same typed errors
with the same messages. Connections: one ``httpx.Client`` (a keep-alive
pool), rebuilt in a child after fork.
"""

from __future__ import annotations

import base64
from email.utils import parsedate_to_datetime
import json
import os
import random
import threading
import time
from typing import Any

from crewcore.embeddings.config import ApiConfig
from crewcore.errors import (
    EmbeddingAPIError,
    EmbeddingClosedError,
    EmbeddingConnectionError,
    EmbeddingDimensionError,
    EmbeddingError,
    EmbeddingRateLimitError,
    EmbeddingResponseError,
    EmbeddingServerError,
    EmbeddingTimeoutError,
    InvalidArgumentError,
)

# Kind names as Go's sentinel errors print them (messages match).
_KINDS: dict[type[EmbeddingError], str] = {
    EmbeddingRateLimitError: "embedding API rate limit",
    EmbeddingServerError: "embedding API server error",
    EmbeddingAPIError: "embedding API refused the request",
    EmbeddingTimeoutError: "embedding call deadline exceeded",
    EmbeddingConnectionError: "embedding API connection failed",
    EmbeddingResponseError: "malformed embeddings response",
    EmbeddingDimensionError: "embedding dimension mismatch",
}


class _Attempt:
    __slots__ = ("vectors", "tokens", "cls", "status", "msg", "retryable", "retry_after", "dim_error")

    def __init__(self, cls: type[EmbeddingError] | None = None, status: int = 0, msg: str = "",
                 retryable: bool = False, retry_after: float = 0.0) -> None:
        self.vectors: list[Any] = []
        self.tokens = 0
        self.cls, self.status, self.msg = cls, status, msg
        self.retryable, self.retry_after = retryable, retry_after
        self.dim_error: EmbeddingDimensionError | None = None


class _Job:
    __slots__ = ("texts", "deadline", "vectors", "tokens", "error", "done")

    def __init__(self, texts: list[str], deadline: float) -> None:
        self.texts, self.deadline = texts, deadline
        self.vectors: list[Any] = []
        self.tokens: list[int] = []
        self.error: BaseException | None = None
        self.done = False


def decode_response(body: bytes, n: int) -> tuple[list[Any], int]:
    """(vectors as float32 arrays in input order, tokens); raises ValueError."""
    import numpy as np

    doc = json.loads(body)
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or len(data) != n:
        raise ValueError(f"{len(data) if isinstance(data, list) else 0} embeddings for {n} inputs")
    out: list[Any] = [None] * n
    dim = -1
    for i, d in enumerate(data):
        idx = d.get("index", i) if isinstance(d, dict) else i
        if not isinstance(idx, int) or not 0 <= idx < n:
            raise ValueError(f"index {idx} out of range [0, {n})")
        if out[idx] is not None:
            raise ValueError(f"index {idx} appears twice")
        emb = d.get("embedding") if isinstance(d, dict) else None
        if isinstance(emb, str):
            raw = base64.b64decode(emb, validate=True)
            if len(raw) % 4:
                raise ValueError(f"{len(raw)} bytes is not a whole number of float32")
            v = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif isinstance(emb, list):
            v = np.asarray(emb, dtype=np.float64).astype(np.float32)
        else:
            raise ValueError(f"embedding {idx}: missing")
        if v.size == 0 or not np.isfinite(v).all():
            raise ValueError(f"embedding {idx}: empty or not finite")
        if dim == -1:
            dim = v.size
        elif v.size != dim:
            raise ValueError(f"embedding {idx} has {v.size} dimensions, embedding 0 has {dim}")
        out[idx] = v
    usage = doc.get("usage") or {}
    tokens = int(usage.get("total_tokens") or usage.get("prompt_tokens") or 0)
    return out, tokens


def _error_message(body: bytes) -> str:
    try:
        err = json.loads(body).get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            return err
    except (ValueError, AttributeError):
        pass
    text = body.decode("utf-8", "replace").strip()
    return (text[:300] + "...") if len(text) > 300 else (text or "(empty body)")


def _retry_after(headers: Any) -> float:
    v = (headers.get("retry-after-ms") or "").strip()
    if v:
        try:
            ms = float(v)
            if 0 <= ms < 1e9:
                return ms / 1000.0
        except ValueError:
            pass
    v = (headers.get("retry-after") or "").strip()
    if not v:
        return 0.0
    try:
        s = float(v)
        return s if 0 <= s < 1e6 else 0.0
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(v).timestamp() - time.time())
    except (TypeError, ValueError):
        return 0.0


class PyClient:
    """The pure-Python twin of the Go client (see the module doc)."""

    engine = "python"

    def __init__(self, api: ApiConfig, *, timeout: float = 60.0, attempt_timeout: float = 30.0,
                 max_retries: int = 4, retry_base: float = 0.25, retry_max: float = 8.0,
                 max_batch: int = 2048, max_batch_bytes: int = 1 << 20, max_in_flight: int = 4,
                 rate_limit: float | None = None, rate_burst: int = 1, **_ignored: Any) -> None:
        self.api = api
        self.timeout, self.attempt_timeout = float(timeout), float(attempt_timeout)
        self.max_retries = max(0, int(max_retries))
        self.retry_base, self.retry_max = float(retry_base), float(retry_max)
        self.max_batch, self.max_batch_bytes = int(max_batch), int(max_batch_bytes)
        self.max_in_flight = max(1, int(max_in_flight))
        self.rate = float(rate_limit or 0.0)
        self.burst = max(1, int(rate_burst))
        self._tokens, self._last = float(self.burst), time.monotonic()
        if api.azure_deployment:
            from urllib.parse import quote

            self.url = (f"{api.base_url.rstrip('/')}/openai/deployments/{quote(api.azure_deployment, safe='')}"
                        f"/embeddings?api-version={quote(api.azure_api_version, safe='')}")
        else:
            self.url = api.base_url.rstrip("/") + "/embeddings"
        self.headers = {"Content-Type": "application/json", "Accept": "application/json",
                        "User-Agent": "crewcore-embed/1", **api.headers}
        if api.api_key:
            auth = "api-key" if api.azure_deployment else "Authorization"
            if not any(k.lower() == auth.lower() for k in self.headers):
                self.headers[auth] = api.api_key if api.azure_deployment else f"Bearer {api.api_key}"
        self.dim = api.dimensions
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._running = 0
        self._closed = False
        self._http: Any = None
        self._pid = 0
        self._rate_lock = threading.Lock()
        self.counters = {"calls": 0, "requests": 0, "attempts": 0, "retries": 0, "failures": 0, "batched": 0}

    # -- connections ---------------------------------------------------------

    def _client(self) -> Any:
        if self._http is None or self._pid != os.getpid():  # a child after fork gets its own pool
            import httpx

            self._http = httpx.Client(timeout=self.attempt_timeout, trust_env=True,
                                      limits=httpx.Limits(max_keepalive_connections=max(4, 2 * self.max_in_flight)))
            self._pid = os.getpid()
        return self._http

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for j in self._queue:
                j.error = EmbeddingClosedError(f"{self.api.provider} embeddings client closed")
                j.done = True
            self._queue.clear()
            self._cond.notify_all()
        if self._http is not None and self._pid == os.getpid():
            self._http.close()

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "dimension": self.dim, "namespace": self.api.namespace()}

    # -- the call ---------------------------------------------------------------

    def embed(self, texts: list[str], timeout: float = 0.0) -> tuple[list[Any], list[int]]:
        """One vector (float32 array) per text and each text's share of tokens."""
        self.counters["calls"] += 1
        for i, t in enumerate(texts):
            if not t:
                raise InvalidArgumentError(f"invalid embedding configuration or input: text {i} is empty "
                                           "(providers refuse empty inputs)")
        limit = self.timeout if not timeout or timeout <= 0 else min(timeout, self.timeout)
        deadline = time.monotonic() + limit
        jobs = self._split(texts, deadline)
        start = time.monotonic()
        with self._cond:
            if self._closed:
                raise EmbeddingClosedError(f"{self.api.provider} embeddings client closed")
            self._queue.extend(jobs)
            while not all(j.done for j in jobs):
                if self._running < self.max_in_flight and self._queue:
                    self._running += 1
                    self._cond.release()
                    try:
                        self._serve_until(jobs)
                    finally:
                        self._cond.acquire()
                        self._running -= 1
                        self._cond.notify_all()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    for j in jobs:
                        if not j.done:
                            j.error = EmbeddingTimeoutError(self._message(
                                EmbeddingTimeoutError, 0, 0, time.monotonic() - start,
                                f"no answer within the call's deadline ({limit:g}s)"))
                            j.done = True
                    break
                self._cond.wait(min(left, 0.05))
        vectors: list[Any] = []
        tokens: list[int] = []
        for j in jobs:
            if j.error is not None:
                self.counters["failures"] += 1
                raise j.error
            vectors += j.vectors
            tokens += j.tokens
        return vectors, tokens

    def _split(self, texts: list[str], deadline: float) -> list[_Job]:
        jobs, cur, size = [], [], 0
        for t in texts:
            if cur and (len(cur) >= self.max_batch or size + len(t) > self.max_batch_bytes):
                jobs.append(_Job(cur, deadline))
                cur, size = [], 0
            cur.append(t)
            size += len(t)
        jobs.append(_Job(cur, deadline))
        return jobs

    def _take(self) -> list[_Job]:
        batch, n, size = [], 0, 0
        now = time.monotonic()
        while self._queue:
            j = self._queue[0]
            if j.done or j.deadline <= now:
                self._queue.pop(0)
                continue
            b = sum(len(t) for t in j.texts)
            if batch and (n + len(j.texts) > self.max_batch or size + b > self.max_batch_bytes):
                break
            batch.append(self._queue.pop(0))
            n += len(j.texts)
            size += b
        return batch

    def _serve_until(self, mine: list[_Job]) -> None:
        """Serve queued batches (the GIL is released in the HTTP waits)
        until this caller's jobs are done or the queue is empty."""
        while True:
            with self._cond:
                if all(j.done for j in mine):
                    return
                batch = self._take()
            if not batch:
                return
            self._send(batch)

    def _send(self, batch: list[_Job]) -> None:
        index: dict[str, int] = {}
        texts: list[str] = []
        for j in batch:
            for t in j.texts:
                if t not in index:
                    index[t] = len(texts)
                    texts.append(t)
        if len(batch) > 1:
            self.counters["batched"] += len(batch)
        deadline = max(j.deadline for j in batch)
        err: BaseException | None = None
        vectors: list[Any] = []
        tokens = 0
        try:
            vectors, tokens = self._call(texts, deadline)
        except BaseException as e:  # noqa: BLE001 - handed to every waiting caller
            err = e
        total = sum(len(t) for t in texts) or 1
        with self._cond:
            for j in batch:
                if err is not None:
                    j.error = err
                else:
                    j.vectors = [vectors[index[t]] for t in j.texts]
                    j.tokens = [max(1, int(tokens * len(t) / total + 0.5)) if tokens else 0 for t in j.texts]
                j.done = True
            self._cond.notify_all()

    def _wait_rate(self, deadline: float) -> bool:
        if self.rate <= 0:
            return True
        while True:
            with self._rate_lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return True
                wait = (1 - self._tokens) / self.rate
            if now + wait > deadline:
                return False
            time.sleep(wait)

    def _call(self, texts: list[str], deadline: float) -> tuple[list[Any], int]:
        body: dict[str, Any] = {"model": self.api.model, "input": texts, "encoding_format": "base64"}
        if self.api.dimensions:
            body["dimensions"] = self.api.dimensions
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        start = time.monotonic()
        attempt = 0
        while True:
            if not self._wait_rate(deadline):
                raise self._error(_Attempt(EmbeddingTimeoutError, msg="the client-side rate limit leaves "
                                           "no slot before the call's deadline"), attempt, start)
            self.counters["attempts"] += 1
            res = self._attempt(data, len(texts), deadline)
            if res.cls is None:
                self.counters["requests"] += 1
                return res.vectors, res.tokens
            if not res.retryable or attempt >= self.max_retries:
                raise self._error(res, attempt + 1, start)
            wait = res.retry_after or self._backoff(attempt)
            if deadline - time.monotonic() < wait:
                res.msg += f" (next retry in {wait * 1000:.0f}ms would pass the call's deadline)"
                raise self._error(res, attempt + 1, start)
            self.counters["retries"] += 1
            time.sleep(wait)
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        d = min(self.retry_base * (2 ** min(attempt, 30)), self.retry_max)
        return d * (1 - 0.25 * random.random())

    def _attempt(self, data: bytes, n: int, deadline: float) -> _Attempt:
        import httpx

        left = deadline - time.monotonic()
        if left <= 0:
            return _Attempt(EmbeddingTimeoutError, msg="no answer before the call's deadline")
        budget = min(self.attempt_timeout, left)
        try:
            r = self._client().post(self.url, content=data, headers=self.headers, timeout=budget)
        except httpx.TimeoutException as e:
            if deadline - time.monotonic() <= 0.001:
                return _Attempt(EmbeddingTimeoutError, msg=f"no answer before the call's deadline: {e}")
            return _Attempt(EmbeddingTimeoutError, retryable=True,
                            msg=f"no answer within the attempt timeout ({self.attempt_timeout:g}s)")
        except httpx.HTTPError as e:
            return _Attempt(EmbeddingConnectionError, retryable=True, msg=f"{type(e).__name__}: {e}")
        if r.status_code // 100 != 2:
            res = _Attempt(EmbeddingAPIError, status=r.status_code, msg=_error_message(r.content),
                           retry_after=_retry_after(r.headers))
            if r.status_code == 429:
                res.cls, res.retryable = EmbeddingRateLimitError, True
            elif r.status_code in (408, 409) or r.status_code >= 500:
                res.cls, res.retryable = EmbeddingServerError, True
            should = r.headers.get("x-should-retry")
            if should in ("true", "false"):
                res.retryable = should == "true"
            return res
        try:
            vectors, tokens = decode_response(r.content, n)
        except (ValueError, TypeError, AttributeError) as e:
            return _Attempt(EmbeddingResponseError, status=r.status_code, retryable=True,
                            msg=f"malformed embeddings response: {e}")
        got = int(vectors[0].size)
        if not self.dim:
            self.dim = got
        if got != self.dim:
            msg = (f"embeddings {self.api.provider} model {json.dumps(self.api.model)} returned {got}-dimensional "
                   f"vectors, expected {self.dim}")
            res = _Attempt(EmbeddingDimensionError, status=r.status_code, msg=msg, retryable=True)
            res.dim_error = EmbeddingDimensionError(msg)
            return res
        res = _Attempt()
        res.vectors, res.tokens = vectors, tokens
        return res

    def _message(self, cls: type[EmbeddingError], status: int, attempts: int, elapsed: float, msg: str) -> str:
        st = f"HTTP {status}" if status else "no answer"
        return (f"embeddings {self.api.provider} model {json.dumps(self.api.model)}: {_KINDS.get(cls, 'embedding failed')} "
                f"({st}) after {attempts} attempt(s) in {elapsed * 1000:.0f}ms: {msg}")

    def _error(self, res: _Attempt, attempts: int, start: float) -> EmbeddingError:
        if res.dim_error is not None:
            return res.dim_error
        if self._closed:
            return EmbeddingClosedError(f"{self.api.provider} embeddings client closed during the call")
        cls = res.cls or EmbeddingError
        return cls(self._message(cls, res.status, attempts, time.monotonic() - start, res.msg))
