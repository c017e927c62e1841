package embed

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/crewcore/crewcore/internal/vec"
	"github.com/crewcore/crewcore/sqlitedb"
)

// SQLite schema (format "crewcore-embeddings", version 1). The tables are
// prefixed so they may live in a file of crewcore's memory store.
const sqliteSchema = `
CREATE TABLE IF NOT EXISTS crewcore_embed_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS crewcore_embed_cache (
  key     BLOB PRIMARY KEY,   -- sha256(namespace NUL text)
  ns      TEXT NOT NULL,      -- provider|endpoint|model|dimensions
  dim     INTEGER NOT NULL,
  vec     BLOB NOT NULL,      -- little-endian float32 * dim
  tokens  INTEGER NOT NULL,   -- what the provider counted for the text
  bytes   INTEGER NOT NULL,   -- what the entry counts against the bound
  created INTEGER NOT NULL,   -- unix ms
  used    INTEGER NOT NULL,   -- unix ms of the last use (LRU)
  hits    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS crewcore_embed_cache_used ON crewcore_embed_cache(used);
CREATE TABLE IF NOT EXISTS crewcore_embed_stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
`

const (
	sqliteFormat  = "crewcore-embeddings"
	sqliteVersion = "1"
)

// SQLiteStore is a Store in one SQLite file (WAL), shared by every process
// that opens it.
type SQLiteStore struct {
	db       *sqlitedb.DB
	maxBytes int64
}

// OpenSQLite opens (creating) the cache file at path, bounded to maxBytes
// (<= 0: 1 GiB). A file that is not SQLite, or a SQLite file with tables of
// another application, is refused with ErrCacheCorrupt and left untouched;
// a file or directory that cannot be written fails with ErrCacheAccess.
func OpenSQLite(path string, maxBytes int64) (*SQLiteStore, error) {
	if maxBytes <= 0 {
		maxBytes = 1 << 30
	}
	if err := checkForeign(path); err != nil {
		return nil, err
	}
	db, err := sqlitedb.Open(path, &sqlitedb.Options{ReadConns: 4, Timeout: 10 * time.Second, Init: initSQLite})
	if err != nil {
		return nil, classifySQLite(err)
	}
	return &SQLiteStore{db: db, maxBytes: maxBytes}, nil
}

func initSQLite(tx *sqlitedb.Tx) error {
	q := tx.SQL()
	var format, version string
	err := q.QueryRowContext(tx.Context(), `SELECT value FROM crewcore_embed_meta WHERE key = 'format'`).Scan(&format)
	if err == nil {
		_ = q.QueryRowContext(tx.Context(), `SELECT value FROM crewcore_embed_meta WHERE key = 'version'`).Scan(&version)
		if format != sqliteFormat {
			return fmt.Errorf("%w: not a crewcore embedding cache (format %q)", sqlitedb.ErrCorrupt, format)
		}
		if version != sqliteVersion {
			return fmt.Errorf("%w: embedding cache version %q (this crewcore reads %s)", sqlitedb.ErrCorrupt, version, sqliteVersion)
		}
	}
	if _, err := q.ExecContext(tx.Context(), sqliteSchema); err != nil {
		return err
	}
	if _, err := q.ExecContext(tx.Context(), `INSERT OR IGNORE INTO crewcore_embed_meta VALUES ('format', ?), ('version', ?)`,
		sqliteFormat, sqliteVersion); err != nil {
		return err
	}
	var zero Counters
	for _, c := range append(zero.named(), struct {
		name string
		v    int64
	}{"bytes", 0}) {
		if _, err := q.ExecContext(tx.Context(), `INSERT OR IGNORE INTO crewcore_embed_stats VALUES (?, 0)`, c.name); err != nil {
			return err
		}
	}
	return nil
}

