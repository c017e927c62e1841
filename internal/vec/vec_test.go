package vec

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
)

// testDims are the vector lengths every kernel is checked with: around the
// 8-, 16-, 32- and 64-float block sizes of the kernels, and the usual
// embedding sizes.
var testDims = []int{1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 384, 768, 1536, 3072}

// eachLevel runs f once per implementation this build and CPU can run
// (always including the generic one), with that implementation active.
func eachLevel(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := active
	t.Cleanup(func() { active = saved })
	for _, l := range levels() {
		active = l
		t.Run(l.String(), f)
	}
	active = saved
}

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// refDot returns the dot product in float64 and the sum of |a_i*b_i|, the
// scale of the rounding error any float32 summation order can make.
func refDot(a, b []float32) (dot, scale float64) {
	for i := range a {
		p := float64(a[i]) * float64(b[i])
		dot += p
		scale += math.Abs(p)
	}
	return dot, scale
}

// checkDot fails unless got is within 1e-4 (relative to scale) of want.
func checkDot(t *testing.T, what string, got float32, want, scale float64) {
	t.Helper()
	if d := math.Abs(float64(got) - want); d > 1e-4*scale+1e-30 || math.IsNaN(float64(got)) {
		t.Errorf("%s = %v, want %v (diff %g, scale %g)", what, got, want, d, scale)
	}
}

func TestKernel(t *testing.T) {
	k := Kernel()
	if k != "avx512" && k != "avx2" && k != "generic" {
		t.Fatalf("Kernel() = %q", k)
	}
	if k != detectLevel().String() {
		t.Fatalf("Kernel() = %q, detected %q", k, detectLevel())
	}
	t.Logf("active kernel: %s (testable here: %v)", k, levels())
}

func TestDot(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, dim := range testDims {
			// Offsets make the vectors start off any alignment, and the slices
			// end exactly at the end of their backing arrays, so an access past
			// the end would fault or trip the race detector's checks.
			for _, off := range []int{0, 1, 3} {
				a := randVec(r, dim+off)[off:]
				b := randVec(r, dim+off)[off:]
				want, scale := refDot(a, b)
				checkDot(t, fmt.Sprintf("Dot dim %d off %d", dim, off), Dot(a, b), want, scale)
			}
		}
	})
}

// TestDotExact uses small integers, for which every summation order is exact,
// so all implementations must agree bit for bit.
func TestDotExact(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		for _, dim := range testDims {
			a := make([]float32, dim)
			b := make([]float32, dim)
			var want float32
			for i := range a {
				a[i] = float32(i%7 - 3)
				b[i] = float32(i%5 - 2)
				want += a[i] * b[i]
			}
			if got := Dot(a, b); got != want {
				t.Errorf("Dot dim %d = %v, want %v", dim, got, want)
			}
		}
		if got := Dot(nil, nil); got != 0 {
			t.Errorf("Dot(nil, nil) = %v", got)
		}
	})
}

func TestSquaredNorm(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, dim := range testDims {
			a := randVec(r, dim)
			want, _ := refDot(a, a)
			got := SquaredNorm(a)
			if d := math.Abs(float64(got) - want); d > 1e-4*want {
				t.Errorf("SquaredNorm dim %d = %v, want %v", dim, got, want)
			}
		}
		if got := SquaredNorm(nil); got != 0 {
			t.Errorf("SquaredNorm(nil) = %v", got)
		}
	})
}

func TestDotAll(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, dim := range testDims {
			const n = 37
			// One partial row at the end must be ignored.
			arena := randVec(r, n*dim+dim/2)
			q := randVec(r, dim)
			out := make([]float32, n+2)
			out[n], out[n+1] = 42, 43
			DotAll(arena, dim, q, out)
			for i := range n {
				want, scale := refDot(arena[i*dim:(i+1)*dim], q)
				checkDot(t, fmt.Sprintf("DotAll dim %d row %d", dim, i), out[i], want, scale)
			}
			if out[n] != 42 || out[n+1] != 43 {
				t.Errorf("DotAll dim %d wrote past n: %v", dim, out[n:])
			}
		}
	})
}

func TestDotMany(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, dim := range testDims {
			const n = 29
			arena := randVec(r, n*dim)
			q := randVec(r, dim)
			rows := []int32{n - 1, 0, 5, 5, 17, n - 1, 2}
			for range 20 {
				rows = append(rows, int32(r.IntN(n)))
			}
			out := make([]float32, len(rows)+1)
			out[len(rows)] = 42
			DotMany(arena, dim, rows, q, out)
			for i, row := range rows {
				want, scale := refDot(arena[int(row)*dim:int(row+1)*dim], q)
				checkDot(t, fmt.Sprintf("DotMany dim %d row %d", dim, row), out[i], want, scale)
			}
			if out[len(rows)] != 42 {
				t.Errorf("DotMany dim %d wrote past len(rows)", dim)
			}
			DotMany(arena, dim, nil, q, nil) // no rows: no-op
		}
	})
}

