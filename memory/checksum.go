package memory

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sort"
	"strings"
	"unsafe"
)

// Record checksums (format version 2; docs/architecture.md, "On-disk
// format"). SQLite keeps no checksum of its pages, so a flipped byte in a
// record came back as different content, metadata or vector with no error.
// Every row of records now carries checksum = CRC-32 (IEEE, as zlib.crc32)
// of its stored values in this canonical encoding, which the Python engine
// computes byte for byte the same way (crewcore/memory/integrity.py):
//
//	uint32 LE byte length of: id, content, scope, categories, metadata,
//	    created_at, last_accessed, source, embedding   (9 x 4 bytes)
//	importance  float64 LE (IEEE 754 bits; -0 written as +0)
//	private     int64 LE
//	then the bytes of id, content, scope, categories, metadata,
//	    created_at, last_accessed, source, embedding
//
// Text is the UTF-8 stored; a NULL source or embedding counts as empty. The
// values are the column values as stored, so the checksum does not depend on
// how an engine builds them. -0 is written as +0 because SQLite stores a
// REAL without a fraction as an integer and reads -0.0 back as 0.0.

// FormatVersion is the on-disk format version this package writes. Stores
// of versions 1 (no checksums) and 2 (vectors in the records table) are
// upgraded when opened (upgrade.go).
//
// Version 3 moved the vectors into segment files (segment.go). The record
// checksum keeps covering the vector, through its CRC: the encoding above
// is unchanged except that the embedding's bytes are replaced by the
// 4-byte little-endian CRC-32 of those bytes (its length field stays the
// vector's byte length, 0 without one). That CRC is stored beside the
// vector's code in the segment (the .bin row), and checked against the
// vector's bytes when the vector is first read.
const FormatVersion = "3"

// ErrRecordCorrupt reports records whose stored values no longer match
// their checksum (a damaged file). It wraps ErrCorrupt, so
// errors.Is(err, ErrCorrupt) holds too; the message names the records.
var ErrRecordCorrupt = fmt.Errorf("%w: records fail their checksum", ErrCorrupt)

// storedRow is one records row as stored.
type storedRow struct {
	rid                            int64
	id, content, scope, cats, meta string
	importance                     float64
	created, accessed, source      string
	private                        int64
	emb                            []byte // version 2 rows only
	seg, row                       sql.NullInt64
	checksum                       sql.NullInt64
}

func strBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// recordChecksum is the CRC-32 of the canonical encoding of a row.
func recordChecksum(id, content, scope, cats, meta string, importance float64, created, accessed, source string, private int64, emb []byte) uint32 {
	var hdr [9*4 + 16]byte
	for i, n := range []int{len(id), len(content), len(scope), len(cats), len(meta), len(created), len(accessed), len(source), len(emb)} {
		binary.LittleEndian.PutUint32(hdr[4*i:], uint32(n))
	}
	if importance == 0 {
		importance = 0 // -0 reads back from SQLite as +0
	}
	binary.LittleEndian.PutUint64(hdr[36:], math.Float64bits(importance))
	binary.LittleEndian.PutUint64(hdr[44:], uint64(private))
	c := crc32.ChecksumIEEE(hdr[:])
	for _, s := range []string{id, content, scope, cats, meta, created, accessed, source} {
		c = crc32.Update(c, crc32.IEEETable, strBytes(s))
	}
	return crc32.Update(c, crc32.IEEETable, emb)
}

