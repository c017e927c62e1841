package vec

import "math/bits"

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
