// Package lock provides named locks that exclude both goroutines of this
// process and other processes, with timeouts, released from any goroutine or
// OS thread, and freed by the kernel when the holding process dies.
//
// Strategy: one lock file per name in a lock directory outside the project
// (CREWCORE_LOCK_DIR, else $XDG_RUNTIME_DIR/crewcore-locks, else
// <tmp>/crewcore-locks-<uid>), locked with flock(2). flock was chosen over
// the alternatives because:
//   - the kernel drops it when the last descriptor closes, including when the
//     process is SIGKILLed, so a dead holder never blocks anyone (a SQLite row
//     would need pid liveness checks and breaks across PID namespaces);
//   - it belongs to the open file description, not to a thread or process as
//     POSIX fcntl locks do, so any thread may release it, and two descriptors
//     of the same process exclude each other (fcntl locks would not);
//   - it works the same from Go and from Python's fcntl.flock, so the pure
//     Python fallback and the native engine interoperate on the same files.
//
// Lock files are never created in the working directory and are not deleted
// (unlinking a flock file races with a concurrent opener); their number is
// bounded by the number of distinct names.
//
// Within one process a per-name semaphore queues goroutines before the file
// lock is tried, so in-process waiters do not poll the kernel.
package lock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Sentinel errors; every error of this package wraps one (errors.Is).
var (
	// ErrTimeout reports a lock still held by someone else at the deadline.
	ErrTimeout = errors.New("lock timeout")
	// ErrInvalidArgument reports a negative timeout or an empty name.
	ErrInvalidArgument = errors.New("invalid lock argument")
	// ErrNotHeld reports a Release of a lock that is not held (released twice).
	ErrNotHeld = errors.New("lock not held")
	// ErrAccess reports a lock directory or file that cannot be created.
	ErrAccess = errors.New("lock directory not writable")
)

// Forever is a timeout that never expires.
const Forever = time.Duration(math.MaxInt64)

// Manager hands out named locks whose files live in one directory.
type Manager struct {
	dir   string
	mu    sync.Mutex
	names map[string]*entry
}

type entry struct {
	sem  chan struct{} // in-process exclusion: a token means free
	path string
	refs int // holders + waiters; the entry is dropped at 0
}

// Held is an acquired lock. Release it exactly once, from any goroutine.
type Held struct {
	m        *Manager
	e        *entry
	name     string
	f        *os.File
	released atomic.Bool
}

// DefaultDir returns the lock directory used by Default.
func DefaultDir() string {
	if d := os.Getenv("CREWCORE_LOCK_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return filepath.Join(d, "crewcore-locks")
		}
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("crewcore-locks-%d", os.Getuid()))
}

var (
	defaultOnce sync.Once
	defaultMgr  *Manager
)

// Default returns the process-wide manager on DefaultDir.
func Default() *Manager {
	defaultOnce.Do(func() { defaultMgr = New(DefaultDir()) })
	return defaultMgr
}

// New returns a manager whose lock files live in dir (created on first use).
func New(dir string) *Manager {
	return &Manager{dir: dir, names: map[string]*entry{}}
}

// Dir returns the lock directory.
func (m *Manager) Dir() string { return m.dir }

// FileFor returns the lock file of name: <dir>/<sha256(name)[:32 hex]>.lock.
func (m *Manager) FileFor(name string) string {
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(m.dir, hex.EncodeToString(sum[:16])+".lock")
}

func (m *Manager) ref(name string) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.names[name]
	if e == nil {
		e = &entry{sem: make(chan struct{}, 1), path: m.FileFor(name)}
		e.sem <- struct{}{}
		m.names[name] = e
	}
	e.refs++
	return e
}

func (m *Manager) unref(name string, e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(m.names, name)
	}
}

// Acquire takes the lock name, waiting up to timeout (0: one try; Forever: no
// limit) or until ctx ends. A negative timeout or an empty name is
// ErrInvalidArgument; a lock still held at the deadline is ErrTimeout, with
// the name and the lock file in the message.
func (m *Manager) Acquire(ctx context.Context, name string, timeout time.Duration) (*Held, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty lock name", ErrInvalidArgument)
	}
	if timeout < 0 {
		return nil, fmt.Errorf("%w: lock %q: negative timeout %v (use 0 to try once)", ErrInvalidArgument, name, timeout)
	}
	var deadline time.Time
	if timeout != Forever {
		deadline = time.Now().Add(timeout)
	}
	e := m.ref(name)
	h, err := m.acquire(ctx, name, e, timeout, deadline)
	if err != nil {
		m.unref(name, e)
		return nil, err
	}
	return h, nil
}

func (m *Manager) timeoutErr(name, path string, timeout time.Duration) error {
	return fmt.Errorf("%w: lock %q (file %s) still held by another holder after %v", ErrTimeout, name, path, timeout)
}

func (m *Manager) acquire(ctx context.Context, name string, e *entry, timeout time.Duration, deadline time.Time) (*Held, error) {
	// In-process first.
	select {
	case <-e.sem:
	default:
		if timeout == 0 {
			return nil, m.timeoutErr(name, e.path, timeout)
		}
		var tc <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			tc = t.C
		}
		select {
		case <-e.sem:
		case <-tc:
			return nil, m.timeoutErr(name, e.path, timeout)
		case <-ctx.Done():
			return nil, fmt.Errorf("lock %q: %w", name, ctx.Err())
		}
	}
	f, err := m.lockFile(ctx, name, e.path, timeout, deadline)
	if err != nil {
		e.sem <- struct{}{}
		return nil, err
	}
	return &Held{m: m, e: e, name: name, f: f}, nil
}

func (m *Manager) lockFile(ctx context.Context, name, path string, timeout time.Duration, deadline time.Time) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if errors.Is(err, os.ErrNotExist) {
		if mkErr := os.MkdirAll(m.dir, 0o777); mkErr != nil {
			return nil, fmt.Errorf("%w: lock %q: %v", ErrAccess, name, mkErr)
		}
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: lock %q: %v", ErrAccess, name, err)
	}
	fd := int(f.Fd())
	backoff := 50 * time.Microsecond
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			f.Close()
			return nil, fmt.Errorf("lock %q (file %s): flock: %w", name, path, err)
		}
		if timeout == 0 || (!deadline.IsZero() && time.Now().Add(backoff/2).After(deadline)) {
			f.Close()
			return nil, m.timeoutErr(name, path, timeout)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("lock %q: %w", name, ctx.Err())
		case <-t.C:
		}
		backoff = min(backoff*2, time.Millisecond)
	}
}

// Name returns the lock's name.
func (h *Held) Name() string { return h.name }

// Release frees the lock. It may be called from any goroutine; a second call
// returns ErrNotHeld.
func (h *Held) Release() error {
	if !h.released.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: lock %q was already released", ErrNotHeld, h.name)
	}
	// Closing the descriptor drops the flock.
	err := h.f.Close()
	h.e.sem <- struct{}{}
	h.m.unref(h.name, h.e)
	if err != nil {
		return fmt.Errorf("release lock %q: %w", h.name, err)
	}
	return nil
}
