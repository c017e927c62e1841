// Package memory is crewcore's embedded memory store: the engine behind
// CrewAI's Memory when crewcore is installed, and a plain Go library.
//
// A Store keeps its durable truth in one SQLite database (WAL mode) and every
// record in memory: vectors in one contiguous float32 arena scanned with SIMD
// kernels, and per-scope statistics that answer scope, category and count
// questions without touching records. Many goroutines and many processes may
// use one store file at once; each Store sees the others' writes on its next
// call by reading only the rows named in the file's change log.
//
// Semantics (scope prefixes match whole path segments, filters apply before
// top-k, the default L2 score equals CrewAI's LanceDB score) are described in
// docs/architecture.md; the Python fallback implements the same contract over
// the same file format.
package memory
