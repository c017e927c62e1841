package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The 2-bit dot products agree with a plain loop over the decoded codes, on
// every implementation, for any int8 query (with -128) and any row count.
func TestDotU2(t *testing.T) {
	tests := []struct{ dim, n int }{{1, 3}, {31, 5}, {128, 4}, {129, 9}, {300, 13}, {1536, 21}, {256, 1}}
	for _, tc := range tests {
		rng := rand.New(rand.NewPCG(uint64(tc.dim), uint64(tc.n)))
		stride := U2Stride(tc.dim)
		codes := make([]uint8, tc.n*stride)
		for i := range codes {
			codes[i] = uint8(rng.UintN(256))
		}
		// padding coordinates past dim carry code 0 in stored rows; here
		// they hold anything and meet zero query bytes
		q := make([]int8, U2QueryLen(tc.dim))
		for i := range tc.dim {
			q[i] = int8(rng.IntN(256) - 128)
		}
		q[0] = -128
		want := make([]int32, tc.n)
		for r := range tc.n {
			row := codes[r*stride : (r+1)*stride]
			for i := range tc.dim {
				want[r] += int32(q[i]) * int32(U2Code(row, i))
			}
		}
		rows := []int32{}
		for r := tc.n - 1; r >= 0; r-- {
			rows = append(rows, int32(r))
		}
		rows = append(rows, 0, int32(tc.n/2))
		for _, l := range levels() {
			saved := active
			active = l
			all := make([]int32, tc.n+1)
			all[tc.n] = 77
			DotU2All(codes, stride, q, all)
			many := make([]int32, len(rows))
			DotU2Many(codes, stride, rows, q, many)
			active = saved
			if all[tc.n] != 77 {
				t.Fatalf("%s dim=%d: DotU2All wrote past the rows", l, tc.dim)
			}
			for r := range tc.n {
				if all[r] != want[r] {
					t.Fatalf("%s dim=%d: DotU2All row %d = %d, want %d", l, tc.dim, r, all[r], want[r])
				}
			}
			for i, r := range rows {
				if many[i] != want[r] {
					t.Fatalf("%s dim=%d: DotU2Many row %d = %d, want %d", l, tc.dim, r, many[i], want[r])
				}
			}
		}
	}
}

// QuantizeU2 codes each coordinate to its nearest level, leaves the padding
// at code 0, and keeps the squared error near the Gaussian optimum.
func TestQuantizeU2(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, dim := range []int{1, 5, 128, 200, 1536} {
		v := make([]float32, dim)
		var ss float64
		for i := range v {
			v[i] = float32(rng.NormFloat64())
			ss += float64(v[i]) * float64(v[i])
		}
		code := make([]uint8, U2Stride(dim))
		for i := range code {
			code[i] = 0xff // QuantizeU2 must clear it
		}
		d := QuantizeU2(v, code)
		if d <= 0 {
			t.Fatalf("dim %d: delta %v", dim, d)
		}
		var e float64
		for i, x := range v {
			c := U2Code(code, i)
			r := float64(x) - U2Value(c, d)
			e += r * r
			for o := uint8(0); o < 4; o++ {
				if ro := float64(x) - U2Value(o, d); math.Abs(ro) < math.Abs(r)-1e-12 {
					t.Fatalf("dim %d coord %d: code %d (err %g), code %d is nearer (%g)", dim, i, c, r, o, ro)
				}
			}
		}
		for i := dim; i < U2QueryLen(dim); i++ {
			if U2Code(code, i) != 0 {
				t.Fatalf("dim %d: padding coordinate %d has code %d", dim, i, U2Code(code, i))
			}
		}
		if dim >= 128 && e > 0.2*ss {
			t.Fatalf("dim %d: relative squared error %.3f, want <= 0.2 (Gaussian optimum 0.119)", dim, e/ss)
		}
	}
	zero := make([]uint8, U2Stride(4))
	if d := QuantizeU2([]float32{0, 0, 0, 0}, zero); d != 0 || zero[0] != 0 {
		t.Fatalf("zero vector: delta %v codes %v", d, zero)
	}
	if d := QuantizeU2([]float32{1, float32(math.NaN()), 0, 0}, zero); d != 0 {
		t.Fatalf("NaN vector: delta %v", d)
	}
}

func BenchmarkDotU2All(b *testing.B) {
	const n, dim = 10000, 1536
	rng := rand.New(rand.NewPCG(1, 2))
	stride := U2Stride(dim)
	codes := make([]uint8, n*stride)
	for i := range codes {
		codes[i] = uint8(rng.UintN(256))
	}
	q := make([]int8, U2QueryLen(dim))
	for i := range dim {
		q[i] = int8(rng.IntN(255) - 127)
	}
	out := make([]int32, n)
	b.SetBytes(int64(len(codes)))
	for b.Loop() {
		DotU2All(codes, stride, q, out)
	}
}
