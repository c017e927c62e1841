//go:build linux

package runq

import (
	"context"
	"os"
	"time"

	"syscall"
)

// walNotifier reports writes to a SQLite database's -wal file through
// inotify. Every commit, by any connection of any process, appends its
// frames to the WAL with write(2), so a waiter that blocks on the notifier
// instead of a timer wakes once per commit and costs nothing in between: a
// Wait looking every millisecond cost about 10% of a core on this machine
// while nothing happened (a timer wake-up, a cgo call and a query a time).
//
// It only says "look now": a waiter still checks data_version, and keeps a
// slow timer for what inotify cannot see (a WAL deleted and made again by
// a new first connection, a file system without inotify).
type walNotifier struct {
	f   *os.File
	buf [1024]byte
}

// newWALNotifier watches db's -wal file; nil when it cannot (no WAL file
// yet, inotify unavailable or out of instances): the caller polls.
func newWALNotifier(db string) *walNotifier {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	mask := uint32(syscall.IN_MODIFY | syscall.IN_ATTRIB | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF)
	if _, err := syscall.InotifyAddWatch(fd, db+"-wal", mask); err != nil {
		syscall.Close(fd)
		return nil
	}
	// A non-blocking descriptor is registered with Go's poller, so a read
	// parks the goroutine and read deadlines work.
	return &walNotifier{f: os.NewFile(uintptr(fd), db+"-wal (inotify)")}
}

// wait blocks until the WAL was written since the notifier was made or
// last waited on, d passes, or ctx ends; it reports whether it was written.
func (n *walNotifier) wait(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := n.f.SetReadDeadline(deadline); err != nil {
		return false
	}
	stop := context.AfterFunc(ctx, func() { n.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	k, err := n.f.Read(n.buf[:])
	return err == nil && k > 0
}

// close releases the inotify instance, in the background: closing an
// inotify descriptor waits for the kernel's fsnotify grace period (about
// 15 ms here, seen with strace), and a Wait closed its watch before
// returning, as the wake listener did before each look at River's
// notifications, so half of the runs of the overhead benchmark waited
// 15-20 ms for a close (overhead p50 4.1 -> 15.5 ms).
func (n *walNotifier) close() { go n.f.Close() }
