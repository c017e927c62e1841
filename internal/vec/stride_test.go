package vec

import (
	"math/rand/v2"
	"testing"
)

// HammingManyStride reads code r at r*stride and agrees with HammingMany on
// the same codes packed without a stride, on every implementation.
func TestHammingManyStride(t *testing.T) {
	tests := []struct{ words, extra, n int }{{1, 1, 9}, {3, 2, 17}, {4, 1, 33}, {24, 1, 50}, {48, 1, 101}, {50, 3, 7}}
	for _, tc := range tests {
		rng := rand.New(rand.NewPCG(uint64(tc.words), uint64(tc.n)))
		stride := tc.words + tc.extra
		strided := make([]uint64, tc.n*stride)
		packed := make([]uint64, tc.n*tc.words)
		for r := range tc.n {
			for w := range stride {
				x := rng.Uint64()
				strided[r*stride+w] = x
				if w < tc.words {
					packed[r*tc.words+w] = x
				}
			}
		}
		q := make([]uint64, tc.words)
		for i := range q {
			q[i] = rng.Uint64()
		}
		rows := make([]int32, 0, tc.n+3)
		for r := range tc.n {
			rows = append(rows, int32(tc.n-1-r))
		}
		rows = append(rows, 0, int32(tc.n/2), 0)
		want := make([]uint32, len(rows))
		hammingManyGeneric(packed, tc.words, rows, q, want)
		for _, l := range levels() {
			saved := active
			active = l
			got := make([]uint32, len(rows))
			HammingManyStride(strided, stride, tc.words, rows, q, got)
			active = saved
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s words=%d stride=%d: row %d distance %d, want %d", l, tc.words, stride, rows[i], got[i], want[i])
				}
			}
		}
	}
}
