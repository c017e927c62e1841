package memory

import (
	"context"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// How the WAL is kept bounded (docs/architecture.md, "WAL size").
//
// SQLite only starts a WAL over from its beginning when a write begins
// while every frame has been copied into the database (and no reader still
// uses a frame); otherwise the write appends. The store's writer has
// wal_autocheckpoint off so that commits do not pay for checkpoints, and
// checkpoints used to run in the background while the writer kept writing:
// they copied every frame, but by the time one finished the writer had
// appended more, so the WAL was never reset and grew by the size of every
// write (6 GB in a 10-minute soak). Now the background checkpoint holds the
// store's write lock (writes of this process wait, as they would for an
// automatic checkpoint in the commit), and runs in RESTART mode, which also
// blocks other processes' writers until every reader has left the WAL, so
// the next write of any process starts the WAL over. journal_size_limit on
// the writer connection then truncates the file to walSizeLimit.
const (
	// walCheckpointBytes is the size of the frames in the WAL from which a
	// write wakes the checkpointer.
	walCheckpointBytes = 4 << 20
	// walHardBytes is the size of the frames in the WAL from which the
	// writer no longer leaves the checkpoint to the background: the write
	// that left the WAL there runs the RESTART checkpoint itself before it
	// returns (as SQLite's automatic checkpoint would), so a checkpointer
	// starved of CPU, or slowed by readers, cannot let the WAL run on.
	walHardBytes = 16 << 20
	// walSizeLimit is journal_size_limit of the writer connection: when
	// that connection starts the WAL over, the file is truncated to it.
	walSizeLimit = 4 << 20
	// walIdleAfter is how long after the last write of this process the
	// checkpointer truncates a WAL larger than walIdleKeep.
	walIdleAfter = time.Second
	// walIdleKeep is the WAL size left alone when the writes stop.
	walIdleKeep = 1 << 20
	// walCheckpointWait bounds how long one checkpoint waits for other
	// processes' writers and readers (SQLite's busy handler).
	walCheckpointWait = 2 * time.Second
	// storeBusyWait is the busy_timeout of the store's connections.
	storeBusyWait = 10 * time.Second
)

// walKeeper is the state of a store's background checkpointer.
type walKeeper struct {
	over      chan struct{} // a write left the WAL past walCheckpointBytes
	wrote     chan struct{} // the first write since the checkpointer last went idle
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once
	dirty     atomic.Bool  // written since the last idle checkpoint
	lastWrite atomic.Int64 // unix nanoseconds of the last write of this process
	// hardFrom is the WAL size from which a write checkpoints inline:
	// walHardBytes, moved up by walHardBytes after an inline checkpoint
	// that others kept busy (so a reader that never leaves costs one
	// wait per walHardBytes written, not one per write), reset to
	// walHardBytes by any checkpoint that completes.
	hardFrom atomic.Int64
	// checkpoints counts the checkpoints run, by mode (tests).
	restarts, truncates, inline atomic.Int64
}

// startCheckpointer starts the background checkpointer of s.
func (s *Store) startCheckpointer() {
	k := &s.walk
	k.over = make(chan struct{}, 1)
	k.wrote = make(chan struct{}, 1)
	k.stop = make(chan struct{})
	k.done = make(chan struct{})
	k.hardFrom.Store(walHardBytes)
	go s.checkpointer()
}

// stopCheckpointer stops the checkpointer and waits for it. Idempotent.
// It must not be called with s.writeMu held (a checkpoint takes it).
func (s *Store) stopCheckpointer() {
	k := &s.walk
	if k.stop == nil {
		return
	}
	k.stopOnce.Do(func() { close(k.stop) })
	<-k.done
}

// afterWrite runs after every committed write of this process (with
// s.writeMu held): it wakes the checkpointer when the WAL is past
// walCheckpointBytes, and arms its idle truncation.
func (s *Store) afterWrite() {
	k := &s.walk
	k.lastWrite.Store(time.Now().UnixNano())
	if !k.dirty.Swap(true) {
		select {
		case k.wrote <- struct{}{}:
		default:
		}
	}
	n := s.walBytes()
	if n >= k.hardFrom.Load() && k.stop != nil {
		// s.writeMu is held: no write of this process can append meanwhile.
		k.inline.Add(1)
		if !s.runCheckpoint("RESTART") {
			k.hardFrom.Store(n + walHardBytes)
		}
		return
	}
	if n >= walCheckpointBytes {
		select {
		case k.over <- struct{}{}:
		default:
		}
	}
}

// walBytes returns the size of the frames the WAL holds: from the mapped
// WAL-index header (mxFrame and the page size) when there is one, else the
// size of the -wal file.
func (s *Store) walBytes() int64 {
	if w := s.wal; w != nil && w.hdr != nil {
		if frames, page, ok := w.frames(); ok {
			return int64(frames) * (int64(page) + 24)
		}
	}
	st, err := os.Stat(s.path + "-wal")
	if err != nil {
		return 0
	}
	return st.Size()
}

// checkpointer runs checkpoints off the path of the writes: RESTART when a
// write left the WAL past walCheckpointBytes, TRUNCATE once this process
// has not written for walIdleAfter and the WAL file is over walIdleKeep.
func (s *Store) checkpointer() {
	k := &s.walk
	defer close(k.done)
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	defer idle.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-k.over:
			if s.checkpoint("RESTART") {
				ensureReserve(s.path) // grows with the store (marker.go)
			}
		case <-k.wrote:
		case <-idle.C:
			if wait := walIdleAfter - time.Since(time.Unix(0, k.lastWrite.Load())); wait > 0 {
				idle.Reset(wait)
				continue
			}
			// Cleared first: a write from now on arms the timer again.
			k.dirty.Store(false)
			if walFileSize(s.path) > walIdleKeep && !s.checkpoint("TRUNCATE") {
				k.dirty.Store(true) // readers or another writer: try again later
				idle.Reset(walIdleAfter)
			}
			continue
		}
		idle.Reset(walIdleAfter)
	}
}

