package knowledge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

func chunkOf(text string, v []float32) Chunk {
	h := sha256.Sum256([]byte(text))
	return Chunk{ID: hex.EncodeToString(h[:]), Content: text, Embedding: v}
}

func randVec(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// clustered makes n vectors in n/10 tight clusters: the top-k of a query
// near a cluster are near-ties, the hard case for a quantized first pass.
func clustered(r *rand.Rand, n, dim int) [][]float32 {
	centers := make([][]float32, max(1, n/10))
	for i := range centers {
		centers[i] = randVec(r, dim)
	}
	out := make([][]float32, n)
	for i := range out {
		c := centers[r.IntN(len(centers))]
		v := make([]float32, dim)
		for j := range v {
			v[j] = c[j] + 0.05*float32(r.NormFloat64())
		}
		out[i] = v
	}
	return out
}

func openT(t *testing.T, path string, o *Options) *Store {
	t.Helper()
	s, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// bruteTop is the reference: float64 cosine over every vector, ties by
// insertion order.
func bruteTop(vs [][]float32, q []float32, k int) []int {
	type p struct {
		i   int
		cos float64
	}
	var all []p
	qn := normalize(q)
	for i, v := range vs {
		vn := normalize(v)
		var d float64
		for j := range vn {
			d += float64(vn[j]) * float64(qn[j])
		}
		all = append(all, p{i, d})
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].cos > all[b].cos })
	out := []int{}
	for _, x := range all[:min(k, len(all))] {
		out = append(out, x.i)
	}
	return out
}

func TestVectorSearchEqualsExactScan(t *testing.T) {
	cases := []struct {
		name   string
		n, dim int
		gen    func(r *rand.Rand, n, dim int) [][]float32
		k      int
	}{
		{"small-random", 300, 16, func(r *rand.Rand, n, dim int) [][]float32 {
			out := make([][]float32, n)
			for i := range out {
				out[i] = randVec(r, dim)
			}
			return out
		}, 5},
		{"int8-pass-random", 6000, 64, func(r *rand.Rand, n, dim int) [][]float32 {
			out := make([][]float32, n)
			for i := range out {
				out[i] = randVec(r, dim)
			}
			return out
		}, 10},
		{"int8-pass-clustered", 8000, 96, clustered, 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tc.n)))
			s := openT(t, filepath.Join(t.TempDir(), "k.db"), nil)
			vs := tc.gen(r, tc.n, tc.dim)
			chunks := make([]Chunk, len(vs))
			for i, v := range vs {
				chunks[i] = chunkOf(fmt.Sprintf("chunk %d", i), v)
			}
			if n, err := s.Save(context.Background(), "c", chunks); err != nil || n != len(vs) {
				t.Fatalf("save: %d %v", n, err)
			}
			mismatch := 0
			for qi := 0; qi < 30; qi++ {
				q := vs[r.IntN(len(vs))]
				q = append([]float32(nil), q...)
				for j := range q {
					q[j] += 0.02 * float32(r.NormFloat64())
				}
				hits, err := s.Search(context.Background(), "c", Query{Vector: q, Limit: tc.k})
				if err != nil {
					t.Fatal(err)
				}
				want := bruteTop(vs, q, tc.k)
				if len(hits) != len(want) {
					t.Fatalf("got %d hits, want %d", len(hits), len(want))
				}
				for i, h := range hits {
					if h.Content != fmt.Sprintf("chunk %d", want[i]) {
						// a float32 vs float64 near-tie may swap neighbours;
						// the score must then be equal to float32 precision
						wv := normalize(vs[want[i]])
						qn := normalize(q)
						var d float64
						for j := range wv {
							d += float64(wv[j]) * float64(qn[j])
						}
						if math.Abs(cosScore(float32(d))-h.Score) > 1e-5 {
							t.Fatalf("query %d rank %d: got %q (%.7f), exact scan has chunk %d (%.7f)", qi, i, h.Content, h.Score, want[i], cosScore(float32(d)))
						}
						mismatch++
					}
				}
			}
			if mismatch > 4 {
				t.Fatalf("%d near-tie swaps: too many", mismatch)
			}
		})
	}
}

