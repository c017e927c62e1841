package knowledge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// BenchmarkSearch measures Store.Search at 10k chunks x 1536 dims (clustered
// vectors) in each mode, the collection loaded.
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	const n, dim = 10000, 1536
	vs := clustered(r, n, dim)
	s, err := Open(filepath.Join(b.TempDir(), "k.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	chunks := make([]Chunk, n)
	for i := range chunks {
		chunks[i] = chunkOf(fmt.Sprintf("chunk %d about item %d", i, i%97), vs[i])
	}
	if _, err := s.Save(ctx, "c", chunks); err != nil {
		b.Fatal(err)
	}
	q := vs[7]
	// load the collection first: the sub-benchmarks time searches only
	if _, err := s.Search(ctx, "c", Query{Vector: q, Limit: 5}); err != nil {
		b.Fatal(err)
	}
	for _, m := range []Mode{Vector, Keyword, Hybrid} {
		b.Run(m.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Search(ctx, "c", Query{Mode: m, Text: "item 42", Vector: q, Limit: 5}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	c, _ := s.state(ctx, "c")
	qn := normalize(q)
	b.Run("topVector-only", func(b *testing.B) {
		for b.Loop() {
			c.topVector(qn, nil, 5)
		}
	})
	b.Run("fullScan-only", func(b *testing.B) {
		for b.Loop() {
			fullScan(c, qn, nil, 5)
		}
	})
	b.Run("sync-only", func(b *testing.B) {
		for b.Loop() {
			s.sync(ctx)
		}
	})
}

// BenchmarkCascade measures the vector cascade alone on the benchmark's
// data (bench/bench_knowledge.py) at 10k and 100k x 1536, with the rows
// each pass read per query.
func BenchmarkCascade(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(13, 14))
			vs := benchLike(r, n+64, 1536)
			c := memColl(b, vs[:n])
			qs := make([][]float32, 64)
			for i := range qs {
				base := vs[r.IntN(n)]
				q := make([]float32, len(base))
				for j := range q {
					q[j] = base[j] + 0.3*vs[n+i][j]
				}
				qs[i] = normalize(q)
			}
			var st passStats
			i := 0
			for b.Loop() {
				_, s := c.topVectorStats(qs[i%len(qs)], nil, 5)
				st.u2 += s.u2
				st.int8 += s.int8
				st.exact += s.exact
				i++
			}
			b.ReportMetric(float64(st.int8)/float64(i), "int8-rows/op")
			b.ReportMetric(float64(st.exact)/float64(i), "exact-rows/op")
		})
	}
}
