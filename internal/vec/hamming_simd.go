//go:build goexperiment.simd && amd64 && !purego

package vec

import (
	"math/bits"
	"simd/archsimd"
)

// The Hamming kernels.
//
// AVX2 has no vector popcount, so the AVX2 kernels count bits by nibble
// lookup: for each byte of v = code XOR query, VPSHUFB looks up the
// popcounts of its low and its high nibble in a 16-entry table (one copy per
// 128-bit lane, as VPSHUFB looks up within lanes), and VPADDB adds the two,
// at most 8 per byte. A row's bytes accumulate in a byte vector (at most 8
// per byte per 4-word load, so 31 loads, hamBlock words, before a byte could
// overflow); VPSADBW against zero then sums each group of 8 bytes into a
// 64-bit lane, and the four rows of a group are reduced together: two rounds
// of VPHADDD (the lane sums fit in 32 bits) give the four row totals in one
// 128-bit vector, stored straight to out. About 8 vector instructions per 32
// bytes of codes: well above memory bandwidth when the codes come from DRAM.
//
// The high nibble is v >> 4 in 64-bit lanes (VPSRLVQ by a vector of 4s)
// masked with 0x0f: the bits shifted in from the next byte are masked away.
// Not ShiftAllRight(4): the compiler moves its count into an XMM register
// with a legacy-SSE MOVQ, inside the loop, and that SSE instruction with
// dirty upper halves costs the transition penalty described at the top of
// kernels_simd.go on every iteration (it made the scan 10 times slower).
//
// Access order matters on large arrays. For rows of several cache lines,
// HammingAll scans the rows one after the other (hammingAll48AVX2,
// hammingAll24AVX2, hammingAllAVX2), so the codes are read as one
// sequential stream the hardware prefetcher follows: reading four rows
// interleaved (four streams a row apart) was measured about 20% slower with
// rows of 24 and 48 words and 60% slower with rows of 100 words, on arrays
// of 19 to 40 MB. For short rows
// (hammingAllShortAVX2) the four rows of a group span a few lines, so they
// are read interleaved, which needs no call per row. HammingMany gets rows
// from anywhere, and there the interleaved order of hamming4AVX2 is better:
// the first lines of four rows are requested at once instead of one row
// after the other (measured 1.6 times faster on every 10th row of a 38 MB
// array of 48-word codes).
//
// The compiler hoists the loads of a basic block ahead of their uses, and
// spills what does not fit the registers: four rows of 48 words unrolled in
// one block made about 300 stack accesses per iteration. So the per-row
// work of the HammingAll kernels is in a separate (noinline) function, one
// row of 12 loads of code and 12 of query per call, which fits but for a
// few spills.
//
// The vector loads use constant offsets from fixed-size array pointers
// where the row length is known (48 and 24 words, 3072 and 1536 dimensions):
// with a loop index the compiler computes each address with two LEAs.
//
// The AVX-512 level uses VPOPCNTQ when the CPU has AVX512VPOPCNTDQ
// (hamming4AVX512, for HammingAll as well, four rows interleaved), and the
// AVX2 kernels otherwise. That kernel has not been measured: the machine
// this was written on has no AVX-512; the tests run it where the CPU has it.
//
// Like the other kernels, these store their results before
// ClearAVXUpperBits. The scalar remainders (the last words%4 words) use
// POPCNT, an integer instruction, which is not subject to the SSE
// transition penalty.

// hamBlock is the most words whose nibble counts one byte accumulator can
// take: 31 loads of 4 words, at most 8 per byte each, 248 <= 255.
const hamBlock = 124

// hamShort is the code size (in words) from which HammingAll reads the rows
// one after the other rather than four interleaved.
const hamShort = 32

// nibblePop holds the popcount of each 4-bit value, once per 128-bit lane.
var nibblePop = [32]uint8{
	0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
	0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
}

// popConsts returns the constants of pop256: the nibble table, the low
// nibble mask and the shift count.
func popConsts() (tbl, low archsimd.Uint8x32, four archsimd.Uint64x4) {
	return archsimd.LoadUint8x32(&nibblePop), archsimd.BroadcastUint8x32(0x0f), archsimd.BroadcastUint64x4(4)
}

