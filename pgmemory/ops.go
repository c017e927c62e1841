package pgmemory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/crewcore/crewcore/memory"
	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"
)

// copyAbove is the batch size from which Save loads rows with COPY into a
// staging table (one upsert statement from it) instead of pipelined upserts.
const copyAbove = 64

// queries holds the SQL texts for one schema (built once per Store; pgx
// prepares each once per connection and caches it).
type queries struct {
	schema, records, meta string
	getDim, getDimShare   string
	getDimForUpdate       string
	setDim                string
	upsert                string
	updateKeep, updateVec string
	stage, fromStage      string
	cols                  string
}

const recordCols = `rid, id, content, scope, categories, metadata, importance, created_at, last_accessed, source, private`

func newQueries(schema string) queries {
	s := pgx.Identifier{schema}.Sanitize()
	r := s + ".records"
	m := s + ".crewcore_meta"
	set := `content=excluded.content, scope=excluded.scope, categories=excluded.categories, metadata=excluded.metadata,
 importance=excluded.importance, created_at=excluded.created_at, last_accessed=excluded.last_accessed,
 source=excluded.source, private=excluded.private, embedding=excluded.embedding`
	ins := `(id, content, scope, categories, metadata, importance, created_at, last_accessed, source, private, embedding)`
	return queries{
		schema: s, records: r, meta: m,
		getDim:          `SELECT value::int FROM ` + m + ` WHERE key = 'dim'`,
		getDimShare:     `SELECT value::int FROM ` + m + ` WHERE key = 'dim' FOR SHARE`,
		getDimForUpdate: `SELECT value::int FROM ` + m + ` WHERE key = 'dim' FOR UPDATE`,
		setDim:          `UPDATE ` + m + ` SET value = $1 WHERE key = 'dim'`,
		upsert:          `INSERT INTO ` + r + ins + ` VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT (id) DO UPDATE SET ` + set,
		updateKeep: `UPDATE ` + r + ` SET content=$2, scope=$3, categories=$4, metadata=$5, importance=$6, created_at=$7,
 last_accessed=$8, source=$9, private=$10 WHERE id=$1`,
		updateVec: `UPDATE ` + r + ` SET content=$2, scope=$3, categories=$4, metadata=$5, importance=$6, created_at=$7,
 last_accessed=$8, source=$9, private=$10, embedding=$11 WHERE id=$1`,
		stage: `CREATE TEMP TABLE IF NOT EXISTS crewcore_stage (ord int, id text, content text, scope text, categories text[],
 metadata text, importance double precision, created_at timestamp, last_accessed timestamp, source text, private boolean,
 embedding vector) ON COMMIT DELETE ROWS`,
		fromStage: `INSERT INTO ` + r + ins + ` SELECT id, content, scope, categories, metadata, importance, created_at,
 last_accessed, source, private, embedding FROM crewcore_stage ORDER BY ord ON CONFLICT (id) DO UPDATE SET ` + set,
		cols: recordCols,
	}
}

// row is a validated record in the form the database takes.
type row struct {
	r   memory.Record
	vec any // pgvector.Vector or nil
}

func (w *row) args() []any {
	var src any
	if w.r.Source != "" {
		src = w.r.Source
	}
	return []any{w.r.ID, w.r.Content, w.r.Scope, w.r.Categories, string(w.r.Metadata), w.r.Importance,
		w.r.CreatedAt, w.r.LastAccessed, src, w.r.Private, w.vec}
}

// validate checks records as the embedded store does (the data contract,
// which refuses NUL, what PostgreSQL text cannot hold) and returns the batch
// dimension (0: no vectors).
func (s *Store) validate(recs []memory.Record) ([]row, int, error) {
	out := make([]row, 0, len(recs))
	dim := 0
	for _, in := range recs {
		r, err := memory.ValidateRecord(in) // the data contract (memory/contract.go), NUL included
		if err != nil {
			return nil, 0, err
		}
		w := row{r: r}
		if len(r.Embedding) > 0 {
			if dim == 0 {
				dim = len(r.Embedding)
				if cur := s.Dim(); cur > 0 && cur != dim {
					dim = cur // report against the store's dimension below
				}
			}
			if len(r.Embedding) != dim {
				return nil, 0, &memory.DimensionError{Stored: dim, Got: len(r.Embedding)}
			}
			w.vec = pgvector.NewVector(r.Embedding)
		}
		out = append(out, w)
	}
	return out, dim, nil
}

// errNeedDim asks the caller to record the dimension first.
var errNeedDim = errors.New("dimension not set")

