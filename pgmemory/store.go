// Package pgmemory is crewcore's PostgreSQL + pgvector memory store: the
// same API and semantics as the embedded store of package memory (it
// implements memory.Backend and returns memory's Record, Match, ScopeInfo and
// sentinel errors), for teams whose crews run on many workers and machines
// that share one database.
//
// Every store lives in one PostgreSQL schema (Options.Schema, default
// "crewcore"), created and migrated by Open: versioned migrations run under a
// session advisory lock, so any number of workers may open the same schema at
// once. Vectors are pgvector `vector` values; once the dimension is known an
// HNSW index serves searches over Options.ExactBelow records, with
// Options.EfSearch (hnsw.ef_search) as the recall/latency knob. Scope,
// category, metadata and privacy filters are SQL predicates; a filtered
// search that the index cannot fill is answered by an exact scan, so a
// search returns min(limit, matching records) as the embedded store does.
//
// Connections come from a pgx v5 pool; statements are prepared once per
// connection and cached (pgx's statement cache); every query runs under a
// deadline (Options.QueryTimeout); transient failures (lost connections, a
// restarting server, serialization failures, deadlocks) are retried with
// backoff for up to Options.RetryFor, and all writes are idempotent upserts
// or deletes, so a retried write never applies twice.
package pgmemory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crewcore/crewcore/internal/redact"
	"github.com/crewcore/crewcore/memory"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"
)

// Sentinel errors of this package (memory's sentinels are used for
// everything the embedded store also reports).
var (
	// ErrNoVector reports a server without the pgvector extension.
	ErrNoVector = errors.New("the PostgreSQL server has no pgvector extension")
	// ErrUnavailable reports a server that could not be reached, or that
	// kept failing with transient errors, for longer than Options.RetryFor.
	ErrUnavailable = errors.New("PostgreSQL server unavailable")
	// ErrSchema reports a schema whose crewcore tables are newer than this
	// code (migrated by a newer crewcore) or not crewcore's.
	ErrSchema = errors.New("incompatible crewcore schema")
)

// maxIndexDim is the largest dimension pgvector's HNSW index accepts for the
// vector type; larger vectors are searched exactly.
const maxIndexDim = 2000

// Options tune a Store. The zero value is the default.
type Options struct {
	// Schema is the PostgreSQL schema holding the store (default "crewcore").
	// Stores in different schemas of one database are independent.
	Schema string
	// Dim fixes the vector dimension (0: from the store or the first saved
	// embedding). A store already holding another dimension is refused with
	// a *memory.DimensionError.
	Dim int
	// Metric is the score convention (default L2: 1/(1 + squared distance)).
	Metric memory.Metric
	// ExactBelow is the number of stored vectors under which searches scan
	// exactly instead of using the HNSW index (default 10000; negative:
	// always exact).
	ExactBelow int
	// EfSearch is pgvector's hnsw.ef_search: the size of the candidate list
	// an index search keeps. Larger is higher recall and slower (default
	// 100; pgvector's own default is 40). A search asks for at least its
	// limit.
	EfSearch int
	// M and EfConstruction are the HNSW build parameters (default 16 and 64,
	// pgvector's defaults).
	M, EfConstruction int
	// QueryTimeout is the deadline of each query attempt (default 30s).
	QueryTimeout time.Duration
	// RowTimeout is added to a write's deadline per record it writes
	// (default 10ms), so a large batch is not cut off by QueryTimeout.
	RowTimeout time.Duration
	// RetryFor bounds how long transient errors are retried (default 20s);
	// past it the call fails with ErrUnavailable.
	RetryFor time.Duration
	// MaxConns is the pool size (default 8).
	MaxConns int
}

