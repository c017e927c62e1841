package knowledge

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode"

	"github.com/crewcore/crewcore/internal/vec"
	"github.com/crewcore/crewcore/sqlitedb"
)

// Mode is a search mode.
type Mode int

// The search modes.
const (
	// Vector ranks by cosine similarity to the query embedding (exact).
	Vector Mode = iota
	// Keyword ranks by BM25 over the collection's FTS5 index.
	Keyword
	// Hybrid fuses the Vector and Keyword rankings by their reciprocal
	// ranks 1/(k + rank): a chunk's fused score is the better of its two
	// reciprocal ranks plus hybridAgreement times the other, so the top of
	// each ranking is kept (a chunk only the keyword index finds, or only
	// the embedding, competes with the other list's best) and agreement
	// breaks ties. Keyword matches under hybridKeywordFloor stay out. The
	// plain sum of reciprocal ranks (Cormack et al.) was measured and not
	// kept: on OR-queries it lifts chunks that merely share common words
	// with the query into both lists (docs/architecture.md, "Knowledge").
	Hybrid
)

func (m Mode) String() string {
	switch m {
	case Keyword:
		return "keyword"
	case Hybrid:
		return "hybrid"
	default:
		return "vector"
	}
}

// ParseMode parses "vector" (or ""), "keyword" or "hybrid".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "vector":
		return Vector, nil
	case "keyword":
		return Keyword, nil
	case "hybrid":
		return Hybrid, nil
	}
	return 0, fmt.Errorf("%w: unknown search mode %q (want vector, keyword or hybrid)", ErrInvalidArgument, s)
}

// DefaultRRFK is the k of reciprocal-rank fusion, sum of 1/(k + rank): the
// constant of Cormack, Clarke and Buettcher (SIGIR 2009), which damps the
// weight of the first ranks so that agreement of both rankings wins.
const DefaultRRFK = 60

// hybridKeywordFloor is the keyword score (0.5 + 0.5*b/bmax) under which a
// keyword match does not enter the fusion: BM25 under a tenth of the best
// match's, typically chunks that share only common words with the query.
const hybridKeywordFloor = 0.55

// hybridAgreement weighs the second-best reciprocal rank of a chunk both
// rankings hold: a tie-break for agreement, not a sum (see Hybrid).
const hybridAgreement = 0.01

// keywordSlack is how many more rows than asked an unfiltered keyword query
// reads (matches newer than the in-memory state are skipped).
const keywordSlack = 64

// MaxQueryTerms bounds the words of a keyword query.
const MaxQueryTerms = 64

// hybridDepth is how many candidates each ranking hands to the fusion (at
// least; 2*limit when that is more).
const hybridDepth = 50

// Query is one search.
type Query struct {
	Mode Mode
	// Text is the query text (keyword and hybrid modes).
	Text string
	// Vector is the query embedding (vector and hybrid modes).
	Vector []float32
	// Limit is the most results returned (0 returns none).
	Limit int
	// Filter is a JSON object: a chunk matches when its metadata has every
	// key with an equal value. "" means no filter.
	Filter string
	// Threshold drops results scoring below it (0 keeps all).
	Threshold float64
	// RRFK is the fusion's k (0: DefaultRRFK).
	RRFK int
}

// Hit is one search result.
type Hit struct {
	ID       string
	Content  string
	Metadata string // JSON object
	// Score is the result's score in [0, 1] (see the package doc).
	Score float64
	// VectorScore is 0.5 + 0.5*cosine, or -1 when not computed (keyword mode).
	VectorScore float64
	// KeywordScore is the normalized BM25 score, or -1 when the chunk is not
	// among the keyword matches (or the mode has none).
	KeywordScore float64
}

type scored struct {
	row int32
	cos float32
}

// better orders by cosine, then older row id first.
func (c *coll) better(a, b scored) bool {
	if a.cos != b.cos {
		return a.cos > b.cos
	}
	return c.rids[a.row] < c.rids[b.row]
}

