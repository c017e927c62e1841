package pgmemory

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/crewcore/crewcore/memory"
	"github.com/jackc/pgx/v5"
)

// Delete removes the records matching every criterion of f and returns how
// many were removed. The zero Filter removes everything.
func (s *Store) Delete(ctx context.Context, f memory.Filter) (int, error) {
	prefix, err := memory.NormalizePrefix(f.ScopePrefix)
	if err != nil {
		return 0, err
	}
	if err := memory.CheckFilter(&f); err != nil {
		return 0, err
	}
	if f.IDs != nil && len(f.IDs) == 0 {
		return 0, nil
	}
	w := &where{}
	w.scope(prefix)
	w.categories(f.Categories)
	if f.IDs != nil {
		w.conds = append(w.conds, `id = ANY(`+w.arg(f.IDs)+`::text[])`)
	}
	if !f.OlderThan.IsZero() {
		w.conds = append(w.conds, `created_at < `+w.arg(f.OlderThan.UTC().Truncate(time.Microsecond)))
	}
	if err := w.metadata(f.Metadata); err != nil {
		return 0, err
	}
	var n int64
	err = s.retry(ctx, "delete records", func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, `DELETE FROM `+s.q.records+w.sql(), w.args...)
		n = tag.RowsAffected()
		return err
	})
	return int(n), err
}

// Get returns the record with id (with its vector) and whether it exists.
func (s *Store) Get(ctx context.Context, id string) (memory.Record, bool, error) {
	var (
		r  memory.Record
		ok bool
	)
	if err := memory.CheckIDs(id); err != nil {
		return r, false, err
	}
	err := s.retry(ctx, "get record", func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT `+s.q.cols+`, embedding FROM `+s.q.records+` WHERE id = $1`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		ok = false
		for rows.Next() {
			if r, _, err = scanRecord(rows, true); err != nil {
				return err
			}
			ok = true
		}
		return rows.Err()
	})
	return r, ok, err
}

// List returns records under prefix, newest CreatedAt first, skipping offset
// and returning at most limit, without their vectors.
func (s *Store) List(ctx context.Context, prefix string, limit, offset int) ([]memory.Record, error) {
	return s.list(ctx, prefix, limit, offset, false)
}

// ListWithVectors is List with each record's vector.
func (s *Store) ListWithVectors(ctx context.Context, prefix string, limit, offset int) ([]memory.Record, error) {
	return s.list(ctx, prefix, limit, offset, true)
}

func (s *Store) list(ctx context.Context, prefix string, limit, offset int, withVec bool) ([]memory.Record, error) {
	if limit < 0 || offset < 0 {
		return nil, fmt.Errorf("%w: limit and offset must be >= 0 (got %d, %d)", memory.ErrInvalidArgument, limit, offset)
	}
	p, err := memory.NormalizePrefix(prefix)
	if err != nil {
		return nil, err
	}
	w := &where{}
	w.scope(p)
	cols := s.q.cols
	if withVec {
		cols += ", embedding"
	}
	sql := `SELECT ` + cols + ` FROM ` + s.q.records + w.sql() + ` ORDER BY created_at DESC, rid DESC LIMIT ` + w.arg(limit) + ` OFFSET ` + w.arg(offset)
	var out []memory.Record
	err = s.retry(ctx, "list records", func(ctx context.Context) error {
		out = []memory.Record{}
		rows, err := s.pool.Query(ctx, sql, w.args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, _, err := scanRecord(rows, withVec)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// Count returns the number of records under prefix ("" for all).
func (s *Store) Count(ctx context.Context, prefix string) (int, error) {
	p, err := memory.NormalizePrefix(prefix)
	if err != nil {
		return 0, err
	}
	w := &where{}
	w.scope(p)
	var n int
	err = s.retry(ctx, "count records", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT count(*) FROM `+s.q.records+w.sql(), w.args...).Scan(&n)
	})
	return n, err
}

// ListCategories returns category -> number of records under prefix having it.
func (s *Store) ListCategories(ctx context.Context, prefix string) (map[string]int, error) {
	p, err := memory.NormalizePrefix(prefix)
	if err != nil {
		return nil, err
	}
	w := &where{}
	w.scope(p)
	sql := `SELECT c, count(DISTINCT rid) FROM ` + s.q.records + `, unnest(categories) AS c` + w.sql() + ` GROUP BY c`
	var out map[string]int
	err = s.retry(ctx, "list categories", func(ctx context.Context) error {
		out = map[string]int{}
		rows, err := s.pool.Query(ctx, sql, w.args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				c string
				n int
			)
			if err := rows.Scan(&c, &n); err != nil {
				return err
			}
			out[c] = n
		}
		return rows.Err()
	})
	return out, err
}

