//go:build goexperiment.simd && amd64 && !purego

package vec

import "simd/archsimd"

// The vector kernels.
//
// Loads go through fixed-size array pointers ((*[16]float32)(x[0:16]) of a
// *[64]float32 block) rather than the Load*Slice helpers: the loop condition
// proves the block conversion in bounds and constant slices of an array need
// no check, so the loop body is plain vector loads and FMAs, where the slice
// helpers keep a bounds check per load. Four independent FMA accumulators
// hide the FMA latency, so a scan over a large arena is limited by memory
// bandwidth rather than by a dependency chain. (More accumulators do not fit
// the 15 allocatable YMM registers with the loads the compiler hoists, and
// spill.)
//
// Upper-state rule. Go compiles scalar float code, register spills of 128-bit
// values and zeroing to legacy-SSE instructions, and an SSE instruction that
// runs while the upper halves of the vector registers are dirty is very
// costly on some machines (measured on the Zen 3 guest this was written on:
// about 110 ns each, more than a whole 1536-float dot product). The compiler
// does not insert VZEROUPPER, and archsimd.ClearAVXUpperBits orders only
// against memory operations: pure computations, and the spills of values
// live across it, may be scheduled on either side. So every kernel here
//   - does only vector and integer work,
//   - hands its result out through memory (a vector Store, or integer stores),
//   - then calls ClearAVXUpperBits as its last vector operation,
//   - and reads scalar floats only after that, from memory.
//
// The scalar remainders (the last len%8 floats, the last partial code word)
// are left to the callers in dispatch_simd.go, which run them after the
// kernel has returned; the kernels are marked noinline so that the return
// stays a hard boundary between their vector code and the callers' scalar
// code. The masked loads of archsimd
// (LoadFloat32x8SlicePart) would handle them in vector code, but they build
// an array pointer that may extend past the end of the allocation, which the
// checkptr instrumentation of -race builds rejects.

// dotAVX512 returns the dot product of a[:n] and b[:n], n = len(a) rounded
// down to a multiple of 8 (the caller adds the rest), using 512-bit vectors,
// 64 floats per iteration; a last block of 8 floats uses a 256-bit FMA.
//
//go:noinline
func dotAVX512(a, b []float32) float32 {
	b = b[:len(a)]
	var acc0, acc1, acc2, acc3 archsimd.Float32x16
	for len(a) >= 64 && len(b) >= 64 {
		x := (*[64]float32)(a)
		y := (*[64]float32)(b)
		acc0 = archsimd.LoadFloat32x16((*[16]float32)(x[0:16])).MulAdd(
			archsimd.LoadFloat32x16((*[16]float32)(y[0:16])), acc0)
		acc1 = archsimd.LoadFloat32x16((*[16]float32)(x[16:32])).MulAdd(
			archsimd.LoadFloat32x16((*[16]float32)(y[16:32])), acc1)
		acc2 = archsimd.LoadFloat32x16((*[16]float32)(x[32:48])).MulAdd(
			archsimd.LoadFloat32x16((*[16]float32)(y[32:48])), acc2)
		acc3 = archsimd.LoadFloat32x16((*[16]float32)(x[48:64])).MulAdd(
			archsimd.LoadFloat32x16((*[16]float32)(y[48:64])), acc3)
		a = a[64:]
		b = b[64:]
	}
	for len(a) >= 16 && len(b) >= 16 {
		acc0 = archsimd.LoadFloat32x16((*[16]float32)(a)).MulAdd(
			archsimd.LoadFloat32x16((*[16]float32)(b)), acc0)
		a = a[16:]
		b = b[16:]
	}
	s := acc0.Add(acc1).Add(acc2.Add(acc3))
	t := s.GetLo().Add(s.GetHi())
	if len(a) >= 8 && len(b) >= 8 {
		t = archsimd.LoadFloat32x8((*[8]float32)(a)).MulAdd(
			archsimd.LoadFloat32x8((*[8]float32)(b)), t)
	}
	return sum8(t)
}

