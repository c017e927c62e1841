package vec

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// int8Dims are the lengths the int8 kernels are checked with: every length
// up to 70 (around the 16- and 64-byte blocks of the kernels and the 8-byte
// blocks of the generic code) and the usual embedding sizes.
func int8Dims() []int {
	var dims []int
	for d := 1; d <= 70; d++ {
		dims = append(dims, d)
	}
	return append(dims, 80, 96, 112, 127, 128, 129, 384, 768, 1536, 3072)
}

func refDotInt8(a, b []int8) int64 {
	var s int64
	for i := range a {
		s += int64(a[i]) * int64(b[i])
	}
	return s
}

// int8Fills are the ways test codes are filled: the extremes check that no
// step of a kernel saturates (an int16 pair sum of 127*127 + 127*127 is
// 32258, of -128*-128 + -128*-128 is 32768, past int16).
var int8Fills = []struct {
	name string
	fill func(r *rand.Rand, a, b []int8)
}{
	{"random", func(r *rand.Rand, a, b []int8) {
		for i := range a {
			a[i], b[i] = int8(r.IntN(255)-127), int8(r.IntN(255)-127)
		}
	}},
	{"max*max", func(r *rand.Rand, a, b []int8) {
		for i := range a {
			a[i], b[i] = 127, 127
		}
	}},
	{"min*min", func(r *rand.Rand, a, b []int8) {
		for i := range a {
			a[i], b[i] = -127, -127
		}
	}},
	{"max*min", func(r *rand.Rand, a, b []int8) {
		for i := range a {
			a[i], b[i] = 127, -127
		}
	}},
	{"-128*-128", func(r *rand.Rand, a, b []int8) {
		for i := range a {
			a[i], b[i] = -128, -128
		}
	}},
	{"-128*127", func(r *rand.Rand, a, b []int8) {
		for i := range a {
			a[i], b[i] = -128, 127
		}
	}},
	// The codes QuantizeInt8 writes are in [-127, 127]; the rows may hold
	// anything: |-128| * 127 is the largest product the fast kernel meets.
	{"extreme rows, ±127 query", func(r *rand.Rand, a, b []int8) {
		ext := []int8{-128, -127, 127, -1, 0}
		for i := range a {
			a[i], b[i] = ext[r.IntN(len(ext))], int8(127-254*r.IntN(2))
		}
	}},
	{"extremes", func(r *rand.Rand, a, b []int8) {
		ext := []int8{-128, -127, 127, -1, 1, 0}
		for i := range a {
			a[i], b[i] = ext[r.IntN(len(ext))], ext[r.IntN(len(ext))]
		}
	}},
}

func TestDotInt8(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(21, 22))
		for _, f := range int8Fills {
			for _, dim := range int8Dims() {
				// Offsets start the codes off any alignment; the slices end at
				// the end of their backing arrays.
				for _, off := range []int{0, 1, 5} {
					a := make([]int8, dim+off)[off:]
					b := make([]int8, dim+off)[off:]
					f.fill(r, a, b)
					want := refDotInt8(a, b)
					if got := DotInt8(a, b); int64(got) != want {
						t.Fatalf("%s: DotInt8 dim %d off %d = %d, want %d", f.name, dim, off, got, want)
					}
				}
			}
		}
		if got := DotInt8(nil, nil); got != 0 {
			t.Errorf("DotInt8(nil, nil) = %d", got)
		}
	})
}

// TestDotInt8Limit checks the documented range: the largest dot products of
// codes in [-127, 127] that fit in an int32 come out exact.
func TestDotInt8Limit(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		const n = math.MaxInt32 / (127 * 127) // 133,144
		a := make([]int8, n)
		b := make([]int8, n)
		for i := range a {
			a[i], b[i] = 127, 127
		}
		// Four rows, for the four-row kernel of DotInt8All.
		codes := slices.Repeat(a, 4)
		out := make([]int32, 4)
		for _, sign := range []int64{1, -1} {
			for i := range b {
				b[i] = int8(127 * sign)
			}
			want := sign * n * 127 * 127
			if got := DotInt8(a, b); int64(got) != want {
				t.Errorf("DotInt8 of %d x 127*%d = %d, want %d", n, b[0], got, want)
			}
			DotInt8All(codes, n, b, out)
			for i, got := range out {
				if int64(got) != want {
					t.Errorf("DotInt8All row %d of %d x 127*%d = %d, want %d", i, n, b[0], got, want)
				}
			}
		}
	})
}

