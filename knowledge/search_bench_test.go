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
	b.Run("sync-only", func(b *testing.B) {
		for b.Loop() {
			s.sync(ctx)
		}
	})
}
