// Package sqlitedb is crewcore's pooled SQLite layer: one database file in WAL
// mode behind a pool of read connections and a single writer that serves a
// queue of write jobs, with a prepared-statement cache per connection, bounded
// busy retry with a deadline on every call, and connections closed on Close
// (and by CloseAll at exit).
//
// Writes are jobs on a FIFO queue served by one writer at a time (leader and
// followers): a caller that finds no writer active becomes the writer and runs
// the queue on its own goroutine, so an uncontended write costs no goroutine
// handoff (under CPU contention a handoff costs milliseconds); callers that
// find a writer active wait in the queue. The writer takes every queued job
// (up to MaxBatch) into one BEGIN IMMEDIATE transaction, runs each job inside
// its own SAVEPOINT (a failing job is rolled back alone and gets its own error)
// and commits once, so N concurrent writers in one process pay for one WAL
// commit instead of N. When its own job is done and others wait, it hands the
// writer role to the oldest waiter and returns. Jobs that must not share a
// transaction use WriteAlone.
//
// Other processes serialize with this one through SQLite's own file locks;
// SQLITE_BUSY is retried with backoff until the call's deadline, then reported
// as ErrTimeout naming the file.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// Sentinel errors. Every error of this package wraps one of them (errors.Is).
var (
	// ErrCorrupt reports a file that is not a SQLite database, or a damaged one.
	ErrCorrupt = errors.New("database corrupt or not a SQLite file")
	// ErrAccess reports a database or directory that cannot be created or written.
	ErrAccess = errors.New("database not writable")
	// ErrTimeout reports a database that stayed locked (by another process)
	// past the call's deadline.
	ErrTimeout = errors.New("database locked past deadline")
	// ErrFull reports a write refused for lack of space (disk full, quota or
	// file size limit).
	ErrFull = errors.New("disk full")
	// ErrClosed reports a call on a closed DB.
	ErrClosed = errors.New("database closed")
)

// Options tune a DB. The zero value is the default.
type Options struct {
	// Timeout is the deadline of a call whose context has none (default 30s).
	Timeout time.Duration
	// ReadConns is the size of the read pool (default 4).
	ReadConns int
	// MaxBatch is the most queued write jobs committed in one transaction
	// (default 64; 1 disables batching).
	MaxBatch int
	// Init runs once in a write transaction when the DB opens (schema).
	Init func(tx *Tx) error
	// CacheKiB is SQLite's page cache size per connection in KiB (default 8192).
	CacheKiB int
	// BusyWait is how long SQLite's own busy handler waits on a lock inside
	// one statement before the layer's retry loop takes over (default 100ms).
	BusyWait time.Duration
	// WriterInit runs once on the writer connection when the DB opens (for
	// per-connection pragmas such as wal_autocheckpoint).
	WriterInit func(ctx context.Context, c *sql.Conn) error
	// WALLimit keeps the -wal file bounded (default 4 MiB; negative: the
	// caller keeps it and the layer leaves SQLite's defaults alone). The
	// writer connection gets wal_autocheckpoint off and journal_size_limit
	// WALLimit; after a batch that left the -wal file larger, the writer
	// runs a RESTART checkpoint before serving more writes, so the next
	// write starts the WAL over even while other connections keep reading
	// (a passive checkpoint in the commit, SQLite's default, copies the
	// frames but cannot start the WAL over while a reader is in it, and
	// with readers always present the WAL grew without bound).
	WALLimit int64
}

// DefaultWALLimit is Options.WALLimit's default.
const DefaultWALLimit = 4 << 20

// DB is one SQLite database file opened by this process. It is safe for
// concurrent use.
type DB struct {
	path string
	opts Options

	db    *sql.DB   // the pool: ReadConns readers + the writer
	wconn *sql.Conn // the writer, pinned out of the pool
	// stmts is the statement cache: database/sql prepares each *sql.Stmt
	// once per connection it runs on and keeps it there, and Tx.Stmt binds
	// it to the writer with tx.StmtContext, which reuses the writer's copy.
	stmts stmtCache

	qmu     sync.Mutex // guards pending, writing
	pending []*job     // the queue, oldest first
	writing bool       // a caller is serving the queue

	mu     sync.RWMutex // guards closed
	closed bool
}

type job struct {
	ctx      context.Context
	deadline time.Time
	alone    bool
	fn       func(tx *Tx) error
	result   chan error
	promote  chan struct{} // this job's caller becomes the writer
	finished bool          // result sent (guarded by the writer role)
}