func TestSaveDedupAndDimension(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "k.db"), nil)
	a := chunkOf("alpha", []float32{1, 0, 0})
	b := chunkOf("beta", []float32{0, 1, 0})
	if n, err := s.Save(ctx, "c", []Chunk{a, b}); err != nil || n != 2 {
		t.Fatalf("first save: %d %v", n, err)
	}
	if n, err := s.Save(ctx, "c", []Chunk{a, b, chunkOf("gamma", []float32{0, 0, 1})}); err != nil || n != 1 {
		t.Fatalf("re-save: %d %v (want 1 added)", n, err)
	}
	miss, err := s.Missing(ctx, "c", []string{a.ID, "nope", a.ID, "nope"})
	if err != nil || len(miss) != 1 || miss[0] != "nope" {
		t.Fatalf("missing: %v %v", miss, err)
	}
	_, err = s.Save(ctx, "c", []Chunk{chunkOf("delta", []float32{1, 2})})
	var de *DimensionError
	if !errors.As(err, &de) || de.Stored != 3 || de.Got != 2 {
		t.Fatalf("want a DimensionError 3/2, got %v", err)
	}
	_, err = s.Search(ctx, "c", Query{Vector: []float32{1, 2, 3, 4}, Limit: 3})
	if !errors.As(err, &de) || de.Stored != 3 || de.Got != 4 {
		t.Fatalf("search: want a DimensionError 3/4, got %v", err)
	}
	infos, err := s.Collections(ctx)
	if err != nil || len(infos) != 1 || infos[0].Chunks != 3 || infos[0].Dim != 3 || !infos[0].Indexed {
		t.Fatalf("collections: %+v %v", infos, err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "k.db"), nil)
	if _, err := s.Save(ctx, "c", []Chunk{chunkOf("keep me", []float32{1, 1})}); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", MaxChunkBytes+1)
	cases := []struct {
		name  string
		coll  string
		chunk Chunk
		want  error
	}{
		{"empty", "c", chunkOf("", []float32{1, 1}), ErrInvalidDocument},
		{"blank", "c", chunkOf(" \n\t", []float32{1, 1}), ErrInvalidDocument},
		{"nul", "c", chunkOf("a\x00b", []float32{1, 1}), ErrInvalidDocument},
		{"bad-utf8", "c", chunkOf("a\xffb", []float32{1, 1}), ErrInvalidDocument},
		{"too-large", "c", chunkOf(big, []float32{1, 1}), ErrInvalidDocument},
		{"no-embedding", "c", chunkOf("x", nil), ErrInvalidDocument},
		{"nan", "c", chunkOf("x", []float32{float32(math.NaN()), 1}), ErrInvalidDocument},
		{"inf", "c", chunkOf("x", []float32{float32(math.Inf(1)), 1}), ErrInvalidDocument},
		{"bad-meta", "c", Chunk{ID: "m", Content: "x", Metadata: "[1]", Embedding: []float32{1, 1}}, ErrInvalidDocument},
		{"empty-name", "", chunkOf("x", []float32{1, 1}), ErrInvalidArgument},
		{"control-name", "a\nb", chunkOf("x", []float32{1, 1}), ErrInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// a good chunk in the same batch is not stored either
			_, err := s.Save(ctx, tc.coll, []Chunk{chunkOf("good "+tc.name, []float32{1, 0}), tc.chunk})
			if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
		})
	}
	infos, _ := s.Collections(ctx)
	if len(infos) != 1 || infos[0].Chunks != 1 {
		t.Fatalf("a refused batch changed the store: %+v", infos)
	}
	if _, err := s.Search(ctx, "nope", Query{Vector: []float32{1, 1}, Limit: 1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown collection: %v", err)
	}
	if _, err := s.Search(ctx, "c", Query{Vector: []float32{1, 1}, Limit: -1}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("negative limit: %v", err)
	}
	if _, err := s.Search(ctx, "c", Query{Vector: []float32{1, 1}, Limit: 1, Filter: "[]"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad filter: %v", err)
	}
	if _, err := ParseMode("fuzzy"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad mode: %v", err)
	}
	// a foreign SQLite file and a non-SQLite file are refused untouched
	junk := filepath.Join(t.TempDir(), "junk.db")
	os.WriteFile(junk, []byte("not sqlite at all, not at all, really not"), 0o644)
	if _, err := Open(junk, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("junk file: %v", err)
	}
}

func TestKeywordAndHybrid(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "k.db"), nil)
	docs := []string{
		"The warranty of part KX-48213 lasts two years.",
		"Our return policy allows returns within thirty days.",
		"Part ZQ-11 is a spare gasket for the pump.",
		"The pump warranty covers the motor and the gasket.",
	}
	var chunks []Chunk
	for i, d := range docs {
		v := make([]float32, 4)
		v[i] = 1
		c := chunkOf(d, v)
		c.Metadata = fmt.Sprintf(`{"n": %d, "kind": "%s"}`, i, []string{"a", "b"}[i%2])
		chunks = append(chunks, c)
	}
	if _, err := s.Save(ctx, "c", chunks); err != nil {
		t.Fatal(err)
	}
	hits, err := s.Search(ctx, "c", Query{Mode: Keyword, Text: "warranty for KX-48213?", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	// doc 0 has the code; doc 3 "warranty"; doc 2 "for"
	if len(hits) != 3 || hits[0].Content != docs[0] || hits[0].Score != 1 || hits[0].VectorScore != -1 {
		t.Fatalf("keyword: %+v", hits)
	}
	for _, h := range hits[1:] {
		if h.Content == docs[1] || h.Score <= 0.5 || h.Score >= 1 {
			t.Fatalf("keyword scores: %+v", hits)
		}
	}
	// filter: only kind b (docs 1 and 3)
	hits, err = s.Search(ctx, "c", Query{Mode: Keyword, Text: "warranty", Limit: 5, Filter: `{"kind": "b"}`})
	if err != nil || len(hits) != 1 || hits[0].Content != docs[3] {
		t.Fatalf("filtered keyword: %+v %v", hits, err)
	}
	hits, err = s.Search(ctx, "c", Query{Vector: []float32{0, 0, 1, 0}, Limit: 5, Filter: `{"n": 2.0}`})
	if err != nil || len(hits) != 1 || hits[0].Content != docs[2] || hits[0].Score != 1 {
		t.Fatalf("numeric filter: %+v %v", hits, err)
	}
	// hybrid: the vector points at doc 1; the code is in doc 0, found by keyword
	hits, err = s.Search(ctx, "c", Query{Mode: Hybrid, Text: "KX-48213", Vector: []float32{0.1, 1, 0, 0}, Limit: 2})
	if err != nil || len(hits) != 2 {
		t.Fatalf("hybrid: %+v %v", hits, err)
	}
	got := map[string]bool{hits[0].Content: true, hits[1].Content: true}
	if !got[docs[0]] || !got[docs[1]] {
		t.Fatalf("hybrid misses the keyword or the vector winner: %+v", hits)
	}
	// threshold: vector mode keeps cos >= 0.2 at 0.6
	hits, err = s.Search(ctx, "c", Query{Vector: []float32{1, 0.3, 0, 0}, Limit: 4, Threshold: 0.6})
	if err != nil || len(hits) != 2 {
		t.Fatalf("threshold: %+v %v", hits, err)
	}
	for _, h := range hits {
		if h.Score < 0.6 {
			t.Fatalf("a hit under the threshold: %+v", h)
		}
	}
	if hits, _ := s.Search(ctx, "c", Query{Mode: Keyword, Text: "?? !!", Limit: 4}); len(hits) != 0 {
		t.Fatalf("a query without words matched: %+v", hits)
	}
}

func TestOtherWritersAndReset(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	a := openT(t, path, nil)
	b := openT(t, path, nil) // a second Store on the file stands for another process
	if _, err := a.Save(ctx, "c", []Chunk{chunkOf("one", []float32{1, 0})}); err != nil {
		t.Fatal(err)
	}
	if hits, err := b.Search(ctx, "c", Query{Vector: []float32{1, 0}, Limit: 5}); err != nil || len(hits) != 1 {
		t.Fatalf("b sees a's chunk: %+v %v", hits, err)
	}
	if _, err := a.Save(ctx, "c", []Chunk{chunkOf("two", []float32{0, 1})}); err != nil {
		t.Fatal(err)
	}
	if hits, err := b.Search(ctx, "c", Query{Vector: []float32{1, 0}, Limit: 5}); err != nil || len(hits) != 2 {
		t.Fatalf("b sees a's second chunk: %+v %v", hits, err)
	}
	if ok, err := a.Reset(ctx, "c"); err != nil || !ok {
		t.Fatalf("reset: %v %v", ok, err)
	}
	if _, err := b.Search(ctx, "c", Query{Vector: []float32{1, 0}, Limit: 5}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("b after reset: %v", err)
	}
	// a new collection of the same name may have another dimension
	if _, err := b.Save(ctx, "c", []Chunk{chunkOf("three", []float32{0, 1, 0})}); err != nil {
		t.Fatal(err)
	}
	if hits, err := a.Search(ctx, "c", Query{Mode: Hybrid, Text: "three", Vector: []float32{0, 1, 0}, Limit: 5}); err != nil || len(hits) != 1 || hits[0].Content != "three" {
		t.Fatalf("a after re-create: %+v %v", hits, err)
	}
	if ok, err := a.Reset(ctx, "nope"); err != nil || ok {
		t.Fatalf("reset of an unknown collection: %v %v", ok, err)
	}
}

func TestWithoutFTSQueuesForIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	no := openT(t, path, &Options{NoFTS: true})
	if _, err := no.Save(ctx, "c", []Chunk{chunkOf("needle KX-1 here", []float32{1, 0}), chunkOf("hay", []float32{0, 1})}); err != nil {
		t.Fatal(err)
	}
	if hits, err := no.Search(ctx, "c", Query{Vector: []float32{1, 0}, Limit: 1}); err != nil || len(hits) != 1 {
		t.Fatalf("vector search without FTS5: %+v %v", hits, err)
	}
	if _, err := no.Search(ctx, "c", Query{Mode: Keyword, Text: "needle", Limit: 1}); !errors.Is(err, ErrNoFTS) {
		t.Fatalf("keyword without FTS5: %v", err)
	}
	infos, _ := no.Collections(ctx)
	if infos[0].Indexed {
		t.Fatalf("collection reported indexed: %+v", infos)
	}
	yes := openT(t, path, nil)
	hits, err := yes.Search(ctx, "c", Query{Mode: Keyword, Text: "KX-1", Limit: 5})
	if err != nil || len(hits) != 1 || hits[0].Content != "needle KX-1 here" {
		t.Fatalf("keyword after indexing the queue: %+v %v", hits, err)
	}
	if _, err := no.Save(ctx, "c", []Chunk{chunkOf("another needle", []float32{1, 1})}); err != nil {
		t.Fatal(err)
	}
	hits, err = yes.Search(ctx, "c", Query{Mode: Keyword, Text: "needle", Limit: 5})
	if err != nil || len(hits) != 2 {
		t.Fatalf("queued chunk indexed: %+v %v", hits, err)
	}
	infos, _ = yes.Collections(ctx)
	if !infos[0].Indexed || infos[0].Chunks != 3 {
		t.Fatalf("after indexing: %+v", infos)
	}
}

