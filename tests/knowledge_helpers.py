"""Helpers of the knowledge tests and benchmark: a deterministic embedder
CrewAI and ChromaDB both accept, and a corpus generator."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
from chromadb.api.types import EmbeddingFunction as ChromaEmbeddingFunction
from crewai.rag.embeddings.providers.custom.embedding_callable import CustomEmbeddingFunction

DIM = 64
_WORD = re.compile(r"[a-z0-9]+")


def hash_embed(texts: list[str], dim: int = DIM) -> list[np.ndarray]:
    """Feature hashing of lowercase words (weight 1) and word pairs (0.5),
    L2-normalized: texts sharing words are close. Deterministic."""
    out = []
    for t in texts:
        acc = np.zeros(dim, dtype=np.float64)
        words = _WORD.findall(t.lower())
        feats = [(w, 1.0) for w in words] + [(a + " " + b, 0.5) for a, b in zip(words, words[1:])]
        if not feats:
            feats = [("\x00" + t, 1.0)]
        for f, wgt in feats:
            h = hashlib.blake2b(f.encode(), digest_size=8).digest()
            x = int.from_bytes(h, "little")
            acc[x % dim] += wgt if (x >> 63) == 0 else -wgt
        n = np.linalg.norm(acc)
        out.append((acc / n if n > 0 else acc).astype(np.float32))
    return out


class HashEmbedding(CustomEmbeddingFunction, ChromaEmbeddingFunction):
    """``hash_embed`` as a ChromaDB/CrewAI embedding function class (CrewAI's
    KnowledgeStorage validates it as both)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # CrewAI passes its config
        pass

    def __call__(self, input: list[str]) -> list[np.ndarray]:  # noqa: A002 - ChromaDB's name
        return hash_embed(list(input))

    @staticmethod
    def name() -> str:
        return "crewcore-test-hash"


#: CrewAI embedder spec of HashEmbedding (works for ChromaDB and crewcore).
EMBEDDER: dict[str, Any] = {"provider": "custom", "config": {"embedding_callable": HashEmbedding}}

TOPICS = ["pump", "valve", "router", "battery", "turbine", "sensor", "printer", "drone", "kettle", "heater"]
FACTS = ["warranty", "voltage", "weight", "maintenance", "installation", "pressure", "firmware", "cleaning"]


def corpus(n: int, seed: int = 7) -> list[str]:
    """n short product documents, each naming one product code."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        fact = FACTS[(i // len(TOPICS)) % len(FACTS)]
        code = f"{topic[:2].upper()}-{1000 + i}"
        filler = " ".join(rng.choice(FACTS + TOPICS, size=12))
        docs.append(f"The {topic} model {code} {fact} notes: {filler}. Contact support for the {topic} {fact}.")
    return docs