// Save stores records, replacing any with the same id. The batch is atomic.
// Large batches are loaded with COPY.
func (s *Store) Save(ctx context.Context, recs []memory.Record) error {
	if len(recs) == 0 {
		return nil
	}
	rows, dim, err := s.validate(recs)
	if err != nil {
		return err
	}
	rows = lastPerID(rows)
	err = s.write(ctx, "save records", dim, len(rows), func(ctx context.Context, tx pgx.Tx) error {
		if len(rows) >= copyAbove {
			return s.copyRows(ctx, tx, rows)
		}
		b := &pgx.Batch{}
		for i := range rows {
			b.Queue(s.q.upsert, rows[i].args()...)
		}
		return tx.SendBatch(ctx, b).Close()
	}, func() { s.vecs.Add(int64(countVecs(rows))) })
	if err != nil {
		return err
	}
	return s.maybeIndex(ctx)
}

// lastPerID keeps the last record of each id at the place of its first
// (a batch that names an id twice stores the later one, numbered where the
// id first appeared, as sequential upserts would).
func lastPerID(rows []row) []row {
	pos := make(map[string]int, len(rows)) // id -> its index in out
	out := rows[:0:0]
	for i := range rows {
		if j, ok := pos[rows[i].r.ID]; ok {
			// The later record wins, in the place of the first: ids are
			// numbered (rid, the tie-break "newer first") in order of first
			// appearance, as the embedded store does.
			out[j] = rows[i]
			continue
		}
		pos[rows[i].r.ID] = len(out)
		out = append(out, rows[i])
	}
	return out
}

func countVecs(rows []row) int {
	n := 0
	for i := range rows {
		if rows[i].vec != nil {
			n++
		}
	}
	return n
}

func (s *Store) copyRows(ctx context.Context, tx pgx.Tx, rows []row) error {
	if _, err := tx.Exec(ctx, s.q.stage); err != nil {
		return err
	}
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= len(rows) {
			return nil, nil
		}
		v := append([]any{i}, rows[i].args()...)
		i++
		return v, nil
	})
	cols := []string{"ord", "id", "content", "scope", "categories", "metadata", "importance", "created_at", "last_accessed", "source", "private", "embedding"}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"crewcore_stage"}, cols, src); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, s.q.fromStage)
	return err
}

// write runs fn in a transaction that holds the dimension row FOR SHARE
// (so a concurrent full reset cannot retype the column under it) after
// checking the batch dimension dim against the stored one. A store with no
// dimension yet records dim first. after runs once the write committed.
func (s *Store) write(ctx context.Context, op string, dim int, rows int, fn func(ctx context.Context, tx pgx.Tx) error, after func()) error {
	// A large batch gets more time: each row may insert into the HNSW graph.
	timeout := s.opts.QueryTimeout + time.Duration(rows)*s.opts.RowTimeout
	for range 3 {
		err := s.retryT(ctx, op, timeout, func(ctx context.Context) error {
			return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
				var cur int
				if err := tx.QueryRow(ctx, s.q.getDimShare).Scan(&cur); err != nil {
					return err
				}
				if s.dim.Swap(int64(cur)) != int64(cur) {
					s.indexed.Store(false) // the dimension changed: a reset dropped the index
				}
				if dim > 0 && cur == 0 {
					return errNeedDim
				}
				if dim > 0 && cur != dim {
					return &memory.DimensionError{Stored: cur, Got: dim}
				}
				return fn(ctx, tx)
			})
		})
		if errors.Is(err, errNeedDim) {
			if err := s.setDimTx(ctx, dim); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			s.dim.Store(int64(dim))
			continue
		}
		if err == nil && after != nil {
			after()
		}
		return err
	}
	return fmt.Errorf("%s: %w: the store dimension keeps changing under concurrent resets", op, ErrUnavailable)
}

// Update replaces the record with r.ID; an empty r.Embedding keeps the
// stored vector. An unknown id returns memory.ErrNotFound.
func (s *Store) Update(ctx context.Context, r memory.Record) error {
	rows, dim, err := s.validate([]memory.Record{r})
	if err != nil {
		return err
	}
	w := rows[0]
	if dim > 0 && s.Dim() == 0 {
		// The write below would fix the store's dimension first: not for a
		// record that is not there (the embedded store checks it first too).
		var one int
		err := s.retry(ctx, "update record", func(ctx context.Context) error {
			return s.pool.QueryRow(ctx, `SELECT 1 FROM `+s.q.records+` WHERE id = $1`, r.ID).Scan(&one)
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q", memory.ErrNotFound, r.ID)
		}
		if err != nil {
			return err
		}
	}
	return s.write(ctx, "update record", dim, 1, func(ctx context.Context, tx pgx.Tx) error {
		args := w.args()
		q := s.q.updateVec
		if w.vec == nil {
			q, args = s.q.updateKeep, args[:10]
		}
		tag, err := tx.Exec(ctx, q, args...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %q", memory.ErrNotFound, r.ID)
		}
		return nil
	}, nil)
}

// where builds SQL predicates; args are numbered from len(*args)+1.
type where struct {
	conds []string
	args  []any
}

func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

func (w *where) scope(prefix string) {
	if prefix == "" {
		return
	}
	p := w.arg(prefix)
	w.conds = append(w.conds, fmt.Sprintf(`(scope = %[1]s OR (scope >= (%[1]s || '/') COLLATE "C" AND scope < (%[1]s || '0') COLLATE "C"))`, p))
}

func (w *where) categories(cats []string) {
	if len(cats) > 0 {
		w.conds = append(w.conds, `categories && `+w.arg(cats)+`::text[]`)
	}
}

func (w *where) metadata(m map[string]any) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b, err := json.Marshal(m[k])
		if err != nil {
			return fmt.Errorf("%w: metadata filter value of %q: %v", memory.ErrInvalidArgument, k, err)
		}
		w.conds = append(w.conds, `meta -> `+w.arg(k)+` = `+w.arg(string(b))+`::jsonb`)
	}
	return nil
}

