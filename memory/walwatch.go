package memory

import "sync/atomic"

// walIndexHdrWords is the size of one copy of SQLite's WAL-index header in
// 32-bit words (48 bytes). The -shm file starts with two copies of it; every
// commit by any connection in any process rewrites both (iChange, mxFrame,
// salts and checksum change), second copy first. See "The WAL-Index Format"
// in SQLite's documentation (walformat.html).
const walIndexHdrWords = 12

// walWatch maps the first page of the store's -shm file read-only, so a
// read can tell in a few nanoseconds that no transaction has committed
// since the last time it looked, and skip the SQL freshness query.
//
// It is only an accelerator: any doubt (copies differ, header changed,
// watcher missing) falls back to the query. The file stays valid while the
// store is open because the store's writer connection keeps the WAL index
// open, and SQLite only truncates or deletes -shm when no connection has it
// (its DMS lock, which our own descriptor must not drop: see shmMap).
// hdr is nil when the file could not be mapped.
type walWatch struct {
	m    *shmMap // shared by the stores of this process on the same file
	mem  []byte
	hdr  *[2 * walIndexHdrWords]uint32
	last [walIndexHdrWords]uint32 // header seen before the last SQL check that found the index fresh
	ok   atomic.Bool              // last is valid
}

// snapshot reads the header; consistent is false while a writer is between
// its two copies.
func (w *walWatch) snapshot() (h [walIndexHdrWords]uint32, consistent bool) {
	consistent = true
	for i := range walIndexHdrWords {
		h[i] = atomic.LoadUint32(&w.hdr[i])
	}
	for i := range walIndexHdrWords {
		if atomic.LoadUint32(&w.hdr[walIndexHdrWords+i]) != h[i] {
			consistent = false
		}
	}
	return h, consistent
}
