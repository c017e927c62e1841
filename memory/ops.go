package memory

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Statements prepared once per store and bound to each transaction with
// Tx.StmtContext: database/sql keeps one prepared statement per connection,
// so a write does not pay SQLite's prepare again.
const (
	sqlLogChange        = `INSERT INTO changes(record_id) SELECT value FROM json_each(?)`
	sqlInsert           = `INSERT INTO records(id, content, scope, categories, metadata, importance, created_at, last_accessed, source, private, seg, row, checksum) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`
	sqlUpdateKeepVector = `UPDATE records SET content=?, scope=?, categories=?, metadata=?, importance=?, created_at=?, last_accessed=?, source=?, private=?, checksum=? WHERE id=?`
	sqlDeleteID         = `DELETE FROM records WHERE id = ?`
	sqlTouch            = `UPDATE records SET last_accessed = ?, checksum = ? WHERE id = ?`
	sqlMaxSeq           = `SELECT coalesce(max(seq), 0) FROM changes`
)

// stmtFor returns query prepared on the store and bound to tx.
func (s *Store) stmtFor(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	st, err := s.sdb.Stmt(ctx, query) // cached; prepared once per connection
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, st), nil
}

// logChanges appends one change row per id, in order, with one statement,
// and returns the new last seq (the rowid of the last row inserted).
func (s *Store) logChanges(ctx context.Context, tx *sql.Tx, ids []string) (int64, error) {
	if len(ids) > 0 {
		stmt, err := s.stmtFor(ctx, tx, sqlLogChange)
		if err != nil {
			return 0, err
		}
		list, err := json.Marshal(ids)
		if err != nil {
			return 0, err
		}
		res, err := stmt.ExecContext(ctx, string(list))
		if err != nil {
			return 0, err
		}
		return res.LastInsertId()
	}
	st, err := s.stmtFor(ctx, tx, sqlMaxSeq)
	if err != nil {
		return 0, err
	}
	var seq int64
	err = st.QueryRowContext(ctx).Scan(&seq)
	return seq, err
}

// checkDims validates the vectors of a batch against the store dimension and
// returns the dimension the store will have after the batch.
func (s *Store) checkDims(recs []*prepared) (int, error) {
	dim := s.ix.dim
	for _, p := range recs {
		if len(p.vec) == 0 {
			continue
		}
		if dim == 0 {
			dim = len(p.vec)
		} else if len(p.vec) != dim {
			return 0, &DimensionError{Stored: dim, Got: len(p.vec)}
		}
	}
	return dim, nil
}

const upsertSQL = `INSERT INTO records(id, content, scope, categories, metadata, importance, created_at, last_accessed, source, private, seg, row, checksum)
VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT(id) DO UPDATE SET content=excluded.content, scope=excluded.scope, categories=excluded.categories,
 metadata=excluded.metadata, importance=excluded.importance, created_at=excluded.created_at,
 last_accessed=excluded.last_accessed, source=excluded.source, private=excluded.private, seg=excluded.seg,
 row=excluded.row, checksum=excluded.checksum
RETURNING rid`

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Save stores records, replacing any with the same id. The batch is atomic:
// one invalid record (bad vector, wrong dimension, bad text) stores nothing.
func (s *Store) Save(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	prep := make([]*prepared, len(recs))
	for i := range recs {
		p, err := prepare(&recs[i])
		if err != nil {
			return err
		}
		prep[i] = p
	}
	return s.writeRecords(ctx, "save", prep, false)
}

// Update replaces the record with r.ID. An empty r.Embedding keeps the stored
// vector. An unknown id returns ErrNotFound.
func (s *Store) Update(ctx context.Context, r Record) error {
	p, err := prepare(&r)
	if err != nil {
		return err
	}
	return s.writeRecords(ctx, "update", []*prepared{p}, true)
}

