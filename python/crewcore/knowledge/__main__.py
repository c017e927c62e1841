"""``python -m crewcore.knowledge``: ingest files into a crewcore knowledge
store through CrewAI's own source classes, with a progress bar; and stats,
search, reset (also in the Go command: ``crewcore knowledge``).

    python -m crewcore.knowledge ingest docs/*.md data.csv --collection crew
    python -m crewcore.knowledge search "warranty of ZP-9" --collection crew --mode hybrid
    python -m crewcore.knowledge stats
    python -m crewcore.knowledge reset --collection crew

``--collection NAME`` is CrewAI's collection name (a crew's sources use
"crew", an agent's its role); the store collection is ``knowledge_NAME``.
The embedder is CrewAI's: ``--embedder '{"provider": "openai", "config":
{...}}'`` (default: OpenAI text-embedding-3-small, as CrewAI's default).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time
from typing import Any

_SOURCES = {
    ".txt": "text_file_knowledge_source.TextFileKnowledgeSource",
    ".md": "text_file_knowledge_source.TextFileKnowledgeSource",
    ".csv": "csv_knowledge_source.CSVKnowledgeSource",
    ".json": "json_knowledge_source.JSONKnowledgeSource",
    ".pdf": "pdf_knowledge_source.PDFKnowledgeSource",
    ".xlsx": "excel_knowledge_source.ExcelKnowledgeSource",
}


def _source_class(path: Path) -> Any:
    import importlib

    spec = _SOURCES.get(path.suffix.lower(), _SOURCES[".txt"])
    mod, cls = spec.split(".")
    return getattr(importlib.import_module(f"crewai.knowledge.source.{mod}"), cls)


class Bar:
    """A one-line progress bar on stderr (redrawn at most 10 times a second)."""

    def __init__(self, label: str, out: Any = sys.stderr) -> None:
        self.label, self.out, self.last, self.t0 = label, out, 0.0, time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        width = 30
        frac = done / total if total else 1.0
        rate = done / max(now - self.t0, 1e-9)
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        self.out.write(f"\r{self.label} [{bar}] {done}/{total} chunks  {rate:.0f}/s ")
        if done >= total:
            self.out.write("\n")
        self.out.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crewcore.knowledge", description=__doc__.split("\n\n")[0])
    ap.add_argument("--path", help="store file or directory (default: crewcore's default knowledge store)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ing = sub.add_parser("ingest", help="add files through CrewAI's knowledge sources")
    ing.add_argument("files", nargs="+", type=Path)
    ing.add_argument("--collection", default="crew")
    ing.add_argument("--embedder", help="CrewAI embedder spec as JSON")
    ing.add_argument("--chunk-size", type=int, default=4000)
    ing.add_argument("--chunk-overlap", type=int, default=200)
    ing.add_argument("--batch-size", type=int, default=256)
    se = sub.add_parser("search", help="search a collection")
    se.add_argument("query")
    se.add_argument("--collection", default="crew")
    se.add_argument("--embedder", help="CrewAI embedder spec as JSON")
    se.add_argument("--mode", default="vector", choices=["vector", "keyword", "hybrid"])
    se.add_argument("--limit", type=int, default=5)
    se.add_argument("--threshold", type=float, default=0.0)
    sub.add_parser("stats", help="collections, chunk counts, dimensions")
    rs = sub.add_parser("reset", help="delete a collection")
    rs.add_argument("--collection", required=True)
    args = ap.parse_args(argv)

    from crewcore.knowledge.storage import CrewcoreKnowledgeStorage
    from crewcore.knowledge.store import KnowledgeStore

    if args.cmd == "stats":
        store = KnowledgeStore(args.path)
        print(f"store: {store.path} (engine {store.engine}, keyword search {store.keyword_search})")
        for s in store.stats():
            print(f"  {s['name']}: {s['chunks']} chunks, dim {s['dim']}, keyword index "
                  f"{'ready' if s['indexed'] else 'pending'}")
        return 0
    if args.cmd == "reset":
        st = CrewcoreKnowledgeStorage(collection_name=args.collection, path=args.path)
        existed = st.store.reset(st.collection)
        print(f"{'reset' if existed else 'no collection'} {st.collection}")
        return 0 if existed else 1
    embedder = json.loads(args.embedder) if args.embedder else None
    if args.cmd == "search":
        st = CrewcoreKnowledgeStorage(collection_name=args.collection, path=args.path, embedder=embedder)
        for i, r in enumerate(st.search([args.query], limit=args.limit, score_threshold=args.threshold,
                                        mode=args.mode), 1):
            text = " ".join(r["content"].split())
            print(f"{i}. score {r['score']:.4f}  {text[:160]}")
        return 0
    st = CrewcoreKnowledgeStorage(collection_name=args.collection, path=args.path, embedder=embedder,
                                  batch_size=args.batch_size)
    for f in args.files:
        if not f.is_file():
            print(f"no such file: {f}", file=sys.stderr)
            return 1
    total = 0
    for f in args.files:
        cls = _source_class(f)
        src = cls(file_paths=[f.resolve()], chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap)
        src.storage = st
        st._progress = Bar(f.name)
        before = sum(s["chunks"] for s in st.store.stats() if s["name"] == st.collection)
        src.add()
        after = sum(s["chunks"] for s in st.store.stats() if s["name"] == st.collection)
        total += after - before
        print(f"{f}: {len(src.chunks)} chunks, {after - before} new", file=sys.stderr)
    print(f"{total} chunks added to {st.collection} in {st.store.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
