package sqlitedb

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// fOFDGetLK is F_OFD_GETLK (Linux 3.15+): an open-file-description lock
// query sees the classic POSIX locks SQLite takes, even this process's own.
const fOFDGetLK = 36

// locked reports whether some lock would stop a write lock on [off, off+n)
// of f.
func locked(t *testing.T, f *os.File, off, n int64) bool {
	t.Helper()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Start: off, Len: n}
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), fOFDGetLK, uintptr(unsafe.Pointer(&lk))); e != 0 {
		t.Skipf("F_OFD_GETLK: %v", e)
	}
	return lk.Type != syscall.F_UNLCK
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
	const dms = 128   // UNIX_SHM_DMS in SQLite's os_unix.c
	if !locked(t, shm, dms, 1) {
		t.Fatal("no lock on the DMS byte of -shm with the database open")
	}
	main, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer main.Close() // likewise
	// In WAL mode every connection keeps a SHARED lock on the database file
	// (a byte of 510 from SHARED_FIRST, 2 past PENDING_BYTE 0x40000000);
	// a closing connection that finds none thinks it is the last one,
	// checkpoints and deletes the -wal under the others.
	const sharedFirst, sharedSize = 0x40000002, 510
	if !locked(t, main, sharedFirst, sharedSize) {
		t.Fatal("no SHARED lock on the database file with the database open")
	}
	if err := CheckFile(path); err != nil {
		t.Fatal(err)
	}
	if !locked(t, shm, dms, 1) {
		t.Fatal("CheckFile on an open database dropped SQLite's DMS lock on -shm")
	}
	if !locked(t, main, sharedFirst, sharedSize) {
		t.Fatal("CheckFile on an open database dropped SQLite's SHARED lock on the database file")
	}
	e := openT(t, path, nil)
	if got := count(t, e); got != 0 {
		t.Fatalf("count %d", got)
	}
	if !locked(t, shm, dms, 1) {
		t.Fatal("a second Open of the same database dropped SQLite's DMS lock on -shm")
	}
	if !locked(t, main, sharedFirst, sharedSize) {
		t.Fatal("a second Open of the same database dropped SQLite's SHARED lock on the database file")
	}
}