// recordChecksumV3 is recordChecksum of a version 3 row whose vector is
// vlen bytes with CRC vcrc (vlen 0: no vector).
func recordChecksumV3(id, content, scope, cats, meta string, importance float64, created, accessed, source string, private int64, vlen int, vcrc uint32) uint32 {
	var hdr [9*4 + 16]byte
	for i, n := range []int{len(id), len(content), len(scope), len(cats), len(meta), len(created), len(accessed), len(source), vlen} {
		binary.LittleEndian.PutUint32(hdr[4*i:], uint32(n))
	}
	if importance == 0 {
		importance = 0
	}
	binary.LittleEndian.PutUint64(hdr[36:], math.Float64bits(importance))
	binary.LittleEndian.PutUint64(hdr[44:], uint64(private))
	c := crc32.ChecksumIEEE(hdr[:])
	for _, s := range []string{id, content, scope, cats, meta, created, accessed, source} {
		c = crc32.Update(c, crc32.IEEETable, strBytes(s))
	}
	if vlen > 0 {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], vcrc)
		c = crc32.Update(c, crc32.IEEETable, b[:])
	}
	return c
}

// sumV3 is the version 3 checksum of the row with a vector of vlen bytes
// and CRC vcrc.
func (r *storedRow) sumV3(vlen int, vcrc uint32) uint32 {
	return recordChecksumV3(r.id, r.content, r.scope, r.cats, r.meta, r.importance, r.created, r.accessed, r.source, r.private, vlen, vcrc)
}

// verifyV3 is verify for a version 3 row.
func (r *storedRow) verifyV3(vlen int, vcrc uint32) string {
	if !r.checksum.Valid {
		return "no checksum"
	}
	if got := r.sumV3(vlen, vcrc); int64(got) != r.checksum.Int64 {
		return fmt.Sprintf("checksum %08x, stored %08x", got, uint32(r.checksum.Int64))
	}
	return ""
}

func (r *storedRow) sum() uint32 {
	return recordChecksum(r.id, r.content, r.scope, r.cats, r.meta, r.importance, r.created, r.accessed, r.source, r.private, r.emb)
}

// verify reports why the row fails its checksum ("" when it is intact). A
// NULL checksum fails: every row has one once a store is open (Open fills
// those of a version 1 store first).
func (r *storedRow) verify() string {
	if !r.checksum.Valid {
		return "no checksum"
	}
	if got := r.sum(); int64(got) != r.checksum.Int64 {
		return fmt.Sprintf("checksum %08x, stored %08x", got, uint32(r.checksum.Int64))
	}
	return ""
}

// checksumV3 is the version 3 checksum of a prepared record whose vector
// is vlen bytes with CRC vcrc.
func (p *prepared) checksumV3(vlen int, vcrc uint32) int64 {
	return int64(recordChecksumV3(p.id, p.content, p.scope, p.catsJSON, p.meta, p.importance, p.created, p.accessed, p.source, int64(boolInt(p.private)), vlen, vcrc))
}

const sqlRowByID = `SELECT ` + recordCols + ` FROM records WHERE id = ?`

// scanRow reads one row of recordCols (version 3).
func scanRow(r scanner) (*storedRow, error) {
	var (
		row    storedRow
		source sql.NullString
	)
	if err := r.Scan(&row.rid, &row.id, &row.content, &row.scope, &row.cats, &row.meta, &row.importance,
		&row.created, &row.accessed, &source, &row.private, &row.seg, &row.row, &row.checksum); err != nil {
		return nil, err
	}
	row.source = source.String
	return &row, nil
}

// legacyCols are the columns of a version 1 or 2 records row.
const legacyCols = `rid, id, content, scope, categories, metadata, importance, created_at, last_accessed, source, private, embedding, checksum`

// scanStored reads one row of legacyCols. With raw, emb aliases the
// driver's buffer until the next Scan (sql.RawBytes: rows only).
func scanStored(r scanner, raw bool) (*storedRow, error) {
	var (
		row    storedRow
		source sql.NullString
		blob   []byte
		rawb   sql.RawBytes
		dst    any = &blob
	)
	if raw {
		dst = &rawb
	}
	if err := r.Scan(&row.rid, &row.id, &row.content, &row.scope, &row.cats, &row.meta, &row.importance,
		&row.created, &row.accessed, &source, &row.private, dst, &row.checksum); err != nil {
		return nil, err
	}
	row.source, row.emb = source.String, blob
	if raw {
		row.emb = rawb
	}
	return &row, nil
}

