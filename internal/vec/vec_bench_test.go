package vec

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"
)

// Benchmarks report bytes read per operation (b.SetBytes), so `go test
// -bench` prints MB/s; compare the scan kernels with BenchmarkMemoryBandwidth.
// Each kernel benchmark runs once per implementation available here
// (sub-benchmark "generic", "avx2", "avx512").

var (
	sinkF32 float32
	sinkU64 uint64
)

// benchLevels runs f as a sub-benchmark per available implementation.
func benchLevels(b *testing.B, name string, f func(b *testing.B)) {
	saved := active
	defer func() { active = saved }()
	for _, l := range levels() {
		active = l
		b.Run(l.String()+"/"+name, f)
	}
}

// benchArena returns n*dim random floats, cached between benchmarks (the
// large ones take a while to fill).
var benchArenas sync.Map // "n x dim" -> []float32

func benchArena(n, dim int) []float32 {
	key := fmt.Sprintf("%dx%d", n, dim)
	if v, ok := benchArenas.Load(key); ok {
		return v.([]float32)
	}
	r := rand.New(rand.NewPCG(uint64(n), uint64(dim)))
	a := make([]float32, n*dim)
	for i := range a {
		a[i] = r.Float32()*2 - 1
	}
	benchArenas.Store(key, a)
	return a
}

func BenchmarkDot(b *testing.B) {
	for _, dim := range []int{1536, 3072} {
		x, y := benchArena(1, dim), benchArena(2, dim)[dim:]
		benchLevels(b, fmt.Sprint(dim), func(b *testing.B) {
			b.SetBytes(int64(2 * dim * 4))
			var s float32
			for b.Loop() {
				s += Dot(x, y)
			}
			sinkF32 = s
		})
	}
}

func BenchmarkSquaredNorm(b *testing.B) {
	const dim = 1536
	x := benchArena(1, dim)
	benchLevels(b, fmt.Sprint(dim), func(b *testing.B) {
		b.SetBytes(dim * 4)
		var s float32
		for b.Loop() {
			s += SquaredNorm(x)
		}
		sinkF32 = s
	})
}

func BenchmarkDotAll(b *testing.B) {
	for _, c := range []struct{ n, dim int }{{10_000, 3072}, {100_000, 1536}} {
		arena := benchArena(c.n, c.dim)
		q := benchArena(1, c.dim)
		out := make([]float32, c.n)
		benchLevels(b, fmt.Sprintf("%dx%d", c.n, c.dim), func(b *testing.B) {
			b.SetBytes(int64(c.n * c.dim * 4))
			for b.Loop() {
				DotAll(arena, c.dim, q, out)
			}
		})
	}
}

// BenchmarkDotMany scores every 10th row of the 100k x 1536 arena, in order.
func BenchmarkDotMany(b *testing.B) {
	const n, dim = 100_000, 1536
	arena := benchArena(n, dim)
	q := benchArena(1, dim)
	rows := make([]int32, 0, n/10)
	for i := 0; i < n; i += 10 {
		rows = append(rows, int32(i))
	}
	out := make([]float32, len(rows))
	benchLevels(b, fmt.Sprintf("%dof%dx%d", len(rows), n, dim), func(b *testing.B) {
		b.SetBytes(int64(len(rows) * dim * 4))
		for b.Loop() {
			DotMany(arena, dim, rows, q, out)
		}
	})
}

// BenchmarkDotNormMany is a search's exact stage: 3000 candidates of
// 10,000 x 3072, each scored with its dot and squared norm, fused and as
// DotMany followed by SquaredNorm (the rows read twice).
func BenchmarkDotNormMany(b *testing.B) {
	const n, dim = 10_000, 3072
	arena := benchArena(n, dim)
	q := benchArena(1, dim)
	rows := make([]int32, 0, 3000)
	for i := 0; len(rows) < 3000; i += 3 {
		rows = append(rows, int32(i))
	}
	dots := make([]float32, len(rows))
	norms := make([]float32, len(rows))
	benchLevels(b, "fused", func(b *testing.B) {
		b.SetBytes(int64(len(rows) * dim * 4))
		for b.Loop() {
			DotNormMany(arena, dim, rows, q, dots, norms)
		}
	})
	benchLevels(b, "twopass", func(b *testing.B) {
		b.SetBytes(int64(len(rows) * dim * 4))
		for b.Loop() {
			DotMany(arena, dim, rows, q, dots)
			for i, r := range rows {
				norms[i] = SquaredNorm(arena[int(r)*dim : int(r+1)*dim])
			}
		}
	})
}

func BenchmarkBinarize(b *testing.B) {
	const dim = 3072
	v := benchArena(1, dim)
	dst := make([]uint64, Words(dim))
	benchLevels(b, fmt.Sprint(dim), func(b *testing.B) {
		b.SetBytes(dim * 4)
		for b.Loop() {
			Binarize(v, dst)
		}
	})
}

// bandwidthBuf is the 1 GiB buffer of BenchmarkMemoryBandwidth, allocated
// and written once (writing it makes the kernel back it with real pages: an
// untouched allocation would read the shared zero page, from cache).
var bandwidthBuf = sync.OnceValue(func() []float32 {
	s := make([]float32, (1<<30)/4)
	for i := range s {
		s[i] = float32(i & 1023)
	}
	return s
})

// BenchmarkMemoryBandwidth measures plain sequential read bandwidth of one
// core over a 1 GiB float32 slice, the ceiling for the DotAll scan.
// "u64x4" sums the buffer as uint64 words with 4 accumulators: integer adds
// are cheap enough that the loop is bound by the loads, so it measures
// memory. "f32x8" is the same scan as float32 adds with 8 accumulators,
// what a scalar float loop gets.
func BenchmarkMemoryBandwidth(b *testing.B) {
	s := bandwidthBuf()
	b.Run("u64x4", func(b *testing.B) {
		words := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(s))), len(s)/2)
		b.SetBytes(int64(len(words) * 8))
		for b.Loop() {
			var s0, s1, s2, s3 uint64
			for w := words; len(w) >= 4; w = w[4:] {
				x := (*[4]uint64)(w)
				s0 += x[0]
				s1 += x[1]
				s2 += x[2]
				s3 += x[3]
			}
			sinkU64 += s0 + s1 + s2 + s3
		}
	})
	b.Run("f32x8", func(b *testing.B) {
		b.SetBytes(int64(len(s) * 4))
		for b.Loop() {
			var s0, s1, s2, s3, s4, s5, s6, s7 float32
			for v := s; len(v) >= 8; v = v[8:] {
				x := (*[8]float32)(v)
				s0 += x[0]
				s1 += x[1]
				s2 += x[2]
				s3 += x[3]
				s4 += x[4]
				s5 += x[5]
				s6 += x[6]
				s7 += x[7]
			}
			sinkF32 += s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
		}
	})
}
