package memory

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/crewcore/crewcore/internal/vec"
	"github.com/crewcore/crewcore/sqlitedb"
	sqlite3 "github.com/mattn/go-sqlite3"
)

// Metric selects the score a search returns.
type Metric int

const (
	// L2 scores 1/(1 + squared euclidean distance): the number CrewAI's default
	// LanceDB store returns, so CrewAI's thresholds keep their meaning.
	L2 Metric = iota
	// Cosine scores the cosine similarity in [-1, 1].
	Cosine
)

// String returns "l2" or "cosine".
func (m Metric) String() string {
	if m == Cosine {
		return "cosine"
	}
	return "l2"
}

// ParseMetric parses "l2" (or "") and "cosine".
func ParseMetric(s string) (Metric, error) {
	switch strings.ToLower(s) {
	case "", "l2":
		return L2, nil
	case "cosine":
		return Cosine, nil
	}
	return L2, fmt.Errorf("%w: unknown metric %q (want \"l2\" or \"cosine\")", ErrInvalidArgument, s)
}

// Options tune a Store. The zero value is the default.
type Options struct {
	// Dim fixes the vector dimension. 0 takes it from the store file or from
	// the first saved embedding.
	Dim int
	// Metric is the score convention (default L2).
	Metric Metric
	// BusyTimeout bounds how long a write waits for other processes' locks
	// (default 60s).
	BusyTimeout time.Duration
	// ExactBelow is the number of candidate vectors under which search scans
	// exact float32 vectors only. At or above it, search is a cascade: a
	// Hamming scan of the segments' 1-bit codes keeps the best
	// max(3000, Stage1 * candidates, Stage2 * limit) candidates, and exact
	// float32 scores of those pick the results (search.go). Default 512; a
	// negative value always scans exactly.
	ExactBelow int
	// Stage1 is the fraction of candidates the binary scan keeps for exact
	// scores (default 0.01, never fewer than 3000).
	Stage1 float64
	// Stage2 is the number of candidates per requested result the binary
	// scan keeps at least (default 10).
	Stage2 int
	// SyncSegments makes every write fdatasync the segment files it
	// appended to before its transaction commits (the degree of SQLite's
	// synchronous=FULL). Without it the rows are written before the commit,
	// as durable as the store's synchronous=NORMAL commit (segstore.go).
	SyncSegments bool
	// ReadOnly opens an existing store read-only even when it could be
	// written: reads are served, writes return ErrAccess (readonly.go). A
	// store that cannot be written is opened read-only without it.
	ReadOnly bool
}

const schemaSQL = `
CREATE TABLE IF NOT EXISTS crewcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
  rid           INTEGER PRIMARY KEY,
  id            TEXT NOT NULL UNIQUE,
  content       TEXT NOT NULL,
  scope         TEXT NOT NULL,
  categories    TEXT NOT NULL,
  metadata      TEXT NOT NULL,
  importance    REAL NOT NULL,
  created_at    TEXT NOT NULL,
  last_accessed TEXT NOT NULL,
  source        TEXT,
  private       INTEGER NOT NULL,
  seg           INTEGER,
  row           INTEGER,
  checksum      INTEGER
);
CREATE TABLE IF NOT EXISTS changes (
  seq       INTEGER PRIMARY KEY AUTOINCREMENT,
  record_id TEXT NOT NULL
);
` + segmentsSQL + `
INSERT OR IGNORE INTO crewcore_meta(key, value) VALUES ('format', 'crewcore-memory'), ('version', '3');
INSERT OR IGNORE INTO crewcore_meta(key, value) VALUES ('store_id', lower(hex(randomblob(16))));
`

// minMaxSeqSQL reads both ends of the change log. Two subqueries, because
// SQLite answers a lone max() or min() from the rowid b-tree in O(log n) but
// scans the whole table for max() and min() in one select.
// newPageSize is the page size of new store files.
var newPageSize = 16384

const minMaxSeqSQL = `SELECT coalesce((SELECT max(seq) FROM changes), 0), coalesce((SELECT min(seq) FROM changes), 0)`

const recordCols = `rid, id, content, scope, categories, metadata, importance, created_at, last_accessed, source, private, seg, row, checksum`

