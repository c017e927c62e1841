package memory

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unsafe"
)

// Index snapshots (docs/architecture.md, "Open from the index snapshot").
//
// Opening a store used to read every record from SQLite, decode its
// categories and check its checksum: 460 ms of CPU at 100k records. The
// snapshot is that work done once and kept beside the database:
//
//	memory.db-index   every record's fields and vector address, as the index
//	                  held them when the change log stood at seq
//
// Open reads it in one read, takes its strings as views of the buffer, and
// replays the change log after seq (the same path that brings a store up to
// date with other processes' writes), inside one read transaction. It is
// only a cache of the database: any doubt (another store, a change log that
// no longer reaches back to seq, a bad checksum, a record count that
// differs after the replay) and the store loads from SQLite as before.
//
// File layout (little-endian), then a CRC-32C of everything before it:
//
//	0   magic    [8]byte "CCMEMIDX"
//	8   version  uint32  1
//	12  dim      uint32
//	16  seq      int64   the change log's last seq the snapshot includes
//	24  records  uint32
//	28  store    string  the store's id (crewcore_meta 'store_id')
//	    atSeq    string  record_id of change seq ("" when seq is 0)
//	    records, each: rid int64, seg int64 (-1: no vector), row int64,
//	    importance float64, private uint8, then the strings id, content,
//	    scope, categories (JSON), metadata, created, accessed, source, bad,
//	    then the number of categories (uint32) and each category.
//
// A string is a uint32 length and its bytes.
const (
	snapshotSuffix  = "-index"
	snapshotMagic   = "CCMEMIDX"
	snapshotVersion = 1
	// snapshotReplayMax is how many changes an open may replay before the
	// snapshot is written again.
	snapshotReplayMax = 1000
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshotMin is the number of records from which a store keeps an index
// snapshot: below it a load from SQLite takes a few milliseconds. A
// variable for tests.
var snapshotMin = 2000

// snapshotPath is the snapshot file of the store at dbPath.
func snapshotPath(dbPath string) string { return dbPath + snapshotSuffix }

// storeID reads the store's id (empty if it has none).
func storeID(ctx context.Context, q querier) (string, error) {
	var id string
	err := q.QueryRowContext(ctx, `SELECT value FROM crewcore_meta WHERE key='store_id'`).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, err
}

// changeAt reads the record_id of change seq ("" for seq 0; ok is false if
// the log no longer holds it).
func changeAt(ctx context.Context, q querier, seq int64) (string, bool, error) {
	if seq == 0 {
		return "", true, nil
	}
	var id string
	err := q.QueryRowContext(ctx, `SELECT record_id FROM changes WHERE seq = ?`, seq).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return id, err == nil, err
}

// snapshotWriter appends the encoding.
type snapshotWriter struct{ b []byte }

func (w *snapshotWriter) u32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }
func (w *snapshotWriter) u64(v uint64) { w.b = binary.LittleEndian.AppendUint64(w.b, v) }
func (w *snapshotWriter) str(s string) {
	w.u32(uint32(len(s)))
	w.b = append(w.b, s...)
}

// encodeSnapshot encodes ix as of change seq. Caller holds s.mu (read).
func encodeSnapshot(ix *index, store string, seq int64, atSeq string) []byte {
	size := 64 + len(store) + len(atSeq)
	for _, e := range ix.entries {
		size += 8*4 + 1 + 4*10 + len(e.id) + len(e.content) + len(e.catsJSON) + len(e.meta) +
			len(e.created) + len(e.accessed) + len(e.source) + len(e.bad) + len(ix.scopes[e.scopeID].path)
		for _, c := range e.cats {
			size += 4 + len(c)
		}
	}
	w := &snapshotWriter{b: make([]byte, 0, size+4)}
	w.b = append(w.b, snapshotMagic...)
	w.u32(snapshotVersion)
	w.u32(uint32(ix.dim))
	w.u64(uint64(seq))
	w.u32(uint32(len(ix.entries)))
	w.str(store)
	w.str(atSeq)
	for _, e := range ix.entries {
		seg, row := int64(-1), int64(0)
		if e.slot >= 0 {
			sg, r := ix.locate(e.slot)
			seg, row = sg.id, int64(r)
		}
		w.u64(uint64(e.rid))
		w.u64(uint64(seg))
		w.u64(uint64(row))
		w.u64(math.Float64bits(e.importance))
		if e.private {
			w.b = append(w.b, 1)
		} else {
			w.b = append(w.b, 0)
		}
		for _, s := range [...]string{e.id, e.content, ix.scopes[e.scopeID].path, e.catsJSON, e.meta, e.created, e.accessed, e.source, e.bad} {
			w.str(s)
		}
		w.u32(uint32(len(e.cats)))
		for _, c := range e.cats {
			w.str(c)
		}
	}
	w.u32(crc32.Checksum(w.b, castagnoli))
	return w.b
}

