package vec

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

var sinkI32 int32

// benchCodes returns the int8 codes of benchArena(n, dim), row by row,
// cached like the arenas.
var benchCodesCache sync.Map // "n x dim" -> []int8

func benchCodes(n, dim int) []int8 {
	key := fmt.Sprintf("%dx%d", n, dim)
	if v, ok := benchCodesCache.Load(key); ok {
		return v.([]int8)
	}
	arena := benchArena(n, dim)
	codes := make([]int8, n*dim)
	for i := range n {
		QuantizeInt8(arena[i*dim:(i+1)*dim], codes[i*dim:(i+1)*dim])
	}
	benchCodesCache.Store(key, codes)
	return codes
}

func BenchmarkQuantizeInt8(b *testing.B) {
	const dim = 3072
	v := benchArena(1, dim)
	dst := make([]int8, dim)
	b.SetBytes(dim * 4)
	var s float32
	for b.Loop() {
		s += QuantizeInt8(v, dst)
	}
	sinkF32 = s
}

func BenchmarkDotInt8(b *testing.B) {
	for _, dim := range []int{384, 1536, 3072} {
		x, y := benchCodes(1, dim), benchCodes(2, dim)[dim:]
		benchLevels(b, fmt.Sprint(dim), func(b *testing.B) {
			b.SetBytes(int64(2 * dim))
			var s int32
			for b.Loop() {
				s += DotInt8(x, y)
			}
			sinkI32 = s
		})
	}
}

func BenchmarkDotInt8All(b *testing.B) {
	const n, dim = 20_000, 3072
	codes := benchCodes(n, dim)
	q := benchCodes(1, dim)
	out := make([]int32, n)
	benchLevels(b, fmt.Sprintf("%dx%d", n, dim), func(b *testing.B) {
		b.SetBytes(int64(n * dim))
		for b.Loop() {
			DotInt8All(codes, dim, q, out)
		}
	})
}

// BenchmarkDotInt8Many is the re-ranking stage: the int8 dot products of
// 5000 candidate rows of 3072 dimensions (15 MB of codes), in ascending row
// order as the binary pass hands them out, and beside it ("float32") the
// float32 DotMany of the same rows (60 MB), which it replaces. The rows are
// 5000 random rows of an arena of 20000 (codes 61 MB, floats 246 MB, past
// the caches), or the whole of an arena of 5000, where the 15 MB of codes
// can stay in a large L3 cache from one call to the next.
func BenchmarkDotInt8Many(b *testing.B) {
	const k, dim = 5000, 3072
	for _, n := range []int{20_000, 5000} {
		r := rand.New(rand.NewPCG(uint64(n), 7))
		rows := make([]int32, 0, k)
		for _, i := range r.Perm(n)[:k] {
			rows = append(rows, int32(i))
		}
		slices.Sort(rows)
		codes, arena := benchCodes(n, dim), benchArena(n, dim)
		q8, q := benchCodes(1, dim), benchArena(1, dim)
		name := fmt.Sprintf("%dof%dx%d", k, n, dim)
		out8 := make([]int32, k)
		benchLevels(b, "int8/"+name, func(b *testing.B) {
			b.SetBytes(int64(k * dim))
			for b.Loop() {
				DotInt8Many(codes, dim, rows, q8, out8)
			}
		})
		out := make([]float32, k)
		benchLevels(b, "float32/"+name, func(b *testing.B) {
			b.SetBytes(int64(k * dim * 4))
			for b.Loop() {
				DotMany(arena, dim, rows, q, out)
			}
		})
	}
}
