package memory

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/crewcore/crewcore/sqlitedb"
)

// The crash protocol of segment writes (docs/architecture.md, "Crash
// protocol"). Every append runs inside the SQLite write transaction that
// stores the records addressing the new rows, so one process appends at a
// time:
//
//  1. read the active segment's committed row count from the segments table
//     (rows past it are leftovers of a writer that died: overwritten);
//  2. write the batch's vector rows with one pwrite into the .vec file and
//     its code rows with one pwrite into the .bin file, at that row;
//  3. with Options.SyncSegments, fdatasync both files (SQLite's
//     synchronous=FULL degree); by default (synchronous=NORMAL, the store's
//     setting) the bytes are in the kernel before the commit, which is what
//     a NORMAL commit guarantees too: they survive the process, not a power
//     cut (then a record whose vector did not reach the disk fails its
//     checksum: reported, never served);
//  4. insert the records with their (segment, row) addresses and raise the
//     committed row count, in the same transaction; commit.
//
// A transaction that does not commit leaves bytes past the committed rows:
// readers never look there, the next append overwrites them, and Open
// truncates them.

// segAddr is the address of a vector: row of segment seg (seg 0: none).
type segAddr struct {
	seg int64
	row int64
}

const segmentsSQL = `CREATE TABLE IF NOT EXISTS segments (
  id   INTEGER PRIMARY KEY,
  dim  INTEGER NOT NULL,
  rows INTEGER NOT NULL,
  cap  INTEGER NOT NULL
);`

// segmentError wraps a file-system error of a segment file: lack of space
// becomes sqlitedb.ErrFull, a refused write ErrAccess.
func segmentError(op, path string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EFBIG), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%s segment file %s: %w: %v", op, path, sqlitedb.ErrFull, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%s segment file %s: %w: %v", op, path, ErrAccess, err)
	}
	return fmt.Errorf("%s segment file %s: %w", op, path, err)
}

// segmentInfo reads a segment's row of the segments table.
func segmentInfo(ctx context.Context, q querier, id int64) (dim, rows, capRows int, ok bool, err error) {
	err = q.QueryRowContext(ctx, `SELECT dim, rows, cap FROM segments WHERE id = ?`, id).Scan(&dim, &rows, &capRows)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, 0, false, nil
	}
	return dim, rows, capRows, err == nil, err
}

// segmentOf returns the mapped segment id of ix, mapping it if needed. A
// segment that cannot be mapped returns why (the records on it are held as
// damaged); err is a database failure.
func (s *Store) segmentOf(ctx context.Context, q querier, ix *index, id int64) (sg *segment, why string, err error) {
	if sg := ix.segByID[id]; sg != nil {
		return sg, "", nil
	}
	dim, rows, capRows, ok, err := segmentInfo(ctx, q, id)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, fmt.Sprintf("segment %d is not in the store's segments table", id), nil
	}
	if ix.dim == 0 || dim != ix.dim {
		vecPath, _ := segPaths(s.path, id)
		return nil, fmt.Sprintf("segment file %s: its vectors have %d dimensions, the store's %d", vecPath, dim, ix.dim), nil
	}
	sg, err = mapSegment(s.path, id, dim, capRows)
	if err != nil {
		return nil, err.Error(), nil
	}
	sg.committed = rows
	ix.addSegment(sg)
	return sg, "", nil
}

// addressed resolves a record's (segment, row) and checks the row: inside
// the committed rows and the files, its code row intact. It returns the
// slot and the vector's CRC, or why the record is damaged.
func (s *Store) addressed(ctx context.Context, q querier, ix *index, seg, row int64) (slot int32, vcrc uint32, why string, err error) {
	sg, why, err := s.segmentOf(ctx, q, ix, seg)
	if err != nil || why != "" {
		return -1, 0, why, err
	}
	if row < 0 || row >= int64(sg.cap) {
		return -1, 0, fmt.Sprintf("row %d is outside segment file %s (%d rows)", row, sg.vecPath, sg.cap), nil
	}
	if int(row) >= sg.committed {
		_, rows, _, ok, err := segmentInfo(ctx, q, seg)
		if err != nil {
			return -1, 0, "", err
		}
		if ok {
			sg.committed = rows
		}
		if int(row) >= sg.committed {
			return -1, 0, fmt.Sprintf("row %d of segment file %s was never committed (%d rows)", row, sg.vecPath, sg.committed), nil
		}
	}
	if !sg.rowsInside(int(row) + 1) {
		return -1, 0, fmt.Sprintf("segment file %s or %s is truncated: row %d is past its end", sg.vecPath, sg.binPath, row), nil
	}
	vcrc, ok := decodeBinRow(sg.binRow(int(row)), sg.words)
	if !ok {
		return -1, 0, fmt.Sprintf("row %d of segment file %s fails its checksum", row, sg.binPath), nil
	}
	return sg.base + int32(row), vcrc, "", nil
}