// truncateOnClose empties a WAL larger than walIdleKeep when a store that
// wrote closes: the store's checkpointer is gone from then on, and the
// processes still reading never checkpoint (SQLite's own checkpoint at
// close only runs in the last connection to the file).
func (s *Store) truncateOnClose() {
	if s.walk.lastWrite.Load() != 0 && walFileSize(s.path) > walIdleKeep {
		s.checkpoint("TRUNCATE")
	}
}

func walFileSize(path string) int64 {
	st, err := os.Stat(path + "-wal")
	if err != nil {
		return 0
	}
	return st.Size()
}

// checkpoint runs PRAGMA wal_checkpoint(mode) on a pooled connection while
// holding the store's write lock, so no write of this process appends to
// the WAL while it runs: when it returns true every frame is in the
// database and the next write of any process starts the WAL over (RESTART)
// or the WAL is empty (TRUNCATE). Other processes' readers and writers are
// waited for up to walCheckpointWait; false means they were still busy.
func (s *Store) checkpoint(mode string) bool {
	if mode == "RESTART" {
		// Most frames are copied first without the write lock, while
		// writes go on; the locked pass then copies only what they added.
		s.runCheckpoint("PASSIVE")
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.runCheckpoint(mode)
}

// runCheckpoint runs one PRAGMA wal_checkpoint(mode) on a pooled connection.
func (s *Store) runCheckpoint(mode string) bool {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), walCheckpointWait+5*time.Second)
	defer cancel()
	c, err := s.db.Conn(ctx)
	if err != nil {
		return false
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `PRAGMA busy_timeout=`+itoa(walCheckpointWait.Milliseconds())); err != nil {
		return false
	}
	// Back to the pool with the pool's own busy timeout.
	defer c.ExecContext(context.Background(), `PRAGMA busy_timeout=`+itoa(storeBusyWait.Milliseconds())) //nolint:errcheck
	var busy, log, done int64
	err = c.QueryRowContext(ctx, `PRAGMA wal_checkpoint(`+mode+`)`).Scan(&busy, &log, &done)
	switch mode {
	case "RESTART":
		s.walk.restarts.Add(1)
	case "TRUNCATE":
		s.walk.truncates.Add(1)
	}
	ok := err == nil && busy == 0
	if ok && (mode == "RESTART" || mode == "TRUNCATE") {
		s.walk.hardFrom.Store(walHardBytes)
	}
	return ok
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// frames reads mxFrame (the number of valid frames in the WAL) and the
// page size from the mapped WAL-index header (word 4, and the 16-bit field
// at byte 14, where 1 means 65536). ok is false while a writer is between
// its two copies of the header.
func (w *walWatch) frames() (frames, page uint32, ok bool) {
	h, ok := w.snapshot()
	if !ok {
		return 0, 0, false
	}
	if nativeLittleEndian {
		page = h[3] >> 16
	} else {
		page = h[3] & 0xffff
	}
	if page == 1 {
		page = 65536
	}
	return h[4], page, page >= 512
}
