"""crewcore's knowledge (RAG) store behind CrewAI's ``Knowledge``, in place of
ChromaDB: chunks with embeddings in one SQLite file, a SQLite FTS5 (BM25)
index per collection, and three search modes: ``vector`` (exact cosine,
ChromaDB's scores), ``keyword`` (BM25) and ``hybrid`` (reciprocal-rank
fusion). Go engine (package ``knowledge``, ops ``kn_*``) and a pure-Python
twin over the same files. See docs/architecture.md, "Knowledge".

    crewcore.install()                          # knowledge=True by default
    crewcore.install(knowledge={"mode": "hybrid"})
    crewcore.knowledge.set_mode(crew, "hybrid")  # per crew or agent
"""

from __future__ import annotations

from crewcore.knowledge.install import set_mode
from crewcore.knowledge.store import KnowledgeStore, default_path
from crewcore.knowledge.validate import DEFAULT_RRF_K, MODES


def __getattr__(name: str) -> object:
    # the CrewAI class imports crewai; load it on first use only
    if name == "CrewcoreKnowledgeStorage":
        from crewcore.knowledge.storage import CrewcoreKnowledgeStorage

        return CrewcoreKnowledgeStorage
    raise AttributeError(name)


__all__ = ["CrewcoreKnowledgeStorage", "DEFAULT_RRF_K", "KnowledgeStore", "MODES", "default_path", "set_mode"]