func (o *Options) defaults() error {
	if o.Schema == "" {
		o.Schema = "crewcore"
	}
	if o.Dim < 0 {
		return fmt.Errorf("%w: negative dimension %d", memory.ErrInvalidArgument, o.Dim)
	}
	if o.ExactBelow == 0 {
		o.ExactBelow = 10000
	}
	if o.EfSearch <= 0 {
		o.EfSearch = 100
	}
	if o.EfSearch > 1000 {
		return fmt.Errorf("%w: ef_search %d is over pgvector's maximum of 1000", memory.ErrInvalidArgument, o.EfSearch)
	}
	if o.M <= 0 {
		o.M = 16
	}
	if o.EfConstruction <= 0 {
		o.EfConstruction = 64
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 30 * time.Second
	}
	if o.RowTimeout <= 0 {
		o.RowTimeout = 10 * time.Millisecond
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 20 * time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	return nil
}

// Store is a memory store in one PostgreSQL schema. It is safe for
// concurrent use; any number of processes may open the same schema.
type Store struct {
	dsnShown string // the DSN without its password, for messages
	opts     Options
	pool     *pgxpool.Pool
	q        queries

	dim     atomic.Int64 // last dimension seen (0 unknown); the database is the truth
	vecs    atomic.Int64 // approximate number of stored vectors (exact/index choice)
	vecsAt  atomic.Int64 // unix nanos of the last vecs refresh
	closed  atomic.Bool
	idxMu   sync.Mutex  // serializes BuildIndex in this process
	indexed atomic.Bool // the HNSW index of this metric exists
}

// Open connects to the PostgreSQL server at dsn (a postgres:// URL or a
// key=value connection string), creates or migrates the store's schema and
// returns the Store. A server without pgvector fails with ErrNoVector.
func Open(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	s, err := open(ctx, dsn, opts)
	return s, redact.Err(err, dsn)
}

func open(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.defaults(); err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	shown := redact.DSN(dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w: bad DSN: %v", shown, memory.ErrInvalidArgument, err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	s := &Store{dsnShown: shown, opts: o, q: newQueries(o.Schema)}
	// Migrations first, on a plain connection: the pool's connections need
	// the vector type to exist.
	if err := s.retry(ctx, "migrate", func(ctx context.Context) error {
		conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		return migrate(ctx, conn, o.Schema)
	}); err != nil {
		return nil, fmt.Errorf("open postgres store %s (schema %s): %w", shown, o.Schema, err)
	}
	cfg.MaxConns = int32(o.MaxConns)
	cfg.MinConns = 0
	cfg.HealthCheckPeriod = 5 * time.Second
	ef := o.EfSearch
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if err := pgxvec.RegisterTypes(ctx, c); err != nil {
			return err
		}
		_, err := c.Exec(ctx, fmt.Sprintf("SET hnsw.ef_search = %d", ef))
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", shown, err)
	}
	s.pool = pool
	if err := s.loadDim(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store %s (schema %s): %w", shown, o.Schema, err)
	}
	return s, nil
}

// loadDim reads the stored dimension, applies Options.Dim and makes sure the
// index for this store's metric exists.
func (s *Store) loadDim(ctx context.Context) error {
	dim, err := s.storedDim(ctx)
	if err != nil {
		return err
	}
	if s.opts.Dim > 0 {
		if dim > 0 && dim != s.opts.Dim {
			return &memory.DimensionError{Stored: dim, Got: s.opts.Dim}
		}
		if dim == 0 {
			if err := s.setDimTx(ctx, s.opts.Dim); err != nil {
				return err
			}
			dim = s.opts.Dim
		}
	}
	s.dim.Store(int64(dim))
	_, err = s.hasIndex(ctx)
	return err
}

func (s *Store) storedDim(ctx context.Context) (int, error) {
	var dim int
	err := s.retry(ctx, "read dimension", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, s.q.getDim).Scan(&dim)
	})
	return dim, err
}

// setDimTx records dim as the store dimension if none is set yet (another
// worker may have set one first: that one wins and a mismatch is an error).
func (s *Store) setDimTx(ctx context.Context, dim int) error {
	return s.retry(ctx, "set dimension", func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var cur int
			if err := tx.QueryRow(ctx, s.q.getDimForUpdate).Scan(&cur); err != nil {
				return err
			}
			if cur == dim {
				return nil
			}
			if cur != 0 {
				return &memory.DimensionError{Stored: cur, Got: dim}
			}
			return s.setDim(ctx, tx, dim)
		})
	})
}

