package knowledge

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/crewcore/crewcore/internal/vec"
	"github.com/crewcore/crewcore/sqlitedb"
)

// coll is the in-memory state of one collection: its vectors normalized to
// unit length in one float32 arena, their int8 codes with the dequantizing
// scale and the norm of the quantization error of every vector (the bound
// that keeps the int8 pass exact), and per chunk its row id and metadata.
// Chunks are only ever appended (a reset drops the collection, and a new one
// gets a new id), so a refresh reads the rows past the last row id seen.
type coll struct {
	id      int64
	name    string
	dim     int
	lastRid int64

	vecs   []float32
	codes  []int8
	scales []float32
	errs   []float32
	maxErr float32 // the largest of errs

	// the 2-bit codes of the first pass (vec.QuantizeU2, u2Stride bytes a
	// row), their steps, and per row the norm of the decoded code |v'| and
	// of its error |v - v'|, both rounded up, with their maxima
	u2Stride  int
	u2        []uint8
	u2Delta   []float32
	u2Norm    []float32
	u2Err     []float32
	u2MaxNorm float32
	u2MaxErr  float32
	rids      []int64
	metas     []map[string]any // nil: {}
	pos       map[int64]int32  // rid -> row
}

func (c *coll) n() int { return len(c.rids) }

// sync brings the state up to date with the file when another write
// (of this process or another) committed since the last look.
func (s *Store) sync(ctx context.Context) error {
	var seq int64
	if err := s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		return r.QueryRow(`SELECT seq FROM writes WHERE id = 0`).Scan(&seq)
	}); err != nil {
		return fmt.Errorf("knowledge store %s: read write counter: %w", s.db.Path(), err)
	}
	s.mu.RLock()
	same := seq == s.seq
	s.mu.RUnlock()
	if same {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("knowledge store %s: %w", s.db.Path(), ErrClosed)
	}
	if seq == s.seq {
		return nil
	}
	names := map[string]int64{}
	dims := map[int64]int{}
	err := s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		clear(names)
		rows, err := r.Query(`SELECT id, name, dim FROM collections`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			var name string
			var dim int
			if err := rows.Scan(&id, &name, &dim); err != nil {
				return err
			}
			names[name] = id
			dims[id] = dim
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("knowledge store %s: read collections: %w", s.db.Path(), err)
	}
	for id := range s.colls {
		if _, ok := dims[id]; !ok {
			delete(s.colls, id)
		}
	}
	for _, c := range s.colls {
		if err := s.loadNew(ctx, c); err != nil {
			return err
		}
	}
	s.names = names
	s.seq = seq
	return nil
}

// state returns the loaded state of collection name (loading it on first
// use), or ErrNotFound.
func (s *Store) state(ctx context.Context, name string) (*coll, error) {
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	s.mu.RLock()
	id, ok := s.names[name]
	c := s.colls[id]
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("knowledge store %s: %w", s.db.Path(), ErrClosed)
	}
	if !ok {
		return nil, fmt.Errorf("knowledge collection %q: %w", name, ErrNotFound)
	}
	if c != nil {
		return c, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.colls[id]; c != nil {
		return c, nil
	}
	c = &coll{id: id, name: name, pos: map[int64]int32{}}
	if err := s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		return r.QueryRow(`SELECT dim FROM collections WHERE id = ?`, id).Scan(&c.dim)
	}); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("knowledge collection %q: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("knowledge collection %q: %w", name, err)
	}
	if err := s.loadNew(ctx, c); err != nil {
		return nil, err
	}
	s.colls[id] = c
	return c, nil
}

// loadNew appends the chunks of c stored after c.lastRid. It runs with
// s.mu held for writing, so searches never see a half-appended state.
func (s *Store) loadNew(ctx context.Context, c *coll) error {
	err := s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		rows, err := r.Query(`SELECT rid, metadata, embedding FROM chunks WHERE coll = ? AND rid > ? ORDER BY rid`, c.id, c.lastRid)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var rid int64
			var meta string
			var emb []byte
			if err := rows.Scan(&rid, &meta, &emb); err != nil {
				return err
			}
			if err := c.add(rid, meta, emb); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("knowledge collection %q: load chunks: %w", c.name, err)
	}
	return nil
}