func TestDotNormMany(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, dim := range testDims {
			const n = 23
			arena := randVec(r, n*dim)
			q := randVec(r, dim)
			rows := []int32{n - 1, 0, 4, 4, 11}
			for range 15 {
				rows = append(rows, int32(r.IntN(n)))
			}
			dots := make([]float32, len(rows)+1)
			norms := make([]float32, len(rows)+1)
			dots[len(rows)], norms[len(rows)] = 42, 42
			DotNormMany(arena, dim, rows, q, dots, norms)
			for i, row := range rows {
				v := arena[int(row)*dim : int(row+1)*dim]
				want, scale := refDot(v, q)
				checkDot(t, fmt.Sprintf("DotNormMany dim %d row %d dot", dim, row), dots[i], want, scale)
				want, scale = refDot(v, v)
				checkDot(t, fmt.Sprintf("DotNormMany dim %d row %d norm", dim, row), norms[i], want, scale)
			}
			if dots[len(rows)] != 42 || norms[len(rows)] != 42 {
				t.Errorf("DotNormMany dim %d wrote past len(rows)", dim)
			}
			DotNormMany(arena, dim, nil, q, nil, nil) // no rows: no-op
		}
	})
}

// TestLevelsAgree runs every implementation on the same inputs and checks
// they agree with each other (not only with the float64 reference).
func TestLevelsAgree(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	r := rand.New(rand.NewPCG(9, 10))
	for _, dim := range testDims {
		a, b := randVec(r, dim), randVec(r, dim)
		_, scale := refDot(a, b)
		active = levelGeneric
		base := Dot(a, b)
		for _, l := range levels() {
			active = l
			checkDot(t, fmt.Sprintf("%s Dot dim %d vs generic", l, dim), Dot(a, b), float64(base), scale)
		}
	}
}

func refBinarize(v []float32) []uint64 {
	dst := make([]uint64, (len(v)+63)/64)
	for j, x := range v {
		if x > 0 {
			dst[j/64] |= 1 << (j % 64)
		}
	}
	return dst
}

func TestWords(t *testing.T) {
	for _, c := range []struct{ dim, words int }{
		{0, 0}, {1, 1}, {63, 1}, {64, 1}, {65, 2}, {128, 2}, {384, 6}, {1536, 24}, {3072, 48}, {3073, 49},
	} {
		if got := Words(c.dim); got != c.words {
			t.Errorf("Words(%d) = %d, want %d", c.dim, got, c.words)
		}
	}
}

func TestBinarize(t *testing.T) {
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)),
		float32(math.Inf(-1)), math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, 1, -1}
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		for _, dim := range append(slices.Clone(testDims), 0, 128, 129, 191, 192, 200) {
			v := randVec(r, dim)
			for i := range v {
				if r.IntN(4) == 0 {
					v[i] = special[r.IntN(len(special))]
				}
			}
			want := refBinarize(v)
			dst := make([]uint64, len(want)+1)
			for i := range dst {
				dst[i] = 0xdeadbeefdeadbeef // must be overwritten (or, past the code, kept)
			}
			Binarize(v, dst)
			if !slices.Equal(dst[:len(want)], want) {
				t.Errorf("Binarize dim %d = %x, want %x", dim, dst[:len(want)], want)
			}
			if dst[len(want)] != 0xdeadbeefdeadbeef {
				t.Errorf("Binarize dim %d wrote past Words(dim)", dim)
			}
		}
	})
}

func refHamming(c, q []uint64) uint32 {
	var n uint32
	for i := range q {
		for b := range 64 {
			if (c[i]>>b)&1 != (q[i]>>b)&1 {
				n++
			}
		}
	}
	return n
}

func randCodes(r *rand.Rand, n int) []uint64 {
	c := make([]uint64, n)
	for i := range c {
		c[i] = r.Uint64()
	}
	return c
}

