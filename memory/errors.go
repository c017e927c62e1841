package memory

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error a Store returns wraps one of these (check with
// errors.Is), so callers, including the C bridge, can branch on the kind of
// failure without parsing messages.
var (
	// ErrInvalidRecord reports a record that cannot be stored: NaN or Inf in its
	// vector, content over MaxContentBytes, invalid UTF-8, metadata that is not a
	// JSON object.
	ErrInvalidRecord = errors.New("invalid record")
	// ErrInvalidScope reports a scope path with a "." or ".." segment or a
	// control character.
	ErrInvalidScope = errors.New("invalid scope")
	// ErrInvalidArgument reports an argument out of range, such as a negative limit.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrDimensionMismatch reports a vector whose length differs from the
	// store's dimension. The concrete error is a *DimensionError.
	ErrDimensionMismatch = errors.New("embedding dimension mismatch")
	// ErrNotFound reports an Update of a record id that is not stored.
	ErrNotFound = errors.New("record not found")
	// ErrCorrupt reports a file at the store path that is not a crewcore memory
	// store: not SQLite at all, damaged, or another application's database.
	ErrCorrupt = errors.New("not a crewcore memory store")
	// ErrAccess reports a store path that cannot be created or written.
	ErrAccess = errors.New("store not writable")
	// ErrTimeout reports a database that stayed locked by another process
	// past the store's busy deadline.
	ErrTimeout = errors.New("store locked past deadline")
	// ErrClosed reports a call on a closed Store.
	ErrClosed = errors.New("store closed")
)

// DimensionError is returned when a vector's length differs from the store's
// dimension. It matches ErrDimensionMismatch with errors.Is.
type DimensionError struct {
	Stored int // dimension of the vectors already in the store
	Got    int // dimension of the offending vector
}

// Error implements error.
func (e *DimensionError) Error() string {
	return fmt.Sprintf("embedding dimension mismatch: store holds %d-dimensional vectors, got %d", e.Stored, e.Got)
}

// Is makes errors.Is(err, ErrDimensionMismatch) true.
func (e *DimensionError) Is(target error) bool { return target == ErrDimensionMismatch }