// Store is an embedded memory store: SQLite (WAL) is the durable truth and an
// in-memory arena serves searches. A Store is safe for concurrent use, and
// many processes may open the same file: each sees the others' writes on its
// next call.
type Store struct {
	path string
	opts Options
	// sdb is the pooled SQLite layer (sqlitedb): the pool, the writer
	// connection, the statement cache and the busy-retry loop. db is its pool.
	sdb *sqlitedb.DB
	db  *sql.DB

	writeMu sync.Mutex   // one writer per process; SQLite serializes processes
	mu      sync.RWMutex // guards ix, lastSeq, closed
	ix      *index
	lastSeq int64
	closed  bool

	stmtMaxSeq *sql.Stmt
	// wal lets reads skip stmtMaxSeq when no transaction committed since
	// the last check (nil when the WAL index cannot be mapped).
	wal   *walWatch
	walMu sync.Mutex // guards wal.last
	// freshQueries counts the SQL freshness checks reads have run (tests).
	freshQueries atomic.Int64

	// Checkpoints run in the background, not in the commit of a write: the
	// writer connection has wal_autocheckpoint off (wal.go).
	walk walKeeper
	// sawFull is set when a write failed for lack of space (withWrite).
	sawFull atomic.Bool
	// reserveDue is set when a write created a segment: the space reserve
	// is grown after it commits (a store whose vectors fill the disk
	// writes too little to its WAL to reach a checkpoint).
	reserveDue atomic.Bool

	// readOnly: opened read-only, roWhy says why; immutable: with SQLite's
	// immutable=1 (readonly.go).
	readOnly, immutable bool
	roWhy               string

	// fromSnapshot: the index came from the snapshot file at open.
	fromSnapshot bool
	// snapSeq is the change seq of the newest snapshot this store loaded or
	// wrote (-1: none).
	snapSeq atomic.Int64
	// bg counts background work (the index snapshot, snapshot.go) that
	// Close waits for.
	bg sync.WaitGroup
}

// Open opens or creates the store at path (a database file). The parent
// directory is created if needed. A file that is not a crewcore store is
// refused with ErrCorrupt and left untouched.
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Dim < 0 {
		return nil, fmt.Errorf("open store %s: %w: negative dimension %d", path, ErrInvalidArgument, o.Dim)
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 60 * time.Second
	}
	if o.ExactBelow == 0 {
		o.ExactBelow = 512
	}
	if o.Stage1 <= 0 || o.Stage1 > 1 {
		o.Stage1 = 0.01
	}
	if o.Stage2 <= 0 {
		o.Stage2 = 10
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{path: abs, opts: o, ix: newIndex(o.Dim)}
	if f := fileInPath(filepath.Dir(abs)); f != "" {
		return nil, NewAccessError("open store %s: not a directory: %s is a file", abs, f)
	}
	if o.ReadOnly {
		s.roWhy = "as asked: Options.ReadOnly"
		return s.openReadOnly() // readonly.go
	}
	if why := unwritable(abs); why != "" {
		s.roWhy = why
		return s.openReadOnly()
	}
	ws, err := s.openWritable()
	if err != nil && errors.Is(err, ErrAccess) && fileSize(abs) > 0 {
		// An existing store this process cannot write after all (SQLite
		// said so): serve it read-only, or report why the writable open failed.
		ro := &Store{path: abs, opts: o, ix: newIndex(o.Dim), roWhy: "opening it writable failed: " + err.Error()}
		if rs, rerr := ro.openReadOnly(); rerr == nil {
			return rs, nil
		}
	}
	return ws, err
}