func (s *Store) writeRecords(ctx context.Context, op string, prep []*prepared, mustExist bool) error {
	return s.withWrite(ctx, op+" records in", func(tx *sql.Tx) (func(), error) {
		ix := s.ix
		dim, err := s.checkDims(prep)
		if err != nil {
			return nil, err
		}
		if mustExist {
			for _, p := range prep {
				i, ok := ix.pos[p.id]
				if !ok {
					return nil, fmt.Errorf("%w: %q", ErrNotFound, p.id)
				}
				if bad := ix.entries[i].bad; bad != "" { // save it again instead (checksum.go)
					return nil, corruptRecordsError("update", s.path, map[string]string{p.id: bad})
				}
			}
		}
		if dim != ix.dim {
			if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO crewcore_meta(key, value) VALUES ('dim', ?)`, strconv.Itoa(dim)); err != nil {
				return nil, err
			}
		}
		upsert, err := s.stmtFor(ctx, tx, upsertSQL)
		if err != nil {
			return nil, err
		}
		keep, err := s.stmtFor(ctx, tx, sqlUpdateKeepVector)
		if err != nil {
			return nil, err
		}
		insert, err := s.stmtFor(ctx, tx, sqlInsert)
		if err != nil {
			return nil, err
		}
		ids := make([]string, len(prep))
		rids := make([]int64, len(prep))
		// The batch's vectors go to the segment first, in one write per
		// file (segstore.go); the rows that address them follow.
		var vecs [][]float32
		vecOf := make([]int, len(prep))
		for i, p := range prep {
			vecOf[i] = -1
			if len(p.vec) > 0 {
				vecOf[i] = len(vecs)
				vecs = append(vecs, p.vec)
			}
		}
		app, err := s.appendVectors(ctx, tx, ix, dim, vecs)
		if err != nil {
			app.abort()
			return nil, err
		}
		kept := make([]segAddr, len(prep))
		for i, p := range prep {
			ids[i] = p.id
			args := []any{p.id, p.content, p.scope, p.catsJSON, p.meta, p.importance, p.created, p.accessed, nullable(p.source), boolInt(p.private)}
			var seg, row any
			vlen, vcrc := 0, uint32(0)
			if j := vecOf[i]; j >= 0 {
				seg, row = app.addrs[j].seg, app.addrs[j].row
				vlen, vcrc = 4*dim, app.vcrcs[j]
			}
			switch _, known := ix.pos[p.id]; {
			case mustExist && p.keepVector:
				rids[i] = ix.entries[ix.pos[p.id]].rid
				var sum int64
				if sum, kept[i], err = s.keptChecksum(ctx, tx, p); err != nil {
					app.abort()
					return nil, err
				}
				_, err = keep.ExecContext(ctx, append(args[1:], sum, p.id)...)
			case !known:
				// A new id: a plain INSERT is about twice as fast as the
				// upsert (no RETURNING, no conflict clause). If another
				// process stored the id since our last refresh, the unique
				// constraint fails this statement only, and the upsert runs.
				var res sql.Result
				if res, err = insert.ExecContext(ctx, append(args, seg, row, p.checksumV3(vlen, vcrc))...); err == nil {
					rids[i], err = res.LastInsertId()
					break
				}
				if !isUniqueViolation(err) {
					break
				}
				fallthrough
			default:
				err = upsert.QueryRowContext(ctx, append(args, seg, row, p.checksumV3(vlen, vcrc))...).Scan(&rids[i])
			}
			if err != nil {
				app.abort()
				return nil, err
			}
		}
		seq, err := s.logChanges(ctx, tx, ids)
		if err != nil {
			app.abort()
			return nil, err
		}
		return func() {
			if dim != ix.dim {
				ix.setDim(dim)
			}
			app.commit(ix)
			for i, p := range prep {
				e := &entry{
					rid: rids[i], id: p.id, content: p.content, scopeID: ix.scopeFor(p.scope),
					cats: p.cats, catsJSON: p.catsJSON, meta: p.meta, importance: p.importance,
					created: p.created, accessed: p.accessed, source: p.source, private: p.private,
				}
				slot := int32(-1)
				if j := vecOf[i]; j >= 0 {
					slot = app.sg.base + int32(app.addrs[j].row)
				}
				ix.put(e, slot, mustExist && p.keepVector)
			}
			s.lastSeq = seq
		}, nil
	}, true)
}

// deleteIDs removes rows by id inside tx and logs the changes.
func (s *Store) deleteIDs(ctx context.Context, tx *sql.Tx, ids []string) (int64, error) {
	stmt, err := s.stmtFor(ctx, tx, sqlDeleteID)
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		if _, err := stmt.ExecContext(ctx, id); err != nil {
			return 0, err
		}
	}
	return s.logChanges(ctx, tx, ids)
}

// Delete removes the records matching every criterion of f and returns how
// many were removed. The zero Filter removes everything.
func (s *Store) Delete(ctx context.Context, f Filter) (int, error) {
	prefix, err := normalizePrefix(f.ScopePrefix)
	if err != nil {
		return 0, err
	}
	if err := CheckFilter(&f); err != nil { // contract.go
		return 0, err
	}
	var older string
	if !f.OlderThan.IsZero() {
		older = formatTime(f.OlderThan)
	}
	n := 0
	err = s.withWrite(ctx, "delete from", func(tx *sql.Tx) (func(), error) {
		ix := s.ix
		var ids []string
		if f.IDs != nil {
			for _, id := range f.IDs {
				if i, ok := ix.pos[id]; ok && s.matchDelete(ix.entries[i], prefix, f, older) {
					ids = append(ids, id)
				}
			}
		} else {
			for _, e := range ix.entries {
				if s.matchDelete(e, prefix, f, older) {
					ids = append(ids, e.id)
				}
			}
		}
		ids = slices.Compact(sortedCopy(ids))
		if len(ids) == 0 {
			return nil, nil
		}
		seq, err := s.deleteIDs(ctx, tx, ids)
		if err != nil {
			return nil, err
		}
		return func() {
			var freed []int32 // on a full disk, the rows of the deleted vectors (freeRows)
			punch := s.sawFull.Load()
			for _, id := range ids {
				if i, ok := ix.pos[id]; punch && ok && ix.entries[i].slot >= 0 {
					freed = append(freed, ix.entries[i].slot)
				}
				ix.remove(id)
			}
			if len(freed) > 0 {
				s.freeRows(ix, freed)
			}
			n = len(ids)
			s.lastSeq = seq
		}, nil
	}, true)
	return n, err
}

func sortedCopy(ss []string) []string {
	out := slices.Clone(ss)
	sort.Strings(out)
	return out
}

func (s *Store) matchDelete(e *entry, prefix string, f Filter, older string) bool {
	if prefix != "" && !scopeMatches(prefix, s.ix.scopes[e.scopeID].path) {
		return false
	}
	if len(f.Categories) > 0 && !anyOf(e.cats, f.Categories) {
		return false
	}
	if older != "" && !(e.created < older) {
		return false
	}
	if len(f.Metadata) > 0 && !metaEqual(e.metadata(), f.Metadata) {
		return false
	}
	return true
}

func anyOf(have, want []string) bool {
	for _, w := range want {
		for _, h := range have {
			if h == w {
				return true
			}
		}
	}
	return false
}

// Reset deletes every record under prefix ("" or "/" for all). A full reset
// also forgets the dimension unless Options.Dim fixed it.
func (s *Store) Reset(ctx context.Context, prefix string) error {
	p, err := normalizePrefix(prefix)
	if err != nil {
		return err
	}
	if p != "" {
		_, err := s.Delete(ctx, Filter{ScopePrefix: p})
		return err
	}
	return s.withWrite(ctx, "reset", func(tx *sql.Tx) (func(), error) {
		segIDs, err := segmentIDs(ctx, tx)
		if err != nil {
			return nil, err
		}
		for _, q := range []string{`DELETE FROM records`, `DELETE FROM segments`} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return nil, err
			}
		}
		if s.opts.Dim == 0 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM crewcore_meta WHERE key='dim'`); err != nil {
				return nil, err
			}
		}
		seq, err := s.logChanges(ctx, tx, []string{"*"})
		if err != nil {
			return nil, err
		}
		return func() {
			s.ix.retire()
			s.ix = newIndex(s.opts.Dim)
			s.lastSeq = seq
			removeSegmentFiles(s.path, segIDs)
		}, nil
	}, true)
}