func TestDotInt8AllMany(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(23, 24))
		for _, f := range int8Fills {
			for _, dim := range int8Dims() {
				const n = 13
				// One partial row at the end must be ignored by DotInt8All.
				codes := make([]int8, n*dim+dim/2)
				q := make([]int8, dim)
				f.fill(r, codes[:dim], q)
				for i := 1; i < n; i++ {
					f.fill(r, codes[i*dim:(i+1)*dim], make([]int8, dim))
				}
				want := make([]int64, n)
				for i := range n {
					want[i] = refDotInt8(codes[i*dim:(i+1)*dim], q)
				}

				out := make([]int32, n+2)
				out[n], out[n+1] = 42, 43
				DotInt8All(codes, dim, q, out)
				for i := range n {
					if int64(out[i]) != want[i] {
						t.Fatalf("%s: DotInt8All dim %d row %d = %d, want %d", f.name, dim, i, out[i], want[i])
					}
				}
				if out[n] != 42 || out[n+1] != 43 {
					t.Errorf("%s: DotInt8All dim %d wrote past n: %v", f.name, dim, out[n:])
				}

				rows := []int32{n - 1, 0, 5, 5, 7, n - 1, 2}
				for range 10 {
					rows = append(rows, int32(r.IntN(n)))
				}
				many := make([]int32, len(rows)+1)
				many[len(rows)] = 42
				// The whole codes, partial row included: rows are addressed
				// directly, and the last full row ends before it.
				DotInt8Many(codes, dim, rows, q, many)
				for i, row := range rows {
					if int64(many[i]) != want[row] {
						t.Fatalf("%s: DotInt8Many dim %d row %d = %d, want %d", f.name, dim, row, many[i], want[row])
					}
				}
				if many[len(rows)] != 42 {
					t.Errorf("%s: DotInt8Many dim %d wrote past len(rows)", f.name, dim)
				}
			}
		}
		DotInt8Many(make([]int8, 8), 8, nil, make([]int8, 8), nil) // no rows: no-op
		DotInt8All(make([]int8, 7), 8, make([]int8, 8), nil)       // no full row: no-op
	})
}

// TestDotInt8LevelsAgree runs every implementation on the same codes: the
// results are exact integers, so they must be identical.
func TestDotInt8LevelsAgree(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	r := rand.New(rand.NewPCG(25, 26))
	for _, dim := range int8Dims() {
		const n = 9
		codes := make([]int8, n*dim)
		q := make([]int8, dim)
		int8Fills[0].fill(r, codes[:dim], q)
		for i := 1; i < n; i++ {
			int8Fills[0].fill(r, codes[i*dim:(i+1)*dim], make([]int8, dim))
		}
		active = levelGeneric
		base := make([]int32, n)
		DotInt8All(codes, dim, q, base)
		for _, l := range levels() {
			active = l
			out := make([]int32, n)
			DotInt8All(codes, dim, q, out)
			if !slices.Equal(out, base) {
				t.Errorf("%s DotInt8All dim %d = %v, generic %v", l, dim, out, base)
			}
		}
	}
}

// checkQuantized checks the QuantizeInt8 contract for v, dst and scale: the
// scale is max|v|/127, every code in [-127, 127], each code v[i]/scale
// rounded (within half a step), the largest |v[i]| mapped to ±127.
func checkQuantized(t *testing.T, what string, v []float32, dst []int8, scale float32) {
	t.Helper()
	var m float32
	for _, x := range v {
		m = max(m, float32(math.Abs(float64(x))))
	}
	if want := m / 127; scale != want {
		t.Errorf("%s: scale %g, want %g", what, scale, want)
		return
	}
	for i, x := range v {
		c := dst[i]
		if c < -127 {
			t.Errorf("%s: code %d of %g is %d", what, i, x, c)
		}
		if m == 0 {
			if c != 0 {
				t.Errorf("%s: zero vector, code %d = %d", what, i, c)
			}
			continue
		}
		exact := float64(x) / (float64(m) / 127)
		if d := math.Abs(exact - float64(c)); d > 0.5+1e-6 {
			t.Errorf("%s: code %d of %g is %d, exact %g", what, i, x, c, exact)
		}
		if float32(math.Abs(float64(x))) == m && int(c) != int(math.Copysign(127, float64(x))) {
			t.Errorf("%s: code %d of the largest |v| %g is %d", what, i, x, c)
		}
	}
}

func TestQuantizeInt8(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	dims := append(int8Dims(), 0)
	for _, dim := range dims {
		for _, kind := range []string{"normal", "uniform", "tiny", "huge", "zero", "onehot", "ties"} {
			v := make([]float32, dim)
			for i := range v {
				switch kind {
				case "normal":
					v[i] = float32(r.NormFloat64())
				case "uniform":
					v[i] = r.Float32()*2 - 1
				case "tiny": // subnormal: 127/max overflows float32
					v[i] = float32(r.NormFloat64()) * 1e-40
				case "huge":
					v[i] = float32(r.NormFloat64()) * 1e37
				case "onehot":
					if i == dim/2 {
						v[i] = -3
					}
				case "ties": // v[i]/scale lands on k+0.5
					v[i] = float32(r.IntN(254)-127) + 0.5
				}
			}
			if kind == "ties" && dim > 0 {
				v[0] = 127
			}
			dst := make([]int8, dim+1)
			dst[dim] = 99
			for i := range dim {
				dst[i] = 77
			}
			scale := QuantizeInt8(v, dst)
			what := fmt.Sprintf("QuantizeInt8 %s dim %d", kind, dim)
			checkQuantized(t, what, v, dst, scale)
			if dst[dim] != 99 {
				t.Errorf("%s: wrote past len(v)", what)
			}
			if kind == "ties" {
				for i, x := range v {
					if want := int8(math.RoundToEven(float64(x))); dst[i] != want {
						t.Errorf("%s: code %d of %g is %d, want %d (ties to even)", what, i, x, dst[i], want)
					}
				}
			}
		}
	}
}