// nextSegmentID reads and advances the store's segment counter (segment
// ids are never reused, so a process that still maps a deleted segment
// never takes a new file for it).
func nextSegmentID(ctx context.Context, tx *sql.Tx) (int64, error) {
	var v string
	err := tx.QueryRowContext(ctx, `SELECT value FROM crewcore_meta WHERE key='next_segment'`).Scan(&v)
	id := int64(1)
	if err == nil {
		if id, err = strconv.ParseInt(v, 10, 64); err != nil {
			return 0, fmt.Errorf("%w: bad next_segment %q", ErrCorrupt, v)
		}
	} else if !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO crewcore_meta(key, value) VALUES ('next_segment', ?)`, strconv.FormatInt(id+1, 10)); err != nil {
		return 0, err
	}
	return id, nil
}

// createSegment writes the headers of a new segment's files, records it in
// the segments table (inside tx) and maps it.
func (s *Store) createSegment(ctx context.Context, tx *sql.Tx, dim, capRows int, center []float32) (*segment, error) {
	id, err := nextSegmentID(ctx, tx)
	if err != nil {
		return nil, err
	}
	vecPath, binPath := segPaths(s.path, id)
	for _, f := range [...]struct {
		path string
		elem uint32
	}{{vecPath, segElemF32}, {binPath, segElemBits}} {
		if err := writeNewFile(f.path, encodeSegHeader(f.elem, dim, id, center), s.opts.SyncSegments); err != nil {
			return nil, segmentError("create", f.path, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO segments(id, dim, rows, cap) VALUES (?, ?, 0, ?)`, id, dim, capRows); err != nil {
		return nil, err
	}
	s.reserveDue.Store(true)
	return mapSegment(s.path, id, dim, capRows)
}

