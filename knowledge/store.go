package knowledge

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/crewcore/crewcore/sqlitedb"
)

// MaxChunkBytes is the largest chunk text stored (8 MiB). CrewAI's sources
// cut documents into chunks of 4,000 characters; a longer chunk is refused
// before it is embedded.
const MaxChunkBytes = 8 << 20

// missingBatch is how many ids one query of Missing checks.
const missingBatch = 500

// MaxNameBytes bounds a collection name.
const MaxNameBytes = 512

// FormatVersion is the version of the on-disk format this package writes.
const FormatVersion = 1

const schema = `
CREATE TABLE IF NOT EXISTS crewcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  name       TEXT NOT NULL UNIQUE,
  dim        INTEGER NOT NULL,
  fts        INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
  rid       INTEGER PRIMARY KEY AUTOINCREMENT,
  coll      INTEGER NOT NULL,
  id        TEXT NOT NULL,
  content   TEXT NOT NULL,
  metadata  TEXT NOT NULL,
  embedding BLOB NOT NULL,
  UNIQUE (coll, id)
);
CREATE TABLE IF NOT EXISTS fts_pending (rid INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS writes (id INTEGER PRIMARY KEY CHECK (id = 0), seq INTEGER NOT NULL);
INSERT OR IGNORE INTO writes (id, seq) VALUES (0, 0);
`

// Options tune a Store. The zero value is the default.
type Options struct {
	// Timeout is the deadline of a call whose context has none (default 60s):
	// how long a write waits for another process's write lock.
	Timeout time.Duration
	// NoFTS makes the store act as if SQLite had no FTS5 (for tests of that
	// path): writes queue their chunks for indexing, keyword search fails.
	NoFTS bool
}

// Chunk is one piece of a document with its embedding.
type Chunk struct {
	// ID identifies the chunk in its collection (CrewAI: the SHA-256 hex of
	// the content). Saving an ID already stored keeps the stored chunk.
	ID string
	// Content is the chunk's text.
	Content string
	// Metadata is a JSON object as text; "" means {}.
	Metadata string
	// Embedding is the chunk's vector; every chunk of a collection has the
	// same dimension.
	Embedding []float32
}

// CollectionInfo describes one collection.
type CollectionInfo struct {
	Name    string
	Dim     int
	Chunks  int
	Indexed bool // its FTS5 index exists and holds every chunk
	Created string
}

// Store is one knowledge store file opened by this process. It is safe for
// concurrent use by many goroutines; other processes may use the same file.
type Store struct {
	db  *sqlitedb.DB
	fts bool

	mu     sync.RWMutex // guards the fields below
	seq    int64        // the writes counter the state reflects
	names  map[string]int64
	colls  map[int64]*coll // loaded states (collections searched so far)
	closed bool
}