var (
	openMu sync.Mutex
	open   = map[*DB]struct{}{}
)

// Open opens (creating if needed) the database file at path. The parent
// directory is created. A file that exists and is not SQLite is refused with
// ErrCorrupt and left untouched.
func Open(path string, opts *Options) (*DB, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.ReadConns <= 0 {
		o.ReadConns = 4
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	if o.CacheKiB <= 0 {
		o.CacheKiB = 8192
	}
	if o.BusyWait <= 0 {
		o.BusyWait = 100 * time.Millisecond
	}
	if o.WALLimit == 0 {
		o.WALLimit = DefaultWALLimit
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := CheckFile(abs); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", fmt.Sprint(o.BusyWait.Milliseconds())) // then our own loop retries up to the deadline
	q.Set("_foreign_keys", "0")
	q.Set("_txlock", "immediate")
	q.Set("_cache_size", fmt.Sprintf("-%d", o.CacheKiB))
	dsn := "file:" + EscapePath(abs) + "?" + q.Encode()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	// One pool: the writer connection is pinned out of it (connectWriter),
	// so reads never run on it and it never waits for a reader.
	db.SetMaxOpenConns(o.ReadConns + 1)
	db.SetMaxIdleConns(o.ReadConns + 1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	d := &DB{path: abs, opts: o, db: db}
	d.stmts.db = db
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	if err := d.connectWriter(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if o.WALLimit > 0 {
		for _, q := range []string{`PRAGMA wal_autocheckpoint=0`, fmt.Sprintf(`PRAGMA journal_size_limit=%d`, o.WALLimit)} {
			if _, err := d.wconn.ExecContext(ctx, q); err != nil {
				d.wconn.Close()
				db.Close()
				return nil, d.Classify("open database", err)
			}
		}
	}
	if o.WriterInit != nil {
		if err := o.WriterInit(ctx, d.wconn); err != nil {
			d.wconn.Close()
			db.Close()
			return nil, d.Classify("open database", err)
		}
	}
	if o.Init != nil {
		if err := d.WriteAlone(ctx, o.Init); err != nil {
			d.Close()
			return nil, err
		}
	}
	openMu.Lock()
	open[d] = struct{}{}
	openMu.Unlock()
	return d, nil
}

// connectWriter pins the writer connection; opening it switches the file to
// WAL, which needs the write lock briefly, so busy is retried here too.
func (d *DB) connectWriter(ctx context.Context) error {
	backoff := time.Millisecond
	for {
		c, err := d.db.Conn(ctx)
		if err == nil {
			var mode string
			err = c.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode)
			if err == nil {
				d.wconn = c
				return nil
			}
			c.Close()
		}
		if !IsBusy(err) || ctx.Err() != nil {
			if ctx.Err() != nil && err == nil {
				err = ctx.Err()
			}
			return d.Classify("open database", err)
		}
		if !sleepCtx(ctx, backoff) {
			return d.Classify("open database", err)
		}
		backoff = min(backoff*2, 50*time.Millisecond)
	}
}

// EscapePath escapes the characters that would end a SQLite URI path.
func EscapePath(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
}

// CheckFile refuses a path that exists and is not a SQLite file, and reports
// unwritable locations before SQLite does it less clearly. It creates the
// parent directory.
func CheckFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("open database %s: %w: %v", path, ErrAccess, err)
	}
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := writableDir(dir); err != nil {
			return fmt.Errorf("open database %s: %w: directory %s: %v", path, ErrAccess, dir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	if st.IsDir() {
		return fmt.Errorf("open database %s: %w: path is a directory", path, ErrCorrupt)
	}
	if st.Size() == 0 {
		return nil
	}
	return checkHeader(path)
}

// checkHeader asks SQLite itself, read-only, whether path is a database.
// It must not read the file through a descriptor of its own: closing any
// descriptor of a file drops every POSIX lock this process holds on it, and
// the file may already be open here (a second handle on one database).
// Without its SHARED lock an open connection can be taken for gone by
// another process's last connection, which then checkpoints and deletes the
// -wal under it. SQLite's own connections share their locks per file.
func checkHeader(path string) error {
	db, err := sql.Open("sqlite3", "file:"+EscapePath(path)+"?mode=ro")
	if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	defer db.Close()
	var n int
	err = db.QueryRow(`SELECT count(*) FROM sqlite_master`).Scan(&n)
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrNotADB:
			return fmt.Errorf("open database %s: %w: the file is not a SQLite database", path, ErrCorrupt)
		case sqlite3.ErrPerm, sqlite3.ErrCantOpen, sqlite3.ErrAuth:
			return fmt.Errorf("open database %s: %w: %v", path, ErrAccess, err)
		}
	}
	return nil // anything else is for the real open to report
}

func writableDir(dir string) error {
	f, err := os.CreateTemp(dir, ".crewcore-probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// Path returns the database file's absolute path.
func (d *DB) Path() string { return d.path }

// IsBusy reports whether err is SQLITE_BUSY or SQLITE_LOCKED.
func IsBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}

// Classify maps a SQLite failure of op onto the package's sentinel errors,
// with the file's path in the message. Errors that already wrap a sentinel of
// this package, and nil, are returned as they are.
func (d *DB) Classify(op string, err error) error {
	return Classify(op, d.path, err)
}

// Classify is DB.Classify for a path without a DB.
func Classify(op, path string, err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{ErrCorrupt, ErrAccess, ErrTimeout, ErrFull, ErrClosed} {
		if errors.Is(err, s) {
			return err
		}
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		if se.SystemErrno == syscall.ENOSPC || se.SystemErrno == syscall.EFBIG || se.SystemErrno == syscall.EDQUOT {
			return fmt.Errorf("%s %s: %w: %v", op, path, ErrFull, err)
		}
		switch se.Code {
		case sqlite3.ErrNotADB, sqlite3.ErrCorrupt:
			return fmt.Errorf("%s %s: %w: %v", op, path, ErrCorrupt, err)
		case sqlite3.ErrReadonly, sqlite3.ErrPerm, sqlite3.ErrCantOpen, sqlite3.ErrAuth:
			return fmt.Errorf("%s %s: %w: %v", op, path, ErrAccess, err)
		case sqlite3.ErrBusy, sqlite3.ErrLocked:
			return fmt.Errorf("%s %s: %w: the database stayed locked by another connection or process: %v", op, path, ErrTimeout, err)
		case sqlite3.ErrFull:
			return fmt.Errorf("%s %s: %w: %v", op, path, ErrFull, err)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s %s: %w: %v", op, path, ErrTimeout, err)
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// deadline returns ctx's deadline, or now + the DB's timeout.
func (d *DB) deadline(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(d.opts.Timeout)
}

// stmtCache keeps one *sql.Stmt per query text. database/sql prepares a Stmt
// once per connection it runs on and keeps it there, so this is a
// prepared-statement cache per connection of the pool.
type stmtCache struct {
	mu    sync.Mutex
	db    *sql.DB
	stmts map[string]*sql.Stmt
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if c.stmts == nil {
		c.stmts = map[string]*sql.Stmt{}
	}
	c.stmts[query] = st
	return st, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	c.stmts = nil
}

// Stmt returns query prepared and cached on the pool: each connection that
// runs it prepares it once and keeps it (database/sql). Do not close it.
func (d *DB) Stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	return d.stmts.get(ctx, query)
}

// Tx is the write transaction handed to a write job.
type Tx struct {
	ctx   context.Context
	tx    *sql.Tx
	db    *DB
	after []func(committed bool)
}

// SQL returns the underlying transaction (for code written against database/sql).
func (t *Tx) SQL() *sql.Tx { return t.tx }

// Context returns the job's context.
func (t *Tx) Context() context.Context { return t.ctx }

// Stmt returns query prepared on the writer connection (cached) and bound to t.
func (t *Tx) Stmt(query string) (*sql.Stmt, error) {
	st, err := t.db.stmts.get(t.ctx, query)
	if err != nil {
		return nil, err
	}
	return t.tx.StmtContext(t.ctx, st), nil
}

// Exec runs a cached statement in the transaction.
func (t *Tx) Exec(query string, args ...any) (sql.Result, error) {
	st, err := t.Stmt(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(t.ctx, args...)
}

// Query runs a cached query in the transaction.
func (t *Tx) Query(query string, args ...any) (*sql.Rows, error) {
	st, err := t.Stmt(query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(t.ctx, args...)
}

// QueryRow runs a cached single-row query in the transaction.
func (t *Tx) QueryRow(query string, args ...any) *sql.Row {
	st, err := t.Stmt(query)
	if err != nil {
		// Let Scan report the error through a statement that fails to prepare.
		return t.tx.QueryRowContext(t.ctx, query, args...)
	}
	return st.QueryRowContext(t.ctx, args...)
}

// After registers f to run once the transaction ended (hooks run in reverse
// order of registration): committed is true when the job's writes are
// durable, false when they were rolled back.
func (t *Tx) After(f func(committed bool)) { t.after = append(t.after, f) }

// Write queues fn to run in a write transaction and waits for its outcome.
// fn may share its transaction with other queued jobs, each in its own
// savepoint: its writes commit or roll back together, and an error it returns
// rolls back only its own writes. fn must not keep t after returning.
func (d *DB) Write(ctx context.Context, fn func(tx *Tx) error) error {
	return d.submit(ctx, fn, false)
}

// WriteAlone is Write in a transaction of its own (no savepoint, no batching).
func (d *DB) WriteAlone(ctx context.Context, fn func(tx *Tx) error) error {
	return d.submit(ctx, fn, true)
}

func (d *DB) submit(ctx context.Context, fn func(tx *Tx) error, alone bool) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return fmt.Errorf("write %s: %w", d.path, ErrClosed)
	}
	j := &job{ctx: ctx, deadline: d.deadline(ctx), alone: alone, fn: fn,
		result: make(chan error, 1), promote: make(chan struct{}, 1)}
	d.qmu.Lock()
	d.pending = append(d.pending, j)
	lead := !d.writing
	d.writing = true
	d.qmu.Unlock()
	if !lead {
		// The writer always answers every queued job (one past its deadline
		// gets ErrTimeout), or makes this caller the writer.
		select {
		case err := <-j.result:
			return err
		case <-j.promote:
		}
	}
	d.serve(j)
	return <-j.result
}

// serve runs the queue as the writer until own has its result, then hands
// the writer role to the oldest waiting job's caller, if any.
func (d *DB) serve(own *job) {
	for {
		d.qmu.Lock()
		n := 0
		for n < len(d.pending) && n < d.opts.MaxBatch {
			if d.pending[n].alone {
				if n == 0 {
					n = 1
				}
				break
			}
			n++
		}
		batch := append([]*job(nil), d.pending[:n]...)
		d.pending = d.pending[n:]
		if n == 0 {
			d.writing = false
			d.qmu.Unlock()
			return
		}
		d.qmu.Unlock()
		d.runBatch(batch)
		d.boundWAL()
		if own.finished {
			d.qmu.Lock()
			if len(d.pending) == 0 {
				d.writing = false
				d.qmu.Unlock()
				return
			}
			next := d.pending[0]
			d.qmu.Unlock()
			next.promote <- struct{}{}
			return
		}
	}
}

// boundWAL runs a RESTART checkpoint on the writer connection when the
// -wal file has grown past Options.WALLimit. The caller holds the writer
// role, so no write of this process appends meanwhile; SQLite's busy
// handler waits (up to BusyWait) for other processes' writers and for
// readers still in the WAL. A checkpoint that cannot finish now is tried
// again after the next batch.
func (d *DB) boundWAL() {
	if d.opts.WALLimit <= 0 {
		return
	}
	st, err := os.Stat(d.path + "-wal")
	if err != nil || st.Size() <= d.opts.WALLimit {
		return
	}
	var busy, log, done int64
	d.wconn.QueryRowContext(context.Background(), `PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &log, &done) //nolint:errcheck // retried after the next batch
}

// runBatch runs jobs in one transaction, retrying BEGIN while the database is
// busy, until each job's deadline.
func (d *DB) runBatch(jobs []*job) {
	backoff := time.Millisecond
	for len(jobs) > 0 {
		now := time.Now()
		live := jobs[:0]
		for _, j := range jobs {
			switch {
			case j.ctx.Err() != nil:
				j.finished = true
				j.result <- fmt.Errorf("write %s: %w", d.path, j.ctx.Err())
			case now.After(j.deadline):
				j.finished = true
				j.result <- fmt.Errorf("write %s: %w: the database stayed locked by another process until the deadline", d.path, ErrTimeout)
			default:
				live = append(live, j)
			}
		}
		jobs = live
		if len(jobs) == 0 {
			return
		}
		busy, results := d.tryBatch(jobs)
		if !busy {
			for i, j := range jobs {
				j.finished = true
				j.result <- results[i]
			}
			return
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, 20*time.Millisecond)
	}
}

// tryBatch runs one attempt. busy reports that the whole attempt hit
// SQLITE_BUSY before any job's outcome was final and should be retried.
func (d *DB) tryBatch(jobs []*job) (busy bool, results []error) {
	results = make([]error, len(jobs))
	ctx := context.Background()
	tx, err := d.wconn.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock)
	if err != nil {
		if IsBusy(err) {
			return true, nil
		}
		for i := range results {
			results[i] = d.Classify("write", err)
		}
		return false, results
	}
	var txs []*Tx
	single := len(jobs) == 1
	for i, j := range jobs {
		t := &Tx{ctx: j.ctx, tx: tx, db: d}
		txs = append(txs, t)
		if single {
			results[i] = runJob(j, t)
			if results[i] != nil {
				if IsBusy(results[i]) {
					tx.Rollback()
					runAfter(t, false)
					return true, nil
				}
				tx.Rollback()
				runAfter(t, false)
				results[i] = d.jobErr(results[i])
				return false, results
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT job"); err != nil {
			results[i] = d.Classify("write", err)
			continue
		}
		if err := runJob(j, t); err != nil {
			results[i] = d.jobErr(err)
			tx.ExecContext(ctx, "ROLLBACK TO job")
		}
		tx.ExecContext(ctx, "RELEASE job")
	}
	if err := tx.Commit(); err != nil {
		tx.Rollback()
		for i, t := range txs {
			runAfter(t, false)
			if results[i] == nil {
				results[i] = d.Classify("commit", err)
			}
		}
		return false, results
	}
	for i, t := range txs {
		runAfter(t, results[i] == nil)
	}
	return false, results
}

// jobErr classifies a SQLite error a job returned; the job's own errors are
// returned as they are.
func (d *DB) jobErr(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return d.Classify("write", err)
	}
	return err
}

func runJob(j *job, t *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("write job panicked: %v", p)
		}
	}()
	return j.fn(t)
}

// runAfter runs the After hooks last-registered first, like defer, so a
// hook that releases a lock taken before registering it runs last.
func runAfter(t *Tx, committed bool) {
	for i := len(t.after) - 1; i >= 0; i-- {
		t.after[i](committed)
	}
	t.after = nil
}

// Read runs fn with the read pool (fn uses the Reader's cached statements),
// retrying while the database is busy until the call's deadline.
func (d *DB) Read(ctx context.Context, fn func(r *Reader) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return fmt.Errorf("read %s: %w", d.path, ErrClosed)
	}
	deadline := d.deadline(ctx)
	backoff := time.Millisecond
	for {
		err := fn(&Reader{ctx: ctx, db: d})
		if err == nil || !IsBusy(err) || time.Now().After(deadline) {
			return d.Classify("read", err)
		}
		if !sleepCtx(ctx, backoff) {
			return d.Classify("read", err)
		}
		backoff = min(backoff*2, 20*time.Millisecond)
	}
}

// Reader runs cached read statements on the read pool.
type Reader struct {
	ctx context.Context
	db  *DB
}

// Query runs a cached query on a pooled read connection.
func (r *Reader) Query(query string, args ...any) (*sql.Rows, error) {
	st, err := r.db.stmts.get(r.ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(r.ctx, args...)
}

// QueryRow runs a cached single-row query on a pooled read connection.
func (r *Reader) QueryRow(query string, args ...any) *sql.Row {
	st, err := r.db.stmts.get(r.ctx, query)
	if err != nil {
		return r.db.db.QueryRowContext(r.ctx, query, args...)
	}
	return st.QueryRowContext(r.ctx, args...)
}

// SQL returns the read pool (for code written against database/sql; do not
// write through it: writes go through Write so they are queued).
func (d *DB) SQL() *sql.DB { return d.db }

// Close waits for queued writes, then closes every connection. Later calls
// return ErrClosed. Close is idempotent.
func (d *DB) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true // every submit has returned: Lock waited for their RLocks
	d.mu.Unlock()
	openMu.Lock()
	delete(open, d)
	openMu.Unlock()
	d.stmts.close()
	var errs []error
	if d.wconn != nil {
		errs = append(errs, d.wconn.Close())
	}
	errs = append(errs, d.db.Close())
	return errors.Join(errs...)
}

// CloseAll closes every DB this process has open (for exit paths).
func CloseAll() error {
	openMu.Lock()
	dbs := make([]*DB, 0, len(open))
	for d := range open {
		dbs = append(dbs, d)
	}
	openMu.Unlock()
	var errs []error
	for _, d := range dbs {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}