func writeNewFile(path string, b []byte, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err = f.WriteAt(b, 0); err == nil && sync {
		err = syscall.Fdatasync(int(f.Fd()))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// appended is the outcome of appendVectors: the rows' addresses and CRCs,
// and a segment created for them (added to the index on commit).
type appended struct {
	addrs  []segAddr
	vcrcs  []uint32
	sg     *segment
	newSeg bool
	rows   int // committed rows of sg after the commit
}

// appendVectors writes vecs (each of the store's dimension) at the end of
// the active segment, or of a new one, inside tx (the crash protocol above).
func (s *Store) appendVectors(ctx context.Context, tx *sql.Tx, ix *index, dim int, vecs [][]float32) (*appended, error) {
	return s.appendTo(ctx, tx, ix, dim, vecs, 0, nil)
}

// appendTo is appendVectors; with newCap > 0 it starts a new segment of
// that capacity (center given) whatever the active one holds.
func (s *Store) appendTo(ctx context.Context, tx *sql.Tx, ix *index, dim int, vecs [][]float32, newCap int, newCenter []float32) (*appended, error) {
	out := &appended{}
	if len(vecs) == 0 {
		return out, nil
	}
	var id int64
	var rows, capRows int
	err := tx.QueryRowContext(ctx, `SELECT id, rows, cap FROM segments ORDER BY id DESC LIMIT 1`).Scan(&id, &rows, &capRows)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	var sg *segment
	if newCap == 0 && err == nil && rows+len(vecs) <= capRows && ix.dim == dim {
		var why string
		if sg, why, err = s.segmentOf(ctx, tx, ix, id); err != nil {
			return nil, err
		}
		if why != "" || !sg.rowsInside(rows) {
			// A damaged active segment (missing, bad header, other
			// dimension, cut short): its records are reported as damaged
			// until deleted; new rows go to a new segment, never next to
			// rows that cannot be read.
			sg = nil
		}
	}
	if sg == nil {
		var total int
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(rows), 0) FROM segments`).Scan(&total); err != nil {
			return nil, err
		}
		center := meanOf(vecs, dim)
		if prev := ix.segByID[id]; prev != nil && prev.dim == dim && prev.used > 0 && prev.rowsInside(prev.used) {
			center = segmentMean(prev)
		}
		capRows = max(segMinCap, total, len(vecs))
		if newCap > 0 {
			center, capRows = newCenter, max(newCap, len(vecs))
		}
		if sg, err = s.createSegment(ctx, tx, dim, capRows, center); err != nil {
			return nil, err
		}
		rows, out.newSeg = 0, true
	}
	out.sg = sg
	// The rows are staged in pooled buffers: a batch of 100 at 3072
	// dimensions is 1.2 MiB that pwrite copies to the page cache and
	// nothing keeps, and as a fresh allocation per batch it made the
	// collector run every few batches.
	vbp, bbp := getRowBuf(len(vecs)*segVecRow(dim)), getRowBuf(len(vecs)*segBinRow(dim))
	defer rowBufs.Put(vbp)
	defer rowBufs.Put(bbp)
	vb, bb := *vbp, *bbp
	out.addrs = make([]segAddr, len(vecs))
	out.vcrcs = make([]uint32, len(vecs))
	for i, v := range vecs {
		b := encodeVector(v)
		vb = append(vb, b...)
		bb = appendBinRow(bb, v, b, sg.center)
		out.vcrcs[i] = binary.LittleEndian.Uint32(bb[len(bb)-8:])
		out.addrs[i] = segAddr{seg: sg.id, row: int64(rows + i)}
	}
	if err := s.writeRows(sg.vecPath, int64(sg.vecAt+rows*segVecRow(dim)), vb); err != nil {
		return out, err
	}
	if err := s.writeRows(sg.binPath, int64(sg.binAt+rows*segBinRow(dim)), bb); err != nil {
		return out, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE segments SET rows = ? WHERE id = ?`, rows+len(vecs), sg.id); err != nil {
		return out, err
	}
	out.rows = rows + len(vecs)
	return out, nil
}

var rowBufs = sync.Pool{New: func() any { return new([]byte) }}

// getRowBuf returns an empty pooled buffer with room for n bytes.
func getRowBuf(n int) *[]byte {
	p := rowBufs.Get().(*[]byte)
	if cap(*p) < n {
		*p = make([]byte, 0, n)
	}
	*p = (*p)[:0]
	return p
}

// writeRows writes b at off of path with one pwrite (and fdatasync with
// Options.SyncSegments).
func (s *Store) writeRows(path string, off int64, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return segmentError("write", path, err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		return segmentError("write", path, err)
	}
	if s.opts.SyncSegments {
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return segmentError("sync", path, err)
		}
	}
	return nil
}

// meanOf is the mean of vecs (in float64, rounded to float32).
func meanOf(vecs [][]float32, dim int) []float32 {
	sum := make([]float64, dim)
	for _, v := range vecs {
		for j, x := range v {
			sum[j] += float64(x)
		}
	}
	c := make([]float32, dim)
	for j := range c {
		c[j] = float32(sum[j] / float64(len(vecs)))
	}
	return c
}

// segmentMean is the mean of the vectors of sg's rows in use.
func segmentMean(sg *segment) []float32 {
	sum := make([]float64, sg.dim)
	for r := range sg.used {
		for j, x := range sg.vector(r) {
			sum[j] += float64(x)
		}
	}
	c := make([]float32, sg.dim)
	for j := range c {
		c[j] = float32(sum[j] / float64(sg.used))
	}
	return c
}

// commitAppend makes the rows of a committed append visible in ix.
func (a *appended) commit(ix *index) {
	if a.sg == nil {
		return
	}
	if a.newSeg {
		ix.addSegment(a.sg)
	}
	a.sg.committed = a.rows
}

// abort releases a segment created for an append whose transaction did not
// commit (its files stay: the next segment created takes a new id).
func (a *appended) abort() {
	if a != nil && a.newSeg && a.sg != nil {
		a.sg.unmap()
	}
}

