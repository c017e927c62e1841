package memory

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestReadFaultIsAnError: segment files cut short under the store's mapping
// (by something other than crewcore) make a search fail with ErrCorrupt
// instead of ending the process, whether the scan faults on the calling
// goroutine or on one of its helpers; what needs no mapped file still works.
func TestReadFaultIsAnError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n, dim int
	}{
		{"scan on the calling goroutine", 50, 16},
		{"scan split over helpers", 3000, 512}, // 6 MB of vectors: above parallelWork
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "memory.db")
			s, err := Open(path, &Options{ExactBelow: -1}) // every search scans the vectors
			must(t, err)
			defer s.Close()
			rng := rand.New(rand.NewPCG(5, 6))
			recs := make([]Record, tc.n)
			for i := range recs {
				recs[i] = rec(fmt.Sprint("f", i), "/crew/a", randVec(rng, tc.dim, nil, 0)...)
			}
			must(t, s.Save(ctx, recs))
			q := Query{Vector: randVec(rng, tc.dim, nil, 0), Limit: 5}
			if _, err := s.Search(ctx, q); err != nil {
				t.Fatalf("search before the damage: %v", err)
			}
			segs, err := filepath.Glob(path + "-seg-*")
			must(t, err)
			if len(segs) == 0 {
				t.Fatal("no segment files")
			}
			for _, f := range segs {
				must(t, os.Truncate(f, 0))
			}
			_, err = s.Search(ctx, q)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("search over segments cut short: %v, want ErrCorrupt", err)
			}
			if n, err := s.Count(ctx, ""); err != nil || n != tc.n {
				t.Fatalf("count after the fault: %d, %v; want %d", n, err, tc.n)
			}
		})
	}
}
