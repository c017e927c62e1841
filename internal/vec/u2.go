package vec

import "math"

// 2-bit codes: a cheap first pass for exact search.
//
// A vector v of dimension dim is coded as one of four levels per
// coordinate, v'[i] = delta * (c[i] - 1.5) with c[i] in {0, 1, 2, 3}, four
// coordinates per byte: a quarter of the int8 codes, a sixteenth of the
// float32 vector. The layout is the one the AVX2 kernel unpacks with shifts:
// the codes of a row come in blocks of 128 coordinates, 32 bytes each, and
// bits 2k..2k+1 of byte b of block t hold the code of coordinate
// t*128 + 32*k + b. So after a shift by 2k and a mask, the 32 bytes of a
// block are the codes of 32 consecutive coordinates, to be multiplied with
// 32 consecutive query bytes. A row takes U2Stride(dim) bytes; coordinates
// past dim have code 0 and meet a query padded with zeros.

// U2Stride returns the bytes of the 2-bit code of a dim-dimensional vector:
// 32 per block of 128 coordinates (the last block padded).
func U2Stride(dim int) int { return (dim + 127) / 128 * 32 }

// U2QueryLen returns the length of the padded int8 query DotU2All and
// DotU2Many take: 4 * U2Stride(dim).
func U2QueryLen(dim int) int { return 4 * U2Stride(dim) }

// u2Step is the step of QuantizeU2 in units of the root mean square of the
// coordinates: that of the optimal uniform 4-level quantizer of a Gaussian.
const u2Step = 0.996

// QuantizeU2 writes the 2-bit code of v to dst (len >= U2Stride(len(v)))
// and returns its step delta = 0.996 * rms(v): v'[i] = delta*(c[i]-1.5),
// c[i] the level nearest v[i]. A zero vector (or one with a NaN or an
// infinity) gets delta 0 and codes 0. Callers that need an exact bound
// compute |v - v'| themselves (U2Value gives v'[i]).
func QuantizeU2(v []float32, dst []uint8) float32 {
	dst = dst[:U2Stride(len(v))]
	clear(dst)
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if len(v) == 0 || ss == 0 || math.IsNaN(ss) || math.IsInf(ss, 0) {
		return 0
	}
	d := float64(float32(u2Step * math.Sqrt(ss/float64(len(v)))))
	inv := 1 / d
	for i, x := range v {
		dst[i>>7<<5|i&31] |= u2Code(float64(x), inv) << (2 * uint(i>>5&3))
	}
	return float32(d)
}

// u2Code is the level c (0..3) of x for a step 1/inv: floor(x*inv + 2)
// clamped, the nearest of d*(c-1.5). (The conversion truncates toward
// zero, which differs from floor only below 0, where the clamp gives 0
// either way.)
func u2Code(x, inv float64) uint8 {
	c := x*inv + 2
	if c < 1 {
		return 0
	}
	return uint8(min(3, int(c)))
}

// U2Code returns the code (0..3) of coordinate i in the 2-bit code row.
func U2Code(row []uint8, i int) uint8 {
	return row[i/128*32+i%32] >> (2 * uint(i%128/32)) & 3
}

// U2Value returns delta*(c-1.5), the value code c stands for.
func U2Value(c uint8, delta float32) float64 {
	return float64(delta) * (float64(c) - 1.5)
}

// DotU2All computes, for every row r of codes (rows of stride =
// U2Stride(dim) bytes), out[r] = sum over i of q[i] * c_r[i], the raw codes
// c in 0..3 (so the dot product with v' is delta*(out[r] - 1.5*sum(q))).
// q is the int8 query padded with zeros to U2QueryLen(dim) = 4*stride. It
// panics if stride is not a positive multiple of 32, len(q) != 4*stride or
// out is shorter than the number of rows; a partial trailing row is
// ignored.
func DotU2All(codes []uint8, stride int, q []int8, out []int32) {
	checkU2(stride, q)
	n := len(codes) / stride
	if len(out) < n {
		panic("vec: DotU2All output shorter than the number of rows")
	}
	if n == 0 {
		return
	}
	dotU2All(codes[:n*stride], stride, q, out[:n])
}

// DotU2Many is DotU2All on selected rows: out[i] is the sum for row
// rows[i]. It panics as DotU2All does, if out is shorter than rows, or if
// a row lies outside codes.
func DotU2Many(codes []uint8, stride int, rows []int32, q []int8, out []int32) {
	checkU2(stride, q)
	if len(out) < len(rows) {
		panic("vec: DotU2Many output shorter than rows")
	}
	if len(rows) == 0 {
		return
	}
	dotU2Many(codes, stride, rows, q, out[:len(rows)])
}

func checkU2(stride int, q []int8) {
	if stride <= 0 || stride%32 != 0 {
		panic("vec: 2-bit code stride is not a positive multiple of 32")
	}
	if len(q) != 4*stride {
		panic("vec: 2-bit query length is not 4*stride")
	}
}

// dotU2Generic is the portable sum of q[i]*c[i] over one code row.
func dotU2Generic(row []uint8, q []int8) int32 {
	var s int32
	for t := 0; t+32 <= len(row); t += 32 {
		qb := q[4*t : 4*t+128]
		for b, x := range row[t : t+32] {
			s += int32(qb[b])*int32(x&3) + int32(qb[32+b])*int32(x>>2&3) +
				int32(qb[64+b])*int32(x>>4&3) + int32(qb[96+b])*int32(x>>6)
		}
	}
	return s
}

func dotU2AllGeneric(codes []uint8, stride int, q []int8, out []int32) {
	for i := range out {
		out[i] = dotU2Generic(codes[i*stride:(i+1)*stride], q)
	}
}

func dotU2ManyGeneric(codes []uint8, stride int, rows []int32, q []int8, out []int32) {
	for i, r := range rows {
		out[i] = dotU2Generic(codes[int(r)*stride:(int(r)+1)*stride], q)
	}
}
