package runq

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
)

// WakePoll is how often a SQLite worker asks SQLite whether another
// connection committed (PRAGMA data_version on a connection of its own:
// microseconds, no lock). River's SQLite listener reads its notification
// table every 50 ms; on a commit the wake listener makes it read at once,
// so a new run's insert notification reaches the fetcher within about
// WakePoll instead of 50 ms.
const WakePoll = time.Millisecond

// WakeIdlePoll is how often the wake listener looks once the database has
// not changed for WakeIdleAfter: a look is a query and a Go scheduler
// wake-up, and an idle worker cost 11.5% of a core at one look per
// millisecond with a 20 ms fetch poll, 2.7% at this pace with a 1 s poll.
// The first run after a quiet second waits at most this much longer to be
// seen.
const WakeIdlePoll = 10 * time.Millisecond

// WakeIdleAfter is how long without a change makes the listener idle.
const WakeIdleAfter = time.Second

// WakeNotifiedPoll is how often the wake listener looks while it watches
// the -wal file (Linux): a commit wakes it at once, this timer only covers
// what the watch cannot see. River's listener reads its table every 50 ms
// on its own.
const WakeNotifiedPoll = 50 * time.Millisecond

// WALSettle is how long a waiter woken by a write to the -wal file keeps
// looking (every WALSettlePoll) when its look finds no new commit yet. A
// commit appends its frames with write(2) and only then publishes them in
// the WAL index (the -shm file, a shared mapping inotify does not see), so
// a waiter can wake on the frames, look before the index says they are
// committed and find nothing, and no further write follows to wake it:
// without these looks it slept until its 50 ms timer in about one run in
// ten of the overhead benchmark.
const WALSettle = 5 * time.Millisecond

// WALSettlePoll is the interval of the looks during WALSettle.
const WALSettlePoll = 250 * time.Microsecond

// sqliteDriver is River's SQLite driver whose listener wakes on commits.
type sqliteDriver struct {
	*riversqlite.Driver
	uri  string
	path string // the database file, whose -wal file is watched

	mu    sync.Mutex
	watch *sql.DB

	// lastChange is when a look last found the database changed (unix
	// nanoseconds; 0: never).
	lastChange atomic.Int64
}

// GetListener wraps River's SQLite listener in a wakeListener.
func (d *sqliteDriver) GetListener(p *riverdriver.GetListenenerParams) riverdriver.Listener {
	return &wakeListener{Listener: d.Driver.GetListener(p), d: d}
}

func (d *sqliteDriver) watchDB() (*sql.DB, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.watch == nil {
		db, err := sql.Open("sqlite3", d.uri)
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(1)
		d.watch = db
	}
	return d.watch, nil
}

func (d *sqliteDriver) closeWatch() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.watch != nil {
		d.watch.Close()
		d.watch = nil
	}
}

// wakeListener is River's SQLite listener, woken early: while it waits for
// its next poll, a goroutine watches data_version and cancels the wait
// when another connection commits; the listener then reads its table again
// at once (its state is untouched by a cancelled wait: it only sleeps).
type wakeListener struct {
	riverdriver.Listener
	d *sqliteDriver
}

// WaitForNotification waits as River's listener does, looking again
// whenever the database changed.
func (l *wakeListener) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	db, err := l.d.watchDB()
	if err != nil {
		return l.Listener.WaitForNotification(ctx)
	}
	for {
		// The watch is made and the baseline read before River's listener
		// looks: a commit after it is either seen by that look or wakes
		// the next one.
		wal := newWALNotifier(l.d.path)
		var base int64
		if err := db.QueryRowContext(ctx, "PRAGMA data_version").Scan(&base); err != nil {
			if wal != nil {
				wal.close()
			}
			return l.Listener.WaitForNotification(ctx)
		}
		wctx, cancel := context.WithCancel(ctx)
		woke := make(chan struct{})
		go watchVersion(wctx, db, wal, base, &l.d.lastChange, cancel, woke)
		n, err := l.Listener.WaitForNotification(wctx)
		cancel()
		<-woke
		if wal != nil {
			wal.close()
		}
		if err != nil && ctx.Err() == nil && errors.Is(err, context.Canceled) {
			continue // the database changed: look again now
		}
		return n, err
	}
}

// watchVersion cancels when data_version moves from first (or ctx ends).
// With a watch of the -wal file it looks after each write to it (and every
// WakeNotifiedPoll); without, every WakePoll while the database changed
// within WakeIdleAfter, every WakeIdlePoll otherwise. It records in
// lastChange when it saw one.
func watchVersion(ctx context.Context, db *sql.DB, wal *walNotifier, first int64, lastChange *atomic.Int64, cancel context.CancelFunc, done chan<- struct{}) {
	defer close(done)
	var t *time.Timer
	if wal == nil {
		t = time.NewTimer(pollAfter(lastChange.Load(), time.Now()))
		defer t.Stop()
	}
	var settleUntil time.Time
	for {
		switch {
		case wal != nil && time.Now().Before(settleUntil):
			// Woken by a write whose commit was not visible yet.
			if sleep(ctx, WALSettlePoll) != nil {
				return
			}
		case wal != nil:
			if wal.wait(ctx, WakeNotifiedPoll) {
				settleUntil = time.Now().Add(WALSettle)
			}
			if ctx.Err() != nil {
				return
			}
		default:
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		var v int64
		if err := db.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
			return
		}
		now := time.Now()
		if v != first {
			lastChange.Store(now.UnixNano())
			cancel()
			return
		}
		if t != nil {
			t.Reset(pollAfter(lastChange.Load(), now))
		}
	}
}

// pollAfter is the wait before the next look, the last change seen at
// last (unix nanoseconds, 0: never).
func pollAfter(last int64, now time.Time) time.Duration {
	if last != 0 && now.Sub(time.Unix(0, last)) < WakeIdleAfter {
		return WakePoll
	}
	return WakeIdlePoll
}
