package knowledge

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error the package returns wraps one of them or is a
// *DimensionError; test with errors.Is / errors.As.
var (
	// ErrInvalidDocument reports a chunk that cannot be stored: empty text,
	// text with a NUL byte or invalid UTF-8, text over MaxChunkBytes, an
	// empty embedding, NaN or Inf in the embedding, metadata that is not a
	// JSON object.
	ErrInvalidDocument = errors.New("invalid document")
	// ErrInvalidArgument reports a bad argument: an empty or malformed
	// collection name, a negative limit, an unknown search mode, a filter
	// that is not a JSON object.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound reports a search of a collection that does not exist.
	ErrNotFound = errors.New("collection not found")
	// ErrNoFTS reports a keyword or hybrid search on a SQLite library built
	// without FTS5.
	ErrNoFTS = errors.New("SQLite FTS5 is not available")
	// ErrCorrupt reports a file that is not a crewcore knowledge store.
	ErrCorrupt = errors.New("not a crewcore knowledge store")
	// ErrClosed reports a call on a closed Store.
	ErrClosed = errors.New("knowledge store closed")
)

// DimensionError reports an embedding whose length differs from the
// collection's dimension.
type DimensionError struct {
	Collection  string
	Stored, Got int
}

func (e *DimensionError) Error() string {
	return fmt.Sprintf("knowledge collection %q: embedding dimension mismatch: the collection holds %d-dimensional vectors, got %d (use the same embedding model for a collection, or reset it)",
		e.Collection, e.Stored, e.Got)
}
