package memory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/crewcore/crewcore/sqlitedb"
)

// DamagedRecord is a row whose stored values fail its checksum.
type DamagedRecord struct {
	RowID  int64  `json:"rowid"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// CheckReport is what Check found in a store file.
type CheckReport struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	Dim     int    `json:"dim"`
	Records int    `json:"records"`
	// Damaged lists the rows that fail their checksum.
	Damaged []DamagedRecord `json:"damaged"`
	// Unchecked counts rows without a checksum in a version 1 store (one
	// not opened since checksums came; opening it fills them).
	Unchecked int `json:"unchecked"`
	// SQLite holds what PRAGMA integrity_check reported (nothing when "ok").
	SQLite []string `json:"sqlite"`
}

// OK reports whether the store passed every check.
func (r *CheckReport) OK() bool { return len(r.Damaged) == 0 && len(r.SQLite) == 0 }

// Check verifies a whole store file without changing it: SQLite's own
// integrity_check (b-trees, indexes, free pages) and every record against
// its checksum. A path that is not a store, an empty or table-less file
// where a store was (its marker is there) and a store that lost a table
// return ErrCorrupt; a missing file returns an error wrapping
// os.ErrNotExist.
func Check(ctx context.Context, path string) (*CheckReport, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("check store %s: %w", path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("check store %s: %w", abs, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("check store %s: %w: the path is a directory", abs, ErrCorrupt)
	}
	if err := checkForeign(abs); err != nil {
		return nil, err
	}
	rep := &CheckReport{Path: abs, Damaged: []DamagedRecord{}, SQLite: []string{}}
	if st.Size() == 0 {
		return rep, nil // a new store that was never written
	}
	// mode=ro, or immutable=1 in a read-only directory (readonly.go).
	db, _, err := openReadOnlyDB(abs, "&_busy_timeout=10000")
	if err != nil {
		return nil, sqlitedb.Classify("check store", abs, err)
	}
	defer db.Close()
	fail := func(err error) (*CheckReport, error) {
		return nil, sqlitedb.Classify("check store", abs, err)
	}
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type='table'`).Scan(&tables); err != nil {
		return fail(err)
	}
	if tables == 0 {
		return rep, nil // created, never initialized (no marker: checkForeign)
	}
	if err := db.QueryRowContext(ctx, `SELECT value FROM crewcore_meta WHERE key='version'`).Scan(&rep.Version); err != nil {
		return fail(err)
	}
	var dim string
	if err := db.QueryRowContext(ctx, `SELECT value FROM crewcore_meta WHERE key='dim'`).Scan(&dim); err == nil {
		rep.Dim, _ = strconv.Atoi(dim)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return fail(err)
	}
	rows, err := db.QueryContext(ctx, `PRAGMA integrity_check(100)`)
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var msg string
		if err := rows.Scan(&msg); err != nil {
			rows.Close()
			return fail(err)
		}
		if msg != "ok" {
			rep.SQLite = append(rep.SQLite, msg)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		rep.SQLite = append(rep.SQLite, err.Error())
	}
	if rep.Version == "1" || rep.Version == "2" {
		return checkLegacy(ctx, db, rep)
	}
	segs := map[int64]*segment{}
	segWhy := map[int64]string{}
	defer func() {
		for _, sg := range segs {
			sg.unmap()
		}
	}()
	rows, err = db.QueryContext(ctx, `SELECT `+recordCols+` FROM records ORDER BY rid`)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return fail(err)
		}
		rep.Records++
		why, vlen, vcrc := "", 0, uint32(0)
		if r.seg.Valid {
			why, vcrc = checkSegmentRow(ctx, db, abs, rep.Dim, segs, segWhy, r.seg.Int64, r.row.Int64)
			vlen = 4 * rep.Dim
		}
		if why == "" {
			why = r.verifyV3(vlen, vcrc)
		}
		if why != "" {
			rep.Damaged = append(rep.Damaged, DamagedRecord{RowID: r.rid, ID: r.id, Reason: why})
		}
	}
	if err := rows.Err(); err != nil {
		rep.SQLite = append(rep.SQLite, "reading records: "+err.Error())
	}
	return rep, nil
}