// segmentIDs lists the segments of the store.
func segmentIDs(ctx context.Context, q querier) ([]int64, error) {
	rows, err := q.QueryContext(ctx, `SELECT id FROM segments ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Touch sets LastAccessed to now for the given ids; unknown ids are ignored.
func (s *Store) Touch(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := CheckIDs(ids...); err != nil { // contract.go
		return err
	}
	now := formatTime(time.Now())
	return s.withWrite(ctx, "touch records in", func(tx *sql.Tx) (func(), error) {
		ix := s.ix
		var hit []string
		for _, id := range ids {
			if i, ok := ix.pos[id]; ok && ix.entries[i].bad == "" { // damaged rows stay as they are
				hit = append(hit, id)
			}
		}
		hit = slices.Compact(sortedCopy(hit))
		if len(hit) == 0 {
			return nil, nil
		}
		stmt, err := s.stmtFor(ctx, tx, sqlTouch)
		if err != nil {
			return nil, err
		}
		touched, damaged := hit[:0:0], map[string]string{}
		for _, id := range hit {
			sum, why, ok, err := s.touchedChecksum(ctx, tx, id, now)
			if err != nil {
				return nil, err
			}
			if why != "" {
				damaged[id] = why
			}
			if !ok || why != "" {
				continue
			}
			if _, err := stmt.ExecContext(ctx, now, sum, id); err != nil {
				return nil, err
			}
			touched = append(touched, id)
		}
		if len(touched) == 0 && len(damaged) == 0 {
			return nil, nil
		}
		seq, err := s.logChanges(ctx, tx, touched)
		if err != nil {
			return nil, err
		}
		return func() {
			for _, id := range touched {
				if i, ok := ix.pos[id]; ok {
					ix.entries[i].accessed = now
				}
			}
			for id, why := range damaged { // found damaged since it was read
				ix.markBad(id, why)
			}
			s.lastSeq = seq
		}, nil
	}, true)
}

// read runs fn with the index current and read-locked.
func (s *Store) read(ctx context.Context, fn func(ix *index) error) (err error) {
	if err := s.sync(ctx); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.corruptErr("read", s.ix); err != nil { // checksum.go
		return err
	}
	// Reads touch the mapped segment and snapshot files. If something
	// other than crewcore cut one short under the mapping, the read faults:
	// an error, not the end of the process (internal/par brings a fault in
	// a scan's helper goroutine here too).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = s.faultError(p)
		}
	}()
	return fn(s.ix)
}

// faultError is the error of a read that faulted on a mapped file of the
// store; any other panic goes on.
func (s *Store) faultError(p any) error {
	f, ok := p.(interface{ Addr() uintptr })
	if !ok {
		panic(p)
	}
	return fmt.Errorf("read store %s: %w: a mapped file of the store (a segment or the index snapshot) was cut "+
		"short or changed by something other than crewcore (memory fault at %#x); reopen the store and run "+
		"`crewcore memory check %s`", s.path, ErrCorrupt, f.Addr(), s.path)
}

// Get returns the record with id (with its vector) and whether it exists.
func (s *Store) Get(ctx context.Context, id string) (Record, bool, error) {
	var (
		r  Record
		ok bool
	)
	if err := CheckIDs(id); err != nil { // contract.go
		return r, false, err
	}
	var bad []int32
	err := s.read(ctx, func(ix *index) error {
		var i int
		if i, ok = ix.pos[id]; ok {
			if bad = checkVectors(ix, ix.entries[i]); len(bad) == 0 {
				r = ix.record(ix.entries[i], true)
			}
		}
		return nil
	})
	if err == nil && len(bad) > 0 {
		return Record{}, false, s.markBadSlots(bad)
	}
	return r, ok, err
}

// List returns records under prefix, newest CreatedAt first, skipping offset
// and returning at most limit, without their vectors.
func (s *Store) List(ctx context.Context, prefix string, limit, offset int) ([]Record, error) {
	return s.list(ctx, prefix, limit, offset, false)
}

// ListWithVectors is List with each record's vector.
func (s *Store) ListWithVectors(ctx context.Context, prefix string, limit, offset int) ([]Record, error) {
	return s.list(ctx, prefix, limit, offset, true)
}

func (s *Store) list(ctx context.Context, prefix string, limit, offset int, withVectors bool) ([]Record, error) {
	if limit < 0 || offset < 0 {
		return nil, fmt.Errorf("%w: limit and offset must be >= 0 (got %d, %d)", ErrInvalidArgument, limit, offset)
	}
	p, err := normalizePrefix(prefix)
	if err != nil {
		return nil, err
	}
	var out []Record
	var bad []int32
	err = s.read(ctx, func(ix *index) error {
		match := ix.matchingScopes(p)
		sel := make([]*entry, 0, len(ix.entries))
		for _, e := range ix.entries {
			if match[e.scopeID] {
				sel = append(sel, e)
			}
		}
		sort.Slice(sel, func(i, j int) bool {
			if sel[i].created != sel[j].created {
				return sel[i].created > sel[j].created
			}
			return sel[i].rid > sel[j].rid
		})
		if offset >= len(sel) {
			out = []Record{}
			return nil
		}
		sel = sel[offset:]
		if limit < len(sel) {
			sel = sel[:limit]
		}
		if withVectors {
			if bad = checkVectors(ix, sel...); len(bad) > 0 {
				return nil
			}
		}
		out = make([]Record, len(sel))
		for i, e := range sel {
			out[i] = ix.record(e, withVectors)
		}
		return nil
	})
	if err == nil && len(bad) > 0 {
		return nil, s.markBadSlots(bad)
	}
	return out, err
}

// Count returns the number of records under prefix ("" for all).
func (s *Store) Count(ctx context.Context, prefix string) (int, error) {
	p, err := normalizePrefix(prefix)
	if err != nil {
		return 0, err
	}
	n := 0
	err = s.read(ctx, func(ix *index) error { n = ix.count(p); return nil })
	return n, err
}

// ListCategories returns category -> number of records under prefix having it.
func (s *Store) ListCategories(ctx context.Context, prefix string) (map[string]int, error) {
	p, err := normalizePrefix(prefix)
	if err != nil {
		return nil, err
	}
	var out map[string]int
	err = s.read(ctx, func(ix *index) error { out = ix.categories(p); return nil })
	return out, err
}

// ListScopes returns the sorted immediate child scopes of parent.
func (s *Store) ListScopes(ctx context.Context, parent string) ([]string, error) {
	p, err := NormalizeScope(parent)
	if err != nil {
		return nil, err
	}
	var out []string
	err = s.read(ctx, func(ix *index) error { out = ix.children(p); return nil })
	return out, err
}

// ScopeInfo summarizes the records under scope.
func (s *Store) ScopeInfo(ctx context.Context, scope string) (ScopeInfo, error) {
	p, err := NormalizeScope(scope)
	if err != nil {
		return ScopeInfo{}, err
	}
	var out ScopeInfo
	if err := s.sync(ctx); err != nil {
		return out, err
	}
	// scopeInfo may recompute stale statistics: take the write lock.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return out, ErrClosed
	}
	if err := s.corruptErr("read", s.ix); err != nil { // checksum.go
		return out, err
	}
	return s.ix.scopeInfo(p), nil
}

// Optimize compacts the segments (compact.go), trims the change log,
// checkpoints the WAL and refreshes SQLite's query statistics.
func (s *Store) Optimize(ctx context.Context) error {
	if err := s.compact(ctx); err != nil {
		return err
	}
	err := s.withWrite(ctx, "optimize", func(tx *sql.Tx) (func(), error) {
		_, err := tx.ExecContext(ctx, `DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - 10000`)
		return nil, err
	}, true)
	if err != nil {
		return err
	}
	for _, q := range []string{`PRAGMA wal_checkpoint(TRUNCATE)`, `PRAGMA optimize`} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return s.classify("optimize", err)
		}
	}
	return nil
}

// Stats describes a store for tools such as `crewcore memory stats`.
type Stats struct {
	Path    string
	Records int
	Vectors int
	Dim     int
	Scopes  int
	Metric  string
}

// Stats returns counts describing the store.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := s.read(ctx, func(ix *index) error {
		n := 0
		for _, sc := range ix.scopes {
			if sc.count > 0 {
				n++
			}
		}
		st = Stats{Path: s.path, Records: ix.len(), Vectors: ix.slots(), Dim: ix.dim, Scopes: n, Metric: s.opts.Metric.String()}
		return nil
	})
	return st, err
}
