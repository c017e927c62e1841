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
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"syscall"
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
// Open maps it (mapSnapshot: shared by every process, no copy), takes its
// strings as views of the mapping (so whatever the package hands out is a
// copy, index.record), and
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
//	    scopes   uint32, then each scope path (a string)
//	    cats     uint32, then each category (a string)
//	    records, each: rid int64, seg int64 (-1: no vector), row int64,
//	    importance float64, private uint8, scope uint32 (index in scopes),
//	    then the strings id, content, categories (JSON), metadata, created,
//	    accessed, source, bad, then the number of categories (uint32) and
//	    each one's index in cats (uint32).
//	    chunks   uint32, then the offset (uint64) of every snapshotChunk-th
//	             record, from record 0
//	    at       uint64  the offset of chunks
//
// A string is a uint32 length and its bytes. The chunk offsets let the
// records be decoded on every core.
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

// snapshotChunk is the number of records one goroutine decodes (a variable
// for tests).
var snapshotChunk = 8192

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
	catIdx := map[string]uint32{}
	var cats []string
	size := 64 + len(store) + len(atSeq) + 8*(len(ix.entries)/snapshotChunk+2)
	for _, st := range ix.scopes {
		size += 4 + len(st.path)
	}
	for _, e := range ix.entries {
		size += 8*4 + 1 + 4 + 4*9 + len(e.id) + len(e.content) + len(e.catsJSON) + len(e.meta) +
			len(e.created) + len(e.accessed) + len(e.source) + len(e.bad) + 4*len(e.cats)
		for _, c := range e.cats {
			if _, ok := catIdx[c]; !ok {
				catIdx[c] = uint32(len(cats))
				cats = append(cats, c)
				size += 4 + len(c)
			}
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
	w.u32(uint32(len(ix.scopes)))
	for _, st := range ix.scopes {
		w.str(st.path)
	}
	w.u32(uint32(len(cats)))
	for _, c := range cats {
		w.str(c)
	}
	var chunks []uint64
	for i, e := range ix.entries {
		if i%snapshotChunk == 0 {
			chunks = append(chunks, uint64(len(w.b)))
		}
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
		w.u32(uint32(e.scopeID))
		for _, s := range [...]string{e.id, e.content, e.catsJSON, e.meta, e.created, e.accessed, e.source, e.bad} {
			w.str(s)
		}
		w.u32(uint32(len(e.cats)))
		for _, c := range e.cats {
			w.u32(catIdx[c])
		}
	}
	at := uint64(len(w.b))
	w.u32(uint32(len(chunks)))
	for _, off := range chunks {
		w.u64(off)
	}
	w.u64(at)
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
	scopes  []string
	cats    []string
	// chunks are the offsets of every snapshotChunk-th record; end is
	// where the records end.
	chunks []int
	end    int
}

// strings reads a count and that many strings.
func (r *snapshotReader) strings() []string {
	n := int(r.u32())
	if !r.need(4 * n) {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.str()
	}
	return out
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
	h.scopes = r.strings()
	h.cats = r.strings()
	if r.bad || h.seq < 0 || h.records > len(body)/45 || len(body) < r.off+12 {
		return nil, h, fmt.Errorf("%w: bad header", errSnapshot)
	}
	// The chunk table, at the offset the body ends with.
	at := binary.LittleEndian.Uint64(body[len(body)-8:])
	n := (h.records + snapshotChunk - 1) / snapshotChunk
	if at < uint64(r.off) || at > uint64(len(body)-12) || uint64(len(body))-8-at != 4+8*uint64(n) ||
		binary.LittleEndian.Uint32(body[at:]) != uint32(n) {
		return nil, h, fmt.Errorf("%w: bad chunk table", errSnapshot)
	}
	h.end = int(at)
	h.chunks = make([]int, n)
	for i := range h.chunks {
		off := binary.LittleEndian.Uint64(body[int(at)+4+8*i:])
		if off < uint64(r.off) || off > at || (i == 0 && off != uint64(r.off)) || (i > 0 && off < uint64(h.chunks[i-1])) {
			return nil, h, fmt.Errorf("%w: bad chunk table", errSnapshot)
		}
		h.chunks[i] = int(off)
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
	b, err := mapSnapshot(snapshotPath(s.path))
	if err != nil {
		return false, false, nil
	}
	// The decoded index takes the mapping (its strings point into it);
	// until then every return unmaps it.
	owned := false
	defer func() {
		if !owned {
			unmapSnapshot(b)
		}
	}()
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
	var ix *index
	withoutGC(func() { ix, err = s.decodeEntries(ctx, tx, r, h) })
	if err != nil || ix == nil {
		return false, false, err
	}
	ix.snap, owned = b, true // unmapped with ix from here on (unmapAll)
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

// mapSnapshot maps the snapshot file at path read-only. The mapping is
// shared with every process that opens the store (the page cache holds one
// copy) and costs no copy nor fresh memory: reading the 40 MB snapshot of a
// 100k-record store into the heap took about 20 ms of page faults in a VM
// and 40 MB in every process. The file is never written in place
// (saveSnapshot writes a new file and renames it over), so the mapping
// stays valid until unmapSnapshot.
func mapSnapshot(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the mapping outlives the descriptor
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < 36 || uint64(st.Size()) > uint64(math.MaxInt) {
		return nil, fmt.Errorf("%w: %d bytes", errSnapshot, st.Size())
	}
	return syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
}

// unmapSnapshot releases a mapping from mapSnapshot (nil: nothing).
func unmapSnapshot(b []byte) {
	if b != nil {
		syscall.Munmap(b) //nolint:errcheck // nothing to do about it
	}
}

// gcPause counts the decodes running with the collector off.
var gcPause struct {
	sync.Mutex
	n     int
	old   int         // the setting before the first decode
	grace *time.Timer // restores old after gcGrace (nil: nothing pending)
}

// gcGrace is how long after the last decode the collector runs with room
// for twice the heap the decode left, before its own setting comes back.
var gcGrace = 2 * time.Second

// withoutGC runs fn with the garbage collector off: a decode allocates
// what it keeps (100k records: ~60 MB in a few large blocks, next to no
// garbage), so the collections its growth would start, two of them from
// an empty heap, only mark what stays live (18 ms of 90 at 100k). The
// setting is process-wide; concurrent decodes share one pause.
//
// Turned back on at once, the collector would start a cycle right away
// (the heap is far past the goal set from the nearly empty heap before
// the decode) and mark the whole new index while the store's first search
// runs on both cores: at 100k that cycle took 13-16 ms and the first
// search 21-27 ms instead of 16-20. So for gcGrace the goal is twice the
// heap the decode left (the heap stays bounded), then the setting found
// before the decode returns.
func withoutGC(fn func()) {
	gcPause.Lock()
	if gcPause.n == 0 {
		if gcPause.grace != nil {
			// Still in a previous decode's grace: old is the setting to
			// come back to, not the raised one in force.
			gcPause.grace.Stop()
			gcPause.grace = nil
			debug.SetGCPercent(-1)
		} else {
			gcPause.old = debug.SetGCPercent(-1)
		}
	}
	gcPause.n++
	gcPause.Unlock()
	defer func() {
		gcPause.Lock()
		defer gcPause.Unlock()
		if gcPause.n--; gcPause.n > 0 {
			return
		}
		old := gcPause.old
		pct := old
		if old > 0 {
			sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
			metrics.Read(sample)
			if live, cur := sample[0].Value.Uint64(), sample[1].Value.Uint64(); live > 0 && cur > live {
				pct = max(old, int(min(2*cur*100/live, 1<<30))-100)
			}
		}
		debug.SetGCPercent(pct)
		var t *time.Timer
		t = time.AfterFunc(gcGrace, func() {
			gcPause.Lock()
			defer gcPause.Unlock()
			if gcPause.n == 0 && gcPause.grace == t {
				debug.SetGCPercent(old)
				gcPause.grace = nil
			}
		})
		gcPause.grace = t
	}()
	fn()
}

// decodeEntries reads the records of a snapshot into a new index, mapping
// the segments they address. It returns nil (no error) when the snapshot
// does not match the database.
func (s *Store) decodeEntries(ctx context.Context, q querier, r *snapshotReader, h snapshotHeader) (*index, error) {
	ix := newIndex(h.dim)
	ix.entries = make([]*entry, 0, h.records)
	ix.pos = make(map[string]int, h.records)
	// The tables' ids in the new index, and each category's bit.
	scopeIDs := make([]int32, len(h.scopes))
	for i, p := range h.scopes {
		scopeIDs[i] = ix.scopeFor(p)
	}
	catBit := make([]uint64, len(h.cats))
	for i, c := range h.cats {
		catBit[i] = ix.catBits([]string{c})
	}
	slab, aux, ok := decodeRecords(r.b, &h)
	if !ok {
		ix.unmapAll()
		return nil, nil
	}
	// Category counts per scope, added to the scope statistics at the end.
	perScope := make([][]int32, len(ix.scopes))
	for i := range slab {
		e, a := &slab[i], &aux[i]
		e.scopeID = scopeIDs[a.scope]
		slot := int32(-1)
		if a.seg >= 0 && e.bad == "" {
			sg, why, err := s.segmentOf(ctx, q, ix, a.seg)
			if err != nil {
				ix.unmapAll()
				return nil, s.classify("load store", err)
			}
			if why != "" || a.row < 0 || a.row >= int64(sg.committed) || !sg.rowsInside(int(a.row)+1) {
				// A segment the database no longer has or cannot be mapped,
				// or a row it never committed: load from the database,
				// which says why.
				ix.unmapAll()
				return nil, nil
			}
			slot = sg.base + int32(a.row)
		}
		if _, dup := ix.pos[e.id]; dup {
			break // not a snapshot this engine wrote
		}
		var bits uint64
		for _, c := range a.cats {
			bits |= catBit[c]
		}
		ix.add(e, slot, bits)
		if perScope[e.scopeID] == nil {
			perScope[e.scopeID] = make([]int32, len(h.cats))
		}
		counts := perScope[e.scopeID]
		for k, c := range a.cats {
			if !slices.Contains(a.cats[:k], c) {
				counts[c]++
			}
		}
	}
	if len(ix.entries) != h.records {
		ix.unmapAll()
		return nil, nil
	}
	for sid, counts := range perScope {
		for c, n := range counts {
			if n > 0 {
				ix.scopes[sid].cats[h.cats[c]] += int(n)
			}
		}
	}
	return ix, nil
}

// recordAux is what a record's decode leaves for the index to resolve: its
// vector's address, its scope's and its categories' indexes in the tables.
type recordAux struct {
	seg, row int64
	scope    uint32
	cats     []uint32
}

// decodeRecords decodes the records of a snapshot (body: without its
// checksum), one chunk per goroutine; ok is false when they do not decode
// exactly into the chunks the table gives.
func decodeRecords(body []byte, h *snapshotHeader) (slab []entry, aux []recordAux, ok bool) {
	slab = make([]entry, h.records)
	aux = make([]recordAux, h.records)
	bad := make([]bool, len(h.chunks))
	parallel(len(h.chunks), h.end, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			end := h.end
			if c+1 < len(h.chunks) {
				end = h.chunks[c+1]
			}
			d := &entryDecoder{r: &snapshotReader{b: body[:end], off: h.chunks[c]}, h: h}
			var cats []uint32 // the chunk's category indexes, each record's a slice of it
			for i := c * snapshotChunk; i < min(h.records, (c+1)*snapshotChunk); i++ {
				a := &aux[i]
				var ok bool
				if a.seg, a.row, a.scope, ok = d.next(&slab[i]); !ok {
					bad[c] = true
					break
				}
				if cap(cats)-len(cats) < len(d.idx) {
					cats = make([]uint32, 0, max(4*snapshotChunk, len(d.idx)))
				}
				n := len(cats)
				cats = append(cats, d.idx...)
				a.cats = cats[n:len(cats):len(cats)]
			}
			if d.r.off != end {
				bad[c] = true
			}
		}
	})
	return slab, aux, !slices.Contains(bad, true)
}

// entryDecoder reads the records of a snapshot after its header.
type entryDecoder struct {
	r    *snapshotReader
	h    *snapshotHeader
	pool []string // backing of the records' category slices
	// idx holds the category indexes (in h.cats) of the last record read.
	idx []uint32
}

// next reads one record into e and returns its vector's address (seg -1:
// none) and its scope's index in h.scopes; ok is false when the bytes run
// out or an index is out of range.
func (d *entryDecoder) next(e *entry) (seg, row int64, scope uint32, ok bool) {
	r := d.r
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
	scope = r.u32()
	e.id, e.content, e.catsJSON, e.meta = r.str(), r.str(), r.str(), r.str()
	e.created, e.accessed, e.source, e.bad = r.str(), r.str(), r.str(), r.str()
	nc := int(r.u32())
	if !r.need(4*nc) || int(scope) >= len(d.h.scopes) {
		r.bad = true
		return 0, 0, 0, false
	}
	if len(d.pool) < nc {
		d.pool = make([]string, max(4096, nc))
	}
	e.cats, d.pool = d.pool[:nc:nc], d.pool[nc:]
	d.idx = d.idx[:0]
	for k := range e.cats {
		c := r.u32()
		if int(c) >= len(d.h.cats) {
			r.bad = true
			return 0, 0, 0, false
		}
		e.cats[k] = d.h.cats[c]
		d.idx = append(d.idx, c)
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

// SaveIndex writes the store's index snapshot (memory.db-index) now if it
// has none or it is more than a thousand changes behind, after any write of
// it in the background ends; Close does the same. It is for programs that
// exit without closing their stores (the Python package calls it at exit),
// so their next open is fast. Errors are not reported: the snapshot is only
// a cache.
func (s *Store) SaveIndex(ctx context.Context) {
	s.bg.Wait()
	s.mu.RLock()
	stale := !s.closed && s.snapshotStale()
	s.mu.RUnlock()
	if stale {
		s.saveSnapshot(ctx)
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
