package vec

import (
	"math"
	"math/bits"
)

// The portable implementations. They are compiled in every build: they are
// the fallback, and the tests compare the SIMD kernels against them.
//
// Loads go through fixed-size array pointers ((*[8]float32)(s)) so the
// loop condition proves every access in bounds.

// dotGeneric returns the dot product of a and b[:len(a)].
func dotGeneric(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	for len(a) >= 8 && len(b) >= 8 {
		x := (*[8]float32)(a)
		y := (*[8]float32)(b)
		s0 += x[0]*y[0] + x[4]*y[4]
		s1 += x[1]*y[1] + x[5]*y[5]
		s2 += x[2]*y[2] + x[6]*y[6]
		s3 += x[3]*y[3] + x[7]*y[7]
		a = a[8:]
		b = b[8:]
	}
	for i, x := range a {
		s0 += x * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// dotAllGeneric is DotAll after argument checks: len(arena) == len(out)*dim.
func dotAllGeneric(arena []float32, dim int, q, out []float32) {
	q = q[:dim]
	for i := range out {
		off := i * dim
		out[i] = dotGeneric(arena[off:off+dim:off+dim], q)
	}
}

// dotManyGeneric is DotMany after argument checks: len(out) == len(rows).
func dotManyGeneric(arena []float32, dim int, rows []int32, q, out []float32) {
	q = q[:dim]
	out = out[:len(rows)]
	for i, r := range rows {
		off := int(r) * dim
		out[i] = dotGeneric(arena[off:off+dim:off+dim], q)
	}
}

// binarizeWord returns the code bits of v (at most 64 values), bit j set iff
// v[j] > 0.
func binarizeWord(v []float32) uint64 {
	var w uint64
	for j, x := range v {
		if x > 0 {
			w |= 1 << uint(j)
		}
	}
	return w
}

// binarizeGeneric is Binarize after argument checks: len(dst) == Words(len(v)).
func binarizeGeneric(v []float32, dst []uint64) {
	for k := range dst {
		lo := k * 64
		hi := min(lo+64, len(v))
		dst[k] = binarizeWord(v[lo:hi])
	}
}

// hamming returns popcount(c XOR q) over len(q) words; len(c) >= len(q).
func hamming(c, q []uint64) uint32 {
	c = c[:len(q)]
	var s0, s1, s2, s3 int
	for len(c) >= 4 && len(q) >= 4 {
		x := (*[4]uint64)(c)
		y := (*[4]uint64)(q)
		s0 += bits.OnesCount64(x[0] ^ y[0])
		s1 += bits.OnesCount64(x[1] ^ y[1])
		s2 += bits.OnesCount64(x[2] ^ y[2])
		s3 += bits.OnesCount64(x[3] ^ y[3])
		c = c[4:]
		q = q[4:]
	}
	for i, x := range q {
		s0 += bits.OnesCount64(c[i] ^ x)
	}
	return uint32((s0 + s1) + (s2 + s3))
}

// hammingAllGeneric is HammingAll after argument checks:
// len(codes) == len(out)*words.
func hammingAllGeneric(codes []uint64, words int, q []uint64, out []uint32) {
	q = q[:words]
	for i := range out {
		off := i * words
		out[i] = hamming(codes[off:off+words:off+words], q)
	}
}

// hammingManyGeneric is HammingMany after argument checks: len(out) == len(rows).
func hammingManyGeneric(codes []uint64, words int, rows []int32, q []uint64, out []uint32) {
	q = q[:words]
	out = out[:len(rows)]
	for i, r := range rows {
		off := int(r) * words
		out[i] = hamming(codes[off:off+words:off+words], q)
	}
}

// quantizeInt8Generic is QuantizeInt8 after argument checks: len(dst) == len(v).
//
// It works in float64, where 127/max|v| is finite even for a subnormal max,
// and where for |v[i]| <= max the product v[i] * (127/max) is at most
// 127*(1+2^-52), so the largest |v[i]| rounds to exactly ±127 and no code
// needs clamping. Adding and subtracting 1.5*2^52 rounds a float64 of
// magnitude below 2^51 to an integer, ties to even (the default rounding
// mode, which Go never changes); Go does not reassociate float arithmetic,
// so the two operations stay. The maximum is taken on the bits (|x| is the
// bits without the sign, ordered like the values for non-NaN x), without
// branches. Non-finite vectors go to quantizeInt8NonFinite.
func quantizeInt8Generic(v []float32, dst []int8) float32 {
	dst = dst[:len(v)]
	var m0, m1, m2, m3 uint32
	for w := v; len(w) >= 4; w = w[4:] {
		x := (*[4]float32)(w)
		m0 = max(m0, math.Float32bits(x[0])&0x7fffffff)
		m1 = max(m1, math.Float32bits(x[1])&0x7fffffff)
		m2 = max(m2, math.Float32bits(x[2])&0x7fffffff)
		m3 = max(m3, math.Float32bits(x[3])&0x7fffffff)
	}
	for _, x := range v[len(v)&^3:] {
		m0 = max(m0, math.Float32bits(x)&0x7fffffff)
	}
	mb := max(m0, m1, m2, m3)
	switch {
	case mb >= 0x7f800000: // an Inf or a NaN
		return quantizeInt8NonFinite(v, dst)
	case mb == 0:
		clear(dst)
		return 0
	}
	m := math.Float32frombits(mb)
	const round = 1 << 52 * 1.5
	inv := 127 / float64(m)
	for i, x := range v {
		dst[i] = int8(int32((float64(x)*inv + round) - round))
	}
	return m / 127
}

// quantizeInt8NonFinite is quantizeInt8Generic for a v holding NaN or ±Inf:
// NaN is ignored for the scale and gets code 0; with an infinite
// coordinate the scale is +Inf and the codes 0.
func quantizeInt8NonFinite(v []float32, dst []int8) float32 {
	dst = dst[:len(v)]
	var m float32
	for _, x := range v {
		// Comparisons with NaN are false: NaN is ignored.
		if x > m {
			m = x
		} else if -x > m {
			m = -x
		}
	}
	if m == 0 {
		clear(dst)
		return 0
	}
	inv := 127 / float64(m) // 0 if m is +Inf
	for i, x := range v {
		r := math.RoundToEven(float64(x) * inv)
		if r != r { // from NaN, or ±Inf*0
			r = 0
		}
		dst[i] = int8(r)
	}
	return m / 127
}

// dotInt8Generic returns the dot product of a and b[:len(a)]. The int32
// sums wrap, so the result is exact whenever the true dot product fits in
// an int32, whatever the order of the partial sums.
func dotInt8Generic(a, b []int8) int32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 int32
	for len(a) >= 8 && len(b) >= 8 {
		x := (*[8]int8)(a)
		y := (*[8]int8)(b)
		s0 += int32(x[0])*int32(y[0]) + int32(x[4])*int32(y[4])
		s1 += int32(x[1])*int32(y[1]) + int32(x[5])*int32(y[5])
		s2 += int32(x[2])*int32(y[2]) + int32(x[6])*int32(y[6])
		s3 += int32(x[3])*int32(y[3]) + int32(x[7])*int32(y[7])
		a = a[8:]
		b = b[8:]
	}
	for i, x := range a {
		s0 += int32(x) * int32(b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// dotInt8AllGeneric is DotInt8All after argument checks:
// len(codes) == len(out)*dim.
func dotInt8AllGeneric(codes []int8, dim int, q []int8, out []int32) {
	q = q[:dim]
	for i := range out {
		off := i * dim
		out[i] = dotInt8Generic(codes[off:off+dim:off+dim], q)
	}
}

// dotInt8ManyGeneric is DotInt8Many after argument checks: len(out) == len(rows).
func dotInt8ManyGeneric(codes []int8, dim int, rows []int32, q []int8, out []int32) {
	q = q[:dim]
	out = out[:len(rows)]
	for i, r := range rows {
		off := int(r) * dim
		out[i] = dotInt8Generic(codes[off:off+dim:off+dim], q)
	}
}

// hammingManyStrideGeneric is HammingManyStride after argument checks.
func hammingManyStrideGeneric(codes []uint64, stride, words int, rows []int32, q []uint64, out []uint32) {
	q = q[:words]
	for i, r := range rows {
		off := int(r) * stride
		out[i] = hamming(codes[off:off+words:off+words], q)
	}
}
