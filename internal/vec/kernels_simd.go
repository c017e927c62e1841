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
