package runq

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/crewcore/crewcore/internal/redact"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	sqlite3 "github.com/mattn/go-sqlite3"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

// Options tune how a queue is opened.
type Options struct {
	// MaxConns is the PostgreSQL pool size (default 4; a worker adds what
	// River needs). SQLite always uses one connection, as River advises.
	MaxConns int32
	// ConnectTimeout bounds connecting to PostgreSQL (default 5 s).
	ConnectTimeout time.Duration
	// Logger receives River's own log lines (default: warnings and errors
	// to stderr).
	Logger *slog.Logger
}

// Queue is an open run queue. It is safe for concurrent use.
type Queue struct {
	spec   Spec
	kit    kit
	logger *slog.Logger

	mu     sync.Mutex
	closed bool

	// lastLook is when Wait last read awaited runs (unix nanoseconds; 0:
	// never): a Wait called again at once (wait_all calls it after every
	// run that ends) waits out the look interval first (firstLook).
	lastLook atomic.Int64
}

// backend is what a Queue does through River's client, whatever the
// driver (the client type is generic over the driver's transaction type).
type backend interface {
	insertMany(ctx context.Context, p []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	get(ctx context.Context, id int64) (*rivertype.JobRow, error)
	list(ctx context.Context, p *river.JobListParams) (*river.JobListResult, error)
	cancel(ctx context.Context, id int64) (*rivertype.JobRow, error)
	retry(ctx context.Context, id int64) (*rivertype.JobRow, error)
	counts(ctx context.Context) (map[rivertype.JobState]int, error)
}

// runner is a working River client (any driver).
type runner interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Stopped() <-chan struct{}
	ID() string
}

// kit is a backend plus what only the driver-specific side can do.
type kit interface {
	backend
	// newRunner builds a River client that works jobs with cfg.
	newRunner(cfg *river.Config) (runner, error)
	// completeTx records the job's output and completes it in one
	// committed transaction (visible at once, not at River's next batch).
	completeTx(ctx context.Context, job *river.Job[RunArgs]) error
	// dataVersion is SQLite's data_version of the queue's connection: it
	// changes whenever another connection commits. ok is false on
	// PostgreSQL, which has no such counter.
	dataVersion(ctx context.Context) (v int64, ok bool, err error)
	close()
}

// riverKit implements kit for one driver.
type riverKit[TTx any] struct {
	client   *river.Client[TTx]
	driver   riverdriver.Driver[TTx]
	schema   string
	complete func(ctx context.Context, job *river.Job[RunArgs]) error
	version  func(ctx context.Context) (int64, error)
	closeFn  func()
}

func (k *riverKit[TTx]) insertMany(ctx context.Context, p []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	return k.client.InsertMany(ctx, p)
}

func (k *riverKit[TTx]) get(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return k.client.JobGet(ctx, id)
}

func (k *riverKit[TTx]) list(ctx context.Context, p *river.JobListParams) (*river.JobListResult, error) {
	return k.client.JobList(ctx, p)
}

func (k *riverKit[TTx]) cancel(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return k.client.JobCancel(ctx, id)
}

func (k *riverKit[TTx]) retry(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return k.client.JobRetry(ctx, id)
}

func (k *riverKit[TTx]) counts(ctx context.Context) (map[rivertype.JobState]int, error) {
	return k.driver.GetExecutor().JobCountByAllStates(ctx, &riverdriver.JobCountByAllStatesParams{Schema: k.schema})
}

func (k *riverKit[TTx]) newRunner(cfg *river.Config) (runner, error) {
	cfg.Schema = k.schema
	return river.NewClient(k.driver, cfg)
}

func (k *riverKit[TTx]) completeTx(ctx context.Context, job *river.Job[RunArgs]) error {
	return k.complete(ctx, job)
}

func (k *riverKit[TTx]) dataVersion(ctx context.Context) (int64, bool, error) {
	if k.version == nil {
		return 0, false, nil
	}
	v, err := k.version(ctx)
	return v, true, err
}

func (k *riverKit[TTx]) close() { k.closeFn() }

// quietLogger logs River's warnings and errors to stderr.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Open opens (and creates or migrates, under a lock, so any number of
// processes may open at once) the queue at spec. A SQLite file is created
// when its directory exists; a PostgreSQL schema is created when missing.
func Open(ctx context.Context, spec Spec, opts Options) (*Queue, error) {
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	var (
		k   kit
		err error
	)
	if spec.IsPostgres() {
		k, err = openPostgres(ctx, spec, opts)
	} else {
		k, err = openSQLite(ctx, spec, opts)
	}
	if err != nil {
		return nil, redact.Err(err, spec.DSN)
	}
	return &Queue{spec: spec, kit: k, logger: opts.Logger}, nil
}