// pop256 returns the popcount of each byte of v.
func pop256(v archsimd.Uint64x4, tbl, low archsimd.Uint8x32, four archsimd.Uint64x4) archsimd.Uint8x32 {
	lo := v.AsUint8x32().And(low)
	hi := v.ShiftRight(four).AsUint8x32().And(low)
	return tbl.PermuteOrZeroGrouped(lo.AsInt8x32()).Add(tbl.PermuteOrZeroGrouped(hi.AsInt8x32()))
}

// xorPop4 returns the byte popcounts of r XOR q, 4 words.
func xorPop4(r, q *[4]uint64, tbl, low archsimd.Uint8x32, four archsimd.Uint64x4) archsimd.Uint8x32 {
	return pop256(archsimd.LoadUint64x4(r).Xor(archsimd.LoadUint64x4(q)), tbl, low, four)
}

// xorPop16 returns the byte popcounts of r XOR q, 16 words, summed over
// the 4 vectors (at most 32 per byte). (Written out rather than with
// xorPop4, to stay within the inlining budget.)
func xorPop16(r, q *[16]uint64, tbl, low archsimd.Uint8x32, four archsimd.Uint64x4) archsimd.Uint8x32 {
	a := pop256(archsimd.LoadUint64x4((*[4]uint64)(r[0:4])).Xor(archsimd.LoadUint64x4((*[4]uint64)(q[0:4]))), tbl, low, four)
	b := pop256(archsimd.LoadUint64x4((*[4]uint64)(r[4:8])).Xor(archsimd.LoadUint64x4((*[4]uint64)(q[4:8]))), tbl, low, four)
	c := pop256(archsimd.LoadUint64x4((*[4]uint64)(r[8:12])).Xor(archsimd.LoadUint64x4((*[4]uint64)(q[8:12]))), tbl, low, four)
	d := pop256(archsimd.LoadUint64x4((*[4]uint64)(r[12:16])).Xor(archsimd.LoadUint64x4((*[4]uint64)(q[12:16]))), tbl, low, four)
	return a.Add(b).Add(c.Add(d))
}

// sad returns the sums of each group of 8 bytes of b, in 64-bit lanes.
func sad(b archsimd.Uint8x32) archsimd.Uint64x4 {
	var zero archsimd.Uint8x32
	return b.SumAbsDiff(zero).AsUint64x4()
}

// sum4 stores to out the totals of the four lanes of s0, s1, s2 and s3,
// each below 2^32.
func sum4(s0, s1, s2, s3 archsimd.Uint64x4, out *[4]uint32) {
	// As 32-bit lanes, s is [a0 0 a1 0 | a2 0 a3 0]: two rounds of
	// pairwise adds within 128-bit halves give [Σs0' Σs1' Σs2' Σs3'] per
	// half, and the two halves add up.
	h := s0.AsUint32x8().AddPairsGrouped(s1.AsUint32x8()).AddPairsGrouped(
		s2.AsUint32x8().AddPairsGrouped(s3.AsUint32x8()))
	h.GetLo().Add(h.GetHi()).Store(out)
}

// popRow48 returns the popcounts of r XOR q as sad lanes.
//
//go:noinline
func popRow48(r, q *[48]uint64, tbl, low archsimd.Uint8x32, four archsimd.Uint64x4) archsimd.Uint64x4 {
	b := xorPop16((*[16]uint64)(r[0:16]), (*[16]uint64)(q[0:16]), tbl, low, four)
	b = b.Add(xorPop16((*[16]uint64)(r[16:32]), (*[16]uint64)(q[16:32]), tbl, low, four))
	b = b.Add(xorPop16((*[16]uint64)(r[32:48]), (*[16]uint64)(q[32:48]), tbl, low, four))
	return sad(b)
}