// checkForeign refuses an existing file that is not SQLite, or a SQLite
// database holding tables of another application (a crewcore memory store
// may hold the cache). It looks through a read-only connection without
// pragmas, so a refused file is never switched to WAL or otherwise changed.
func checkForeign(path string) error {
	st, err := os.Stat(path)
	if err != nil || st.Size() == 0 {
		return nil
	}
	if err := sqlitedb.CheckFile(path); err != nil {
		return classifySQLite(err)
	}
	db, err := sql.Open("sqlite3", "file:"+sqlitedb.EscapePath(path)+"?mode=ro")
	if err != nil {
		return fmt.Errorf("%w: open %s: %v", ErrCacheUnavailable, path, err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		return classifySQLite(sqlitedb.Classify("open embedding cache", path, err))
	}
	defer rows.Close()
	ours, crewcore, others := false, false, 0
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return classifySQLite(sqlitedb.Classify("open embedding cache", path, err))
		}
		switch {
		case name == "crewcore_embed_meta":
			ours = true
		case name == "crewcore_meta":
			crewcore = true
		case strings.HasPrefix(name, "sqlite_") || strings.HasPrefix(name, "crewcore_embed_"):
		default:
			others++
		}
	}
	if !ours && !crewcore && others > 0 {
		return fmt.Errorf("%w: %s holds tables of another application", ErrCacheCorrupt, path)
	}
	return nil
}

// classifySQLite maps sqlitedb's errors onto the cache's sentinels.
func classifySQLite(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sqlitedb.ErrCorrupt):
		return fmt.Errorf("%w: %v", ErrCacheCorrupt, err)
	case errors.Is(err, sqlitedb.ErrAccess):
		return fmt.Errorf("%w: %v", ErrCacheAccess, err)
	case errors.Is(err, sqlitedb.ErrClosed):
		return fmt.Errorf("%w: %v", ErrClosed, err)
	case errors.Is(err, sqlitedb.ErrTimeout):
		return fmt.Errorf("%w: %w: %v", ErrCacheUnavailable, errStoreBusy, err)
	}
	return fmt.Errorf("%w: %v", ErrCacheUnavailable, err)
}

// Where returns the file's path.
func (s *SQLiteStore) Where() string { return s.db.Path() }

// Close closes the file.
func (s *SQLiteStore) Close() error { return s.db.Close() }

func encodeVec(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// decodeVec decodes a stored vector; nil when it is damaged.
func decodeVec(b []byte, dim int) []float32 {
	if dim <= 0 || len(b) != 4*dim {
		return nil
	}
	v := make([]float32, dim)
	vec.FromLittleEndian(v, b)
	return v
}

// Get reads keys; rows whose vector is damaged are skipped (a miss).
func (s *SQLiteStore) Get(ctx context.Context, keys []Key) (map[Key]*Entry, error) {
	out := make(map[Key]*Entry, len(keys))
	err := s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		for _, k := range keys {
			var (
				ns     string
				dim    int
				vec    []byte
				tokens int
			)
			err := r.QueryRow(`SELECT ns, dim, vec, tokens FROM crewcore_embed_cache WHERE key = ?`, k[:]).Scan(&ns, &dim, &vec, &tokens)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			if v := decodeVec(vec, dim); v != nil {
				out[k] = &Entry{Key: k, NS: ns, Vec: v, Tokens: tokens}
			}
		}
		return nil
	})
	return out, classifySQLite(err)
}

// Put stores entries in one transaction and evicts past the bound.
func (s *SQLiteStore) Put(ctx context.Context, entries []*Entry, now time.Time) error {
	ms := now.UnixMilli()
	err := s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		var added, stored int64
		for _, e := range entries {
			res, err := tx.Exec(`INSERT OR IGNORE INTO crewcore_embed_cache (key, ns, dim, vec, tokens, bytes, created, used) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				e.Key[:], e.NS, len(e.Vec), encodeVec(e.Vec), e.Tokens, entryBytes(e), ms, ms)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				added += entryBytes(e)
				stored++
				continue
			}
			if _, err := tx.Exec(`UPDATE crewcore_embed_cache SET used = max(used, ?) WHERE key = ?`, ms, e.Key[:]); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(`UPDATE crewcore_embed_stats SET value = value + ? WHERE name = 'bytes'`, added); err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE crewcore_embed_stats SET value = value + ? WHERE name = 'stored'`, stored); err != nil {
			return err
		}
		return s.evict(tx)
	})
	return classifySQLite(err)
}

