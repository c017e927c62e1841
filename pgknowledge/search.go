package pgknowledge

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode"

	"github.com/crewcore/crewcore/knowledge"
	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"
)

type row struct {
	rid                int64
	id, content, meta  string
	cos, rank          float64
	hasCos, hasKeyword bool
}

// queryWords are the words of a keyword query, as knowledge.FTSQuery
// picks them: whitespace-separated, holding a letter or digit, distinct,
// at most knowledge.MaxQueryTerms.
func queryWords(text string) []string {
	var out []string
	seen := map[string]bool{}
	for _, w := range strings.Fields(strings.ReplaceAll(text, "\x00", " ")) {
		if seen[w] || !strings.ContainsFunc(w, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }) {
			continue
		}
		seen[w] = true
		out = append(out, w)
		if len(out) == knowledge.MaxQueryTerms {
			break
		}
	}
	return out
}

// Search runs q on collection with the semantics of knowledge.Store.Search
// (keyword ranking by ts_rank_cd; see the package doc).
func (s *Store) Search(ctx context.Context, collection string, q knowledge.Query) ([]knowledge.Hit, error) {
	if err := knowledge.ValidName(collection); err != nil {
		return nil, err
	}
	if q.Limit < 0 {
		return nil, fmt.Errorf("%w: negative limit %d", knowledge.ErrInvalidArgument, q.Limit)
	}
	if math.IsNaN(q.Threshold) || q.Mode < knowledge.Vector || q.Mode > knowledge.Hybrid {
		return nil, fmt.Errorf("%w: bad threshold or mode", knowledge.ErrInvalidArgument)
	}
	filter := ""
	if q.Filter != "" && q.Filter != "{}" && q.Filter != "null" {
		var m map[string]any
		if err := json.Unmarshal([]byte(q.Filter), &m); err != nil || m == nil {
			return nil, fmt.Errorf("%w: metadata filter is not a JSON object", knowledge.ErrInvalidArgument)
		}
		filter = q.Filter
	}
	if q.Mode != knowledge.Keyword {
		if len(q.Vector) == 0 {
			return nil, fmt.Errorf("%w: %s search needs a query embedding", knowledge.ErrInvalidArgument, q.Mode)
		}
		for i, x := range q.Vector {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%w: query embedding component %d is %v", knowledge.ErrInvalidArgument, i, x)
			}
		}
	}
	cid, dim, err := s.collection(ctx, s.pool, collection)
	if err != nil {
		return nil, err
	}
	if q.Mode != knowledge.Keyword && len(q.Vector) != dim {
		return nil, &knowledge.DimensionError{Collection: collection, Stored: dim, Got: len(q.Vector)}
	}
	if q.Limit == 0 {
		return []knowledge.Hit{}, nil
	}
	k := q.RRFK
	if k <= 0 {
		k = knowledge.DefaultRRFK
	}
	var vec any
	if q.Mode != knowledge.Keyword {
		vec = pgvector.NewVector(q.Vector)
	}
	depth := q.Limit
	if q.Mode == knowledge.Hybrid {
		depth = max(50, 2*q.Limit)
	}
	var vl, kl []row
	if q.Mode != knowledge.Keyword {
		if vl, err = s.vectorRows(ctx, cid, vec, filter, depth); err != nil {
			return nil, fmt.Errorf("knowledge %s: vector search: %w", collection, err)
		}
	}
	if q.Mode != knowledge.Vector {
		if kl, err = s.keywordRows(ctx, cid, q.Text, vec, filter, depth); err != nil {
			return nil, fmt.Errorf("knowledge %s: keyword search: %w", collection, err)
		}
	}
	keep := func(score float64) bool { return q.Threshold <= 0 || score >= q.Threshold }
	var hits []knowledge.Hit
	hit := func(r row, score, vs, ks float64) knowledge.Hit {
		return knowledge.Hit{ID: r.id, Content: r.content, Metadata: r.meta, Score: score, VectorScore: vs, KeywordScore: ks}
	}
	switch q.Mode {
	case knowledge.Vector:
		for _, r := range vl {
			if vs := cosScore(r.cos); keep(vs) {
				hits = append(hits, hit(r, vs, vs, -1))
			}
		}
	case knowledge.Keyword:
		for _, r := range kl {
			if keep(r.rank) {
				hits = append(hits, hit(r, r.rank, -1, r.rank))
			}
		}
	case knowledge.Hybrid:
		byRid := map[int64]row{}
		vr := make([]knowledge.Ranked, len(vl))
		for i, r := range vl {
			byRid[r.rid] = r
			vr[i] = knowledge.Ranked{Key: r.rid, VectorScore: cosScore(r.cos), KeywordScore: -1}
		}
		kr := make([]knowledge.Ranked, len(kl))
		for i, r := range kl {
			byRid[r.rid] = r
			kr[i] = knowledge.Ranked{Key: r.rid, VectorScore: cosScore(r.cos), KeywordScore: r.rank}
		}
		for _, f := range knowledge.Fuse(vr, kr, q.Limit, k, q.Threshold) {
			hits = append(hits, hit(byRid[f.Key], f.Score, f.VectorScore, f.KeywordScore))
		}
	}
	if hits == nil {
		hits = []knowledge.Hit{}
	}
	return hits, nil
}

