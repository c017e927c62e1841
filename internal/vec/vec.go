// Package vec holds the numeric kernels of the memory engine's vector search:
// float32 dot products (one pair, or one query against many rows of a
// contiguous arena), squared norms, binary quantization with a Hamming
// distance scan for a cheap first pass, and int8 scalar quantization with
// exact integer dot products to re-rank the candidates of that pass.
//
// Built with GOEXPERIMENT=simd on amd64 (and without the purego tag), the
// kernels use simd/archsimd and pick an AVX-512 or AVX2+FMA implementation at
// run time from the CPU features; otherwise, or on a CPU without AVX2+FMA,
// a portable pure-Go implementation runs. Kernel reports which one is active.
// The choice follows the Go runtime's view of the CPU, so GODEBUG steers it:
// cpu.avx512f=off stops at AVX2, cpu.avx2=off or cpu.fma=off selects the
// generic code.
//
// The int8 kernels have no AVX-512 variant: the avx512 level runs their AVX2
// code. The Hamming scans use VPOPCNTQ at the avx512 level if the CPU has
// AVX512VPOPCNTDQ, and the AVX2 code otherwise.
//
// Results of the different implementations agree up to float32 rounding: they
// sum in different orders, so the last bits of a dot product may differ. The
// int8 dot products and the Hamming distances are exact integers, identical
// in every implementation.
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

// DotNormMany is DotMany that also returns each selected row's squared
// norm: dots[i] = Dot(row, q) and norms[i] = SquaredNorm(row) for row r =
// rows[i], reading each row once where the CPU allows. It panics like
// DotMany, and if len(norms) < len(rows).
func DotNormMany(arena []float32, dim int, rows []int32, q []float32, dots, norms []float32) {
	if dim <= 0 {
		panic("vec: DotNormMany with non-positive dim")
	}
	if len(q) != dim {
		panic("vec: DotNormMany query length differs from dim")
	}
	if len(dots) < len(rows) || len(norms) < len(rows) {
		panic("vec: DotNormMany output shorter than rows")
	}
	for _, r := range rows {
		if r < 0 || (int(r)+1)*dim > len(arena) {
			panic("vec: DotNormMany row outside the arena")
		}
	}
	dotNormMany(arena, dim, rows, q, dots, norms)
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
	hammingAll(codes[:n*words], words, q, out[:n])
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
	hammingMany(codes, words, rows, q, out[:len(rows)])
}

// QuantizeInt8 writes the symmetric int8 quantization of v into
// dst[:len(v)] and returns its scale, so that v[i] ≈ scale*float32(dst[i]):
// scale = max|v[i]|/127, and dst[i] is v[i]/scale rounded to the nearest
// integer (ties to even), so the largest |v[i]| maps to ±127 and every code
// lies in [-127, 127] (never -128). An all-zero (or empty) v gives scale 0
// and zero codes. The rounding error is at most scale/2 per coordinate, and
// the dot product of two vectors is approximately
// scaleA*scaleB*float32(DotInt8(codeA, codeB)).
//
// v should be finite (the engine stores no NaN or Inf): NaN coordinates are
// ignored for the scale and get code 0, and an infinite coordinate gives
// scale +Inf and zero codes. Elements of dst past len(v) are left untouched.
// It panics if dst is shorter than v.
func QuantizeInt8(v []float32, dst []int8) float32 {
	if len(dst) < len(v) {
		panic("vec: QuantizeInt8 destination shorter than v")
	}
	return quantizeInt8Generic(v, dst[:len(v)])
}

// DotInt8 returns the dot product of a and b as an exact int32. They must
// have the same length; DotInt8 panics otherwise. Any int8 values are
// allowed. The result cannot overflow for codes in [-127, 127] (as
// QuantizeInt8 writes) up to a length of 133,144, and for any int8 values
// up to 131,071; past that it wraps.
func DotInt8(a, b []int8) int32 {
	if len(a) != len(b) {
		panic("vec: DotInt8 of slices with different lengths")
	}
	return dotInt8(a, b)
}

// DotInt8All computes the exact dot product of q with every row of a
// contiguous array of row-major int8 codes of dimension dim: for row i in
// [0, n) with n = len(codes)/dim, out[i] = DotInt8(codes[i*dim:(i+1)*dim], q).
// A partial trailing row is ignored. It panics if dim <= 0, len(q) != dim or
// len(out) < n; out[n:] is left untouched.
//
// The rows may hold any int8 values; a q without -128 (as QuantizeInt8
// writes) takes a kernel about twice faster on AVX2.
func DotInt8All(codes []int8, dim int, q []int8, out []int32) {
	if dim <= 0 {
		panic("vec: DotInt8All with non-positive dim")
	}
	if len(q) != dim {
		panic("vec: DotInt8All query length differs from dim")
	}
	n := len(codes) / dim
	if len(out) < n {
		panic("vec: DotInt8All output shorter than the number of rows")
	}
	if n == 0 {
		return
	}
	dotInt8All(codes[:n*dim], dim, q, out[:n])
}

// DotInt8Many computes the exact dot product of q with selected rows of a
// contiguous array of row-major int8 codes of dimension dim: for each i,
// out[i] = DotInt8(codes[r*dim:(r+1)*dim], q) with r = rows[i]. It panics if
// dim <= 0, len(q) != dim, len(out) < len(rows), or a row lies outside
// codes. Like DotInt8All, it is fastest with a q without -128.
func DotInt8Many(codes []int8, dim int, rows []int32, q []int8, out []int32) {
	if dim <= 0 {
		panic("vec: DotInt8Many with non-positive dim")
	}
	if len(q) != dim {
		panic("vec: DotInt8Many query length differs from dim")
	}
	if len(out) < len(rows) {
		panic("vec: DotInt8Many output shorter than rows")
	}
	if len(rows) == 0 {
		return
	}
	dotInt8Many(codes, dim, rows, q, out[:len(rows)])
}

// HammingManyStride is HammingMany over codes laid out with a stride: code r
// is codes[r*stride : r*stride+words] (stride >= words; the words between
// codes, such as a checksum stored beside each code, are not read). It
// panics if words <= 0, stride < words, len(q) != words, len(out) <
// len(rows), or a row lies outside codes.
func HammingManyStride(codes []uint64, stride, words int, rows []int32, q []uint64, out []uint32) {
	if words <= 0 {
		panic("vec: HammingManyStride with non-positive words")
	}
	if stride < words {
		panic("vec: HammingManyStride with a stride shorter than a code")
	}
	if len(q) != words {
		panic("vec: HammingManyStride query length differs from words")
	}
	if len(out) < len(rows) {
		panic("vec: HammingManyStride output shorter than rows")
	}
	hammingManyStride(codes, stride, words, rows, q, out[:len(rows)])
}