// popRow24 returns the popcounts of r XOR q as sad lanes.
//
//go:noinline
func popRow24(r, q *[24]uint64, tbl, low archsimd.Uint8x32, four archsimd.Uint64x4) archsimd.Uint64x4 {
	b := xorPop16((*[16]uint64)(r[0:16]), (*[16]uint64)(q[0:16]), tbl, low, four)
	b = b.Add(xorPop4((*[4]uint64)(r[16:20]), (*[4]uint64)(q[16:20]), tbl, low, four))
	b = b.Add(xorPop4((*[4]uint64)(r[20:24]), (*[4]uint64)(q[20:24]), tbl, low, four))
	return sad(b)
}

// popRowN returns the popcounts of r XOR q over the first len(q)&^3 words
// (len(r) >= len(q)) as sad lanes, any number of words.
//
//go:noinline
func popRowN(r, q []uint64, tbl, low archsimd.Uint8x32, four archsimd.Uint64x4) archsimd.Uint64x4 {
	var s archsimd.Uint64x4
	for len(q) >= 4 && len(r) >= 4 {
		n := min(len(q)&^3, hamBlock)
		bq, br := q[:n], r[:n]
		var b archsimd.Uint8x32
		for len(bq) >= 16 && len(br) >= 16 {
			b = b.Add(xorPop16((*[16]uint64)(br), (*[16]uint64)(bq), tbl, low, four))
			bq, br = bq[16:], br[16:]
		}
		for len(bq) >= 4 && len(br) >= 4 {
			b = b.Add(xorPop4((*[4]uint64)(br), (*[4]uint64)(bq), tbl, low, four))
			bq, br = bq[4:], br[4:]
		}
		s = s.Add(sad(b))
		q, r = q[n:], r[n:]
	}
	return s
}

// hammingTail returns popcount(c XOR q) over len(q) words, len(c) >= len(q),
// in integer code.
func hammingTail(c, q []uint64) uint32 {
	c = c[:len(q)]
	var n int
	for i, x := range q {
		n += bits.OnesCount64(c[i] ^ x)
	}
	return uint32(n)
}

// hammingAll48AVX2 is HammingAll for 48 words on the first len(out)&^3
// rows of codes, four rows per iteration.
//
//go:noinline
func hammingAll48AVX2(codes []uint64, q *[48]uint64, out []uint32) {
	tbl, low, four := popConsts()
	for len(out) >= 4 && len(codes) >= 4*48 {
		x := (*[4 * 48]uint64)(codes)
		s0 := popRow48((*[48]uint64)(x[0:48]), q, tbl, low, four)
		s1 := popRow48((*[48]uint64)(x[48:96]), q, tbl, low, four)
		s2 := popRow48((*[48]uint64)(x[96:144]), q, tbl, low, four)
		s3 := popRow48((*[48]uint64)(x[144:192]), q, tbl, low, four)
		sum4(s0, s1, s2, s3, (*[4]uint32)(out))
		out = out[4:]
		codes = codes[4*48:]
	}
	archsimd.ClearAVXUpperBits()
}

// hammingAll24AVX2 is HammingAll for 24 words on the first len(out)&^3
// rows of codes, four rows per iteration.
//
//go:noinline
func hammingAll24AVX2(codes []uint64, q *[24]uint64, out []uint32) {
	tbl, low, four := popConsts()
	for len(out) >= 4 && len(codes) >= 4*24 {
		x := (*[4 * 24]uint64)(codes)
		s0 := popRow24((*[24]uint64)(x[0:24]), q, tbl, low, four)
		s1 := popRow24((*[24]uint64)(x[24:48]), q, tbl, low, four)
		s2 := popRow24((*[24]uint64)(x[48:72]), q, tbl, low, four)
		s3 := popRow24((*[24]uint64)(x[72:96]), q, tbl, low, four)
		sum4(s0, s1, s2, s3, (*[4]uint32)(out))
		out = out[4:]
		codes = codes[4*24:]
	}
	archsimd.ClearAVXUpperBits()
}

