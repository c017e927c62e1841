package memory

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
)

// BackupSuffix names the copy of a store's database taken before it is
// upgraded to format version 3 (memory.db -> memory.db-v2-backup for a
// version 2 store). crewcore never removes it.
const BackupSuffix = "-backup"

// upgradeChunk is the number of records one step of the upgrade reads.
const upgradeChunk = 1024

// upgrade moves a version 1 or 2 store (vectors in the records table) to
// version 3 (vectors in segment files), once: first a copy of the database
// (VACUUM INTO <database>-v<N>-backup), then one write transaction that
// writes every vector to a segment, copies the rows into a new records
// table with their addresses and version 3 checksums, drops the old table
// and records version 3; then VACUUM returns the old table's pages to the
// file system. A row that failed its checksum keeps its stored checksum,
// so it is still reported as damaged. A crash before the commit leaves the
// store as it was (the next open starts over); other processes that still
// run a version 2 engine fail on their next statement (the embedding
// column is gone) instead of writing rows this engine cannot read.
func (s *Store) upgrade(ctx context.Context) error {
	var version string
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM crewcore_meta WHERE key='version'`).Scan(&version); err != nil {
		return s.classify("upgrade store", err)
	}
	if version == FormatVersion {
		return nil // another process did it
	}
	backup := s.path + "-v" + version + BackupSuffix
	tmp := backup + ".tmp"
	os.Remove(tmp)
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		os.Remove(tmp)
		return s.classify("back up store before the upgrade, to "+tmp+",", err)
	}
	if err := os.Rename(tmp, backup); err != nil {
		return fmt.Errorf("upgrade store %s: %w: back up: %v", s.path, ErrAccess, err)
	}
	err := s.withWrite(ctx, "upgrade store", func(tx *sql.Tx) (func(), error) {
		var v string
		if err := tx.QueryRowContext(ctx, `SELECT value FROM crewcore_meta WHERE key='version'`).Scan(&v); err != nil {
			return nil, err
		}
		if v == FormatVersion {
			return nil, nil
		}
		if v != "1" && v != "2" {
			return nil, fmt.Errorf("%w: unsupported format version %s", ErrCorrupt, v)
		}
		return nil, s.upgradeRows(ctx, tx)
	}, false)
	if err != nil {
		return err
	}
	// Best effort: if it cannot run now, the old table's pages stay free
	// for the store's next writes.
	s.db.ExecContext(ctx, `VACUUM`) //nolint:errcheck
	return nil
}

// upgradeRows is the upgrade's transaction (see upgrade).
func (s *Store) upgradeRows(ctx context.Context, tx *sql.Tx) error {
	var hasSum int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('records') WHERE name = 'checksum'`).Scan(&hasSum); err != nil {
		return err
	}
	cols := legacyCols
	if hasSum == 0 {
		cols = strings.TrimSuffix(legacyCols, "checksum") + "NULL"
	}
	dim, err := storedDim(ctx, tx)
	if err != nil {
		return err
	}
	if s.opts.Dim > 0 && dim == 0 {
		dim = s.opts.Dim
	}
	newTable := strings.Replace(strings.SplitN(schemaSQL, "CREATE TABLE IF NOT EXISTS changes", 2)[0],
		"CREATE TABLE IF NOT EXISTS records (", "CREATE TABLE records_v3 (", 1)
	newTable = strings.Replace(newTable, "CREATE TABLE IF NOT EXISTS crewcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);", "", 1)
	for _, q := range []string{`DROP TABLE IF EXISTS records_v3`, newTable, segmentsSQL} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	ix := newIndex(dim)
	var created []*appended
	defer func() {
		for _, a := range created {
			if a.newSeg {
				a.sg.unmap()
			}
		}
	}()
	var last int64
	for {
		rows, err := tx.QueryContext(ctx, `SELECT `+cols+` FROM records WHERE rid > ? ORDER BY rid LIMIT ?`, last, upgradeChunk)
		if err != nil {
			return err
		}
		var batch []*storedRow
		for rows.Next() {
			r, err := scanStored(rows, false)
			if err != nil {
				rows.Close()
				return err
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(batch) == 0 {
			break
		}
		last = batch[len(batch)-1].rid
		var vecs [][]float32
		vecOf := make([]int, len(batch))
		for i, r := range batch {
			vecOf[i] = -1
			if dim > 0 && len(r.emb) == 4*dim {
				v := make([]float32, dim)
				decodeVector(r.emb, v)
				vecOf[i] = len(vecs)
				vecs = append(vecs, v)
			}
		}
		app, err := s.appendVectors(ctx, tx, ix, dim, vecs)
		if err != nil {
			app.abort()
			return err
		}
		created = append(created, app)
		app.commit(ix) // visible to the next chunk's append (same transaction)
		for i, r := range batch {
			var seg, row any
			vlen, vcrc := 0, uint32(0)
			if j := vecOf[i]; j >= 0 {
				seg, row, vlen, vcrc = app.addrs[j].seg, app.addrs[j].row, 4*dim, app.vcrcs[j]
			}
			sum := sql.NullInt64{Valid: true, Int64: int64(r.sumV3(vlen, vcrc))}
			switch {
			case !r.checksum.Valid && hasSum == 0: // version 1: taken as it is
			case r.verify() != "" || (len(r.emb) > 0 && vecOf[i] < 0):
				sum = r.checksum // damaged: stays damaged (NULL or a checksum that fails)
				if len(r.emb) > 0 && vecOf[i] < 0 {
					sum = sql.NullInt64{Valid: true, Int64: int64(r.sum()) ^ 1}
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO records_v3(`+recordCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
				r.rid, r.id, r.content, r.scope, r.cats, r.meta, r.importance, r.created, r.accessed, nullable(r.source), r.private,
				seg, row, sum); err != nil {
				return err
			}
		}
	}
	for _, q := range []string{
		`DROP TABLE records`,
		`ALTER TABLE records_v3 RENAME TO records`,
		`UPDATE crewcore_meta SET value = '` + FormatVersion + `' WHERE key = 'version'`,
		`INSERT INTO changes(record_id) VALUES ('*')`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}