// openWritable is Open for a store this process may write.
func (s *Store) openWritable() (*Store, error) {
	abs, o := s.path, s.opts
	// sqlitedb.Open checks the file too, but only after checkForeign, which
	// must look before anything switches the file to WAL.
	if err := sqlitedb.CheckFile(abs); err != nil {
		return nil, s.fromDB("open store", err)
	}
	if err := checkForeign(abs); err != nil {
		return nil, err
	}
	sdb, err := sqlitedb.Open(abs, &sqlitedb.Options{
		Timeout:   o.BusyTimeout, // the deadline of every write's busy retry
		ReadConns: 7,
		MaxBatch:  1, // every write runs alone (withWrite: its own locking)
		CacheKiB:  65536,
		BusyWait:  storeBusyWait,
		WALLimit:  -1, // the store keeps its WAL itself (wal.go)
		// Checkpoints run in the background (checkpointer), not in commits;
		// a WAL this connection starts over is truncated to walSizeLimit.
		WriterInit: func(ctx context.Context, c *sql.Conn) error {
			_, err := c.ExecContext(ctx, `PRAGMA wal_autocheckpoint=0`)
			if err == nil {
				_, err = c.ExecContext(ctx, `PRAGMA journal_size_limit=`+itoa(walSizeLimit))
			}
			if err == nil {
				// As the fallback: a delete rewrites the b-tree pages it
				// changes, never the pages it frees (whose WAL frames would
				// need as much space as the data deleted: see marker.go).
				_, err = c.ExecContext(ctx, `PRAGMA secure_delete=FAST`)
			}
			return err
		},
	})
	if err != nil {
		return nil, s.fromDB("open store", err)
	}
	s.sdb, s.db = sdb, sdb.SQL()
	if err := s.init(); err != nil {
		s.stopCheckpointer()
		sdb.Close()
		s.wal.close() // after the connections (see shmMap)
		return nil, err
	}
	writeMarker(abs)
	ensureReserve(abs)
	return s, nil
}

// checkForeign refuses an existing SQLite database that is not a crewcore
// store. It looks through a read-only connection with no pragmas, so the
// file is never switched to WAL or otherwise changed.
func checkForeign(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if st.Size() == 0 {
		if hasMarker(path) {
			return lostStoreError(path, "is empty (0 bytes)")
		}
		return nil
	}
	// mode=ro, or immutable=1 where no -shm can be made (readonly.go).
	db, _, err := openReadOnlyDB(path, "")
	if err == nil {
		defer db.Close()
	}
	var tables int
	if err == nil {
		err = db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type='table'`).Scan(&tables)
	}
	if err != nil {
		var se sqlite3.Error
		if errors.As(err, &se) && (se.Code == sqlite3.ErrNotADB || se.Code == sqlite3.ErrCorrupt) {
			return fmt.Errorf("open store %s: %w: %v", path, ErrCorrupt, err)
		}
		return nil // let the normal open report access problems
	}
	if tables == 0 {
		if hasMarker(path) {
			return lostStoreError(path, "has no tables")
		}
		return nil
	}
	var format string
	err = db.QueryRow(`SELECT value FROM crewcore_meta WHERE key='format'`).Scan(&format)
	if err != nil || format != "crewcore-memory" {
		return fmt.Errorf("open store %s: %w: it holds another application's tables", path, ErrCorrupt)
	}
	// A store that lost a table is damaged, not new: never re-create it.
	var have int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN ('records', 'changes')`).Scan(&have); err == nil && have != 2 {
		return fmt.Errorf("open store %s: %w: the store lost its records or changes table", path, ErrCorrupt)
	}
	return nil
}

// classify maps SQLite failures onto the package's sentinel errors.
func (s *Store) classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrNotADB, sqlite3.ErrCorrupt:
			return fmt.Errorf("%s %s: %w: %v", op, s.path, ErrCorrupt, err)
		case sqlite3.ErrReadonly, sqlite3.ErrPerm, sqlite3.ErrCantOpen, sqlite3.ErrAuth:
			return fmt.Errorf("%s %s: %w: %v", op, s.path, ErrAccess, err)
		case sqlite3.ErrBusy, sqlite3.ErrLocked:
			return fmt.Errorf("%s %s: %w: %v", op, s.path, ErrTimeout, err)
		case sqlite3.ErrFull, sqlite3.ErrIoErr:
			return fmt.Errorf("%s %s: %w", op, s.path, err)
		}
	}
	return fmt.Errorf("%s %s: %w", op, s.path, err)
}

func isUniqueViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}

