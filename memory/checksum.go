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
// of version 1 (no checksums) are upgraded when opened.
const FormatVersion = "2"

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
	emb                            []byte
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

// checksumOf is recordChecksum of a prepared record with vector bytes emb.
func (p *prepared) checksumOf(emb []byte) int64 {
	return int64(recordChecksum(p.id, p.content, p.scope, p.catsJSON, p.meta, p.importance, p.created, p.accessed, p.source, int64(boolInt(p.private)), emb))
}

const sqlRowByID = `SELECT ` + recordCols + ` FROM records WHERE id = ?`

// scanStored reads one row of recordCols. With raw, emb aliases the
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
	row, err := scanStored(st.QueryRowContext(ctx, id), false)
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

// checkVersion accepts format versions 1 (a store from before checksums:
// its checksum column is added here, inside the open transaction, and
// filled by fillChecksums) and 2.
func checkVersion(ctx context.Context, tx *sql.Tx, v string) error {
	if v != "1" && v != FormatVersion {
		return fmt.Errorf("%w: unsupported format version %s (this engine reads 1 and %s)", ErrCorrupt, v, FormatVersion)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('records') WHERE name = 'checksum'`).Scan(&n); err != nil {
		return err
	}
	switch {
	case n > 0:
		return nil
	case v == FormatVersion:
		return fmt.Errorf("%w: a format version %s store without the checksum column", ErrCorrupt, v)
	}
	_, err := tx.ExecContext(ctx, `ALTER TABLE records ADD COLUMN checksum INTEGER`)
	return err
}

// fillBatch is the number of rows one upgrade transaction checksums.
const fillBatch = 256

// fillChecksums upgrades a version 1 store: it computes the checksum of
// every row that has none, fillBatch rows per transaction (so the WAL stays
// bounded), then records version 2 in the transaction that finds none left.
// Rows written before the upgrade are taken as they are. Other processes
// may fill at the same time: the updates are idempotent.
func (s *Store) fillChecksums(ctx context.Context) error {
	var last int64
	for done := false; !done; {
		err := s.withWrite(ctx, "upgrade store", func(tx *sql.Tx) (func(), error) {
			rows, err := tx.QueryContext(ctx, `SELECT `+recordCols+` FROM records WHERE rid > ? AND checksum IS NULL ORDER BY rid LIMIT ?`, last, fillBatch)
			if err != nil {
				return nil, err
			}
			var batch []*storedRow
			for rows.Next() {
				r, err := scanStored(rows, false)
				if err != nil {
					rows.Close()
					return nil, err
				}
				batch = append(batch, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
			for _, r := range batch {
				if _, err := tx.ExecContext(ctx, `UPDATE records SET checksum = ? WHERE rid = ? AND checksum IS NULL`, int64(r.sum()), r.rid); err != nil {
					return nil, err
				}
				last = r.rid
			}
			if len(batch) == fillBatch {
				return nil, nil
			}
			var left int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM records WHERE checksum IS NULL`).Scan(&left); err != nil {
				return nil, err
			}
			if left > 0 { // written meanwhile by an engine of version 1
				last = 0
				return nil, nil
			}
			_, err = tx.ExecContext(ctx, `UPDATE crewcore_meta SET value = ? WHERE key = 'version'`, FormatVersion)
			done = err == nil
			return nil, err
		}, false)
		if err != nil {
			return err
		}
	}
	return nil
}

// keptChecksum is the checksum of p written over the stored row of p.id
// keeping its vector (update without an embedding). The stored row must
// pass its own checksum first, so a damaged vector is never sealed anew.
func (s *Store) keptChecksum(ctx context.Context, tx *sql.Tx, p *prepared) (int64, error) {
	row, err := s.storedByID(ctx, tx, p.id)
	if err != nil {
		return 0, err
	}
	if row == nil {
		return 0, fmt.Errorf("%w: %q", ErrNotFound, p.id)
	}
	if why := row.verify(); why != "" {
		return 0, corruptRecordsError("update", s.path, map[string]string{p.id: fmt.Sprintf("rowid %d: %s", row.rid, why)})
	}
	return p.checksumOf(row.emb), nil
}

// touchedChecksum is the checksum of the stored row of id with
// last_accessed set to now; why is set (and the row left alone) when the
// row fails its own checksum, and ok is false when there is no such row.
func (s *Store) touchedChecksum(ctx context.Context, tx *sql.Tx, id, now string) (sum int64, why string, ok bool, err error) {
	row, err := s.storedByID(ctx, tx, id)
	if err != nil || row == nil {
		return 0, "", false, err
	}
	if why := row.verify(); why != "" {
		return 0, fmt.Sprintf("rowid %d: %s", row.rid, why), true, nil
	}
	row.accessed = now
	return int64(row.sum()), "", true, nil
}
