"""The CrewAI seam of the knowledge store: ``set_knowledge_storage_factory``.

Every ``Knowledge`` CrewAI builds without an explicit ``storage=`` (crew
knowledge sources, agent knowledge sources, ``Knowledge(...)`` in user code)
asks the factory; ``crewai reset-memories --knowledge`` resets through
``Knowledge.reset()``, so it reaches the same storage.
"""

from __future__ import annotations

from typing import Any

from crewcore.errors import InvalidArgumentError
from crewcore.knowledge import validate as v


def parse_config(knowledge: Any) -> dict[str, Any] | None:
    """``install(knowledge=...)``: True (defaults), False/None (off), a path
    or ``postgresql://`` DSN, or a dict with ``path``, ``mode`` (default "vector"), ``modes``
    ({collection_name: mode}, e.g. {"crew": "hybrid", "Researcher":
    "keyword"}), ``engine``, ``rrf_k``, ``batch_size``."""
    if knowledge is None or knowledge is False:
        return None
    if knowledge is True:
        cfg: dict[str, Any] = {}
    elif isinstance(knowledge, str):
        cfg = {"path": knowledge}
    elif isinstance(knowledge, dict):
        cfg = dict(knowledge)
    else:
        raise InvalidArgumentError(f"knowledge must be a bool, a path or a dict, got {type(knowledge).__name__}")
    unknown = set(cfg) - {"path", "mode", "modes", "engine", "rrf_k", "batch_size"}
    if unknown:
        raise InvalidArgumentError(f"unknown knowledge option(s): {sorted(unknown)}")
    cfg["mode"] = v.check_mode(cfg.get("mode"))
    modes = cfg.get("modes") or {}
    if not isinstance(modes, dict):
        raise InvalidArgumentError("knowledge modes must be a dict {collection_name: mode}")
    cfg["modes"] = {str(k): v.check_mode(m) for k, m in modes.items()}
    return cfg


def make_factory(cfg: dict[str, Any]) -> Any:
    def factory(embedder: Any, collection_name: str | None) -> Any:
        from crewcore.knowledge.storage import CrewcoreKnowledgeStorage

        kw: dict[str, Any] = {
            "collection_name": collection_name,
            "embedder": embedder,
            "path": cfg.get("path"),
            "mode": cfg["modes"].get(collection_name or "", cfg["mode"]),
            "engine": cfg.get("engine"),
        }
        for k in ("rrf_k", "batch_size"):
            if cfg.get(k) is not None:
                kw[k] = cfg[k]
        return CrewcoreKnowledgeStorage(**kw)

    factory.crewcore = True  # type: ignore[attr-defined]
    return factory


def install_knowledge(knowledge: Any) -> dict[str, Any] | None:
    """Register (or, for a falsy config, remove) crewcore's knowledge factory."""
    from crewai.knowledge.storage import factory as kf

    cfg = parse_config(knowledge)  # validates before anything changes
    current = getattr(kf, "_factory", None)
    if cfg is None:
        if current is not None and getattr(current, "crewcore", False):
            kf.set_knowledge_storage_factory(None)
        return None
    kf.set_knowledge_storage_factory(make_factory(cfg))
    return cfg


def uninstall_knowledge() -> None:
    from crewai.knowledge.storage import factory as kf

    if getattr(getattr(kf, "_factory", None), "crewcore", False):
        kf.set_knowledge_storage_factory(None)


def set_mode(obj: Any, mode: str) -> None:
    """Set the search mode of a Crew's, an Agent's or a Knowledge's crewcore
    knowledge storage ("vector", "keyword" or "hybrid")."""
    from crewcore.knowledge.storage import CrewcoreKnowledgeStorage

    mode = v.check_mode(mode)
    storage = getattr(obj, "storage", None)
    if storage is None:
        kn = getattr(obj, "knowledge", None)
        storage = getattr(kn, "storage", None)
    if not isinstance(storage, CrewcoreKnowledgeStorage):
        raise InvalidArgumentError(
            f"{type(obj).__name__} has no crewcore knowledge storage (knowledge sources added after crewcore.install()?)"
        )
    storage.mode = mode