// errSnapshot is a snapshot that cannot be used (the caller loads from
// SQLite instead).
var errSnapshot = errors.New("index snapshot unusable")

// snapshotReader decodes; its strings are views of b (which they keep
// alive), so nothing is copied.
type snapshotReader struct {
	b   []byte
	off int
	bad bool
}

func (r *snapshotReader) need(n int) bool {
	if r.bad || n < 0 || len(r.b)-r.off < n {
		r.bad = true
		return false
	}
	return true
}

func (r *snapshotReader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *snapshotReader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

func (r *snapshotReader) byte1() byte {
	if !r.need(1) {
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

func (r *snapshotReader) str() string {
	n := int(r.u32())
	if !r.need(n) || n == 0 {
		return ""
	}
	s := unsafe.String(&r.b[r.off], n)
	r.off += n
	return s
}

// snapshotHeader is what a snapshot says of itself.
type snapshotHeader struct {
	dim     int
	seq     int64
	records int
	store   string
	atSeq   string
}

// decodeSnapshotHeader checks the file's checksum and reads its header;
// r is left at the first record.
func decodeSnapshotHeader(b []byte) (*snapshotReader, snapshotHeader, error) {
	var h snapshotHeader
	if len(b) < 36 || string(b[:8]) != snapshotMagic {
		return nil, h, fmt.Errorf("%w: not a snapshot", errSnapshot)
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, h, fmt.Errorf("%w: checksum mismatch", errSnapshot)
	}
	r := &snapshotReader{b: body, off: 8}
	if v := r.u32(); v != snapshotVersion {
		return nil, h, fmt.Errorf("%w: version %d", errSnapshot, v)
	}
	h.dim = int(r.u32())
	h.seq = int64(r.u64())
	h.records = int(r.u32())
	h.store = r.str()
	h.atSeq = r.str()
	if r.bad || h.seq < 0 || h.records > len(body)/45 {
		return nil, h, fmt.Errorf("%w: bad header", errSnapshot)
	}
	return r, h, nil
}

// loadSnapshot builds the index from the snapshot file and replays the
// change log after it, in one read transaction. ready is false (with no
// change to s) when the snapshot is missing or unusable; it is true with
// used false when the replay found a reason to reload from SQLite and did
// (a reset, a compaction, a log pruned past the snapshot); err is a
// database failure. Caller holds s.mu.
func (s *Store) loadSnapshot(ctx context.Context) (ready, used bool, err error) {
	ready, used, err = s.trySnapshot(ctx)
	if err != nil {
		return false, false, err
	}
	return ready, used, nil
}

// snapshotStale reports whether the store should write its snapshot: it
// has enough records and no snapshot, or one more than snapshotReplayMax
// changes behind. Caller holds s.mu.
func (s *Store) snapshotStale() bool {
	if s.readOnly || s.ix == nil || s.ix.len() < snapshotMin {
		return false
	}
	seq := s.snapSeq.Load()
	return seq < 0 || s.lastSeq-seq > snapshotReplayMax
}

func (s *Store) trySnapshot(ctx context.Context) (bool, bool, error) {
	b, err := os.ReadFile(snapshotPath(s.path))
	if err != nil {
		return false, false, nil
	}
	r, h, err := decodeSnapshotHeader(b)
	if err != nil {
		return false, false, nil
	}
	// One read transaction on one connection: a deferred BEGIN (the pool's
	// BeginTx would be BEGIN IMMEDIATE and take the write lock), so the
	// header checks, the replay and the count see one state of the file.
	tx, err := s.db.Conn(ctx)
	if err != nil {
		return false, false, s.classify("load store", err)
	}
	defer tx.Close()
	if _, err := tx.ExecContext(ctx, "BEGIN DEFERRED"); err != nil {
		return false, false, s.classify("load store", err)
	}
	defer tx.ExecContext(context.Background(), "ROLLBACK") //nolint:errcheck // read only
	id, err := storeID(ctx, tx)
	if err != nil || id == "" || id != h.store {
		return false, false, nil
	}
	at, ok, err := changeAt(ctx, tx, h.seq)
	if err != nil || !ok || at != h.atSeq {
		return false, false, nil
	}
	dim, err := storedDim(ctx, tx)
	if err != nil {
		return false, false, nil
	}
	if s.opts.Dim > 0 {
		if dim > 0 && dim != s.opts.Dim {
			return false, false, fmt.Errorf("open store %s: %w", s.path, &DimensionError{Stored: dim, Got: s.opts.Dim})
		}
		dim = s.opts.Dim
	}
	if dim != h.dim {
		return false, false, nil
	}
	ix, err := s.decodeEntries(ctx, tx, r, h)
	if err != nil || ix == nil {
		return false, false, err
	}
	old, oldSeq := s.ix, s.lastSeq
	s.ix, s.lastSeq = ix, h.seq
	fail := func() {
		if s.ix != ix && s.ix != old {
			s.ix.unmapAll() // a reload by the replay
		}
		ix.unmapAll()
		s.ix, s.lastSeq = old, oldSeq
	}
	// The replay reloads from SQLite by itself when the log says so (a
	// reset, a compaction, a log pruned past seq).
	if err := s.apply(ctx, tx); err != nil {
		fail()
		return false, false, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM records`).Scan(&n); err != nil {
		fail()
		return false, false, s.classify("load store", err)
	}
	if s.ix != ix {
		// apply reloaded: the snapshot was not used after all.
		if old != nil && old != s.ix {
			old.retire()
		}
		return true, false, nil
	}
	if n != ix.len() {
		fail()
		return false, false, nil
	}
	if old != nil && old != ix {
		old.retire()
	}
	s.snapSeq.Store(h.seq)
	return true, true, nil
}

// decodeEntries reads the records of a snapshot into a new index, mapping
// the segments they address. It returns nil (no error) when the snapshot
// does not match the database.
func (s *Store) decodeEntries(ctx context.Context, q querier, r *snapshotReader, h snapshotHeader) (*index, error) {
	ix := newIndex(h.dim)
	ix.entries = make([]*entry, 0, h.records)
	ix.pos = make(map[string]int, h.records)
	slab := make([]entry, h.records)
	for i := range slab {
		e := &slab[i]
		seg, row, scope, ok := readSnapshotEntry(r, e)
		if !ok {
			break
		}
		e.scopeID = ix.scopeFor(scope)
		slot := int32(-1)
		if seg >= 0 && e.bad == "" {
			sg, why, err := s.segmentOf(ctx, q, ix, seg)
			if err != nil {
				ix.unmapAll()
				return nil, s.classify("load store", err)
			}
			switch {
			case why != "" || row < 0 || row >= int64(sg.committed) || !sg.rowsInside(int(row)+1):
				// A segment the database no longer has or cannot be mapped,
				// or a row it never committed: load from the database,
				// which says why.
				ix.unmapAll()
				return nil, nil
			default:
				slot = sg.base + int32(row)
			}
		}
		ix.put(e, slot, false)
	}
	if r.bad || r.off != len(r.b) {
		ix.unmapAll()
		return nil, nil
	}
	return ix, nil
}

// readSnapshotEntry reads one record into e and returns its vector's
// address (seg -1: none) and its scope; ok is false when the bytes run out.
func readSnapshotEntry(r *snapshotReader, e *entry) (seg, row int64, scope string, ok bool) {
	e.rid = int64(r.u64())
	seg, row = int64(r.u64()), int64(r.u64())
	e.importance = math.Float64frombits(r.u64())
	switch r.byte1() {
	case 0:
	case 1:
		e.private = true
	default:
		r.bad = true
	}
	e.id, e.content, scope = r.str(), r.str(), r.str()
	e.catsJSON, e.meta, e.created, e.accessed = r.str(), r.str(), r.str(), r.str()
	e.source, e.bad = r.str(), r.str()
	nc := int(r.u32())
	if !r.need(4 * nc) {
		return 0, 0, "", false
	}
	e.cats = make([]string, nc)
	for k := range e.cats {
		e.cats[k] = r.str()
	}
	return seg, row, scope, !r.bad
}

// saveSnapshot writes the snapshot of the current index (tmp file, then
// rename: readers see the old file or the new one). Errors are dropped: the
// snapshot is only a cache.
func (s *Store) saveSnapshot(ctx context.Context) {
	s.mu.RLock()
	if s.closed || s.ix == nil || s.ix.len() < snapshotMin {
		s.mu.RUnlock()
		return
	}
	seq := s.lastSeq
	id, err := storeID(ctx, s.db)
	var at string
	ok := false
	if err == nil {
		at, ok, err = changeAt(ctx, s.db, seq)
	}
	if err != nil || !ok || id == "" {
		s.mu.RUnlock()
		return
	}
	b := encodeSnapshot(s.ix, id, seq, at)
	s.mu.RUnlock()
	path := snapshotPath(s.path)
	tmp := path + ".tmp-" + strconv.Itoa(os.Getpid())
	removeStaleSnapshotTemps(path)
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		os.Remove(tmp)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return
	}
	if seq > s.snapSeq.Load() {
		s.snapSeq.Store(seq)
	}
}

// removeStaleSnapshotTemps removes temporary snapshot files a killed
// process left behind (older than a minute).
func removeStaleSnapshotTemps(path string) {
	olds, _ := filepath.Glob(globEscape(path) + ".tmp-*")
	for _, p := range olds {
		if st, err := os.Stat(p); err == nil && time.Since(st.ModTime()) > time.Minute {
			os.Remove(p)
		}
	}
}

// snapshotLater writes the snapshot in the background (Close waits for it).
func (s *Store) snapshotLater() {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.saveSnapshot(context.Background())
	}()
}
