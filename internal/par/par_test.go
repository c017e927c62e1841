package par

import (
	"sync/atomic"
	"testing"
)

func TestPiecesCallsEachIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 64, 1000} {
		for _, helpers := range []int{-1, 0, 1, 3, 100} {
			seen := make([]int32, n)
			Pieces(n, helpers, func(i int) { atomic.AddInt32(&seen[i], 1) })
			for i, c := range seen {
				if c != 1 {
					t.Fatalf("n %d helpers %d: index %d called %d times", n, helpers, i, c)
				}
			}
		}
	}
}

// TestPiecesPanicReachesCaller: a panic in a piece, whichever goroutine runs
// it, does not end the process; every other piece still runs once, and
// Pieces panics on the caller's goroutine, where recover catches it.
func TestPiecesPanicReachesCaller(t *testing.T) {
	for _, bad := range []int{0, 5, 63} {
		for _, helpers := range []int{0, 1, 3} {
			seen := make([]int32, 64)
			got := func() (p any) {
				defer func() { p = recover() }()
				Pieces(64, helpers, func(i int) {
					atomic.AddInt32(&seen[i], 1)
					if i == bad {
						panic("piece failed")
					}
				})
				return nil
			}()
			if got != "piece failed" {
				t.Fatalf("bad piece %d, helpers %d: recovered %v, want the piece's panic", bad, helpers, got)
			}
			for i, c := range seen {
				if c != 1 {
					t.Fatalf("bad piece %d, helpers %d: index %d called %d times", bad, helpers, i, c)
				}
			}
		}
	}
}