// dotAVX2 returns the dot product of a[:n] and b[:n], n = len(a) rounded
// down to a multiple of 8 (the caller adds the rest), using 256-bit vectors
// and FMA, 32 floats per iteration.
//
//go:noinline
func dotAVX2(a, b []float32) float32 {
	b = b[:len(a)]
	var acc0, acc1, acc2, acc3 archsimd.Float32x8
	for len(a) >= 32 && len(b) >= 32 {
		x := (*[32]float32)(a)
		y := (*[32]float32)(b)
		acc0 = archsimd.LoadFloat32x8((*[8]float32)(x[0:8])).MulAdd(
			archsimd.LoadFloat32x8((*[8]float32)(y[0:8])), acc0)
		acc1 = archsimd.LoadFloat32x8((*[8]float32)(x[8:16])).MulAdd(
			archsimd.LoadFloat32x8((*[8]float32)(y[8:16])), acc1)
		acc2 = archsimd.LoadFloat32x8((*[8]float32)(x[16:24])).MulAdd(
			archsimd.LoadFloat32x8((*[8]float32)(y[16:24])), acc2)
		acc3 = archsimd.LoadFloat32x8((*[8]float32)(x[24:32])).MulAdd(
			archsimd.LoadFloat32x8((*[8]float32)(y[24:32])), acc3)
		a = a[32:]
		b = b[32:]
	}
	for len(a) >= 8 && len(b) >= 8 {
		acc0 = archsimd.LoadFloat32x8((*[8]float32)(a)).MulAdd(
			archsimd.LoadFloat32x8((*[8]float32)(b)), acc0)
		a = a[8:]
		b = b[8:]
	}
	return sum8(acc0.Add(acc1).Add(acc2.Add(acc3)))
}

// sum8 returns the sum of the 8 lanes of v, following the upper-state rule:
// the horizontal sum is stored to memory, the upper state cleared, and the
// scalar read back.
func sum8(v archsimd.Float32x8) float32 {
	var r [4]float32
	x := v.GetLo().Add(v.GetHi())
	x = x.AddPairs(x)
	x = x.AddPairs(x)
	x.Store(&r)
	archsimd.ClearAVXUpperBits()
	return r[0]
}

// binarizeAVX2 writes the code words of the whole 64-float blocks of v into
// dst (the caller does the last partial word): each compare of 8 floats
// against zero yields 8 code bits (VCMPPS + VMOVMSKPS). The "greater"
// compare is ordered, so NaN gives 0 like v[j] > 0.
//
//go:noinline
func binarizeAVX2(v []float32, dst []uint64) {
	var zero archsimd.Float32x8
	for len(v) >= 64 && len(dst) > 0 {
		x := (*[64]float32)(v)
		var w uint64
		w |= uint64(archsimd.LoadFloat32x8((*[8]float32)(x[0:8])).Greater(zero).ToBits())
		w |= uint64(archsimd.LoadFloat32x8((*[8]float32)(x[8:16])).Greater(zero).ToBits()) << 8
		w |= uint64(archsimd.LoadFloat32x8((*[8]float32)(x[16:24])).Greater(zero).ToBits()) << 16
		w |= uint64(archsimd.LoadFloat32x8((*[8]float32)(x[24:32])).Greater(zero).ToBits()) << 24
		w |= uint64(archsimd.LoadFloat32x8((*[8]float32)(x[32:40])).Greater(zero).ToBits()) << 32
		w |= uint64(archsimd.LoadFloat32x8((*[8]float32)(x[40:48])).Greater(zero).ToBits()) << 40
		w |= uint64(archsimd.LoadFloat32x8((*[8]float32)(x[48:56])).Greater(zero).ToBits()) << 48
		w |= uint64(archsimd.LoadFloat32x8((*[8]float32)(x[56:64])).Greater(zero).ToBits()) << 56
		dst[0] = w
		v = v[64:]
		dst = dst[1:]
	}
	archsimd.ClearAVXUpperBits()
}

// The int8 kernels compute exact dot products of int8 codes with the AVX2
// integer multiply-adds:
//
//   - VPMADDWD (Int16x16.DotProductPairs) multiplies int16 lanes and adds
//     adjacent products into int32 lanes. On int8 values sign-extended to
//     int16 (VPMOVSXBW) it is exact for any inputs: a pair sum is at most
//     2*128*128. This is dotInt8AVX2, 16 bytes per multiply-add.
//   - VPMADDUBSW (Uint8x32.DotProductPairsSaturated) multiplies unsigned by
//     signed bytes and adds adjacent products into int16 lanes, saturating;
//     a VPMADDWD by ones then widens its pairs to int32. It takes 32 bytes
//     per multiply-add and needs no lane-crossing widening, about twice as
//     fast here. To use it on two signed operands, the row byte x goes in
//     as |x| (VPABSB; |-128| = 128 is right as an unsigned byte) and moves
//     its sign to the query byte y (VPSIGNB: y*sign(x)), so each product
//     |x| * (y*sign(x)) is x*y. That is exact as long as y*sign(x) fits in
//     an int8, that is y != -128, and then a pair sum is at most
//     2*128*127 = 32512 in magnitude, so the int16 saturation never
//     triggers. The caller checks the query once and uses this,
//     dotInt8x4AVX2, only for a query without -128 (QuantizeInt8 never
//     writes -128); rows may hold any values.
//
// The int32 lanes wrap, so the totals are exact whenever the true dot
// product fits in an int32. The results go out through memory before
// ClearAVXUpperBits like the float kernels'; the callers add the scalar
// remainders (the last len%16 bytes) after the kernels return.
//
// There is no AVX-512 variant: archsimd (Go 1.26) does not expose the VNNI
// byte dot products (VPDPBUSD), which would be the real gain, and VPSIGNB
// has no 512-bit form, so the sign trick would need a compare and a blend
// per row block instead. The AVX-512 level uses these AVX2 kernels.

