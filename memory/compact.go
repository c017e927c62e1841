package memory

import (
	"context"
	"database/sql"
	"errors"
	"sort"
)

// compactChunk is the number of vectors one append of a compaction writes.
const compactChunk = 4096

// compact rewrites the vectors of every record into one new segment when
// the store has rows no record uses (deleted or replaced vectors) or more
// than one segment, rewrites every address and deletes the old segments'
// rows in one transaction, then removes the old files. Other processes
// reload on their next call (one '*' row in the change log); a process that
// still maps an old file keeps reading it until then (the mapping outlives
// the file's name).
func (s *Store) compact(ctx context.Context) error {
	var old []int64
	err := s.withWrite(ctx, "optimize", func(tx *sql.Tx) (func(), error) {
		ix := s.ix
		used := 0
		for _, sg := range ix.segs {
			used += sg.used
		}
		if len(ix.segs) == 0 || (len(ix.segs) == 1 && used == ix.live) {
			return nil, nil
		}
		var es []*entry
		for _, e := range ix.entries {
			if e.slot >= 0 {
				es = append(es, e)
			}
		}
		sort.Slice(es, func(i, j int) bool { return es[i].slot < es[j].slot })
		if bad := checkVectors(ix, es...); len(bad) > 0 {
			return nil, errBadSlots(bad)
		}
		var err error
		if old, err = segmentIDs(ctx, tx); err != nil {
			return nil, err
		}
		vecs := make([][]float32, len(es))
		for i, e := range es {
			vecs[i] = ix.vector(e.slot)
		}
		center := meanOf(vecs, ix.dim)
		upd, err := s.stmtFor(ctx, tx, `UPDATE records SET seg = ?, row = ? WHERE rid = ?`)
		if err != nil {
			return nil, err
		}
		var apps []*appended
		abort := func() {
			for _, a := range apps {
				if a.newSeg {
					delete(ix.segByID, a.sg.id)
				}
				a.abort()
			}
		}
		for lo := 0; lo < len(vecs); lo += compactChunk {
			hi := min(lo+compactChunk, len(vecs))
			newCap := 0
			if lo == 0 {
				newCap = max(segMinCap, len(vecs))
			}
			app, err := s.appendTo(ctx, tx, ix, ix.dim, vecs[lo:hi], newCap, center)
			if err != nil {
				app.abort()
				abort()
				return nil, err
			}
			apps = append(apps, app)
			if lo == 0 {
				ix.segByID[app.sg.id] = app.sg // later chunks append to it
			}
			for i, a := range app.addrs {
				if _, err := upd.ExecContext(ctx, a.seg, a.row, es[lo+i].rid); err != nil {
					abort()
					return nil, err
				}
			}
		}
		for _, id := range old {
			if _, err := tx.ExecContext(ctx, `DELETE FROM segments WHERE id = ?`, id); err != nil {
				abort()
				return nil, err
			}
		}
		seq, err := s.logChanges(ctx, tx, []string{"*"})
		if err != nil {
			abort()
			return nil, err
		}
		return func() {
			abort() // the new segment is mapped again by the reload
			s.lastSeq = seq - 1
			if err := s.reload(ctx, s.db); err != nil {
				// The next read reloads (lastSeq is behind); the old
				// index's mappings (segments, snapshot) go with it.
				s.ix.retire()
				s.ix = newIndex(s.opts.Dim)
			}
			removeSegmentFiles(s.path, old)
		}, nil
	}, true)
	var bs errBadSlots
	if errors.As(err, &bs) {
		return s.markBadSlots(bs)
	}
	return err
}

// errBadSlots carries out of a write transaction the slots whose vectors
// failed their CRC.
type errBadSlots []int32

func (errBadSlots) Error() string { return "vectors fail their checksum" }