func cosScore(cos float64) float64 {
	if math.IsNaN(cos) {
		cos = 0 // a zero vector
	}
	return min(1, max(0, 0.5+0.5*cos))
}

func (s *Store) vectorRows(ctx context.Context, cid int64, vec any, filter string, n int) ([]row, error) {
	q := `SELECT rid, id, content, metadata::text, 1 - (embedding <=> $2) FROM ` + s.t("chunks") + ` WHERE coll = $1`
	args := []any{cid, vec}
	if filter != "" {
		q += ` AND metadata @> $3::jsonb`
		args = append(args, filter)
	}
	q += fmt.Sprintf(` ORDER BY embedding <=> $2, rid LIMIT %d`, n)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		var cos *float64
		err := r.Scan(&x.rid, &x.id, &x.content, &x.meta, &cos)
		if cos != nil {
			x.cos = *cos
		}
		x.hasCos = true
		return x, err
	})
}

// keywordRows returns up to n matches, best first, with ranks normalized to
// 0.5 + 0.5*r/rmax and (when vec is given) their cosine.
func (s *Store) keywordRows(ctx context.Context, cid int64, text string, vec any, filter string, n int) ([]row, error) {
	words := queryWords(text)
	if len(words) == 0 {
		return nil, nil
	}
	args := []any{cid}
	parts := make([]string, len(words))
	for i, w := range words {
		args = append(args, w)
		parts[i] = fmt.Sprintf(`phraseto_tsquery('simple', $%d)`, len(args))
	}
	cosExpr := `NULL::float8`
	if vec != nil {
		args = append(args, vec)
		cosExpr = fmt.Sprintf(`1 - (embedding <=> $%d)`, len(args))
	}
	where := ``
	if filter != "" {
		args = append(args, filter)
		where = fmt.Sprintf(` AND metadata @> $%d::jsonb`, len(args))
	}
	q := `WITH tq AS (SELECT ` + strings.Join(parts, ` || `) + ` AS q)
		SELECT rid, id, content, metadata::text, ts_rank_cd(tsv, tq.q)::float8, ` + cosExpr + `
		FROM ` + s.t("chunks") + `, tq WHERE coll = $1 AND tsv @@ tq.q` + where +
		fmt.Sprintf(` ORDER BY 5 DESC, rid LIMIT %d`, n)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		var cos *float64
		err := r.Scan(&x.rid, &x.id, &x.content, &x.meta, &x.rank, &cos)
		if cos != nil {
			x.cos, x.hasCos = *cos, true
		}
		x.hasKeyword = true
		return x, err
	})
	if err != nil || len(out) == 0 {
		return out, err
	}
	rmax := out[0].rank
	for i := range out {
		if rmax > 0 {
			out[i].rank = 0.5 + 0.5*out[i].rank/rmax
		} else {
			out[i].rank = 1
		}
	}
	return out, nil
}
