package embed

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Every error of this package wraps one of them (errors.Is).
var (
	// ErrInvalid reports a bad configuration or argument (never retried).
	ErrInvalid = errors.New("invalid embedding configuration or input")
	// ErrStatus reports an API answer with a non-retryable error status
	// (400, 401, 403, 404, ...).
	ErrStatus = errors.New("embedding API refused the request")
	// ErrRateLimited reports an API that kept answering 429 until the
	// retries or the deadline ran out.
	ErrRateLimited = errors.New("embedding API rate limit")
	// ErrServer reports an API that kept answering 5xx (or 408/409).
	ErrServer = errors.New("embedding API server error")
	// ErrTimeout reports a call whose deadline passed while an attempt was
	// still waiting for the API.
	ErrTimeout = errors.New("embedding call deadline exceeded")
	// ErrConnection reports an API that could not be reached, or that
	// closed the connection without an answer, until the retries ran out.
	ErrConnection = errors.New("embedding API connection failed")
	// ErrDimension reports vectors of another length than the configured
	// (or first seen) dimension.
	ErrDimension = errors.New("embedding dimension mismatch")
	// ErrBadResponse reports an answer that is not a valid embeddings
	// response (bad JSON, missing or duplicate indices, NaN/Inf values).
	ErrBadResponse = errors.New("malformed embeddings response")
	// ErrClosed reports a call on a closed Client or Cache.
	ErrClosed = errors.New("embedding client or cache closed")
	// ErrCacheCorrupt reports a cache file that is not SQLite, not a
	// crewcore embedding cache, or damaged.
	ErrCacheCorrupt = errors.New("embedding cache corrupt or foreign")
	// ErrCacheAccess reports a cache that cannot be created or written
	// (read-only file or directory).
	ErrCacheAccess = errors.New("embedding cache not writable")
	// ErrCacheUnavailable reports a cache store that failed otherwise
	// (locked past the deadline, disk full, database unreachable).
	ErrCacheUnavailable = errors.New("embedding cache unavailable")
)

// APIError is the error of an Embed call that failed at the provider: which
// provider and model, the last HTTP status (0 when no answer came), how many
// attempts were made in how long, and what the provider said. Kind is one
// of the sentinel errors, returned by Unwrap.
type APIError struct {
	Provider string
	Model    string
	Status   int
	Attempts int
	Elapsed  time.Duration
	Message  string
	Kind     error
}

func (e *APIError) Error() string {
	status := "no answer"
	if e.Status != 0 {
		status = fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("embeddings %s model %q: %v (%s) after %d attempt(s) in %s: %s",
		e.Provider, e.Model, e.Kind, status, e.Attempts, e.Elapsed.Round(time.Millisecond), e.Message)
}

// Unwrap returns the sentinel error (Kind).
func (e *APIError) Unwrap() error { return e.Kind }

// DimensionError is an ErrDimension with the two lengths.
type DimensionError struct {
	Provider string
	Model    string
	Want     int
	Got      int
}

func (e *DimensionError) Error() string {
	return fmt.Sprintf("embeddings %s model %q returned %d-dimensional vectors, expected %d",
		e.Provider, e.Model, e.Got, e.Want)
}

// Unwrap returns ErrDimension.
func (e *DimensionError) Unwrap() error { return ErrDimension }