// dotInt8AVX2 returns the dot product of a[:n] and b[:n], n = len(a) rounded
// down to a multiple of 16 (the caller adds the rest), by sign extension to
// int16 and VPMADDWD, 64 bytes per iteration. It is exact for any int8
// values.
//
//go:noinline
func dotInt8AVX2(a, b []int8) int32 {
	b = b[:len(a)]
	var acc0, acc1, acc2, acc3 archsimd.Int32x8
	for len(a) >= 64 && len(b) >= 64 {
		x := (*[64]int8)(a)
		y := (*[64]int8)(b)
		acc0 = acc0.Add(extDot16(archsimd.LoadInt8x16((*[16]int8)(x[0:16])), archsimd.LoadInt8x16((*[16]int8)(y[0:16]))))
		acc1 = acc1.Add(extDot16(archsimd.LoadInt8x16((*[16]int8)(x[16:32])), archsimd.LoadInt8x16((*[16]int8)(y[16:32]))))
		acc2 = acc2.Add(extDot16(archsimd.LoadInt8x16((*[16]int8)(x[32:48])), archsimd.LoadInt8x16((*[16]int8)(y[32:48]))))
		acc3 = acc3.Add(extDot16(archsimd.LoadInt8x16((*[16]int8)(x[48:64])), archsimd.LoadInt8x16((*[16]int8)(y[48:64]))))
		a = a[64:]
		b = b[64:]
	}
	for len(a) >= 16 && len(b) >= 16 {
		acc0 = acc0.Add(extDot16(archsimd.LoadInt8x16((*[16]int8)(a)), archsimd.LoadInt8x16((*[16]int8)(b))))
		a = a[16:]
		b = b[16:]
	}
	v := acc0.Add(acc1).Add(acc2.Add(acc3))
	var r [4]int32
	x := v.GetLo().Add(v.GetHi())
	x = x.AddPairs(x)
	x = x.AddPairs(x)
	x.Store(&r)
	archsimd.ClearAVXUpperBits()
	return r[0]
}

// extDot16 returns the 8 int32 sums of adjacent products of x and y,
// sign-extended to int16.
func extDot16(x, y archsimd.Int8x16) archsimd.Int32x8 {
	return x.ExtendToInt16().DotProductPairs(y.ExtendToInt16())
}