// storedByID reads the row of id inside tx (nil when there is none).
func (s *Store) storedByID(ctx context.Context, tx *sql.Tx, id string) (*storedRow, error) {
	st, err := s.stmtFor(ctx, tx, sqlRowByID)
	if err != nil {
		return nil, err
	}
	row, err := scanRow(st.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return row, err
}

// corruptErr reports the corrupt records of ix (nil when there are none).
func (s *Store) corruptErr(op string, ix *index) error {
	if len(ix.corrupt) == 0 {
		return nil
	}
	return corruptRecordsError(op, s.path, ix.corrupt)
}

// corruptRecordsError names up to 10 corrupt records and what to do.
func corruptRecordsError(op, path string, bad map[string]string) error {
	ids := make([]string, 0, len(bad))
	for id := range bad {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	for i, id := range ids {
		if i == 10 {
			fmt.Fprintf(&b, ", and %d more", len(ids)-10)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q (%s)", id, bad[id])
	}
	return fmt.Errorf("%s %s: %w: %d record(s) damaged in the file: %s; delete them (delete by record id) or save them again, "+
		"or run `crewcore memory check --repair %s`", op, path, ErrRecordCorrupt, len(ids), b.String(), path)
}

// storedVector returns the vector length and CRC a stored row's checksum
// covers (its segment row's vcrc), or why that row is damaged.
func (s *Store) storedVector(ctx context.Context, tx *sql.Tx, row *storedRow) (vlen int, vcrc uint32, why string, err error) {
	if !row.seg.Valid {
		return 0, 0, "", nil
	}
	_, vcrc, why, err = s.addressed(ctx, tx, s.ix, row.seg.Int64, row.row.Int64)
	return 4 * s.ix.dim, vcrc, why, err
}

// keptChecksum is the checksum of p written over the stored row of p.id
// keeping its vector (update without an embedding). The stored row must
// pass its own checksum first, so a damaged vector is never sealed anew.
func (s *Store) keptChecksum(ctx context.Context, tx *sql.Tx, p *prepared) (int64, segAddr, error) {
	row, err := s.storedByID(ctx, tx, p.id)
	if err != nil {
		return 0, segAddr{}, err
	}
	if row == nil {
		return 0, segAddr{}, fmt.Errorf("%w: %q", ErrNotFound, p.id)
	}
	vlen, vcrc, why, err := s.storedVector(ctx, tx, row)
	if err != nil {
		return 0, segAddr{}, err
	}
	if why == "" {
		why = row.verifyV3(vlen, vcrc)
	}
	if why != "" {
		return 0, segAddr{}, corruptRecordsError("update", s.path, map[string]string{p.id: fmt.Sprintf("rowid %d: %s", row.rid, why)})
	}
	return p.checksumV3(vlen, vcrc), segAddr{seg: row.seg.Int64, row: row.row.Int64}, nil
}

// touchedChecksum is the checksum of the stored row of id with
// last_accessed set to now; why is set (and the row left alone) when the
// row fails its own checksum, and ok is false when there is no such row.
func (s *Store) touchedChecksum(ctx context.Context, tx *sql.Tx, id, now string) (sum int64, why string, ok bool, err error) {
	row, err := s.storedByID(ctx, tx, id)
	if err != nil || row == nil {
		return 0, "", false, err
	}
	vlen, vcrc, why, err := s.storedVector(ctx, tx, row)
	if err != nil {
		return 0, "", false, err
	}
	if why == "" {
		why = row.verifyV3(vlen, vcrc)
	}
	if why != "" {
		return 0, fmt.Sprintf("rowid %d: %s", row.rid, why), true, nil
	}
	row.accessed = now
	return int64(row.sumV3(vlen, vcrc)), "", true, nil
}
