// Package vec holds the numeric kernels of the memory engine's vector search:
// float32 dot products (one pair, or one query against many rows of a
// contiguous arena), squared norms, and binary quantization with a Hamming
// distance scan for a cheap first pass.
//
// Built with GOEXPERIMENT=simd on amd64 (and without the purego tag), the
// kernels use simd/archsimd and pick an AVX-512 or AVX2+FMA implementation at
// run time from the CPU features; otherwise, or on a CPU without AVX2+FMA,
// a portable pure-Go implementation runs. Kernel reports which one is active.
// The choice follows the Go runtime's view of the CPU, so GODEBUG steers it:
// cpu.avx512f=off stops at AVX2, cpu.avx2=off or cpu.fma=off selects the
// generic code.
//
// Results of the different implementations agree up to float32 rounding: they
// sum in different orders, so the last bits of a dot product may differ.
//
// The functions do no allocation and keep no state; they are safe for
// concurrent use.
package vec

// level names an implementation of the kernels.
type level uint8

const (
	levelGeneric level = iota
	levelAVX2
	levelAVX512
)

func (l level) String() string {
	switch l {
	case levelAVX512:
		return "avx512"
	case levelAVX2:
		return "avx2"
	default:
		return "generic"
	}
}

// active is the implementation in use. It is set once at package
// initialization (see detectLevel); tests may switch it to compare paths.
var active = detectLevel()

// Kernel reports which implementation is active: "avx512", "avx2" or
// "generic".
func Kernel() string {
	return active.String()
}

// Dot returns the dot product of a and b. They must have the same length;
// Dot panics otherwise.
func Dot(a, b []float32) float32 {
	if len(a) != len(b) {
		panic("vec: Dot of slices with different lengths")
	}
	return dot(a, b)
}

// SquaredNorm returns the squared Euclidean norm of a, that is Dot(a, a).
func SquaredNorm(a []float32) float32 {
	return dot(a, a)
}

// DotAll computes the dot product of q with every row of a contiguous arena
// of row-major vectors of dimension dim: for row i in [0, n) with
// n = len(arena)/dim, out[i] = Dot(arena[i*dim:(i+1)*dim], q). A partial
// trailing row is ignored. It panics if dim <= 0, len(q) != dim or
// len(out) < n; out[n:] is left untouched.
func DotAll(arena []float32, dim int, q []float32, out []float32) {
	if dim <= 0 {
		panic("vec: DotAll with non-positive dim")
	}
	if len(q) != dim {
		panic("vec: DotAll query length differs from dim")
	}
	n := len(arena) / dim
	if len(out) < n {
		panic("vec: DotAll output shorter than the number of rows")
	}
	if n == 0 {
		return
	}
	dotAll(arena[:n*dim], dim, q, out[:n])
}

// DotMany computes the dot product of q with selected rows of a contiguous
// arena of row-major vectors of dimension dim: for each i,
// out[i] = Dot(arena[r*dim:(r+1)*dim], q) with r = rows[i]. It panics if
// dim <= 0, len(q) != dim, len(out) < len(rows), or a row lies outside the
// arena.
func DotMany(arena []float32, dim int, rows []int32, q []float32, out []float32) {
	if dim <= 0 {
		panic("vec: DotMany with non-positive dim")
	}
	if len(q) != dim {
		panic("vec: DotMany query length differs from dim")
	}
	if len(out) < len(rows) {
		panic("vec: DotMany output shorter than rows")
	}
	if len(rows) == 0 {
		return
	}
	dotMany(arena, dim, rows, q, out[:len(rows)])
}

// Words returns the number of uint64 words in the binary code of a vector of
// dimension dim: ceil(dim/64). It panics if dim is negative.
func Words(dim int) int {
	if dim < 0 {
		panic("vec: Words of negative dim")
	}
	return (dim + 63) / 64
}

// Binarize writes the binary code of v into dst[:Words(len(v))]: bit j (bit
// j%64 of word j/64) is set iff v[j] > 0, so zeros, negative zeros and NaNs
// give 0 bits. Bits past len(v) in the last word are 0. Words of dst beyond
// Words(len(v)) are left untouched. It panics if dst is too short.
func Binarize(v []float32, dst []uint64) {
	w := Words(len(v))
	if len(dst) < w {
		panic("vec: Binarize destination shorter than Words(len(v))")
	}
	binarize(v, dst[:w])
}

// HammingAll computes the Hamming distance between q and every code of a
// contiguous array of binary codes of words uint64 each: for code i in
// [0, n) with n = len(codes)/words, out[i] = popcount(codes[i*words:(i+1)*words] XOR q).
// A partial trailing code is ignored. It panics if words <= 0,
// len(q) != words or len(out) < n; out[n:] is left untouched.
func HammingAll(codes []uint64, words int, q []uint64, out []uint32) {
	if words <= 0 {
		panic("vec: HammingAll with non-positive words")
	}
	if len(q) != words {
		panic("vec: HammingAll query length differs from words")
	}
	n := len(codes) / words
	if len(out) < n {
		panic("vec: HammingAll output shorter than the number of codes")
	}
	hammingAllGeneric(codes[:n*words], words, q, out[:n])
}

// HammingMany computes the Hamming distance between q and selected codes of a
// contiguous array of binary codes of words uint64 each: for each i,
// out[i] = popcount(codes[r*words:(r+1)*words] XOR q) with r = rows[i]. It
// panics if words <= 0, len(q) != words, len(out) < len(rows), or a row lies
// outside codes.
func HammingMany(codes []uint64, words int, rows []int32, q []uint64, out []uint32) {
	if words <= 0 {
		panic("vec: HammingMany with non-positive words")
	}
	if len(q) != words {
		panic("vec: HammingMany query length differs from words")
	}
	if len(out) < len(rows) {
		panic("vec: HammingMany output shorter than rows")
	}
	hammingManyGeneric(codes, words, rows, q, out[:len(rows)])
}
