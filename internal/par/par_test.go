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