// hammingAllShortAVX2 is HammingAll for 4 <= words <= hamBlock (len(q) ==
// words) on the first len(out)&^3 rows of codes, four rows per iteration,
// read interleaved like hamming4AVX2 but without a call per row: for short
// rows (up to a few cache lines) the per-row call of hammingAllAVX2 costs
// more than the access order gains. The last words%4 words of each row are
// counted with POPCNT after the vector totals are stored.
//
//go:noinline
func hammingAllShortAVX2(codes []uint64, words int, q []uint64, out []uint32) {
	q = q[:words]
	n := words &^ 3
	qv := q[:n:n]
	qt := q[n:]
	tbl, low, four := popConsts()
	for len(out) >= 4 && len(codes) >= 4*words {
		r0 := codes[:n:n]
		r1 := codes[words : words+n : words+n]
		r2 := codes[2*words : 2*words+n : 2*words+n]
		r3 := codes[3*words : 3*words+n : 3*words+n]
		var b0, b1, b2, b3 archsimd.Uint8x32
		for i := 4; i <= n; i += 4 {
			v := archsimd.LoadUint64x4((*[4]uint64)(qv[i-4 : i]))
			b0 = b0.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(r0[i-4:i])).Xor(v), tbl, low, four))
			b1 = b1.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(r1[i-4:i])).Xor(v), tbl, low, four))
			b2 = b2.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(r2[i-4:i])).Xor(v), tbl, low, four))
			b3 = b3.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(r3[i-4:i])).Xor(v), tbl, low, four))
		}
		o := (*[4]uint32)(out)
		sum4(sad(b0), sad(b1), sad(b2), sad(b3), o)
		if len(qt) > 0 {
			o[0] += hammingTail(codes[n:words], qt)
			o[1] += hammingTail(codes[words+n:2*words], qt)
			o[2] += hammingTail(codes[2*words+n:3*words], qt)
			o[3] += hammingTail(codes[3*words+n:4*words], qt)
		}
		out = out[4:]
		codes = codes[4*words:]
	}
	archsimd.ClearAVXUpperBits()
}

// hammingAllAVX2 is HammingAll for any words >= 4 (len(q) == words) on the
// first len(out)&^3 rows of codes, four rows per iteration. The last
// words%4 words of each row are counted with POPCNT after the vector
// totals are stored.
//
//go:noinline
func hammingAllAVX2(codes []uint64, words int, q []uint64, out []uint32) {
	q = q[:words]
	w4 := words &^ 3
	qt := q[w4:]
	tbl, low, four := popConsts()
	for len(out) >= 4 && len(codes) >= 4*words {
		o := (*[4]uint32)(out)
		s0 := popRowN(codes, q, tbl, low, four)
		s1 := popRowN(codes[words:], q, tbl, low, four)
		s2 := popRowN(codes[2*words:], q, tbl, low, four)
		s3 := popRowN(codes[3*words:], q, tbl, low, four)
		sum4(s0, s1, s2, s3, o)
		if len(qt) > 0 {
			o[0] += hammingTail(codes[w4:words], qt)
			o[1] += hammingTail(codes[words+w4:2*words], qt)
			o[2] += hammingTail(codes[2*words+w4:3*words], qt)
			o[3] += hammingTail(codes[3*words+w4:4*words], qt)
		}
		out = out[4:]
		codes = codes[4*words:]
	}
	archsimd.ClearAVXUpperBits()
}

