package embed

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/crewcore/crewcore/internal/redact"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PGStore is a Store in a PostgreSQL schema (tables embed_cache,
// embed_stats, embed_meta beside crewcore's memory tables), shared by every
// process and machine on the database.
type PGStore struct {
	pool     *pgxpool.Pool
	where    string
	maxBytes int64
	t        pgTables
	closed   atomic.Bool
}

type pgTables struct{ cache, stats, meta string }

// OpenPG connects to dsn and creates the cache tables in schema (default
// "crewcore") if needed, under an advisory lock so many processes may open
// at once. maxBytes <= 0 means 1 GiB.
func OpenPG(ctx context.Context, dsn, schema string, maxBytes int64) (*PGStore, error) {
	s, err := openPG(ctx, dsn, schema, maxBytes)
	return s, redact.Err(err, dsn)
}

func openPG(ctx context.Context, dsn, schema string, maxBytes int64) (*PGStore, error) {
	if schema == "" {
		schema = "crewcore"
	}
	if maxBytes <= 0 {
		maxBytes = 1 << 30
	}
	where := redact.DSN(dsn) + " schema " + schema
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: embedding cache %s: bad DSN: %v", ErrInvalid, redact.DSN(dsn), err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	cfg.MaxConns = 4
	cfg.MinConns = 0
	q := pgx.Identifier{schema}.Sanitize()
	s := &PGStore{where: where, maxBytes: maxBytes,
		t: pgTables{cache: q + ".embed_cache", stats: q + ".embed_stats", meta: q + ".embed_meta"}}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, s.classify("open", err)
	}
	if err := s.migrate(ctx, schema); err != nil {
		s.pool.Close()
		return nil, s.classify("open", err)
	}
	return s, nil
}