// evict deletes the least recently used entries until the total is at
// most 90% of the bound, when it is past the bound.
func (s *SQLiteStore) evict(tx *sqlitedb.Tx) error {
	var total int64
	if err := tx.QueryRow(`SELECT value FROM crewcore_embed_stats WHERE name = 'bytes'`).Scan(&total); err != nil {
		return err
	}
	if total <= s.maxBytes {
		return nil
	}
	target := s.maxBytes / 10 * 9
	var evicted int64
	for total > target {
		rows, err := tx.Query(`SELECT key, bytes FROM crewcore_embed_cache ORDER BY used LIMIT 256`)
		if err != nil {
			return err
		}
		var keys [][]byte
		var freed int64
		for rows.Next() && total-freed > target {
			var k []byte
			var b int64
			if err := rows.Scan(&k, &b); err != nil {
				rows.Close()
				return err
			}
			keys = append(keys, k)
			freed += b
		}
		rows.Close()
		if len(keys) == 0 {
			break // the counter drifted from the rows: nothing left to delete
		}
		for _, k := range keys {
			if _, err := tx.Exec(`DELETE FROM crewcore_embed_cache WHERE key = ?`, k); err != nil {
				return err
			}
		}
		total -= freed
		evicted += int64(len(keys))
	}
	if total < 0 {
		total = 0
	}
	if _, err := tx.Exec(`UPDATE crewcore_embed_stats SET value = ? WHERE name = 'bytes'`, total); err != nil {
		return err
	}
	_, err := tx.Exec(`UPDATE crewcore_embed_stats SET value = value + ? WHERE name = 'evictions'`, evicted)
	return err
}

// Record writes uses and adds counters in one transaction.
func (s *SQLiteStore) Record(ctx context.Context, uses map[Key]Use, add Counters) error {
	err := s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		for k, u := range uses {
			if _, err := tx.Exec(`UPDATE crewcore_embed_cache SET used = max(used, ?), hits = hits + ? WHERE key = ?`, u.At, u.Count, k[:]); err != nil {
				return err
			}
		}
		for _, c := range add.named() {
			if c.v == 0 {
				continue
			}
			if _, err := tx.Exec(`UPDATE crewcore_embed_stats SET value = value + ? WHERE name = ?`, c.v, c.name); err != nil {
				return err
			}
		}
		return nil
	})
	return classifySQLite(err)
}

// Stats reads sizes, namespaces and counters.
func (s *SQLiteStore) Stats(ctx context.Context) (StoreStats, error) {
	st := StoreStats{Where: s.db.Path(), MaxBytes: s.maxBytes}
	err := s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		rows, err := r.Query(`SELECT ns, count(*), coalesce(sum(bytes), 0) FROM crewcore_embed_cache GROUP BY ns`)
		if err != nil {
			return err
		}
		defer rows.Close()
		st.Namespaces, st.Entries, st.Bytes = nil, 0, 0
		for rows.Next() {
			var n NamespaceStats
			if err := rows.Scan(&n.NS, &n.Entries, &n.Bytes); err != nil {
				return err
			}
			st.Namespaces = append(st.Namespaces, n)
			st.Entries += n.Entries
			st.Bytes += n.Bytes
		}
		if err := rows.Err(); err != nil {
			return err
		}
		crow, err := r.Query(`SELECT name, value FROM crewcore_embed_stats`)
		if err != nil {
			return err
		}
		defer crow.Close()
		for crow.Next() {
			var name string
			var v int64
			if err := crow.Scan(&name, &v); err != nil {
				return err
			}
			st.Counters.set(name, v)
		}
		return crow.Err()
	})
	sort.Slice(st.Namespaces, func(i, j int) bool { return st.Namespaces[i].Bytes > st.Namespaces[j].Bytes })
	return st, classifySQLite(err)
}

// Clear deletes a namespace's entries (all entries and counters for "").
func (s *SQLiteStore) Clear(ctx context.Context, ns string) (int64, error) {
	var n int64
	err := s.db.WriteAlone(ctx, func(tx *sqlitedb.Tx) error {
		var res sql.Result
		var err error
		if ns == "" {
			if res, err = tx.Exec(`DELETE FROM crewcore_embed_cache`); err != nil {
				return err
			}
			if _, err := tx.Exec(`UPDATE crewcore_embed_stats SET value = 0`); err != nil {
				return err
			}
		} else if res, err = tx.Exec(`DELETE FROM crewcore_embed_cache WHERE ns = ?`, ns); err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		_, err = tx.Exec(`UPDATE crewcore_embed_stats SET value = (SELECT coalesce(sum(bytes), 0) FROM crewcore_embed_cache) WHERE name = 'bytes'`)
		return err
	})
	return n, classifySQLite(err)
}
