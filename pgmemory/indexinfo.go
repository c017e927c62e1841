package pgmemory

import "context"

// MaxIndexDim is the largest vector dimension that gets an HNSW index: the
// most pgvector's HNSW index takes for the vector type. A store of larger
// vectors (e.g. 3,072 for text-embedding-3-large) has no index and every
// search scores each candidate vector exactly.
const MaxIndexDim = maxIndexDim

// Indexed reports whether the HNSW index of this store's metric exists (as
// BuildIndex leaves it: a store of more than MaxIndexDim dimensions never
// has one).
func (s *Store) Indexed(ctx context.Context) (bool, error) { return s.hasIndex(ctx) }