// setDim types the embedding column and stores dim; the caller holds the
// dim row FOR UPDATE.
func (s *Store) setDim(ctx context.Context, tx pgx.Tx, dim int) error {
	if _, err := tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN embedding TYPE vector(%d)`, s.q.records, dim)); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, s.q.setDim, fmt.Sprint(dim))
	return err
}

// indexName is the HNSW index of a metric.
func (s *Store) indexName() string {
	if s.opts.Metric == memory.Cosine {
		return "records_hnsw_cosine"
	}
	return "records_hnsw_l2"
}

// hasIndex reports whether the HNSW index of this store's metric exists.
func (s *Store) hasIndex(ctx context.Context) (bool, error) {
	if s.indexed.Load() {
		return true, nil
	}
	var exists bool
	err := s.retry(ctx, "check index", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, s.q.schema+"."+pgx.Identifier{s.indexName()}.Sanitize()).Scan(&exists)
	})
	if exists {
		s.indexed.Store(true)
	}
	return exists, err
}

// BuildIndex creates the HNSW index of this store's metric if it is
// missing. A store builds it by itself once it holds Options.ExactBelow
// vectors; bulk loads are faster with the index built once at the end (as
// `crewcore memory migrate` does), since pgvector then builds the graph in
// memory (maintenance_work_mem, raised to IndexBuildMemory for the build)
// instead of inserting vector by vector. Concurrent callers, in any process,
// build it once (under an advisory lock of the schema's index builds).
func (s *Store) BuildIndex(ctx context.Context) error {
	dim := s.Dim()
	if dim <= 0 || dim > maxIndexDim {
		return nil
	}
	if ok, err := s.hasIndex(ctx); ok || err != nil {
		return err
	}
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	ops := "vector_l2_ops"
	if s.opts.Metric == memory.Cosine {
		ops = "vector_cosine_ops"
	}
	ddl := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s USING hnsw (embedding %s) WITH (m = %d, ef_construction = %d)`,
		pgx.Identifier{s.indexName()}.Sanitize(), s.q.records, ops, s.opts.M, s.opts.EfConstruction)
	err := s.retry(ctx, "create index", func(ctx context.Context) error {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer conn.Release()
		// A lock of this schema's index builds (not the migration lock: a
		// build may take minutes, and workers opening stores must not wait).
		key := "crewcore.index." + s.opts.Schema
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, key); err != nil {
			return err
		}
		defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key)
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// The column may have been reset to untyped by another worker.
			var cur int
			if err := tx.QueryRow(ctx, s.q.getDim).Scan(&cur); err != nil || cur != dim {
				return err
			}
			if _, err := tx.Exec(ctx, `SELECT set_config('maintenance_work_mem', $1, true)`, IndexBuildMemory); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, ddl)
			return err
		})
	}, noDeadline)
	if err == nil {
		s.indexed.Store(true)
	}
	return err
}

// IndexBuildMemory is the maintenance_work_mem of an HNSW index build: the
// graph of 100k 1536-dimensional vectors needs about 1 GB to build in memory.
var IndexBuildMemory = "1GB"

// maybeIndex builds the index once the store holds Options.ExactBelow vectors.
func (s *Store) maybeIndex(ctx context.Context) error {
	if s.indexed.Load() || s.opts.ExactBelow < 0 || s.Dim() > maxIndexDim {
		return nil
	}
	if !s.useIndex(ctx, s.Dim()) {
		return nil
	}
	return s.BuildIndex(ctx)
}

// Close releases the pool. Further calls return memory.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.pool.Close()
	return nil
}

// Dim returns the vector dimension last seen (0 while unknown).
func (s *Store) Dim() int { return int(s.dim.Load()) }

// Schema returns the store's schema name.
func (s *Store) Schema() string { return s.opts.Schema }

// Pool exposes the connection pool (for tools and tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// DropSchema deletes the store in schema (every table of the schema) at
// dsn. It is for tests and tools; a store open on it fails afterwards.
func DropSchema(ctx context.Context, dsn, schema string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return redact.Err(fmt.Errorf("drop schema %s at %s: %w", schema, redact.DSN(dsn), err), dsn)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		return redact.Err(fmt.Errorf("drop schema %s at %s: %w", schema, redact.DSN(dsn), err), dsn)
	}
	return nil
}

// SplitDSN separates a schema given as the URL fragment of a DSN
// ("postgresql://host/db#team_a") from the DSN itself; schema is "" when
// the DSN names none.
func SplitDSN(s string) (dsn, schema string) {
	if i := strings.LastIndexByte(s, '#'); i >= 0 && IsDSN(s) {
		return s[:i], s[i+1:]
	}
	return s, ""
}