func (s *PGStore) migrate(ctx context.Context, schema string) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	lock := "crewcore_embed:" + schema
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext($1))`, lock); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext($1))`, lock)
	stmts := []string{
		`CREATE SCHEMA IF NOT EXISTS ` + pgx.Identifier{schema}.Sanitize(),
		`CREATE TABLE IF NOT EXISTS ` + s.t.meta + ` (key text PRIMARY KEY, value text NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + s.t.cache + ` (key bytea PRIMARY KEY, ns text NOT NULL, dim integer NOT NULL,
			vec bytea NOT NULL, tokens integer NOT NULL, bytes bigint NOT NULL, created bigint NOT NULL,
			used bigint NOT NULL, hits bigint NOT NULL DEFAULT 0)`,
		`CREATE INDEX IF NOT EXISTS embed_cache_used ON ` + s.t.cache + ` (used)`,
		`CREATE TABLE IF NOT EXISTS ` + s.t.stats + ` (name text PRIMARY KEY, value bigint NOT NULL)`,
		`INSERT INTO ` + s.t.meta + ` VALUES ('format', 'crewcore-embeddings'), ('version', '1') ON CONFLICT DO NOTHING`,
	}
	for _, st := range stmts {
		if _, err := conn.Exec(ctx, st); err != nil {
			return err
		}
	}
	var format, version string
	if err := conn.QueryRow(ctx, `SELECT (SELECT value FROM `+s.t.meta+` WHERE key = 'format'), (SELECT value FROM `+s.t.meta+` WHERE key = 'version')`).Scan(&format, &version); err != nil {
		return err
	}
	if format != "crewcore-embeddings" || version != "1" {
		return fmt.Errorf("%w: schema %s holds embed_meta of format %q version %q", ErrCacheCorrupt, schema, format, version)
	}
	var zero Counters
	for _, c := range append(zero.named(), struct {
		name string
		v    int64
	}{"bytes", 0}) {
		if _, err := conn.Exec(ctx, `INSERT INTO `+s.t.stats+` VALUES ($1, 0) ON CONFLICT DO NOTHING`, c.name); err != nil {
			return err
		}
	}
	return nil
}

func (s *PGStore) classify(op string, err error) error {
	if err == nil {
		return nil
	}
	for _, k := range []error{ErrCacheCorrupt, ErrCacheAccess, ErrCacheUnavailable, ErrInvalid, ErrClosed} {
		if errors.Is(err, k) {
			return err
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "42501": // insufficient privilege
			return fmt.Errorf("%w: embedding cache %s: %s: %v", ErrCacheAccess, s.where, op, err)
		case pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "55P03" || pe.Code == "57014":
			return fmt.Errorf("%w: %w: embedding cache %s: %s: %v", ErrCacheUnavailable, errStoreBusy, s.where, op, err)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w: embedding cache %s: %s: %v", ErrCacheUnavailable, errStoreBusy, s.where, op, err)
	}
	if s.closed.Load() {
		return fmt.Errorf("%w: embedding cache %s", ErrClosed, s.where)
	}
	return fmt.Errorf("%w: embedding cache %s: %s: %v", ErrCacheUnavailable, s.where, op, err)
}

// Where returns the redacted DSN and the schema.
func (s *PGStore) Where() string { return s.where }

// Close closes the pool.
func (s *PGStore) Close() error {
	s.closed.Store(true)
	s.pool.Close()
	return nil
}

// Get reads keys in one query.
func (s *PGStore) Get(ctx context.Context, keys []Key) (map[Key]*Entry, error) {
	ks := make([][]byte, len(keys))
	for i := range keys {
		ks[i] = keys[i][:]
	}
	rows, err := s.pool.Query(ctx, `SELECT key, ns, dim, vec, tokens FROM `+s.t.cache+` WHERE key = ANY($1)`, ks)
	if err != nil {
		return nil, s.classify("get", err)
	}
	defer rows.Close()
	out := make(map[Key]*Entry, len(keys))
	for rows.Next() {
		var (
			k, vec []byte
			ns     string
			dim    int
			tokens int
		)
		if err := rows.Scan(&k, &ns, &dim, &vec, &tokens); err != nil {
			return nil, s.classify("get", err)
		}
		var key Key
		if len(k) != len(key) {
			continue
		}
		copy(key[:], k)
		if v := decodeVec(vec, dim); v != nil {
			out[key] = &Entry{Key: key, NS: ns, Vec: v, Tokens: tokens}
		}
	}
	return out, s.classify("get", rows.Err())
}

// Put stores entries in one transaction and evicts past the bound.
func (s *PGStore) Put(ctx context.Context, entries []*Entry, now time.Time) error {
	ms := now.UnixMilli()
	// One key order for every writer: no deadlock between processes.
	entries = append([]*Entry(nil), entries...)
	sort.Slice(entries, func(i, j int) bool { return string(entries[i].Key[:]) < string(entries[j].Key[:]) })
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, e := range entries {
			b.Queue(`INSERT INTO `+s.t.cache+` (key, ns, dim, vec, tokens, bytes, created, used) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
				ON CONFLICT (key) DO UPDATE SET used = GREATEST(`+s.t.cache+`.used, EXCLUDED.used) RETURNING (xmax = 0)`,
				e.Key[:], e.NS, len(e.Vec), encodeVec(e.Vec), e.Tokens, entryBytes(e), ms)
		}
		br := tx.SendBatch(ctx, b)
		var added, stored int64
		for _, e := range entries {
			var inserted bool
			if err := br.QueryRow().Scan(&inserted); err != nil {
				br.Close()
				return err
			}
			if inserted {
				added += entryBytes(e)
				stored++
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
		var total int64
		if err := tx.QueryRow(ctx, `UPDATE `+s.t.stats+` SET value = value + $1 WHERE name = 'bytes' RETURNING value`, added).Scan(&total); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE `+s.t.stats+` SET value = value + $1 WHERE name = 'stored'`, stored); err != nil {
			return err
		}
		if total <= s.maxBytes {
			return nil
		}
		target := s.maxBytes / 10 * 9
		var evicted int64
		for total > target {
			rows, err := tx.Query(ctx, `SELECT key, bytes FROM `+s.t.cache+` ORDER BY used LIMIT 256`)
			if err != nil {
				return err
			}
			var keys [][]byte
			var freed int64
			for rows.Next() && total-freed > target {
				var k []byte
				var n int64
				if err := rows.Scan(&k, &n); err != nil {
					rows.Close()
					return err
				}
				keys = append(keys, k)
				freed += n
			}
			rows.Close()
			if len(keys) == 0 {
				break
			}
			if _, err := tx.Exec(ctx, `DELETE FROM `+s.t.cache+` WHERE key = ANY($1)`, keys); err != nil {
				return err
			}
			total -= freed
			evicted += int64(len(keys))
		}
		if _, err := tx.Exec(ctx, `UPDATE `+s.t.stats+` SET value = GREATEST($1, 0) WHERE name = 'bytes'`, total); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE `+s.t.stats+` SET value = value + $1 WHERE name = 'evictions'`, evicted)
		return err
	})
	return s.classify("put", err)
}

// Record writes uses and counters in one transaction.
func (s *PGStore) Record(ctx context.Context, uses map[Key]Use, add Counters) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		keys := make([]Key, 0, len(uses))
		for k := range uses {
			keys = append(keys, k)
		}
		// One order for every writer: no deadlock between processes.
		sort.Slice(keys, func(i, j int) bool { return string(keys[i][:]) < string(keys[j][:]) })
		for _, k := range keys {
			u := uses[k]
			b.Queue(`UPDATE `+s.t.cache+` SET used = GREATEST(used, $1), hits = hits + $2 WHERE key = $3`, u.At, u.Count, k[:])
		}
		for _, c := range add.named() {
			if c.v != 0 {
				b.Queue(`UPDATE `+s.t.stats+` SET value = value + $1 WHERE name = $2`, c.v, c.name)
			}
		}
		return tx.SendBatch(ctx, b).Close()
	})
	return s.classify("record", err)
}

// Stats reads sizes, namespaces and counters.
func (s *PGStore) Stats(ctx context.Context) (StoreStats, error) {
	st := StoreStats{Where: s.where, MaxBytes: s.maxBytes}
	rows, err := s.pool.Query(ctx, `SELECT ns, count(*), coalesce(sum(bytes), 0) FROM `+s.t.cache+` GROUP BY ns ORDER BY 3 DESC`)
	if err != nil {
		return st, s.classify("stats", err)
	}
	for rows.Next() {
		var n NamespaceStats
		if err := rows.Scan(&n.NS, &n.Entries, &n.Bytes); err != nil {
			rows.Close()
			return st, s.classify("stats", err)
		}
		st.Namespaces = append(st.Namespaces, n)
		st.Entries += n.Entries
		st.Bytes += n.Bytes
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, s.classify("stats", err)
	}
	crow, err := s.pool.Query(ctx, `SELECT name, value FROM `+s.t.stats)
	if err != nil {
		return st, s.classify("stats", err)
	}
	defer crow.Close()
	for crow.Next() {
		var name string
		var v int64
		if err := crow.Scan(&name, &v); err != nil {
			return st, s.classify("stats", err)
		}
		st.Counters.set(name, v)
	}
	return st, s.classify("stats", crow.Err())
}

// Clear deletes a namespace's entries (all entries and counters for "").
func (s *PGStore) Clear(ctx context.Context, ns string) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var tag pgconn.CommandTag
		var err error
		if ns == "" {
			if tag, err = tx.Exec(ctx, `DELETE FROM `+s.t.cache); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE `+s.t.stats+` SET value = 0`); err != nil {
				return err
			}
		} else if tag, err = tx.Exec(ctx, `DELETE FROM `+s.t.cache+` WHERE ns = $1`, ns); err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `UPDATE `+s.t.stats+` SET value = (SELECT coalesce(sum(bytes), 0) FROM `+s.t.cache+`) WHERE name = 'bytes'`)
		return err
	})
	return n, s.classify("clear", err)
}
