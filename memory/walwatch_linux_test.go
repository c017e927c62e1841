package memory

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/crewcore/crewcore/internal/sqlitelock"
)

// lockHolder reports the type of lock (F_RDLCK, F_WRLCK, or F_UNLCK when
// none) that would stop a write lock on [off, off+n) of f.
func lockHolder(t *testing.T, f *os.File, off, n int64) int16 {
	t.Helper()
	typ, err := sqlitelock.Holder(f, off, n)
	if err != nil {
		t.Skipf("F_OFD_GETLK: %v", err)
	}
	return typ
}

// The store's own descriptor on -shm (the WAL watch) must not drop
// SQLite's DMS lock: closing any descriptor of a file drops every POSIX lock
// the process holds on it. Without that lock another process opening the
// store rebuilds the WAL index under this one's connections (CI saw it die
// of SIGBUS in a read). Two stores on one file, and the first one closed,
// leave the lock in place too.
func TestWALWatchKeepsSQLiteLocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	a, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Kept open until the end: closing it would itself drop the locks.
	probe, err := os.Open(path + "-shm")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		probe.Close()
	}()
	held := func(when string) {
		t.Helper()
		if got := lockHolder(t, probe, sqlitelock.ShmDMS, 1); got != syscall.F_RDLCK {
			t.Fatalf("%s: the DMS lock on -shm is %d, want a read lock (%d) held by SQLite", when, got, syscall.F_RDLCK)
		}
	}
	held("after open")
	if err := a.Save(ctx, []Record{rec("x", "/s", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	held("after a write")

	b, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	held("after a second store on the same file")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	held("after the second store closed")
	if n, err := a.Count(ctx, ""); err != nil || n != 1 {
		t.Fatalf("count after the second store closed: %d, %v", n, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := lockHolder(t, probe, sqlitelock.ShmDMS, 1); got != syscall.F_UNLCK {
		t.Fatalf("after the last store closed: DMS lock %d, want none", got)
	}
}
