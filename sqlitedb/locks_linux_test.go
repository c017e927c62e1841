package sqlitedb

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/crewcore/crewcore/internal/sqlitelock"
)

// locked reports whether some lock would stop a write lock on [off, off+n)
// of f.
func locked(t *testing.T, f *os.File, off, n int64) bool {
	t.Helper()
	typ, err := sqlitelock.Holder(f, off, n)
	if err != nil {
		t.Skipf("F_OFD_GETLK: %v", err)
	}
	return typ != syscall.F_UNLCK
}

// Opening a second handle on a database this process already has open must
// not drop the first one's SQLite locks. CheckFile used to read the header
// through a descriptor of its own and close it, and closing any descriptor
// of a file drops every POSIX lock the process holds on it; another
// process could then take the file as unused (SQLite's DMS lock on -shm)
// and rebuild the WAL index under the open connections.
func TestReopenKeepsSQLiteLocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	d := openT(t, path, nil)
	if got := count(t, d); got != 0 {
		t.Fatalf("count %d", got)
	}
	shm, err := os.Open(path + "-shm")
	if err != nil {
		t.Fatal(err)
	}
	defer shm.Close() // only after the checks: it would drop the locks itself
	if !locked(t, shm, sqlitelock.ShmDMS, 1) {
		t.Fatal("no lock on the DMS byte of -shm with the database open")
	}
	main, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer main.Close() // likewise
	// In WAL mode every connection keeps a SHARED lock on the database file.
	if !locked(t, main, sqlitelock.SharedFirst, sqlitelock.SharedSize) {
		t.Fatal("no SHARED lock on the database file with the database open")
	}
	if err := CheckFile(path); err != nil {
		t.Fatal(err)
	}
	if !locked(t, shm, sqlitelock.ShmDMS, 1) {
		t.Fatal("CheckFile on an open database dropped SQLite's DMS lock on -shm")
	}
	if !locked(t, main, sqlitelock.SharedFirst, sqlitelock.SharedSize) {
		t.Fatal("CheckFile on an open database dropped SQLite's SHARED lock on the database file")
	}
	e := openT(t, path, nil)
	if got := count(t, e); got != 0 {
		t.Fatalf("count %d", got)
	}
	if !locked(t, shm, sqlitelock.ShmDMS, 1) {
		t.Fatal("a second Open of the same database dropped SQLite's DMS lock on -shm")
	}
	if !locked(t, main, sqlitelock.SharedFirst, sqlitelock.SharedSize) {
		t.Fatal("a second Open of the same database dropped SQLite's SHARED lock on the database file")
	}
}