func (s *Store) init() error {
	ctx := context.Background()
	s.startCheckpointer()
	// Open has already refused foreign databases (checkForeign).
	var version string
	err := s.withWrite(ctx, "open store", func(tx *sql.Tx) (func(), error) {
		err := tx.QueryRowContext(ctx, `SELECT value FROM crewcore_meta WHERE key='version'`).Scan(&version)
		if errors.Is(err, sql.ErrNoRows) || (err != nil && strings.Contains(err.Error(), "no such table")) {
			version = "" // a new store
		} else if err != nil {
			return nil, err
		}
		switch version {
		case "", FormatVersion:
			if _, err := tx.ExecContext(ctx, schemaSQL); err != nil {
				return nil, err
			}
			return nil, s.truncateTails(ctx, tx)
		case "1", "2":
			return nil, nil // upgraded below, after a backup
		}
		return nil, fmt.Errorf("%w: unsupported format version %s (this engine reads 1 to %s)", ErrCorrupt, version, FormatVersion)
	}, false)
	if err != nil {
		return err
	}
	if version == "1" || version == "2" {
		if err := s.upgrade(ctx); err != nil { // upgrade.go
			return err
		}
	}
	if s.stmtMaxSeq, err = s.db.Prepare(`SELECT coalesce(max(seq), 0) FROM changes`); err != nil {
		return s.classify("open store", err)
	}
	s.wal = openWALWatch(s.path)
	s.mu.Lock()
	defer s.mu.Unlock()
	// The index snapshot (snapshot.go) when it is there and still matches
	// the database; it is written again when the load came from SQLite or
	// replayed many changes.
	s.snapSeq.Store(-1)
	ready, used, err := s.loadSnapshot(ctx)
	if err != nil {
		return err
	}
	s.fromSnapshot = used
	if !ready {
		if err := s.reload(ctx, s.db); err != nil {
			return err
		}
	}
	if s.snapshotStale() {
		s.snapshotLater()
	}
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// storedDim reads the dimension recorded in the file (0 if none).
func storedDim(ctx context.Context, q querier) (int, error) {
	var v string
	err := q.QueryRowContext(ctx, `SELECT value FROM crewcore_meta WHERE key='dim'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// reload rebuilds the index from the database. Caller holds s.mu.
func (s *Store) reload(ctx context.Context, q querier) error {
	var maxSeq int64
	if err := q.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM changes`).Scan(&maxSeq); err != nil {
		return s.classify("load store", err)
	}
	dim, err := storedDim(ctx, q)
	if err != nil {
		return s.classify("load store", err)
	}
	if s.opts.Dim > 0 {
		if dim > 0 && dim != s.opts.Dim {
			return fmt.Errorf("open store %s: %w", s.path, &DimensionError{Stored: dim, Got: s.opts.Dim})
		}
		dim = s.opts.Dim
	}
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM records`).Scan(&n); err != nil {
		return s.classify("load store", err)
	}
	ix := newIndex(dim)
	ix.entries = make([]*entry, 0, n)
	rows, err := q.QueryContext(ctx, `SELECT `+recordCols+` FROM records ORDER BY rid`)
	if err != nil {
		return s.classify("load store", err)
	}
	var loaded []loadedRow
	for rows.Next() {
		row, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return s.classify("load store", err)
		}
		loaded = append(loaded, loadedRow{row})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.classify("load store", err)
	}
	for _, l := range loaded {
		e, slot, err := s.entryOf(ctx, q, ix, l.row)
		if err != nil {
			ix.unmapAll()
			return s.classify("load store", err)
		}
		ix.put(e, slot, false)
	}
	old := s.ix
	s.ix = ix
	s.lastSeq = maxSeq
	if old != nil && old != ix {
		old.retire()
	}
	return nil
}

type loadedRow struct{ row *storedRow }

type scanner interface{ Scan(dest ...any) error }

// entryOf turns a stored row into an entry, checking it against its
// checksum (through its segment row's vector CRC), and returns its slot
// (-1 without a vector). A row that fails comes back as an entry marked
// bad, without its vector (it is reported, never served).
func (s *Store) entryOf(ctx context.Context, q querier, ix *index, row *storedRow) (*entry, int32, error) {
	e := &entry{rid: row.rid, id: row.id, content: row.content, catsJSON: row.cats, meta: row.meta,
		importance: row.importance, created: row.created, accessed: row.accessed,
		source: row.source, private: row.private != 0}
	e.cats = decodeStrings(e.catsJSON)
	e.scopeID = ix.scopeFor(row.scope)
	slot, vlen, vcrc := int32(-1), 0, uint32(0)
	why := ""
	if row.seg.Valid {
		var err error
		if ix.dim <= 0 {
			why = "a vector in a store without a dimension"
		} else if slot, vcrc, why, err = s.addressed(ctx, q, ix, row.seg.Int64, row.row.Int64); err != nil {
			return nil, -1, err
		}
		vlen = 4 * ix.dim
	}
	if why == "" {
		why = row.verifyV3(vlen, vcrc)
	}
	if why != "" {
		e.bad = fmt.Sprintf("rowid %d: %s", row.rid, why)
		return e, -1, nil
	}
	return e, slot, nil
}

// decodeVector copies little-endian float32 bytes into v.
func decodeVector(b []byte, v []float32) {
	vec.FromLittleEndian(v, b[:min(len(b), 4*len(v))])
}

// encodeVector returns v as little-endian float32 bytes.
func encodeVector(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	if nativeLittleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v)*4)
	}
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[i*4:], math.Float32bits(x))
	}
	return b
}

var nativeLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// sync brings the index up to date with other writers (cheap when nothing
// changed: one indexed query).
func (s *Store) sync(ctx context.Context) error {
	// The mapping is read under s.mu: Close unmaps it under the write lock.
	s.mu.RLock()
	closed, last := s.closed, s.lastSeq
	if closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	w := s.wal
	var hdr [walIndexHdrWords]uint32
	consistent := false
	if w != nil && w.hdr != nil {
		hdr, consistent = w.snapshot()
		if consistent && w.ok.Load() && s.walSeen(hdr) {
			s.mu.RUnlock()
			return nil
		}
	}
	s.mu.RUnlock()
	s.freshQueries.Add(1)
	var maxSeq int64
	if err := s.stmtMaxSeq.QueryRowContext(ctx).Scan(&maxSeq); err != nil {
		return s.classify("read store", err)
	}
	if maxSeq != last {
		s.mu.Lock()
		err := s.apply(ctx, s.db)
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if consistent {
		// Everything committed before hdr was read is now in the index.
		s.walMu.Lock()
		w.last = hdr
		w.ok.Store(true)
		s.walMu.Unlock()
	}
	return nil
}

// walSeen reports whether hdr is the WAL-index header of the last check.
func (s *Store) walSeen(hdr [walIndexHdrWords]uint32) bool {
	s.walMu.Lock()
	defer s.walMu.Unlock()
	return s.wal.last == hdr
}

// apply reads changes after s.lastSeq and updates the index. Caller holds s.mu.
func (s *Store) apply(ctx context.Context, q querier) error {
	var maxSeq, minSeq int64
	row := q.QueryRowContext
	if tx, ok := q.(*sql.Tx); ok {
		if st, err := s.stmtFor(ctx, tx, minMaxSeqSQL); err == nil {
			row = func(ctx context.Context, _ string, args ...any) *sql.Row { return st.QueryRowContext(ctx, args...) }
		}
	}
	if err := row(ctx, minMaxSeqSQL).Scan(&maxSeq, &minSeq); err != nil {
		return s.classify("read store", err)
	}
	if maxSeq == s.lastSeq {
		return nil
	}
	if maxSeq < s.lastSeq || minSeq > s.lastSeq+1 {
		return s.reload(ctx, q)
	}
	rows, err := q.QueryContext(ctx, `SELECT record_id FROM changes WHERE seq > ? ORDER BY seq`, s.lastSeq)
	if err != nil {
		return s.classify("read store", err)
	}
	ids := make([]string, 0, 16)
	seen := map[string]bool{}
	all := false
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return s.classify("read store", err)
		}
		if id == "*" {
			all = true
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	rows.Close()
	if all {
		return s.reload(ctx, q)
	}
	if s.ix.dim == 0 {
		dim, err := storedDim(ctx, q)
		if err != nil {
			return s.classify("read store", err)
		}
		s.ix.setDim(dim)
	}
	const batch = 500
	for start := 0; start < len(ids); start += batch {
		chunk := ids[start:min(start+batch, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rs, err := q.QueryContext(ctx, `SELECT `+recordCols+` FROM records WHERE id IN (?`+strings.Repeat(",?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return s.classify("read store", err)
		}
		present := map[string]bool{}
		var got []*storedRow
		for rs.Next() {
			row, err := scanRow(rs)
			if err != nil {
				rs.Close()
				return s.classify("read store", err)
			}
			got = append(got, row)
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return s.classify("read store", err)
		}
		for _, row := range got {
			e, slot, err := s.entryOf(ctx, q, s.ix, row)
			if err != nil {
				return s.classify("read store", err)
			}
			present[e.id] = true
			s.ix.put(e, slot, false)
		}
		for _, id := range chunk {
			if !present[id] {
				s.ix.remove(id)
			}
		}
	}
	s.lastSeq = maxSeq
	return nil
}

// withWrite runs fn in a BEGIN IMMEDIATE transaction on the sqlitedb writer,
// which retries while other processes hold the lock, up to the busy
// deadline. With syncFirst the index is brought up to date inside the
// transaction before fn runs, and s.mu is held for the whole transaction so
// fn may update the index after its writes (the onCommit it returns runs
// after the commit, before s.mu is released).
func (s *Store) withWrite(ctx context.Context, op string, fn func(tx *sql.Tx) (func(), error), syncFirst bool) error {
	if s.readOnly {
		s.mu.RLock()
		closed := s.closed
		s.mu.RUnlock()
		if closed {
			return ErrClosed
		}
		return s.readOnlyError(op) // readonly.go
	}
	err := s.writeOnce(ctx, op, fn, syncFirst)
	if err == nil && s.reserveDue.Swap(false) {
		ensureReserve(s.path) // a new segment: the store grew (marker.go)
	}
	full := err != nil && errors.Is(err, sqlitedb.ErrFull)
	if full {
		s.sawFull.Store(true)
	}
	if !freesSpace[op] || (err != nil && !full) || !s.sawFull.Load() {
		return err
	}
	// A delete while the disk is (or was) full (marker.go): the reserve
	// lets the WAL into the database, so the delete goes through and the
	// pages it frees are used again without the WAL or the file growing.
	released := releaseReserve(s.path)
	if full {
		if !released {
			return err
		}
		// The delete first: a checkpoint that cannot finish would take the
		// released space to grow the database file.
		if err = s.writeOnce(ctx, op, fn, syncFirst); err != nil {
			return err
		}
	}
	if s.checkpoint("RESTART") {
		s.sawFull.Store(false)
	}
	ensureReserve(s.path)
	return nil
}

// freesSpace names the writes that release the space reserve when the
// disk is full (withWrite).
var freesSpace = map[string]bool{"delete from": true, "reset": true, "delete damaged records from": true}

func (s *Store) writeOnce(ctx context.Context, op string, fn func(tx *sql.Tx) (func(), error), syncFirst bool) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.sdb.WriteAlone(ctx, func(t *sqlitedb.Tx) error {
		tx := t.SQL()
		if syncFirst {
			s.mu.Lock()
			t.After(func(bool) { s.mu.Unlock() }) // runs last (hooks run in reverse)
			if s.closed {
				return ErrClosed
			}
			if err := s.apply(ctx, tx); err != nil {
				return err
			}
		}
		onCommit, err := fn(tx)
		if err != nil {
			return err
		}
		if onCommit != nil {
			t.After(func(committed bool) {
				if committed {
					onCommit()
				}
			})
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrInvalidRecord) || errors.Is(err, ErrDimensionMismatch) ||
			errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrClosed) {
			return err
		}
		return s.fromDB(op, err)
	}
	s.afterWrite()
	return nil
}

// fromDB maps the errors of the sqlitedb layer onto this package's sentinels.
func (s *Store) fromDB(op string, err error) error {
	for _, m := range []struct{ from, to error }{
		{sqlitedb.ErrTimeout, ErrTimeout},
		{sqlitedb.ErrCorrupt, ErrCorrupt},
		{sqlitedb.ErrAccess, ErrAccess},
		{sqlitedb.ErrClosed, ErrClosed},
	} {
		if errors.Is(err, m.from) {
			return fmt.Errorf("%s %s: %w: %v", op, s.path, m.to, err)
		}
	}
	return s.classify(op, err)
}

// Path returns the database file's absolute path.
func (s *Store) Path() string { return s.path }

// Dim returns the vector dimension (0 while unknown).
func (s *Store) Dim() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ix.dim
}

// Close releases the database. Further calls return ErrClosed.
func (s *Store) Close() error {
	s.SaveIndex(context.Background()) // snapshot.go
	s.stopCheckpointer()              // before writeMu: a checkpoint holds it
	s.truncateOnClose()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.ix.unmapAll()
	s.ix = newIndex(0)
	if s.stmtMaxSeq != nil {
		s.stmtMaxSeq.Close()
	}
	var err error
	if s.sdb != nil {
		err = s.sdb.Close()
	} else {
		err = s.db.Close() // read-only: a plain pool (readonly.go)
	}
	// After the connections: the watch's descriptor must outlive SQLite's
	// locks on -shm (see shmMap).
	s.wal.close()
	return err
}