// Open opens (creating if needed) the knowledge store file at path. A file
// that is not SQLite, or a SQLite file of something else, is refused with
// ErrCorrupt and left untouched.
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	s := &Store{names: map[string]int64{}, colls: map[int64]*coll{}, seq: -1}
	db, err := sqlitedb.Open(path, &sqlitedb.Options{Timeout: o.Timeout, Init: initSchema})
	if err != nil {
		if errors.Is(err, errForeign) {
			return nil, fmt.Errorf("open knowledge store %s: %w", path, ErrCorrupt)
		}
		if errors.Is(err, sqlitedb.ErrCorrupt) {
			return nil, fmt.Errorf("open knowledge store %s: %w (%w)", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open knowledge store %s: %w", path, err)
	}
	s.db = db
	if !o.NoFTS {
		var used int
		if err := db.Read(context.Background(), func(r *sqlitedb.Reader) error {
			return r.QueryRow(`SELECT sqlite_compileoption_used('ENABLE_FTS5')`).Scan(&used)
		}); err != nil {
			db.Close()
			return nil, fmt.Errorf("open knowledge store %s: %w", path, err)
		}
		s.fts = used == 1
	}
	return s, nil
}

var errForeign = errors.New("foreign database")

func initSchema(tx *sqlitedb.Tx) error {
	var n int
	if err := tx.SQL().QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'table'`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		var format string
		err := tx.SQL().QueryRow(`SELECT value FROM crewcore_meta WHERE key = 'format'`).Scan(&format)
		if err != nil || format != "crewcore-knowledge" {
			return errForeign
		}
		var ver string
		if err := tx.SQL().QueryRow(`SELECT value FROM crewcore_meta WHERE key = 'version'`).Scan(&ver); err != nil {
			return errForeign
		}
		if ver != fmt.Sprint(FormatVersion) {
			return fmt.Errorf("%w: format version %s, this build reads %d", errForeign, ver, FormatVersion)
		}
	}
	if _, err := tx.SQL().Exec(schema); err != nil {
		return err
	}
	_, err := tx.SQL().Exec(`INSERT OR IGNORE INTO crewcore_meta (key, value) VALUES ('format', 'crewcore-knowledge'), ('version', ?)`,
		fmt.Sprint(FormatVersion))
	return err
}

// Path returns the store file's absolute path.
func (s *Store) Path() string { return s.db.Path() }

// FTS reports whether keyword search is available (SQLite built with FTS5).
func (s *Store) FTS() bool { return s.fts }

// Close closes the store's connections. Calls after Close fail with ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.colls = map[int64]*coll{}
	s.mu.Unlock()
	return s.db.Close()
}

func (s *Store) checkOpen() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("knowledge store %s: %w", s.db.Path(), ErrClosed)
	}
	return nil
}

// ValidName checks a collection name: non-empty UTF-8 of at most
// MaxNameBytes bytes without control characters.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty collection name", ErrInvalidArgument)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("%w: collection name of %d bytes (at most %d)", ErrInvalidArgument, len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: collection name is not valid UTF-8", ErrInvalidArgument)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: collection name %q has a control character", ErrInvalidArgument, name)
		}
	}
	return nil
}

// ValidChunk checks one chunk (its index i is named in the error).
func ValidChunk(i int, c *Chunk) error {
	switch {
	case c.ID == "" || len(c.ID) > 256 || !utf8.ValidString(c.ID):
		return fmt.Errorf("%w: document %d: id must be 1-256 bytes of UTF-8", ErrInvalidDocument, i)
	case strings.TrimSpace(c.Content) == "":
		return fmt.Errorf("%w: document %d is empty", ErrInvalidDocument, i)
	case len(c.Content) > MaxChunkBytes:
		return fmt.Errorf("%w: document %d has %d bytes, over the %d-byte limit of one chunk (split it, e.g. with a CrewAI knowledge source's chunk_size)",
			ErrInvalidDocument, i, len(c.Content), MaxChunkBytes)
	case strings.IndexByte(c.Content, 0) >= 0:
		return fmt.Errorf("%w: document %d contains a NUL byte at offset %d", ErrInvalidDocument, i, strings.IndexByte(c.Content, 0))
	case !utf8.ValidString(c.Content):
		return fmt.Errorf("%w: document %d is not valid UTF-8", ErrInvalidDocument, i)
	case len(c.Embedding) == 0:
		return fmt.Errorf("%w: document %d has no embedding", ErrInvalidDocument, i)
	}
	for j, x := range c.Embedding {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("%w: document %d: embedding component %d is %v", ErrInvalidDocument, i, j, x)
		}
	}
	if c.Metadata != "" && c.Metadata != "{}" {
		if _, err := decodeObject(c.Metadata); err != nil {
			return fmt.Errorf("%w: document %d: metadata: %v", ErrInvalidDocument, i, err)
		}
	}
	return nil
}

func ftsTable(id int64) string { return fmt.Sprintf("kfts_%d", id) }

const ftsCreate = `CREATE VIRTUAL TABLE IF NOT EXISTS %s USING fts5(content, tokenize = 'unicode61 remove_diacritics 2')`

// Missing returns the ids (in order, without duplicates) that collection
// does not hold; all of them when it does not exist.
func (s *Store) Missing(ctx context.Context, collection string, ids []string) ([]string, error) {
	if err := ValidName(collection); err != nil {
		return nil, err
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	stored := map[string]bool{}
	err := s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		clear(stored)
		var cid int64
		err := r.QueryRow(`SELECT id FROM collections WHERE name = ?`, collection).Scan(&cid)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		// batches of up to 500 ids (SQLite's default bound on variables is 32766)
		for lo := 0; lo < len(ids); lo += missingBatch {
			part := ids[lo:min(len(ids), lo+missingBatch)]
			// padded to 8, 64 or 500 placeholders (repeating the last id), so
			// the statement cache holds three statements, not one per length
			size := missingBatch
			for _, t := range []int{8, 64} {
				if len(part) <= t {
					size = t
					break
				}
			}
			args := make([]any, 0, size+1)
			args = append(args, cid)
			for i := 0; i < size; i++ {
				args = append(args, part[min(i, len(part)-1)])
			}
			rows, err := r.Query(`SELECT id FROM chunks WHERE coll = ? AND id IN (?`+strings.Repeat(", ?", size-1)+`)`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				stored[id] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	seen := make(map[string]bool, len(ids))
	var out []string
	for _, id := range ids {
		if !seen[id] && !stored[id] {
			out = append(out, id)
		}
		seen[id] = true
	}
	if err != nil {
		return nil, fmt.Errorf("knowledge %s: check stored ids: %w", collection, err)
	}
	return out, nil
}

// Save stores chunks in collection (created on first use) in one
// transaction: all of them or, on any error, none. Chunks whose ID the
// collection already holds are skipped. It returns how many were added.
func (s *Store) Save(ctx context.Context, collection string, chunks []Chunk) (int, error) {
	if err := ValidName(collection); err != nil {
		return 0, err
	}
	if len(chunks) == 0 {
		return 0, nil
	}
	dim := len(chunks[0].Embedding)
	for i := range chunks {
		if err := ValidChunk(i, &chunks[i]); err != nil {
			return 0, fmt.Errorf("knowledge %s: %w", collection, err)
		}
		if len(chunks[i].Embedding) != dim {
			return 0, &DimensionError{Collection: collection, Stored: dim, Got: len(chunks[i].Embedding)}
		}
	}
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	added := 0
	err := s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		added = 0
		cid, stored, indexed, err := s.collectionTx(tx, collection, dim, true)
		if err != nil {
			return err
		}
		if stored != dim {
			return &DimensionError{Collection: collection, Stored: stored, Got: dim}
		}
		if s.fts && !indexed {
			if err := s.indexTx(tx, cid); err != nil {
				return err
			}
			indexed = true
		}
		ins, err := tx.Stmt(`INSERT INTO chunks (coll, id, content, metadata, embedding) VALUES (?, ?, ?, ?, ?) ON CONFLICT (coll, id) DO NOTHING`)
		if err != nil {
			return err
		}
		var idx *sql.Stmt
		if indexed {
			// prepared on the transaction itself: the table may have been
			// created in it, invisible to the pool's other connections
			idx, err = tx.SQL().Prepare(fmt.Sprintf(`INSERT INTO %s (rowid, content) VALUES (?, ?)`, ftsTable(cid)))
			if err == nil {
				defer idx.Close()
			}
		} else {
			idx, err = tx.Stmt(`INSERT INTO fts_pending (rid) VALUES (?)`)
		}
		if err != nil {
			return err
		}
		buf := make([]byte, 4*dim)
		for i := range chunks {
			c := &chunks[i]
			meta := c.Metadata
			if meta == "" {
				meta = "{}"
			}
			for j, x := range c.Embedding {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(x))
			}
			res, err := ins.Exec(cid, c.ID, c.Content, meta, buf)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue
			}
			rid, err := res.LastInsertId()
			if err != nil {
				return err
			}
			if indexed {
				_, err = idx.Exec(rid, c.Content)
			} else {
				_, err = idx.Exec(rid)
			}
			if err != nil {
				return err
			}
			added++
		}
		return bumpTx(tx)
	})
	if err != nil {
		return 0, wrapErr(collection, "save", err)
	}
	return added, nil
}

func wrapErr(collection, op string, err error) error {
	var de *DimensionError
	if errors.As(err, &de) || errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrInvalidDocument) {
		return err
	}
	if errors.Is(err, ErrNoFTS) || errors.Is(err, ErrNotFound) {
		return err
	}
	if strings.Contains(err.Error(), "no such module: fts5") {
		return fmt.Errorf("knowledge %s: %s: %w (the collection's keyword index needs it)", collection, op, ErrNoFTS)
	}
	return fmt.Errorf("knowledge %s: %s: %w", collection, op, err)
}

func bumpTx(tx *sqlitedb.Tx) error {
	_, err := tx.Exec(`UPDATE writes SET seq = seq + 1 WHERE id = 0`)
	return err
}

// collectionTx returns the collection's id, dimension and whether its FTS
// index exists, creating it with dim when create is set.
func (s *Store) collectionTx(tx *sqlitedb.Tx, name string, dim int, create bool) (int64, int, bool, error) {
	var id int64
	var d, f int
	err := tx.QueryRow(`SELECT id, dim, fts FROM collections WHERE name = ?`, name).Scan(&id, &d, &f)
	if err == nil {
		return id, d, f == 1, nil
	}
	if !errors.Is(err, sql.ErrNoRows) || !create {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, false, fmt.Errorf("knowledge collection %q: %w", name, ErrNotFound)
		}
		return 0, 0, false, err
	}
	res, err := tx.Exec(`INSERT INTO collections (name, dim, fts, created_at) VALUES (?, ?, 0, ?)`,
		name, dim, time.Now().UTC().Format("2006-01-02T15:04:05.000000"))
	if err != nil {
		return 0, 0, false, err
	}
	id, err = res.LastInsertId()
	return id, dim, false, err
}

// indexTx creates collection cid's FTS5 table and indexes the chunks that
// were queued for it (stored by an engine without FTS5).
func (s *Store) indexTx(tx *sqlitedb.Tx, cid int64) error {
	if !s.fts {
		return ErrNoFTS
	}
	t := ftsTable(cid)
	if _, err := tx.SQL().Exec(fmt.Sprintf(ftsCreate, t)); err != nil {
		return err
	}
	if _, err := tx.SQL().Exec(fmt.Sprintf(`INSERT INTO %s (rowid, content)
		SELECT c.rid, c.content FROM fts_pending p JOIN chunks c ON c.rid = p.rid WHERE c.coll = ?`, t), cid); err != nil {
		return err
	}
	if _, err := tx.Exec(`DELETE FROM fts_pending WHERE rid IN (SELECT rid FROM chunks WHERE coll = ?)`, cid); err != nil {
		return err
	}
	_, err := tx.Exec(`UPDATE collections SET fts = 1 WHERE id = ?`, cid)
	return err
}

// Reset deletes collection with its chunks, dimension and index. It
// reports whether the collection existed.
func (s *Store) Reset(ctx context.Context, collection string) (bool, error) {
	if err := ValidName(collection); err != nil {
		return false, err
	}
	if err := s.checkOpen(); err != nil {
		return false, err
	}
	existed := false
	err := s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		existed = false
		var id int64
		err := tx.QueryRow(`SELECT id FROM collections WHERE name = ?`, collection).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		existed = true
		return dropTx(tx, id)
	})
	if err != nil {
		return false, wrapErr(collection, "reset", err)
	}
	return existed, nil
}

func dropTx(tx *sqlitedb.Tx, id int64) error {
	if _, err := tx.Exec(`DELETE FROM fts_pending WHERE rid IN (SELECT rid FROM chunks WHERE coll = ?)`, id); err != nil {
		return err
	}
	if _, err := tx.Exec(`DELETE FROM chunks WHERE coll = ?`, id); err != nil {
		return err
	}
	if _, err := tx.SQL().Exec(`DROP TABLE IF EXISTS ` + ftsTable(id)); err != nil {
		return err
	}
	if _, err := tx.Exec(`DELETE FROM collections WHERE id = ?`, id); err != nil {
		return err
	}
	return bumpTx(tx)
}

// ResetAll deletes every collection.
func (s *Store) ResetAll(ctx context.Context) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	err := s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		rows, err := tx.Query(`SELECT id FROM collections`)
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			if err := dropTx(tx, id); err != nil {
				return err
			}
		}
		return bumpTx(tx)
	})
	if err != nil {
		return wrapErr("*", "reset", err)
	}
	return nil
}

// Collections lists the collections, sorted by name.
func (s *Store) Collections(ctx context.Context) ([]CollectionInfo, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var out []CollectionInfo
	err := s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		out = out[:0]
		rows, err := r.Query(`SELECT c.name, c.dim, c.fts, c.created_at,
			(SELECT count(*) FROM chunks k WHERE k.coll = c.id),
			(SELECT count(*) FROM fts_pending p JOIN chunks k ON k.rid = p.rid WHERE k.coll = c.id)
			FROM collections c ORDER BY c.name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ci CollectionInfo
			var fts, pending int
			if err := rows.Scan(&ci.Name, &ci.Dim, &fts, &ci.Created, &ci.Chunks, &pending); err != nil {
				return err
			}
			ci.Indexed = fts == 1 && pending == 0
			out = append(out, ci)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("knowledge store %s: list collections: %w", s.db.Path(), err)
	}
	return out, nil
}