func TestHamming(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(13, 14))
		for _, words := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 24, 48, 49} {
			const n = 41
			codes := randCodes(r, n*words+words/2) // partial trailing code ignored
			q := randCodes(r, words)
			copy(codes[3*words:4*words], q) // distance 0
			for i := range words {
				codes[5*words+i] = ^q[i] // distance 64*words
			}
			out := make([]uint32, n+1)
			out[n] = 42
			HammingAll(codes, words, q, out)
			for i := range n {
				if want := refHamming(codes[i*words:], q); out[i] != want {
					t.Errorf("HammingAll words %d row %d = %d, want %d", words, i, out[i], want)
				}
			}
			if out[3] != 0 || out[5] != uint32(64*words) {
				t.Errorf("HammingAll words %d: identical %d, complement %d", words, out[3], out[5])
			}
			if out[n] != 42 {
				t.Errorf("HammingAll words %d wrote past n", words)
			}

			rows := []int32{n - 1, 0, 3, 3, 5}
			for range 20 {
				rows = append(rows, int32(r.IntN(n)))
			}
			many := make([]uint32, len(rows))
			HammingMany(codes, words, rows, q, many)
			for i, row := range rows {
				if want := refHamming(codes[int(row)*words:], q); many[i] != want {
					t.Errorf("HammingMany words %d row %d = %d, want %d", words, row, many[i], want)
				}
			}
		}
	})
}

// TestBinarizeHamming checks the two together: the Hamming distance of two
// codes counts the coordinates whose signs (v > 0) differ.
func TestBinarizeHamming(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(15, 16))
		for _, dim := range testDims {
			a, b := randVec(r, dim), randVec(r, dim)
			w := Words(dim)
			ca, cb := make([]uint64, w), make([]uint64, w)
			Binarize(a, ca)
			Binarize(b, cb)
			var want uint32
			for i := range a {
				if (a[i] > 0) != (b[i] > 0) {
					want++
				}
			}
			out := make([]uint32, 1)
			HammingAll(ca, w, cb, out)
			if out[0] != want {
				t.Errorf("dim %d: Hamming of codes = %d, want %d", dim, out[0], want)
			}
			var pop int
			for _, x := range ca {
				pop += bits.OnesCount64(x)
			}
			if pop > dim {
				t.Errorf("dim %d: %d bits set", dim, pop)
			}
		}
	})
}

func TestNoAllocs(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		const dim, n = 384, 100
		r := rand.New(rand.NewPCG(17, 18))
		arena, q := randVec(r, n*dim), randVec(r, dim)
		out := make([]float32, n)
		rows := []int32{1, 50, 99}
		codes, cq := randCodes(r, n*Words(dim)), randCodes(r, Words(dim))
		hout := make([]uint32, n)
		for name, f := range map[string]func(){
			"Dot":         func() { Dot(arena[:dim], q) },
			"SquaredNorm": func() { SquaredNorm(q) },
			"DotAll":      func() { DotAll(arena, dim, q, out) },
			"DotMany":     func() { DotMany(arena, dim, rows, q, out) },
			"Binarize":    func() { Binarize(q, cq) },
			"HammingAll":  func() { HammingAll(codes, Words(dim), cq, hout) },
			"HammingMany": func() { HammingMany(codes, Words(dim), rows, cq, hout) },
		} {
			if a := testing.AllocsPerRun(10, f); a != 0 {
				t.Errorf("%s: %v allocations per call", name, a)
			}
		}
	})
}

func TestPanics(t *testing.T) {
	f4 := make([]float32, 4)
	u2 := make([]uint64, 2)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"Dot length mismatch", func() { Dot(f4, f4[:3]) }},
		{"DotAll dim 0", func() { DotAll(f4, 0, nil, f4) }},
		{"DotAll query length", func() { DotAll(f4, 2, f4[:3], f4) }},
		{"DotAll short out", func() { DotAll(f4, 2, f4[:2], f4[:1]) }},
		{"DotMany row out of range", func() { DotMany(f4, 2, []int32{2}, f4[:2], f4) }},
		{"DotMany negative row", func() { DotMany(f4, 2, []int32{-1}, f4[:2], f4) }},
		{"DotMany short out", func() { DotMany(f4, 2, []int32{0, 1}, f4[:2], f4[:1]) }},
		{"Words negative", func() { Words(-1) }},
		{"Binarize short dst", func() { Binarize(make([]float32, 65), u2[:1]) }},
		{"HammingAll words 0", func() { HammingAll(u2, 0, nil, nil) }},
		{"HammingAll short out", func() { HammingAll(u2, 1, u2[:1], nil) }},
		{"HammingMany row out of range", func() { HammingMany(u2, 1, []int32{2}, u2[:1], make([]uint32, 1)) }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", c.name)
				}
			}()
			c.f()
		}()
	}
}
