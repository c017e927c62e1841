package memory

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// benchStore fills a store with n clustered unit vectors of dim dimensions.
func benchStore(b *testing.B, n, dim int, opts *Options) (*Store, [][]float32) {
	b.Helper()
	rng := rand.New(rand.NewPCG(7, 9))
	centers := make([][]float32, 500)
	for i := range centers {
		centers[i] = randVec(rng, dim, nil, 0)
	}
	s, err := Open(filepath.Join(b.TempDir(), "m.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	for start := 0; start < n; start += 1000 {
		batch := make([]Record, 0, 1000)
		for i := start; i < min(n, start+1000); i++ {
			r := rec(fmt.Sprint(i), fmt.Sprintf("/crew/c%d", i%50), randVec(rng, dim, centers[rng.IntN(len(centers))], 0.5)...)
			r.Categories = []string{fmt.Sprintf("k%d", i%20)}
			batch = append(batch, r)
		}
		if err := s.Save(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	queries := make([][]float32, 64)
	for i := range queries {
		queries[i] = randVec(rng, dim, centers[rng.IntN(len(centers))], 0.5)
	}
	return s, queries
}

func BenchmarkSearch(b *testing.B) {
	for _, tc := range []struct {
		n, dim     int
		exactBelow int
	}{
		{10000, 3072, -1}, {10000, 3072, 1}, {100000, 1536, -1}, {100000, 1536, 1},
	} {
		name := fmt.Sprintf("n=%d/dim=%d/exact=%v", tc.n, tc.dim, tc.exactBelow < 0)
		b.Run(name, func(b *testing.B) {
			s, qs := benchStore(b, tc.n, tc.dim, &Options{ExactBelow: tc.exactBelow})
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := s.Search(ctx, Query{Vector: qs[i%len(qs)], Limit: 10}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCount(b *testing.B) {
	s, _ := benchStore(b, 2000, 64, nil)
	for b.Loop() {
		if _, err := s.Count(ctx, "/crew/c1"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSave100(b *testing.B) {
	s, _ := benchStore(b, 0, 3072, nil)
	rng := rand.New(rand.NewPCG(1, 1))
	batches := make([][]Record, 64)
	for k := range batches {
		batches[k] = make([]Record, 100)
		for j := range batches[k] {
			batches[k][j] = rec(fmt.Sprintf("x%d-%d", k, j), "/crew/new", randVec(rng, 3072, nil, 0)...)
		}
	}
	i := 0
	for b.Loop() {
		batch := batches[i%len(batches)]
		i++
		if err := s.Save(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	s, _ := benchStore(b, 10000, 3072, nil)
	path := s.Path()
	for b.Loop() {
		s2, err := Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		s2.Close()
	}
}

func BenchmarkSave1(b *testing.B) {
	s, _ := benchStore(b, 1000, 3072, nil)
	rng := rand.New(rand.NewPCG(1, 1))
	v := randVec(rng, 3072, nil, 0)
	i := 0
	for b.Loop() {
		i++
		if err := s.Save(ctx, []Record{rec(fmt.Sprintf("one%d", i), "/crew/new", v...)}); err != nil {
			b.Fatal(err)
		}
	}
}
