package runq

import "errors"

// Sentinel errors. Every error runq returns wraps at most one of them, with
// context (the queue, the run, the argument) in its message.
var (
	// ErrInvalid: a bad argument (a crew that is not "module:attr", inputs
	// that are not a JSON object, a priority out of range, ...).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: the queue does not exist (a SQLite file's directory is
	// missing, a PostgreSQL database does not exist).
	ErrNotFound = errors.New("queue not found")
	// ErrAccess: the queue cannot be written (read-only file or directory,
	// PostgreSQL privileges or authentication).
	ErrAccess = errors.New("queue not writable")
	// ErrUnavailable: the PostgreSQL server cannot be reached.
	ErrUnavailable = errors.New("queue unavailable")
	// ErrCorrupt: the file is not SQLite, or is a SQLite database of
	// something else (tables but no River migrations).
	ErrCorrupt = errors.New("not a run queue")
	// ErrRunNotFound: no run with that id in the queue.
	ErrRunNotFound = errors.New("run not found")
	// ErrClosed: the queue or worker was closed.
	ErrClosed = errors.New("queue closed")
)
