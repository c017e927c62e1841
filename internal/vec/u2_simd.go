//go:build goexperiment.simd && amd64 && !purego

package vec

import "simd/archsimd"

// The 2-bit kernel (see u2.go for the layout). Per block of 128
// coordinates and row: one 32-byte load, three 64-bit lane shifts, four masks,
// four VPMADDUBSW (unsigned code times signed query byte, pairs summed to
// int16: at most 2*3*128 = 768, no saturation), three int16 adds (at most
// 3072) and one VPMADDWD widening to int32. Four rows at a time share the
// query loads and keep four memory streams in flight. The upper-state rule
// of kernels_simd.go applies: results leave through memory, then
// ClearAVXUpperBits.

// u2Block returns the int16 pair sums of one 32-byte code block against
// the four 32-byte query planes.
//
// The shifts are VPSRLVQ by a vector of counts (two bits): a shift of the
// 64-bit lanes moves the same bits into the low two of each byte as a byte
// shift would. (A shift by an immediate count compiles to a legacy-SSE
// MOVQ of the count into a vector register in every iteration, which
// costs about 100 ns with the upper halves dirty: see kernels_simd.go.)
func u2Block(c archsimd.Uint8x32, q0, q1, q2, q3 archsimd.Int8x32, m3 archsimd.Uint8x32, two archsimd.Uint64x4) archsimd.Int16x16 {
	w1 := c.AsUint64x4().ShiftRight(two)
	w2 := w1.ShiftRight(two)
	w3 := w2.ShiftRight(two)
	p0 := c.And(m3).DotProductPairsSaturated(q0)
	p1 := w1.AsUint8x32().And(m3).DotProductPairsSaturated(q1)
	p2 := w2.AsUint8x32().And(m3).DotProductPairsSaturated(q2)
	p3 := w3.AsUint8x32().And(m3).DotProductPairsSaturated(q3)
	return p0.Add(p1).Add(p2.Add(p3))
}

// dotU2x4AVX2 writes to out the sums of q with the 2-bit rows r0..r3 (each
// len(q)/4 bytes, a multiple of 32).
//
//go:noinline
func dotU2x4AVX2(r0, r1, r2, r3 []uint8, q []int8, out *[4]int32) {
	n := len(q) / 4 &^ 31
	q = q[: 4*n : 4*n]
	r0 = r0[:n:n]
	r1 = r1[:n:n]
	r2 = r2[:n:n]
	r3 = r3[:n:n]
	m3 := archsimd.BroadcastUint8x32(3)
	ones := archsimd.BroadcastInt16x16(1)
	two := archsimd.BroadcastUint64x4(2)
	var a0, a1, a2, a3 archsimd.Int32x8
	for len(q) >= 128 && len(r0) >= 32 && len(r1) >= 32 && len(r2) >= 32 && len(r3) >= 32 {
		qb := (*[128]int8)(q)
		q0 := archsimd.LoadInt8x32((*[32]int8)(qb[0:32]))
		q1 := archsimd.LoadInt8x32((*[32]int8)(qb[32:64]))
		q2 := archsimd.LoadInt8x32((*[32]int8)(qb[64:96]))
		q3 := archsimd.LoadInt8x32((*[32]int8)(qb[96:128]))
		a0 = a0.Add(u2Block(archsimd.LoadUint8x32((*[32]uint8)(r0)), q0, q1, q2, q3, m3, two).DotProductPairs(ones))
		a1 = a1.Add(u2Block(archsimd.LoadUint8x32((*[32]uint8)(r1)), q0, q1, q2, q3, m3, two).DotProductPairs(ones))
		a2 = a2.Add(u2Block(archsimd.LoadUint8x32((*[32]uint8)(r2)), q0, q1, q2, q3, m3, two).DotProductPairs(ones))
		a3 = a3.Add(u2Block(archsimd.LoadUint8x32((*[32]uint8)(r3)), q0, q1, q2, q3, m3, two).DotProductPairs(ones))
		q = q[128:]
		r0 = r0[32:]
		r1 = r1[32:]
		r2 = r2[32:]
		r3 = r3[32:]
	}
	h := a0.AddPairsGrouped(a1).AddPairsGrouped(a2.AddPairsGrouped(a3))
	h.GetLo().Add(h.GetHi()).Store(out)
	archsimd.ClearAVXUpperBits()
}

func dotU2All(codes []uint8, stride int, q []int8, out []int32) {
	if active == levelGeneric {
		dotU2AllGeneric(codes, stride, q, out)
		return
	}
	i := 0
	for ; i+4 <= len(out); i += 4 {
		o := codes[i*stride : (i+4)*stride]
		dotU2x4AVX2(o[:stride], o[stride:2*stride], o[2*stride:3*stride], o[3*stride:], q, (*[4]int32)(out[i:i+4]))
	}
	for ; i < len(out); i++ {
		out[i] = dotU2Generic(codes[i*stride:(i+1)*stride], q)
	}
}

func dotU2Many(codes []uint8, stride int, rows []int32, q []int8, out []int32) {
	if active == levelGeneric {
		dotU2ManyGeneric(codes, stride, rows, q, out)
		return
	}
	row := func(r int32) []uint8 { return codes[int(r)*stride : (int(r)+1)*stride] }
	i := 0
	for ; i+4 <= len(rows); i += 4 {
		dotU2x4AVX2(row(rows[i]), row(rows[i+1]), row(rows[i+2]), row(rows[i+3]), q, (*[4]int32)(out[i:i+4]))
	}
	for ; i < len(rows); i++ {
		out[i] = dotU2Generic(row(rows[i]), q)
	}
}