func TestQuantizeInt8NonFinite(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	dst := make([]int8, 4)
	if s := QuantizeInt8([]float32{nan, 2, -1, nan}, dst); s != 2.0/127 || !slices.Equal(dst, []int8{0, 127, -64, 0}) {
		t.Errorf("QuantizeInt8 with NaN: scale %g, codes %v", s, dst)
	}
	if s := QuantizeInt8([]float32{1, -inf, 3, 0}, dst); !math.IsInf(float64(s), 1) || !slices.Equal(dst, []int8{0, 0, 0, 0}) {
		t.Errorf("QuantizeInt8 with Inf: scale %g, codes %v", s, dst)
	}
	if s := QuantizeInt8([]float32{nan, 5, inf, -2}, dst); !math.IsInf(float64(s), 1) || !slices.Equal(dst, []int8{0, 0, 0, 0}) {
		t.Errorf("QuantizeInt8 with NaN and Inf: scale %g, codes %v", s, dst)
	}
	if s := QuantizeInt8([]float32{0, float32(math.Copysign(0, -1)), 0}, dst); s != 0 || !slices.Equal(dst, []int8{0, 0, 0, 0}) {
		t.Errorf("QuantizeInt8 of zeros: scale %g, codes %v", s, dst)
	}
}

// TestQuantizeInt8Dot checks the use of the codes: the scaled int8 dot product
// approximates the float dot product (of unit-norm random vectors, within a
// few hundredths) and ranks near neighbours like it.
func TestQuantizeInt8Dot(t *testing.T) {
	r := rand.New(rand.NewPCG(29, 30))
	for _, dim := range []int{384, 1536, 3072} {
		unit := func() []float32 {
			v := randVec(r, dim)
			n := float32(math.Sqrt(float64(SquaredNorm(v))))
			for i := range v {
				v[i] /= n
			}
			return v
		}
		for range 20 {
			a, b := unit(), unit()
			// Mix so the dot products spread over [-1, 1].
			w := r.Float32()*2 - 1
			for i := range b {
				b[i] = w*a[i] + (1-abs32(w))*b[i]
			}
			ca, cb := make([]int8, dim), make([]int8, dim)
			sa, sb := QuantizeInt8(a, ca), QuantizeInt8(b, cb)
			approx := float64(sa) * float64(sb) * float64(DotInt8(ca, cb))
			exact, _ := refDot(a, b)
			if d := math.Abs(approx - exact); d > 0.02 {
				t.Errorf("dim %d: quantized dot %g, float dot %g", dim, approx, exact)
			}
		}
	}
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }

func TestInt8NoAllocs(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		const dim, n = 384, 100
		r := rand.New(rand.NewPCG(31, 32))
		v := randVec(r, dim)
		codes, q := make([]int8, n*dim), make([]int8, dim)
		out := make([]int32, n)
		rows := []int32{1, 50, 99}
		for name, f := range map[string]func(){
			"QuantizeInt8": func() { QuantizeInt8(v, q) },
			"DotInt8":      func() { DotInt8(codes[:dim], q) },
			"DotInt8All":   func() { DotInt8All(codes, dim, q, out) },
			"DotInt8Many":  func() { DotInt8Many(codes, dim, rows, q, out) },
		} {
			if a := testing.AllocsPerRun(10, f); a != 0 {
				t.Errorf("%s: %v allocations per call", name, a)
			}
		}
	})
}

func TestInt8Panics(t *testing.T) {
	i4 := make([]int8, 4)
	o4 := make([]int32, 4)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"QuantizeInt8 short dst", func() { QuantizeInt8(make([]float32, 5), i4) }},
		{"DotInt8 length mismatch", func() { DotInt8(i4, i4[:3]) }},
		{"DotInt8All dim 0", func() { DotInt8All(i4, 0, nil, o4) }},
		{"DotInt8All query length", func() { DotInt8All(i4, 2, i4[:3], o4) }},
		{"DotInt8All short out", func() { DotInt8All(i4, 2, i4[:2], o4[:1]) }},
		{"DotInt8Many dim 0", func() { DotInt8Many(i4, 0, []int32{0}, nil, o4) }},
		{"DotInt8Many query length", func() { DotInt8Many(i4, 2, []int32{0}, i4[:3], o4) }},
		{"DotInt8Many row out of range", func() { DotInt8Many(i4, 2, []int32{2}, i4[:2], o4) }},
		{"DotInt8Many negative row", func() { DotInt8Many(i4, 2, []int32{-1}, i4[:2], o4) }},
		{"DotInt8Many short out", func() { DotInt8Many(i4, 2, []int32{0, 1}, i4[:2], o4[:1]) }},
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