func TestConcurrentSaveSearchReset(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	stores := []*Store{openT(t, path, nil), openT(t, path, nil)}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			s := stores[w%2]
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; i < 40; i++ {
				switch r.IntN(4) {
				case 0, 1:
					if _, err := s.Save(ctx, "c", []Chunk{chunkOf(fmt.Sprintf("w%d doc %d", w, i), randVec(r, 8))}); err != nil {
						errs <- err
					}
				case 2:
					_, err := s.Search(ctx, "c", Query{Mode: Hybrid, Text: "doc", Vector: randVec(r, 8), Limit: 3})
					if err != nil && !errors.Is(err, ErrNotFound) {
						errs <- err
					}
				case 3:
					if i%10 == 0 {
						if _, err := s.Reset(ctx, "c"); err != nil {
							errs <- err
						}
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestFTSQuery(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"  ?? !! ", ""},
		{"warranty KX-48213", `"warranty" OR "KX-48213"`},
		{`say "hi" hi`, `"say" OR """hi""" OR "hi"`},
		{"a a b", `"a" OR "b"`},
	}
	for _, tc := range cases {
		if got := FTSQuery(tc.in); got != tc.want {
			t.Errorf("FTSQuery(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzFTSQuery: whatever the text, the query is valid FTS5 syntax (it
// runs) and never matches a chunk with none of the query's words.
func FuzzFTSQuery(f *testing.F) {
	for _, s := range []string{"", "a", `"`, `a"b`, "NEAR(a b)", "a AND b OR NOT c", "x* ^y", "-z", "κ λ", "a\x00b", "(((", "col:x"} {
		f.Add(s)
	}
	s, err := Open(filepath.Join(f.TempDir(), "k.db"), nil)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Save(ctx, "c", []Chunk{chunkOf("zzzunmatchable", []float32{1})}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if strings.Contains(strings.ToLower(text), "zzzunmatchable") {
			return
		}
		hits, err := s.Search(ctx, "c", Query{Mode: Keyword, Text: text, Limit: 3})
		if err != nil {
			t.Fatalf("query %q (%q): %v", text, FTSQuery(text), err)
		}
		if len(hits) != 0 {
			t.Fatalf("query %q matched %+v", text, hits)
		}
	})
}