func (c *coll) add(rid int64, meta string, emb []byte) error {
	if len(emb) != 4*c.dim {
		return fmt.Errorf("%w: chunk row %d has a %d-byte embedding, the collection is %d-dimensional", ErrCorrupt, rid, len(emb), c.dim)
	}
	if _, dup := c.pos[rid]; dup {
		return nil
	}
	start := len(c.vecs)
	c.vecs = append(c.vecs, make([]float32, c.dim)...)
	v := c.vecs[start:]
	var norm float64
	for i := range v {
		x := math.Float32frombits(binary.LittleEndian.Uint32(emb[4*i:]))
		v[i] = x
		norm += float64(x) * float64(x)
	}
	if norm > 0 {
		inv := 1 / math.Sqrt(norm)
		for i := range v {
			v[i] = float32(float64(v[i]) * inv)
		}
	}
	c.codes = append(c.codes, make([]int8, c.dim)...)
	code := c.codes[len(c.codes)-c.dim:]
	scale := vec.QuantizeInt8(v, code)
	var e float64
	for i, x := range v {
		d := float64(x) - float64(scale)*float64(code[i])
		e += d * d
	}
	c.addU2(v)
	c.scales = append(c.scales, scale)
	c.errs = append(c.errs, float32(math.Sqrt(e)))
	c.maxErr = max(c.maxErr, c.errs[len(c.errs)-1])
	var m map[string]any
	if meta != "" && meta != "{}" {
		mm, err := decodeObject(meta)
		if err != nil {
			return fmt.Errorf("%w: chunk row %d: metadata: %v", ErrCorrupt, rid, err)
		}
		if len(mm) > 0 {
			m = mm
		}
	}
	c.metas = append(c.metas, m)
	c.pos[rid] = int32(len(c.rids))
	c.rids = append(c.rids, rid)
	if rid > c.lastRid {
		c.lastRid = rid
	}
	return nil
}

// addU2 appends the 2-bit code of the unit vector v with its step and the
// rounded-up norms |v'| and |v - v'| the first pass's bound needs.
func (c *coll) addU2(v []float32) {
	if c.u2Stride == 0 {
		c.u2Stride = vec.U2Stride(c.dim)
	}
	c.u2 = append(c.u2, make([]uint8, c.u2Stride)...)
	code := c.u2[len(c.u2)-c.u2Stride:]
	d := vec.QuantizeU2(v, code)
	var nn, ee float64
	for i, x := range v {
		y := vec.U2Value(vec.U2Code(code, i), d)
		nn += y * y
		r := float64(x) - y
		ee += r * r
	}
	n, e := up32(math.Sqrt(nn)), up32(math.Sqrt(ee))
	c.u2Delta = append(c.u2Delta, d)
	c.u2Norm = append(c.u2Norm, n)
	c.u2Err = append(c.u2Err, e)
	c.u2MaxNorm = max(c.u2MaxNorm, n)
	c.u2MaxErr = max(c.u2MaxErr, e)
}

// up32 is x as a float32 rounded up (a bound stays a bound).
func up32(x float64) float32 {
	f := float32(x)
	if float64(f) < x {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

// decodeObject decodes a JSON object, keeping numbers as json.Number.
func decodeObject(s string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	return m, nil
}

// matches reports whether metadata m has every key of filter with an equal
// JSON value (numbers compare by value: 1 == 1.0; true is not 1).
func matches(m, filter map[string]any) bool {
	for k, want := range filter {
		got, ok := m[k]
		if !ok || !jsonEqual(got, want) {
			return false
		}
	}
	return true
}

func jsonEqual(a, b any) bool {
	switch av := a.(type) {
	case nil:
		return b == nil
	case bool:
		bv, ok := b.(bool)
		return ok && av == bv
	case string:
		bv, ok := b.(string)
		return ok && av == bv
	case json.Number:
		bv, ok := b.(json.Number)
		if !ok {
			return false
		}
		if av == bv {
			return true
		}
		x, err1 := av.Float64()
		y, err2 := bv.Float64()
		return err1 == nil && err2 == nil && x == y
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !jsonEqual(av[i], bv[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, x := range av {
			y, ok := bv[k]
			if !ok || !jsonEqual(x, y) {
				return false
			}
		}
		return true
	}
	return false
}