// Search runs q on collection. A collection that does not exist is
// ErrNotFound; a query vector of another dimension is a *DimensionError.
func (s *Store) Search(ctx context.Context, collection string, q Query) ([]Hit, error) {
	if err := ValidName(collection); err != nil {
		return nil, err
	}
	if q.Limit < 0 {
		return nil, fmt.Errorf("%w: negative limit %d", ErrInvalidArgument, q.Limit)
	}
	if math.IsNaN(q.Threshold) {
		return nil, fmt.Errorf("%w: score threshold is NaN", ErrInvalidArgument)
	}
	if q.Mode < Vector || q.Mode > Hybrid {
		return nil, fmt.Errorf("%w: unknown search mode %d", ErrInvalidArgument, q.Mode)
	}
	var filter map[string]any
	if q.Filter != "" && q.Filter != "{}" && q.Filter != "null" {
		f, err := decodeObject(q.Filter)
		if err != nil {
			return nil, fmt.Errorf("%w: metadata filter: %v", ErrInvalidArgument, err)
		}
		filter = f
	}
	if q.Mode != Keyword {
		if len(q.Vector) == 0 {
			return nil, fmt.Errorf("%w: %s search needs a query embedding", ErrInvalidArgument, q.Mode)
		}
		for i, x := range q.Vector {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%w: query embedding component %d is %v", ErrInvalidArgument, i, x)
			}
		}
	}
	if q.Mode != Vector && !s.fts {
		return nil, fmt.Errorf("knowledge %s: %s search: %w in this build (vector search works)", collection, q.Mode, ErrNoFTS)
	}
	c, err := s.state(ctx, collection)
	if err != nil {
		return nil, err
	}
	if q.Mode != Keyword && len(q.Vector) != c.dim {
		return nil, &DimensionError{Collection: collection, Stored: c.dim, Got: len(q.Vector)}
	}
	if q.Limit == 0 {
		return []Hit{}, nil
	}
	if q.Mode != Vector {
		if err := s.ensureIndexed(ctx, c); err != nil {
			return nil, wrapErr(collection, "index", err)
		}
	}
	k := q.RRFK
	if k <= 0 {
		k = DefaultRRFK
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	var rows []int32 // nil: every chunk
	if filter != nil {
		rows = []int32{}
		for i, m := range c.metas {
			if matches(m, filter) {
				rows = append(rows, int32(i))
			}
		}
	}
	var qn []float32
	if q.Mode != Keyword {
		qn = normalize(q.Vector)
	}
	type res struct {
		row           int32
		score, vs, ks float64
	}
	var out []res
	keep := func(r res) bool { return q.Threshold <= 0 || r.score >= q.Threshold }
	switch q.Mode {
	case Vector:
		for _, sc := range c.topVector(qn, rows, q.Limit) {
			vs := cosScore(sc.cos)
			if r := (res{row: sc.row, score: vs, vs: vs, ks: -1}); keep(r) {
				out = append(out, r)
			}
		}
	case Keyword:
		kw, err := s.keyword(ctx, c, q.Text, filter, q.Limit)
		if err != nil {
			return nil, wrapErr(collection, "keyword search", err)
		}
		for _, h := range kw {
			if r := (res{row: h.row, score: h.score, vs: -1, ks: h.score}); keep(r) {
				out = append(out, r)
			}
		}
	case Hybrid:
		depth := max(hybridDepth, 2*q.Limit)
		vl := c.topVector(qn, rows, depth)
		kl, err := s.keyword(ctx, c, q.Text, filter, depth)
		if err != nil {
			return nil, wrapErr(collection, "keyword search", err)
		}
		vr := make([]Ranked, len(vl))
		for i, sc := range vl {
			vr[i] = Ranked{Key: c.rids[sc.row], VectorScore: cosScore(sc.cos), KeywordScore: -1}
		}
		kr := make([]Ranked, 0, len(kl))
		for _, h := range kl {
			if h.score < hybridKeywordFloor {
				break
			}
			off := int(h.row) * c.dim
			kr = append(kr, Ranked{Key: c.rids[h.row], VectorScore: cosScore(vec.Dot(c.vecs[off:off+c.dim], qn)), KeywordScore: h.score})
		}
		for _, f := range Fuse(vr, kr, q.Limit, k, q.Threshold) {
			out = append(out, res{row: c.pos[f.Key], score: f.Score, vs: f.VectorScore, ks: f.KeywordScore})
		}
	}
	hits := make([]Hit, 0, len(out))
	if len(out) == 0 {
		return hits, nil
	}
	type row struct{ id, content, meta string }
	got := make(map[int64]row, len(out))
	args := make([]any, len(out))
	for i, o := range out {
		args[i] = c.rids[o.row]
	}
	query := `SELECT rid, id, content, metadata FROM chunks WHERE rid IN (?` + strings.Repeat(", ?", len(out)-1) + `)`
	err = s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		clear(got)
		rows, err := r.Query(query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var rid int64
			var x row
			if err := rows.Scan(&rid, &x.id, &x.content, &x.meta); err != nil {
				return err
			}
			got[rid] = x
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrapErr(collection, "read results", err)
	}
	for _, o := range out {
		x, ok := got[c.rids[o.row]]
		if !ok {
			continue // reset by another process since the state was read
		}
		hits = append(hits, Hit{ID: x.id, Content: x.content, Metadata: x.meta, Score: o.score, VectorScore: o.vs, KeywordScore: o.ks})
	}
	return hits, nil
}