// hamming4AVX2 stores to out the popcounts of q XOR r0, r1, r2 and r3 over
// their first n = len(q)&^3 words; n must be at most hamBlock, and the rows
// at least n long. The four rows are read interleaved, 8 words of each at
// a time.
//
//go:noinline
func hamming4AVX2(r0, r1, r2, r3, q []uint64, out *[4]uint32) {
	n := len(q) &^ 3
	q = q[:n:n]
	r0 = r0[:n:n]
	r1 = r1[:n:n]
	r2 = r2[:n:n]
	r3 = r3[:n:n]
	tbl, low, four := popConsts()
	var b0, b1, b2, b3 archsimd.Uint8x32
	i := 8
	for ; i <= n; i += 8 {
		qb := (*[8]uint64)(q[i-8 : i])
		x0 := (*[8]uint64)(r0[i-8 : i])
		x1 := (*[8]uint64)(r1[i-8 : i])
		x2 := (*[8]uint64)(r2[i-8 : i])
		x3 := (*[8]uint64)(r3[i-8 : i])
		qv := archsimd.LoadUint64x4((*[4]uint64)(qb[0:4]))
		b0 = b0.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(x0[0:4])).Xor(qv), tbl, low, four))
		b1 = b1.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(x1[0:4])).Xor(qv), tbl, low, four))
		b2 = b2.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(x2[0:4])).Xor(qv), tbl, low, four))
		b3 = b3.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(x3[0:4])).Xor(qv), tbl, low, four))
		qv = archsimd.LoadUint64x4((*[4]uint64)(qb[4:8]))
		b0 = b0.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(x0[4:8])).Xor(qv), tbl, low, four))
		b1 = b1.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(x1[4:8])).Xor(qv), tbl, low, four))
		b2 = b2.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(x2[4:8])).Xor(qv), tbl, low, four))
		b3 = b3.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(x3[4:8])).Xor(qv), tbl, low, four))
	}
	i -= 8 // words done
	if i+4 <= n {
		qv := archsimd.LoadUint64x4((*[4]uint64)(q[i : i+4]))
		b0 = b0.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(r0[i:i+4])).Xor(qv), tbl, low, four))
		b1 = b1.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(r1[i:i+4])).Xor(qv), tbl, low, four))
		b2 = b2.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(r2[i:i+4])).Xor(qv), tbl, low, four))
		b3 = b3.Add(pop256(archsimd.LoadUint64x4((*[4]uint64)(r3[i:i+4])).Xor(qv), tbl, low, four))
	}
	sum4(sad(b0), sad(b1), sad(b2), sad(b3), out)
	archsimd.ClearAVXUpperBits()
}

// hamming4AVX512 stores to out the popcounts of q XOR r0, r1, r2 and r3 over
// their first len(q)&^3 words (the rows at least that long) with VPOPCNTQ
// (AVX512VPOPCNTDQ): 8 words per 512-bit load, then 4 with a 256-bit one.
// The four rows are read interleaved.
//
//go:noinline
func hamming4AVX512(r0, r1, r2, r3, q []uint64, out *[4]uint32) {
	n := len(q) &^ 3
	q = q[:n:n]
	r0 = r0[:n:n]
	r1 = r1[:n:n]
	r2 = r2[:n:n]
	r3 = r3[:n:n]
	var a0, a1, a2, a3 archsimd.Uint64x8
	i := 8
	for ; i <= n; i += 8 {
		qv := archsimd.LoadUint64x8((*[8]uint64)(q[i-8 : i]))
		a0 = a0.Add(archsimd.LoadUint64x8((*[8]uint64)(r0[i-8 : i])).Xor(qv).OnesCount())
		a1 = a1.Add(archsimd.LoadUint64x8((*[8]uint64)(r1[i-8 : i])).Xor(qv).OnesCount())
		a2 = a2.Add(archsimd.LoadUint64x8((*[8]uint64)(r2[i-8 : i])).Xor(qv).OnesCount())
		a3 = a3.Add(archsimd.LoadUint64x8((*[8]uint64)(r3[i-8 : i])).Xor(qv).OnesCount())
	}
	i -= 8 // words done
	s0 := a0.GetLo().Add(a0.GetHi())
	s1 := a1.GetLo().Add(a1.GetHi())
	s2 := a2.GetLo().Add(a2.GetHi())
	s3 := a3.GetLo().Add(a3.GetHi())
	if i+4 <= n {
		qv := archsimd.LoadUint64x4((*[4]uint64)(q[i : i+4]))
		s0 = s0.Add(archsimd.LoadUint64x4((*[4]uint64)(r0[i : i+4])).Xor(qv).OnesCount())
		s1 = s1.Add(archsimd.LoadUint64x4((*[4]uint64)(r1[i : i+4])).Xor(qv).OnesCount())
		s2 = s2.Add(archsimd.LoadUint64x4((*[4]uint64)(r2[i : i+4])).Xor(qv).OnesCount())
		s3 = s3.Add(archsimd.LoadUint64x4((*[4]uint64)(r3[i : i+4])).Xor(qv).OnesCount())
	}
	sum4(s0, s1, s2, s3, out)
	archsimd.ClearAVXUpperBits()
}