// Spec is where this queue lives.
func (q *Queue) Spec() Spec { return q.spec }

// Close releases the queue's connections. It is idempotent.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	q.kit.close()
	return nil
}

func (q *Queue) live() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return fmt.Errorf("%w: %s", ErrClosed, q.spec)
	}
	return nil
}

// ---------------------------------------------------------------- SQLite

func openSQLite(ctx context.Context, spec Spec, opts Options) (kit, error) {
	dir := filepath.Dir(spec.Path)
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: the directory of queue %s does not exist", ErrNotFound, spec.Path)
	}
	if fi, err := os.Stat(spec.Path); err == nil {
		if fi.IsDir() {
			return nil, fmt.Errorf("%w: queue %s is a directory (give the path of a SQLite file)", ErrInvalid, spec.Path)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: queue %s is not a regular file", ErrCorrupt, spec.Path)
		}
		if err := syscall.Access(spec.Path, 2); err != nil {
			return nil, fmt.Errorf("%w: queue file %s: %v", ErrAccess, spec.Path, err)
		}
	}
	// The -wal and -shm files (and a new queue) need a writable directory.
	if err := syscall.Access(dir, 2|1); err != nil {
		return nil, fmt.Errorf("%w: queue directory %s: %v", ErrAccess, dir, err)
	}
	db, err := sql.Open("sqlite3", sqliteURI(spec.Path))
	if err != nil {
		return nil, fmt.Errorf("runq: open %s: %w", spec.Path, classify(spec, err))
	}
	db.SetMaxOpenConns(1)
	fail := func(err error) (kit, error) {
		db.Close()
		return nil, err
	}
	if err := checkForeign(ctx, db, spec); err != nil {
		return fail(err)
	}
	if _, err := db.ExecContext(ctx, "PRAGMA journal_mode=WAL"); err != nil {
		return fail(fmt.Errorf("runq: WAL mode on %s: %w", spec.Path, classify(spec, err)))
	}
	driver := &sqliteDriver{Driver: riversqlite.New(db), uri: sqliteURI(spec.Path), path: spec.Path}
	if err := migrateSQLite(ctx, db, driver.Driver, spec, opts); err != nil {
		return fail(err)
	}
	// FetchCooldown also spaces this client's insert notifications: 1 ms,
	// so a run submitted right after another still wakes the workers.
	client, err := river.NewClient[*sql.Tx](driver, &river.Config{Logger: opts.Logger, FetchCooldown: time.Millisecond, FetchPollInterval: time.Second})
	if err != nil {
		return fail(fmt.Errorf("runq: River client for %s: %w", spec.Path, err))
	}
	k := &riverKit[*sql.Tx]{
		client: client,
		driver: driver,
		complete: func(ctx context.Context, job *river.Job[RunArgs]) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := river.JobCompleteTx[*sqliteDriver](ctx, tx, job); err != nil {
				tx.Rollback()
				return err
			}
			return tx.Commit()
		},
		version: func(ctx context.Context) (int64, error) {
			var v int64
			err := db.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v)
			return v, err
		},
		closeFn: func() {
			driver.closeWatch()
			db.Close()
		},
	}
	return k, nil
}

// checkForeign refuses a SQLite file that holds tables but no River
// migrations (another application's database), and maps "not a database".
func checkForeign(ctx context.Context, db *sql.DB, spec Spec) error {
	rows, err := db.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table'")
	if err != nil {
		return fmt.Errorf("runq: read %s: %w", spec.Path, classify(spec, err))
	}
	defer rows.Close()
	var tables []string
	river := false
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return fmt.Errorf("runq: read %s: %w", spec.Path, classify(spec, err))
		}
		tables = append(tables, n)
		if n == "river_migration" {
			river = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("runq: read %s: %w", spec.Path, classify(spec, err))
	}
	if len(tables) > 0 && !river {
		return fmt.Errorf("%w: %s is a SQLite database of something else (tables %s, no River migrations); give the queue a file of its own",
			ErrCorrupt, spec.Path, strings.Join(first(tables, 4), ", "))
	}
	return nil
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "...")
	}
	return s
}

