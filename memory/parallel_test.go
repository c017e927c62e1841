package memory

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// TestParallelCoversEachIndexOnce checks that parallel hands every index of
// [0,n) to fn exactly once, in ranges that do not overlap, whatever the
// number of cores and however the pieces fall.
func TestParallelCoversEachIndexOnce(t *testing.T) {
	for _, procs := range []int{1, 2, 3, 8} {
		for _, n := range []int{1, 2, 5, 16, 17, 100, 1001, 100_000} {
			for _, work := range []int{0, parallelWork} {
				prev := runtime.GOMAXPROCS(procs)
				seen := make([]int32, n)
				var calls atomic.Int32
				parallel(n, work, func(lo, hi int) {
					calls.Add(1)
					if lo < 0 || hi > n || lo >= hi {
						t.Errorf("procs %d n %d: bad range [%d,%d)", procs, n, lo, hi)
						return
					}
					for i := lo; i < hi; i++ {
						atomic.AddInt32(&seen[i], 1)
					}
				})
				runtime.GOMAXPROCS(prev)
				for i, c := range seen {
					if c != 1 {
						t.Fatalf("procs %d n %d work %d: index %d handed out %d times", procs, n, work, i, c)
					}
				}
				if work < parallelWork && calls.Load() != 1 {
					t.Errorf("procs %d n %d: small work split into %d calls", procs, n, calls.Load())
				}
			}
		}
	}
}
