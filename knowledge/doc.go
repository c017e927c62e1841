// Package knowledge is crewcore's knowledge (RAG) store: the chunks CrewAI's
// Knowledge sources produce, kept with their embeddings in one SQLite file
// (WAL) beside a SQLite FTS5 full-text index per collection, and searched by
// vector similarity, by keyword (BM25) or by both fused with reciprocal-rank
// fusion.
//
// A Store holds named collections (CrewAI's "knowledge_crew",
// "knowledge_<agent role>", ...). A chunk is identified inside its collection
// by an id the caller derives from its content (CrewAI and ChromaDB use the
// SHA-256 of the text), so saving the same source twice stores each chunk
// once. The first chunk saved fixes a collection's dimension; a reset drops
// the collection with its dimension and index.
//
// Scores are in [0, 1], higher is better:
//
//   - vector: 0.5 + 0.5*cos(q, v), the number CrewAI's ChromaDB client returns
//     for its cosine collections, so CrewAI's default score_threshold (0.6,
//     cosine >= 0.2) means what it means with ChromaDB;
//   - keyword: 0.5 + 0.5*b/bmax, where b is the chunk's BM25 and bmax the
//     best BM25 of the query's matches in the collection;
//   - hybrid: ranked by a fusion of the reciprocal ranks 1/(k+rank), k = 60
//     by default, of the vector and keyword rankings (the better of a
//     chunk's two, agreement as a tie-break; see Hybrid); the score reported
//     (and compared with the threshold) is the larger of the chunk's vector
//     and keyword scores.
//
// Vector search is exact: an int8 scan with a per-vector error bound picks
// the candidates, and every chunk whose bound could reach the top-k is scored
// in float32, so results equal a full float32 scan's.
//
// Other processes' writes are seen on the next call (a write counter in the
// file is checked before every read). The SQLite library must be built with
// FTS5 (mattn/go-sqlite3 build tag sqlite_fts5, which the Makefile sets); on a
// build without it Open still works, vector search works, writes queue their
// chunks for indexing, and keyword or hybrid searches fail with ErrNoFTS.
package knowledge