// migrateSQLite brings River's tables up to date inside one BEGIN IMMEDIATE
// transaction, so concurrent openers run the migrations once.
func migrateSQLite(ctx context.Context, db *sql.DB, driver *riversqlite.Driver, spec Spec, opts Options) error {
	m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: discardLogger()})
	if err != nil {
		return fmt.Errorf("runq: migrator: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("runq: migrate %s: %w", spec.Path, classify(spec, err))
	}
	if _, err := m.MigrateTx(ctx, tx, rivermigrate.DirectionUp, nil); err != nil {
		tx.Rollback()
		return fmt.Errorf("runq: migrate %s: %w", spec.Path, classify(spec, err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("runq: migrate %s: %w", spec.Path, classify(spec, err))
	}
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// ---------------------------------------------------------------- PostgreSQL

// migrateLockKey is the advisory lock that serializes runq's migrations.
const migrateLockKey = 0x63726577_72756e71 // "crewrunq"

func openPostgres(ctx context.Context, spec Spec, opts Options) (kit, error) {
	cfg, err := pgxpool.ParseConfig(spec.DSN)
	if err != nil {
		return nil, fmt.Errorf("%w: queue DSN: %v", ErrInvalid, err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > opts.ConnectTimeout {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	genericPlans(cfg)
	cfg.MaxConns = opts.MaxConns
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 4
	}
	cctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout+time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("runq: connect %s: %w", spec, classify(spec, err))
	}
	if err := pool.Ping(cctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("runq: connect %s: %w", spec, classify(spec, err))
	}
	driver := riverpgxv5.New(pool)
	if err := migratePostgres(ctx, pool, driver, spec); err != nil {
		pool.Close()
		return nil, err
	}
	client, err := river.NewClient(driver, &river.Config{Logger: opts.Logger, Schema: spec.Schema, FetchCooldown: time.Millisecond, FetchPollInterval: time.Second})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("runq: River client for %s: %w", spec, err)
	}
	k := &riverKit[pgx.Tx]{
		client: client,
		driver: driver,
		schema: spec.Schema,
		complete: func(ctx context.Context, job *river.Job[RunArgs]) error {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return err
			}
			if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
				tx.Rollback(ctx)
				return err
			}
			return tx.Commit(ctx)
		},
		closeFn: pool.Close,
	}
	return k, nil
}

// genericPlans makes the pool's connections use generic plans unless the
// DSN chooses (plan_cache_mode=...): River plans its completion query anew
// on every run otherwise (0.79 ms of server CPU at bind; 0.19 generic). It
// is set after connecting, not as a startup parameter, which PgBouncer
// refuses; a server without the setting (before PostgreSQL 12) keeps its
// default.
func genericPlans(cfg *pgxpool.Config) {
	if _, set := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; set {
		return
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, _ = c.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
		return nil
	}
}

// migratePostgres creates the schema and brings River's tables up to date
// while holding a session advisory lock (River's migrations run one
// transaction each: some cannot share one), so concurrent openers migrate
// once.
func migratePostgres(ctx context.Context, pool *pgxpool.Pool, driver *riverpgxv5.Driver, spec Spec) error {
	m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: discardLogger(), Schema: spec.Schema})
	if err != nil {
		return fmt.Errorf("runq: migrator: %w", err)
	}
	wrap := func(err error) error { return fmt.Errorf("runq: migrate %s: %w", spec, classify(spec, err)) }
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return wrap(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLockKey)); err != nil {
		return wrap(err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrateLockKey))
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS "`+spec.Schema+`"`); err != nil {
		return wrap(err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return wrap(err)
	}
	return nil
}

// ---------------------------------------------------------------- errors

// classify wraps a database error with the sentinel that describes it.
func classify(spec Spec, err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{ErrInvalid, ErrNotFound, ErrAccess, ErrUnavailable, ErrCorrupt, ErrRunNotFound, ErrClosed} {
		if errors.Is(err, s) {
			return err
		}
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrNotADB, sqlite3.ErrCorrupt:
			return fmt.Errorf("%w: %s is not a SQLite run queue (%v)", ErrCorrupt, spec.Path, err)
		case sqlite3.ErrReadonly, sqlite3.ErrPerm, sqlite3.ErrAuth:
			return fmt.Errorf("%w: %s: %v", ErrAccess, spec.Path, err)
		case sqlite3.ErrCantOpen:
			return fmt.Errorf("%w: cannot open %s: %v", ErrAccess, spec.Path, err)
		case sqlite3.ErrBusy, sqlite3.ErrLocked:
			return fmt.Errorf("%w: %s stayed locked: %v", ErrUnavailable, spec.Path, err)
		case sqlite3.ErrFull:
			return fmt.Errorf("%w: %s: disk full: %v", ErrAccess, spec.Path, err)
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "3D000":
			return fmt.Errorf("%w: %v", ErrNotFound, err)
		case pe.Code == "42501" || strings.HasPrefix(pe.Code, "28"):
			return fmt.Errorf("%w: %v", ErrAccess, err)
		case pe.Code == "25006": // read_only_sql_transaction
			return fmt.Errorf("%w: %v", ErrAccess, err)
		case strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P") || pe.Code == "53300":
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return err
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}
