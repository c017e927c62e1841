"""The knowledge store's query-embedding path (crewcore/knowledge/embedder.py):
CrewAI's own embedding classes, called without the per-value loop of
CrewAI's validation wrapper, give the same vectors and fail on the same bad
outputs with the same exceptions."""

from __future__ import annotations

from pathlib import Path
import sys
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from knowledge_helpers import EMBEDDER, HashEmbedding, hash_embed  # noqa: E402

from crewai.rag.embeddings.factory import build_embedder  # noqa: E402
from crewai.rag.embeddings.providers.custom.embedding_callable import CustomEmbeddingFunction  # noqa: E402

from crewcore.knowledge.embedder import crewai_original_call, resolve_embedder, without_value_loop  # noqa: E402


class Inherits(HashEmbedding):
    """A subclass without its own __call__: CrewAI wraps the wrapper again."""


BAD: dict[str, Any] = {
    "none": None,
    "empty list": [],
    "empty vector": [np.zeros(0, dtype=np.float32)],
    "zero-dimensional": [np.float32(1.0)],
    "strings": [["a", "b"]],
    "dicts": [{"x": 1}],
}


class Returns(CustomEmbeddingFunction):
    """An embedding function returning whatever ``out`` is."""

    out: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, input: list[str]) -> Any:  # noqa: A002
        return self.out


def test_crewai_wrapper_is_found_on_the_installed_wheel() -> None:
    # If CrewAI changes how it wraps EmbeddingFunction.__call__, this fails
    # (the fast path would silently turn off otherwise).
    # HashEmbedding is also a ChromaDB EmbeddingFunction, whose own (numpy)
    # wrapper sits under CrewAI's and is kept.
    for emb in (build_embedder(EMBEDDER), Inherits(), Returns()):
        f = crewai_original_call(emb)
        assert f is not None and f.__module__ != "crewai.rag.core.base_embeddings_callable"
    assert crewai_original_call(Returns()).__qualname__ == "Returns.__call__"
    assert crewai_original_call(lambda texts: texts) is None


@pytest.mark.parametrize("emb", [build_embedder(EMBEDDER), HashEmbedding(), Inherits()], ids=["built", "class", "subclass"])
def test_same_vectors_as_crewais_call(emb: Any) -> None:
    texts = ["pump warranty PX-1", "the valve voltage", "x"]
    fast = without_value_loop(emb)
    assert fast is not emb
    got, want = fast(texts), emb(texts)
    assert len(got) == len(want) == 3
    for g, w, h in zip(got, want, hash_embed(texts)):
        assert g.dtype == np.float32 and w.dtype == np.float32
        assert np.array_equal(g, w) and np.array_equal(g, h)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_outputs_fail_as_with_crewai(case: str) -> None:
    emb = Returns()
    emb.out = BAD[case]
    with pytest.raises(Exception) as crewai_err:
        emb(["q"])  # CrewAI's wrapped call
    with pytest.raises(Exception) as ours:
        without_value_loop(emb)(["q"])
    # the same kind of error (ValueError, or CrewAI's IndexError on [])
    assert type(ours.value) is type(crewai_err.value), (ours.value, crewai_err.value)


def test_plain_callables_are_kept() -> None:
    def f(texts: list[str]) -> list[np.ndarray]:
        return hash_embed(texts)

    assert resolve_embedder(f) is f
    assert resolve_embedder(EMBEDDER) is not None
    assert np.array_equal(resolve_embedder(EMBEDDER)(["a b"])[0], hash_embed(["a b"])[0])