// Ranked is one entry of a ranking handed to Fuse: a chunk (Key: its row
// id, smaller is older) with its vector score and keyword score (-1: none).
type Ranked struct {
	Key          int64
	VectorScore  float64
	KeywordScore float64
	// Score is set by Fuse: the larger of the two scores.
	Score float64
}

// Fuse is the Hybrid ranking of a vector ranking and a keyword ranking
// (each best first; keyword entries carry the chunk's vector score too):
// every chunk's fused score is the better of its reciprocal ranks 1/(k+rank)
// plus hybridAgreement times the other, keyword entries under
// hybridKeywordFloor are left out, entries scoring (the larger of their two
// scores) under threshold are dropped before ranking, and ties go to the
// higher score, then the older chunk. It returns at most limit entries.
func Fuse(vector, keyword []Ranked, limit, k int, threshold float64) []Ranked {
	type acc struct {
		r      Ranked
		rv, rk float64
	}
	by := map[int64]*acc{}
	for i, r := range vector {
		r.KeywordScore = -1
		by[r.Key] = &acc{r: r, rv: 1 / float64(k+i+1)}
	}
	for i, r := range keyword {
		if r.KeywordScore < hybridKeywordFloor {
			break // best first: the rest is weaker still
		}
		a := by[r.Key]
		if a == nil {
			a = &acc{r: r}
			by[r.Key] = a
		}
		a.r.KeywordScore = r.KeywordScore
		a.rk = 1 / float64(k+i+1)
	}
	type fused struct {
		r   Ranked
		rrf float64
	}
	var all []fused
	for _, a := range by {
		a.r.Score = max(a.r.VectorScore, a.r.KeywordScore)
		if threshold > 0 && a.r.Score < threshold {
			continue
		}
		all = append(all, fused{a.r, max(a.rv, a.rk) + hybridAgreement*min(a.rv, a.rk)})
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.rrf != b.rrf {
			return a.rrf > b.rrf
		}
		if a.r.Score != b.r.Score {
			return a.r.Score > b.r.Score
		}
		return a.r.Key < b.r.Key
	})
	out := make([]Ranked, 0, min(limit, len(all)))
	for _, f := range all[:min(limit, len(all))] {
		out = append(out, f.r)
	}
	return out
}

// cosScore is ChromaDB's cosine score as CrewAI converts it: 1 - d/2 with
// d = 1 - cos, clamped to [0, 1].
func cosScore(cos float32) float64 {
	return min(1, max(0, 0.5+0.5*float64(cos)))
}

// normalize returns v scaled to unit length (computed in float64; a zero
// vector stays zero).
func normalize(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if n == 0 {
		return out
	}
	inv := 1 / math.Sqrt(n)
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}

// topIdx returns the indexes of the k largest values (any order).
func topIdx(v []float64, k int) []int32 {
	if k >= len(v) {
		out := make([]int32, len(v))
		for i := range out {
			out[i] = int32(i)
		}
		return out
	}
	// a min-heap of the k best so far
	h := make([]int32, 0, k)
	less := func(a, b int32) bool { return v[a] < v[b] }
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= len(h) {
				return
			}
			m := l
			if r := l + 1; r < len(h) && less(h[r], h[l]) {
				m = r
			}
			if !less(h[m], h[i]) {
				return
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
	}
	for i := range v {
		if len(h) < k {
			h = append(h, int32(i))
			for j := len(h) - 1; j > 0; {
				p := (j - 1) / 2
				if !less(h[j], h[p]) {
					break
				}
				h[j], h[p] = h[p], h[j]
				j = p
			}
			continue
		}
		if v[i] > v[h[0]] {
			h[0] = int32(i)
			down(0)
		}
	}
	return h
}