// children lists the immediate child scopes of parent (normalized).
func (s *Store) children(ctx context.Context, parent string) ([]string, error) {
	base := parent
	if base == "/" {
		base = ""
	}
	w := &where{}
	b := w.arg(base)
	sql := `SELECT DISTINCT split_part(substr(scope, length(` + b + `) + 2), '/', 1) FROM ` + s.q.records +
		` WHERE scope >= (` + b + ` || '/') COLLATE "C" AND scope < (` + b + ` || '0') COLLATE "C"`
	var out []string
	err := s.retry(ctx, "list scopes", func(ctx context.Context) error {
		out = []string{}
		rows, err := s.pool.Query(ctx, sql, w.args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var part string
			if err := rows.Scan(&part); err != nil {
				return err
			}
			if part != "" {
				out = append(out, base+"/"+part)
			}
		}
		return rows.Err()
	})
	sort.Strings(out)
	return out, err
}

// ListScopes returns the sorted immediate child scopes of parent.
func (s *Store) ListScopes(ctx context.Context, parent string) ([]string, error) {
	p, err := memory.NormalizeScope(parent)
	if err != nil {
		return nil, err
	}
	return s.children(ctx, p)
}

// ScopeInfo summarizes the records under scope.
func (s *Store) ScopeInfo(ctx context.Context, scope string) (memory.ScopeInfo, error) {
	p, err := memory.NormalizeScope(scope)
	if err != nil {
		return memory.ScopeInfo{}, err
	}
	info := memory.ScopeInfo{Path: p, Categories: []string{}}
	prefix := p
	if prefix == "/" {
		prefix = ""
	}
	w := &where{}
	w.scope(prefix)
	sql := `SELECT count(*), min(created_at), max(created_at),
 coalesce((SELECT array_agg(DISTINCT c) FROM ` + s.q.records + `, unnest(categories) AS c` + w.sql() + `), '{}')
 FROM ` + s.q.records + w.sql()
	err = s.retry(ctx, "scope info", func(ctx context.Context) error {
		var oldest, newest *time.Time
		var cats []string
		if err := s.pool.QueryRow(ctx, sql, w.args...).Scan(&info.Count, &oldest, &newest, &cats); err != nil {
			return err
		}
		if oldest != nil {
			info.Oldest, info.Newest = oldest.UTC(), newest.UTC()
		}
		sort.Strings(cats)
		if cats != nil {
			info.Categories = cats
		}
		return nil
	})
	if err != nil {
		return info, err
	}
	info.Children, err = s.children(ctx, p)
	return info, err
}

// Reset deletes every record under prefix ("" or "/" for all). A full reset
// also forgets the dimension (dropping the HNSW indexes) unless Options.Dim
// fixed it.
func (s *Store) Reset(ctx context.Context, prefix string) error {
	p, err := memory.NormalizePrefix(prefix)
	if err != nil {
		return err
	}
	if p != "" {
		_, err := s.Delete(ctx, memory.Filter{ScopePrefix: p})
		return err
	}
	err = s.retry(ctx, "reset", func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			// The dimension row first: saves hold it FOR SHARE, so this waits
			// for them and they wait for this (no deadlock on the table).
			if _, err := tx.Exec(ctx, s.q.getDimForUpdate); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM `+s.q.records); err != nil {
				return err
			}
			if s.opts.Dim > 0 {
				return nil
			}
			for _, ix := range []string{"records_hnsw_l2", "records_hnsw_cosine"} {
				if _, err := tx.Exec(ctx, `DROP INDEX IF EXISTS `+s.q.schema+`.`+pgx.Identifier{ix}.Sanitize()); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `ALTER TABLE `+s.q.records+` ALTER COLUMN embedding TYPE vector`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, s.q.setDim, "0")
			return err
		})
	})
	if err == nil {
		if s.opts.Dim == 0 {
			s.dim.Store(0)
			s.indexed.Store(false)
		}
		s.vecs.Store(0)
	}
	return err
}

// Touch sets LastAccessed to now for the given ids; unknown ids are ignored.
func (s *Store) Touch(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := memory.CheckIDs(ids...); err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	return s.retry(ctx, "touch records", func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `UPDATE `+s.q.records+` SET last_accessed = $1 WHERE id = ANY($2::text[])`, now, ids)
		return err
	})
}

// Optimize runs VACUUM ANALYZE on the records table.
func (s *Store) Optimize(ctx context.Context) error {
	return s.retry(ctx, "optimize", func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `VACUUM ANALYZE `+s.q.records)
		return err
	}, noDeadline)
}

// Stats describes the store.
func (s *Store) Stats(ctx context.Context) (memory.Stats, error) {
	st := memory.Stats{Path: s.dsnShown + " schema " + s.opts.Schema, Metric: s.opts.Metric.String()}
	err := s.retry(ctx, "stats", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT count(*), count(embedding), count(DISTINCT scope), (`+s.q.getDim+`) FROM `+s.q.records).
			Scan(&st.Records, &st.Vectors, &st.Scopes, &st.Dim)
	})
	return st, err
}

// IsDSN reports whether s names a PostgreSQL server rather than a file.
func IsDSN(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

var _ memory.Backend = (*Store)(nil)