// dotInt8x4AVX2 writes to out the dot products of q[:n] with r0[:n], r1[:n],
// r2[:n] and r3[:n], n = len(q) rounded down to a multiple of 16 (the
// caller adds the rest), with the VPMADDUBSW sign trick: q must not hold
// -128. Four rows at a time share each block of q and, more important for
// rows of a few KB picked at random from a large array, keep four memory
// streams in flight: one row at a time, the scan waits for the hardware
// prefetcher to ramp up again on every row (measured here: twice slower
// on 5000 random rows of 3 KB).
//
//go:noinline
func dotInt8x4AVX2(r0, r1, r2, r3, q []int8, out *[4]int32) {
	n := len(q) &^ 15
	q = q[:n:n]
	r0 = r0[:n:n]
	r1 = r1[:n:n]
	r2 = r2[:n:n]
	r3 = r3[:n:n]
	ones := archsimd.BroadcastInt16x16(1)
	var acc0, acc1, acc2, acc3 archsimd.Int32x8
	i := 64
	for ; i <= n; i += 64 {
		qb := (*[64]int8)(q[i-64 : i])
		x0 := (*[64]int8)(r0[i-64 : i])
		x1 := (*[64]int8)(r1[i-64 : i])
		x2 := (*[64]int8)(r2[i-64 : i])
		x3 := (*[64]int8)(r3[i-64 : i])
		qv := archsimd.LoadInt8x32((*[32]int8)(qb[0:32]))
		acc0 = acc0.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(x0[0:32])), qv, ones))
		acc1 = acc1.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(x1[0:32])), qv, ones))
		acc2 = acc2.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(x2[0:32])), qv, ones))
		acc3 = acc3.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(x3[0:32])), qv, ones))
		qv = archsimd.LoadInt8x32((*[32]int8)(qb[32:64]))
		acc0 = acc0.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(x0[32:64])), qv, ones))
		acc1 = acc1.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(x1[32:64])), qv, ones))
		acc2 = acc2.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(x2[32:64])), qv, ones))
		acc3 = acc3.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(x3[32:64])), qv, ones))
	}
	i -= 64 // bytes done
	if i+32 <= n {
		qv := archsimd.LoadInt8x32((*[32]int8)(q[i : i+32]))
		acc0 = acc0.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(r0[i:i+32])), qv, ones))
		acc1 = acc1.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(r1[i:i+32])), qv, ones))
		acc2 = acc2.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(r2[i:i+32])), qv, ones))
		acc3 = acc3.Add(signDot32(archsimd.LoadInt8x32((*[32]int8)(r3[i:i+32])), qv, ones))
		i += 32
	}
	// The four horizontal sums at once: two rounds of pairwise adds within
	// each 128-bit half give [Σacc0, Σacc1, Σacc2, Σacc3] per half.
	h := acc0.AddPairsGrouped(acc1).AddPairsGrouped(acc2.AddPairsGrouped(acc3))
	s := h.GetLo().Add(h.GetHi())
	if i+16 <= n {
		ones := ones.GetLo()
		qv := archsimd.LoadInt8x16((*[16]int8)(q[i : i+16]))
		p0 := signDot16(archsimd.LoadInt8x16((*[16]int8)(r0[i:i+16])), qv, ones)
		p1 := signDot16(archsimd.LoadInt8x16((*[16]int8)(r1[i:i+16])), qv, ones)
		p2 := signDot16(archsimd.LoadInt8x16((*[16]int8)(r2[i:i+16])), qv, ones)
		p3 := signDot16(archsimd.LoadInt8x16((*[16]int8)(r3[i:i+16])), qv, ones)
		s = s.Add(p0.AddPairs(p1).AddPairs(p2.AddPairs(p3)))
	}
	s.Store(out)
	archsimd.ClearAVXUpperBits()
}

// signDot32 returns the 8 int32 sums of 4 adjacent products of x and y (y
// without -128): |x| * (y*sign(x)) by VPMADDUBSW, widened by VPMADDWD.
func signDot32(x, y archsimd.Int8x32, ones archsimd.Int16x16) archsimd.Int32x8 {
	return x.Abs().AsUint8x32().DotProductPairsSaturated(y.CopySign(x)).DotProductPairs(ones)
}

// signDot16 is signDot32 on 16 bytes.
func signDot16(x, y archsimd.Int8x16, ones archsimd.Int16x8) archsimd.Int32x4 {
	return x.Abs().AsUint8x16().DotProductPairsSaturated(y.CopySign(x)).DotProductPairs(ones)
}

// dotNormAVX2 stores in out the dot product of a[:n] and b[:n] and the
// squared norm of a[:n], n = len(a) rounded down to a multiple of 8 (the
// caller adds the rest), in one pass over a: a search scores a candidate
// with both, and reading a 12 KiB vector once instead of twice is what the
// exact stage of a search is bound by.
//
//go:noinline
func dotNormAVX2(a, b []float32, out *[2]float32) {
	b = b[:len(a)]
	var d0, d1, n0, n1 archsimd.Float32x8
	for len(a) >= 16 && len(b) >= 16 {
		x := (*[16]float32)(a)
		y := (*[16]float32)(b)
		x0 := archsimd.LoadFloat32x8((*[8]float32)(x[0:8]))
		d0 = x0.MulAdd(archsimd.LoadFloat32x8((*[8]float32)(y[0:8])), d0)
		n0 = x0.MulAdd(x0, n0)
		x1 := archsimd.LoadFloat32x8((*[8]float32)(x[8:16]))
		d1 = x1.MulAdd(archsimd.LoadFloat32x8((*[8]float32)(y[8:16])), d1)
		n1 = x1.MulAdd(x1, n1)
		a = a[16:]
		b = b[16:]
	}
	for len(a) >= 8 && len(b) >= 8 {
		x0 := archsimd.LoadFloat32x8((*[8]float32)(a))
		d0 = x0.MulAdd(archsimd.LoadFloat32x8((*[8]float32)(b)), d0)
		n0 = x0.MulAdd(x0, n0)
		a = a[8:]
		b = b[8:]
	}
	var r, s [4]float32
	d := d0.Add(d1)
	x := d.GetLo().Add(d.GetHi())
	x = x.AddPairs(x)
	x = x.AddPairs(x)
	x.Store(&r)
	n := n0.Add(n1)
	y := n.GetLo().Add(n.GetHi())
	y = y.AddPairs(y)
	y = y.AddPairs(y)
	y.Store(&s)
	archsimd.ClearAVXUpperBits()
	out[0], out[1] = r[0], s[0]
}