func (w *where) privacy(p *string) {
	if p == nil {
		return
	}
	if *p == "" {
		w.conds = append(w.conds, `NOT private`)
		return
	}
	w.conds = append(w.conds, `(NOT private OR source = `+w.arg(*p)+`)`)
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// scanRecord reads recordCols (+ embedding when withVec).
func scanRecord(rows pgx.Rows, withVec bool, extra ...any) (memory.Record, int64, error) {
	var (
		r        memory.Record
		rid      int64
		meta     string
		src      *string
		vec      *pgvector.Vector
		created  time.Time
		accessed time.Time
	)
	dest := []any{&rid, &r.ID, &r.Content, &r.Scope, &r.Categories, &meta, &r.Importance, &created, &accessed, &src, &r.Private}
	if withVec {
		dest = append(dest, &vec)
	}
	dest = append(dest, extra...)
	if err := rows.Scan(dest...); err != nil {
		return r, 0, err
	}
	r.Metadata = json.RawMessage(meta)
	r.CreatedAt, r.LastAccessed = created.UTC(), accessed.UTC()
	if src != nil {
		r.Source = *src
	}
	if r.Categories == nil {
		r.Categories = []string{}
	}
	if vec != nil {
		r.Embedding = vec.Slice()
	}
	return r, rid, nil
}

// maxEfSearch is pgvector's largest hnsw.ef_search.
const maxEfSearch = 1000

// exactFilteredMax is the estimated number of records matching a filter
// under which a filtered search the index could not fill scans them exactly
// instead of searching the index again with a wider candidate list.
const exactFilteredMax = 2000

// exactCheckEvery is how often the vector count that picks exact scans or
// the index is refreshed.
const exactCheckEvery = 5 * time.Second

// useIndex reports whether searches should use the HNSW index.
func (s *Store) useIndex(ctx context.Context, dim int) bool {
	if s.opts.ExactBelow < 0 || dim > maxIndexDim {
		return false
	}
	if time.Now().UnixNano()-s.vecsAt.Load() > int64(exactCheckEvery) {
		ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
		defer cancel()
		var n int64
		// The planner's row estimate when it is already over the threshold
		// (free); else a count bounded by the threshold.
		err := s.pool.QueryRow(ctx, `SELECT CASE WHEN c.reltuples >= $1 THEN c.reltuples::bigint
 ELSE (SELECT count(*) FROM (SELECT 1 FROM `+s.q.records+` WHERE embedding IS NOT NULL LIMIT $1) t) END
 FROM pg_class c WHERE c.oid = $2::regclass`, s.opts.ExactBelow, s.q.records).Scan(&n)
		if err == nil {
			s.vecs.Store(n)
			s.vecsAt.Store(time.Now().UnixNano())
		}
	}
	return s.vecs.Load() >= int64(s.opts.ExactBelow)
}

// Search returns the records nearest to q.Vector, best first; filters apply
// before top-k. Scores follow Options.Metric as in the embedded store.
func (s *Store) Search(ctx context.Context, q memory.Query) ([]memory.Match, error) {
	if q.Limit < 0 {
		return nil, fmt.Errorf("%w: limit must be >= 0, got %d", memory.ErrInvalidArgument, q.Limit)
	}
	if math.IsNaN(q.MinScore) {
		return nil, fmt.Errorf("%w: min_score is NaN", memory.ErrInvalidArgument)
	}
	if err := memory.CheckVector(q.Vector, "query vector"); err != nil {
		return nil, err
	}
	if len(q.Vector) == 0 {
		return nil, fmt.Errorf("%w: search needs a non-empty query vector", memory.ErrInvalidArgument)
	}
	prefix, err := memory.NormalizePrefix(q.ScopePrefix)
	if err != nil {
		return nil, err
	}
	if err := memory.CheckQuery(&q); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, memory.ErrClosed
	}
	dim := s.Dim()
	if dim != len(q.Vector) {
		if dim, err = s.storedDim(ctx); err != nil {
			return nil, err
		}
		s.dim.Store(int64(dim))
	}
	if dim == 0 || q.Limit == 0 {
		return []memory.Match{}, nil
	}
	if dim != len(q.Vector) {
		return nil, &memory.DimensionError{Stored: dim, Got: len(q.Vector)}
	}
	w := &where{}
	qv := w.arg(pgvector.NewVector(q.Vector))
	w.conds = append(w.conds, "embedding IS NOT NULL")
	w.scope(prefix)
	w.categories(q.Categories)
	if err := w.metadata(q.Metadata); err != nil {
		return nil, err
	}
	w.privacy(q.Privacy)
	filtered := len(w.conds) > 1 // more than "embedding IS NOT NULL"
	op := "<->"
	if s.opts.Metric == memory.Cosine {
		op = "<=>"
	}
	cols := s.q.cols
	if q.WithEmbeddings {
		cols += ", embedding"
	}
	lim := w.arg(q.Limit)
	base := `SELECT ` + cols + `, embedding ` + op + ` ` + qv + ` AS dist FROM ` + s.q.records + w.sql()
	var (
		out  []memory.Match
		rids []int64
	)
	run := func(sql string, ef int) error {
		return s.retry(ctx, "search", func(ctx context.Context) error {
			out, rids = out[:0], rids[:0]
			var (
				rows pgx.Rows
				err  error
				tx   pgx.Tx
			)
			if ef > 0 {
				// A limit over the connection's ef_search: raise it for this query.
				if tx, err = s.pool.Begin(ctx); err != nil {
					return err
				}
				defer tx.Rollback(context.WithoutCancel(ctx))
				if _, err = tx.Exec(ctx, `SELECT set_config('hnsw.ef_search', $1, true)`, strconv.Itoa(ef)); err != nil {
					return err
				}
				rows, err = tx.Query(ctx, sql, w.args...)
			} else {
				rows, err = s.pool.Query(ctx, sql, w.args...)
			}
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var d float64
				r, rid, err := scanRecord(rows, q.WithEmbeddings, &d)
				if err != nil {
					return err
				}
				out = append(out, memory.Match{Record: r, Score: s.score(d)})
				rids = append(rids, rid)
			}
			return rows.Err()
		})
	}
	if s.useIndex(ctx, dim) {
		ef := 0
		if q.Limit > s.opts.EfSearch {
			ef = min(q.Limit, maxEfSearch)
		}
		indexSQL := base + ` ORDER BY embedding ` + op + ` ` + qv + ` LIMIT ` + lim
		if err := run(indexSQL, ef); err != nil {
			return nil, err
		}
		if first := max(ef, s.opts.EfSearch); len(out) < q.Limit && len(out) > 0 && filtered {
			// A filter dropped most of the index's candidates (pgvector 0.6
			// filters after the graph search). The share that passed
			// estimates how many records match: few are cheaper to scan
			// exactly; many get one wider index search.
			sel := float64(len(out)) / float64(first)
			if sel*float64(s.vecs.Load()) > exactFilteredMax {
				if ef2 := min(maxEfSearch, int(1.5*float64(q.Limit)/sel)+1); ef2 > first {
					if err := run(indexSQL, ef2); err != nil {
						return nil, err
					}
				}
			}
		}
		if len(out) < q.Limit {
			// The index could not fill the limit (a selective filter):
			// answer exactly, as the embedded store does.
			out, rids = nil, nil
		}
	}
	if out == nil {
		if err := run(base+` ORDER BY dist, rid DESC LIMIT `+lim, 0); err != nil {
			return nil, err
		}
	}
	return finish(out, rids, q.MinScore), nil
}

// score converts a pgvector distance to the store's score convention.
func (s *Store) score(d float64) float64 {
	if s.opts.Metric == memory.Cosine {
		if math.IsNaN(d) {
			return 0 // a zero vector: the embedded store scores 0
		}
		return 1 - d
	}
	return 1 / (1 + d*d)
}

// finish drops scores under min and orders best first, newer rid first on ties.
func finish(ms []memory.Match, rids []int64, minScore float64) []memory.Match {
	idx := make([]int, 0, len(ms))
	for i := range ms {
		if ms[i].Score >= minScore {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool {
		x, y := idx[a], idx[b]
		if ms[x].Score != ms[y].Score {
			return ms[x].Score > ms[y].Score
		}
		return rids[x] > rids[y]
	})
	out := make([]memory.Match, len(idx))
	for i, j := range idx {
		out[i] = ms[j]
	}
	return out
}
