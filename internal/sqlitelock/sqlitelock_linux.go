// Package sqlitelock lets tests see the POSIX locks SQLite holds, including
// those of the calling process itself.
//
// Closing any descriptor of a file drops every POSIX lock the process holds
// on it, SQLite's included; tests use this package to show that crewcore's
// own descriptors leave SQLite's locks in place. An open-file-description
// lock query (F_OFD_GETLK, Linux 3.15+) conflicts with classic POSIX locks
// even when they belong to the querying process, so it sees them.
package sqlitelock

import (
	"os"
	"syscall"
	"unsafe"
)

// Byte ranges SQLite's unix VFS locks (os_unix.c).
const (
	// SharedFirst and SharedSize: the database file's SHARED lock bytes (2
	// past PENDING_BYTE 0x40000000). In WAL mode every connection keeps a
	// read lock there; a closing connection that finds none thinks it is
	// the last one, checkpoints and deletes the -wal.
	SharedFirst, SharedSize = 0x40000002, 510
	// ShmDMS: the -shm byte every connection read-locks while it has the WAL
	// index open (UNIX_SHM_DMS: the 8 WAL locks start at 120). While any
	// process holds it, no other process truncates and rebuilds the index.
	ShmDMS = 128
)

const fOFDGetLK = 36 // F_OFD_GETLK

// Holder returns the type of lock (syscall.F_RDLCK or F_WRLCK, or F_UNLCK
// when there is none) that would stop a write lock on [off, off+n) of f.
// f must stay open until the caller no longer cares about the locks:
// closing it drops them too.
func Holder(f *os.File, off, n int64) (int16, error) {
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Start: off, Len: n}
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), fOFDGetLK, uintptr(unsafe.Pointer(&lk))); e != 0 {
		return 0, e
	}
	return lk.Type, nil
}