// truncateTails cuts every segment file back to its committed rows: bytes
// past them are left by a writer that died between its pwrite and its
// commit. It runs inside the open transaction (the write lock: no append
// can run meanwhile).
func (s *Store) truncateTails(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, dim, rows FROM segments`)
	if err != nil {
		return err
	}
	type seg struct{ id, dim, rows int64 }
	var segs []seg
	for rows.Next() {
		var g seg
		if err := rows.Scan(&g.id, &g.dim, &g.rows); err != nil {
			rows.Close()
			return err
		}
		segs = append(segs, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, g := range segs {
		if g.dim <= 0 || g.dim > MaxDim {
			continue
		}
		vecPath, binPath := segPaths(s.path, g.id)
		hdr := int64(segHeaderSize + (g.dim*4+63)/64*64)
		for _, f := range [...]struct {
			path string
			size int64
		}{{vecPath, segHeaderSize + g.rows*int64(segVecRow(int(g.dim)))}, {binPath, hdr + g.rows*int64(segBinRow(int(g.dim)))}} {
			if st, err := os.Stat(f.path); err == nil && st.Size() > f.size {
				if err := os.Truncate(f.path, f.size); err != nil && !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EACCES) {
					return segmentError("truncate", f.path, err)
				}
			}
		}
	}
	return nil
}

// removeSegmentFiles deletes the files of segments no longer in the store
// (after a reset or a compaction committed).
func removeSegmentFiles(dbPath string, ids []int64) {
	for _, id := range ids {
		v, b := segPaths(dbPath, id)
		os.Remove(v)
		os.Remove(b)
	}
}

// vecCRC is the CRC-32 of a vector's stored bytes.
func vecCRC(v []float32) uint32 { return crc32.ChecksumIEEE(encodeVector(v)) }

// checkVectors checks the vectors of es against their CRCs (once per row
// and process) and returns the slots of those that fail. Caller holds s.mu
// (read or write).
func checkVectors(ix *index, es ...*entry) []int32 {
	var bad []int32
	for _, e := range es {
		if e.slot < 0 {
			continue
		}
		sg, r := ix.locate(e.slot)
		if vcrc, ok := decodeBinRow(sg.binRow(r), sg.words); !ok || !sg.verifyVector(r, vcrc) {
			bad = append(bad, e.slot)
		}
	}
	return bad
}

// markBadSlots marks the records of slots whose vector failed its CRC as
// damaged (their vectors leave the index; every read reports them until
// they are deleted or saved again) and returns the error naming them.
func (s *Store) markBadSlots(slots []int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ix := s.ix
	for _, slot := range slots {
		if int(slot) >= len(ix.slotEntry) {
			continue
		}
		ep := ix.slotEntry[slot]
		if ep < 0 {
			continue
		}
		e := ix.entries[ep]
		sg, r := ix.locate(slot)
		ix.markBad(e.id, fmt.Sprintf("rowid %d: vector row %d of segment file %s fails its checksum", e.rid, r, sg.vecPath))
	}
	if err := s.corruptErr("read", ix); err != nil {
		return err
	}
	return fmt.Errorf("read %s: %w: a vector failed its checksum", s.path, ErrRecordCorrupt)
}

// freeRows punches holes in the .vec rows of slots, the vectors of records
// a delete just removed (committed), so that on a full disk the delete frees
// their space for new rows at once instead of at the next compaction.
// Runs of consecutive rows go in one call; a row's bytes that share a block
// with a row still in use are only zeroed, never that row's. Withdrawn
// rows are never read again by this process; another process that has not
// seen the delete yet could read zeros for such a row and report it as
// damaged until its next refresh, which is why only a store that ran out
// of space does this (withWrite). Caller holds s.mu.
func (s *Store) freeRows(ix *index, slots []int32) {
	slices.Sort(slots)
	for i := 0; i < len(slots); {
		sg, r := ix.locate(slots[i])
		j := i + 1
		for j < len(slots) && slots[j] == slots[j-1]+1 && slots[j]-sg.base < int32(sg.cap) {
			j++
		}
		row := int64(segVecRow(sg.dim))
		punchHole(sg.vecPath, int64(sg.vecAt)+int64(r)*row, int64(j-i)*row) //nolint:errcheck // best effort
		i = j
	}
}