type kwHit struct {
	row   int32
	score float64
}

// FTSQuery turns free text into an FTS5 query: every whitespace-separated
// word with a letter or digit becomes a quoted phrase (so "SKU-4471-B"
// matches those tokens in that order), the phrases joined by OR and ranked
// by BM25. At most MaxQueryTerms distinct words are kept; "" means no word.
// NUL counts as whitespace.
func FTSQuery(text string) string {
	var parts []string
	seen := map[string]bool{}
	// NUL would end the FTS5 query string early: it separates words here
	for _, w := range strings.Fields(strings.ReplaceAll(text, "\x00", " ")) {
		if seen[w] || !strings.ContainsFunc(w, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }) {
			continue
		}
		seen[w] = true
		parts = append(parts, `"`+strings.ReplaceAll(w, `"`, `""`)+`"`)
		if len(parts) == MaxQueryTerms {
			break
		}
	}
	return strings.Join(parts, " OR ")
}

// keyword returns up to n BM25 matches of text among the chunks of c that
// pass filter, best first, with scores 0.5 + 0.5*b/bmax. Runs with s.mu held
// for reading; matches newer than the state are left out.
func (s *Store) keyword(ctx context.Context, c *coll, text string, filter map[string]any, n int) ([]kwHit, error) {
	fq := FTSQuery(text)
	if fq == "" {
		return nil, nil
	}
	t := ftsTable(c.id)
	query := fmt.Sprintf(`SELECT rowid, -bm25(%s) FROM %s WHERE %s MATCH ? ORDER BY bm25(%s), rowid`, t, t, t, t)
	args := []any{fq}
	if filter == nil {
		// SQLite keeps only the best rows; the slack covers matches newer
		// than the state, which are skipped
		query += ` LIMIT ?`
		args = append(args, n+keywordSlack)
	}
	var out []kwHit
	err := s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		out = out[:0]
		rows, err := r.Query(query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var rid int64
			var b float64
			if err := rows.Scan(&rid, &b); err != nil {
				return err
			}
			row, ok := c.pos[rid]
			if !ok || (filter != nil && !matches(c.metas[row], filter)) {
				continue
			}
			out = append(out, kwHit{row: row, score: b})
			if len(out) == n {
				break
			}
		}
		return rows.Err()
	})
	if err != nil {
		if strings.Contains(err.Error(), "no such table: "+t) {
			return nil, fmt.Errorf("knowledge collection %q was reset during the search: %w", c.name, ErrNotFound)
		}
		return nil, err
	}
	if len(out) > 0 {
		bmax := out[0].score
		for i := range out {
			if bmax > 0 {
				out[i].score = 0.5 + 0.5*out[i].score/bmax
			} else {
				out[i].score = 1
			}
		}
	}
	return out, nil
}

// ensureIndexed builds c's FTS5 index, or indexes chunks queued for it by
// an engine without FTS5, before a keyword search.
func (s *Store) ensureIndexed(ctx context.Context, c *coll) error {
	need := false
	err := s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		var fts int
		if err := r.QueryRow(`SELECT fts FROM collections WHERE id = ?`, c.id).Scan(&fts); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil // reset meanwhile: the search finds nothing new
			}
			return err
		}
		if fts == 0 {
			need = true
			return nil
		}
		var one int
		err := r.QueryRow(`SELECT 1 FROM fts_pending p JOIN chunks k ON k.rid = p.rid WHERE k.coll = ? LIMIT 1`, c.id).Scan(&one)
		if err == nil {
			need = true
			return nil
		}
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil || !need {
		return err
	}
	return s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		var one int
		if err := tx.QueryRow(`SELECT 1 FROM collections WHERE id = ?`, c.id).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			return err
		}
		if err := s.indexTx(tx, c.id); err != nil {
			return err
		}
		return bumpTx(tx)
	})
}
