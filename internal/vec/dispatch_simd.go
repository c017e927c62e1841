//go:build goexperiment.simd && amd64 && !purego

package vec

import "simd/archsimd"

// With GOEXPERIMENT=simd on amd64 the kernels come in three flavours, chosen
// once at initialization from the CPU features and switched on per call (not
// per row: each scan loop below is specialized per flavour).
//
// The vector kernels (kernels_simd.go) leave the upper halves of the vector
// registers clean when they return and do no scalar float work; the scalar
// remainders are done here, after they return.

// detectLevel picks the best implementation the CPU supports. The AVX-512
// flavour also uses 256-bit FMA and the AVX2 Binarize, so it requires AVX2
// and FMA too: the runtime derives the AVX512 feature from F, CD, BW, DQ and
// VL only, and GODEBUG=cpu.avx2=off (or cpu.fma=off) must still turn all
// vector code off.
func detectLevel() level {
	x := archsimd.X86
	switch {
	case !x.AVX2() || !x.FMA():
		return levelGeneric
	case x.AVX512():
		return levelAVX512
	default:
		return levelAVX2
	}
}

// levels lists the implementations this build and CPU can run.
func levels() []level {
	switch detectLevel() {
	case levelAVX512:
		return []level{levelGeneric, levelAVX2, levelAVX512}
	case levelAVX2:
		return []level{levelGeneric, levelAVX2}
	default:
		return []level{levelGeneric}
	}
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	n8 := len(a) &^ 7
	var s float32
	switch active {
	case levelAVX512:
		s = dotAVX512(a[:n8], b[:n8])
	case levelAVX2:
		s = dotAVX2(a[:n8], b[:n8])
	default:
		return dotGeneric(a, b)
	}
	return s + dotTail(a[n8:], b[n8:])
}

// dotTail returns the dot product of a and b[:len(a)] in scalar code, for
// the 0-7 floats the vector kernels leave.
func dotTail(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for i, x := range a {
		s += x * b[i]
	}
	return s
}

func dotAll(arena []float32, dim int, q, out []float32) {
	q = q[:dim]
	n8 := dim &^ 7
	q8, qt := q[:n8], q[n8:]
	switch active {
	case levelAVX512:
		for i := range out {
			row := arena[i*dim : (i+1)*dim]
			out[i] = dotAVX512(row[:n8], q8) + dotTail(row[n8:], qt)
		}
	case levelAVX2:
		for i := range out {
			row := arena[i*dim : (i+1)*dim]
			out[i] = dotAVX2(row[:n8], q8) + dotTail(row[n8:], qt)
		}
	default:
		dotAllGeneric(arena, dim, q, out)
	}
}

func dotMany(arena []float32, dim int, rows []int32, q, out []float32) {
	q = q[:dim]
	n8 := dim &^ 7
	q8, qt := q[:n8], q[n8:]
	out = out[:len(rows)]
	switch active {
	case levelAVX512:
		for i, r := range rows {
			row := arena[int(r)*dim : (int(r)+1)*dim]
			out[i] = dotAVX512(row[:n8], q8) + dotTail(row[n8:], qt)
		}
	case levelAVX2:
		for i, r := range rows {
			row := arena[int(r)*dim : (int(r)+1)*dim]
			out[i] = dotAVX2(row[:n8], q8) + dotTail(row[n8:], qt)
		}
	default:
		dotManyGeneric(arena, dim, rows, q, out)
	}
}

// binarize uses the AVX2 kernel on AVX-512 machines too: it is not a hot
// loop, and one kernel is simpler to keep right.
func binarize(v []float32, dst []uint64) {
	if active == levelGeneric {
		binarizeGeneric(v, dst)
		return
	}
	binarizeAVX2(v, dst)
	if k := len(v) / 64; k < len(dst) {
		dst[k] = binarizeWord(v[k*64:])
	}
}