// checkSegmentRow checks the segment row of a record for Check: the
// segment's files and header, the row inside the committed rows and the
// files, its code row and its vector against their CRCs. It returns why
// the row is damaged ("" when intact) and the vector's CRC.
func checkSegmentRow(ctx context.Context, db *sql.DB, path string, dim int, segs map[int64]*segment, segWhy map[int64]string, seg, row int64) (string, uint32) {
	sg, ok := segs[seg]
	if why := segWhy[seg]; why != "" {
		return why, 0
	}
	if !ok {
		sdim, rows, capRows, found, err := segmentInfo(ctx, db, seg)
		switch {
		case err != nil:
			segWhy[seg] = err.Error()
		case !found:
			segWhy[seg] = fmt.Sprintf("segment %d is not in the store's segments table", seg)
		case sdim != dim:
			segWhy[seg] = fmt.Sprintf("segment %d has %d dimensions, the store %d", seg, sdim, dim)
		default:
			if sg, err = mapSegment(path, seg, dim, capRows); err != nil {
				segWhy[seg] = err.Error()
			} else {
				sg.committed = rows
				segs[seg] = sg
			}
		}
		if why := segWhy[seg]; why != "" {
			return why, 0
		}
	}
	if row < 0 || int(row) >= sg.committed {
		return fmt.Sprintf("row %d of segment file %s was never committed (%d rows)", row, sg.vecPath, sg.committed), 0
	}
	if !sg.rowsInside(int(row) + 1) {
		return fmt.Sprintf("segment file %s or %s is truncated: row %d is past its end", sg.vecPath, sg.binPath, row), 0
	}
	vcrc, ok := decodeBinRow(sg.binRow(int(row)), sg.words)
	if !ok {
		return fmt.Sprintf("row %d of segment file %s fails its checksum", row, sg.binPath), 0
	}
	if !sg.verifyVector(int(row), vcrc) {
		return fmt.Sprintf("vector row %d of segment file %s fails its checksum", row, sg.vecPath), 0
	}
	return "", vcrc
}

// checkLegacy checks the records of a version 1 or 2 store (vectors in the
// records table), one not opened since format version 3.
func checkLegacy(ctx context.Context, db *sql.DB, rep *CheckReport) (*CheckReport, error) {
	cols := legacyCols
	if rep.Version == "1" {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('records') WHERE name = 'checksum'`).Scan(&n); err != nil {
			return nil, sqlitedb.Classify("check store", rep.Path, err)
		}
		if n == 0 { // never opened since checksums came: no column yet
			cols = strings.TrimSuffix(legacyCols, "checksum") + "NULL"
		}
	}
	rows, err := db.QueryContext(ctx, `SELECT `+cols+` FROM records ORDER BY rid`)
	if err != nil {
		return nil, sqlitedb.Classify("check store", rep.Path, err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanStored(rows, true)
		if err != nil {
			return nil, sqlitedb.Classify("check store", rep.Path, err)
		}
		rep.Records++
		why := ""
		switch {
		case !r.checksum.Valid && rep.Version == "1":
			rep.Unchecked++
		default:
			why = r.verify()
		}
		if why == "" && len(r.emb) > 0 && len(r.emb) != 4*rep.Dim {
			why = fmt.Sprintf("a %d-byte embedding in a store of dimension %d", len(r.emb), rep.Dim)
		}
		if why != "" {
			rep.Damaged = append(rep.Damaged, DamagedRecord{RowID: r.rid, ID: r.id, Reason: why})
		}
	}
	if err := rows.Err(); err != nil {
		rep.SQLite = append(rep.SQLite, "reading records: "+err.Error())
	}
	return rep, nil
}

// DeleteDamaged deletes every record that failed its checksum when it was
// read, and returns how many; other processes reload the store (one '*' row
// in the change log). It is what `crewcore memory check --repair` runs.
func (s *Store) DeleteDamaged(ctx context.Context) (int, error) {
	n := 0
	err := s.withWrite(ctx, "delete damaged records from", func(tx *sql.Tx) (func(), error) {
		var ids []string
		var rids []int64
		for id := range s.ix.corrupt {
			if i, ok := s.ix.pos[id]; ok {
				ids = append(ids, id)
				rids = append(rids, s.ix.entries[i].rid)
			}
		}
		if len(rids) == 0 {
			return nil, nil
		}
		for _, rid := range rids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM records WHERE rid = ?`, rid); err != nil {
				return nil, err
			}
		}
		seq, err := s.logChanges(ctx, tx, []string{"*"})
		if err != nil {
			return nil, err
		}
		return func() {
			for _, id := range ids {
				s.ix.remove(id)
			}
			n = len(rids)
			s.lastSeq = seq
		}, nil
	}, true)
	return n, err
}
