//go:build goexperiment.simd && amd64 && !purego

package vec

import (
	"bytes"
	"simd/archsimd"
	"unsafe"
)

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

// hasVPOPCNTQ reports whether the AVX-512 level can use hamming4AVX512;
// without AVX512VPOPCNTDQ it runs the AVX2 Hamming kernels.
var hasVPOPCNTQ = archsimd.X86.AVX512VPOPCNTDQ()

// hammingAll runs the kernel for the common code sizes (48 and 24 words,
// 3072 and 1536 dimensions), for short codes, or for any size, on the rows
// in groups of four; the last len(out)%4 rows, and codes of 1 to 3 words,
// go to the generic code. See hamming_simd.go for the choice of kernel.
func hammingAll(codes []uint64, words int, q []uint64, out []uint32) {
	q = q[:words]
	if active == levelGeneric || words < 4 {
		hammingAllGeneric(codes, words, q, out)
		return
	}
	n4 := len(out) &^ 3
	switch {
	case active == levelAVX512 && hasVPOPCNTQ:
		for i := 0; i < n4; i += 4 {
			o := codes[i*words : (i+4)*words]
			hamming4(o[:words], o[words:2*words], o[2*words:3*words], o[3*words:], q, out[i:i+4])
		}
	case words == 48:
		hammingAll48AVX2(codes[:n4*48], (*[48]uint64)(q), out[:n4])
	case words == 24:
		hammingAll24AVX2(codes[:n4*24], (*[24]uint64)(q), out[:n4])
	case words < hamShort:
		hammingAllShortAVX2(codes[:n4*words], words, q, out[:n4])
	default:
		hammingAllAVX2(codes[:n4*words], words, q, out[:n4])
	}
	hammingAllGeneric(codes[n4*words:], words, q, out[n4:])
}

// hammingMany runs hamming4 on the rows in groups of four; the last
// len(rows)%4 rows, and codes of 1 to 3 words, go to the generic code.
func hammingMany(codes []uint64, words int, rows []int32, q []uint64, out []uint32) {
	q = q[:words]
	out = out[:len(rows)]
	if active == levelGeneric || words < 4 {
		hammingManyGeneric(codes, words, rows, q, out)
		return
	}
	row := func(r int32) []uint64 { return codes[int(r)*words : (int(r)+1)*words] }
	i := 0
	for ; i+4 <= len(rows); i += 4 {
		hamming4(row(rows[i]), row(rows[i+1]), row(rows[i+2]), row(rows[i+3]), q, out[i:i+4])
	}
	hammingManyGeneric(codes, words, rows[i:], q, out[i:])
}

// hamming4 sets out[0:4] to the Hamming distances of q from r0, r1, r2 and
// r3 (each len(q) >= 4 words): the vector kernel for the whole 4-word
// blocks, in slices of at most hamBlock words for the AVX2 one, then the
// last len(q)%4 words in scalar code.
func hamming4(r0, r1, r2, r3, q []uint64, out []uint32) {
	out = out[:4]
	w := len(q)
	r0, r1, r2, r3 = r0[:w], r1[:w], r2[:w], r3[:w]
	w4 := w &^ 3
	var d [4]uint32
	if active == levelAVX512 && hasVPOPCNTQ {
		hamming4AVX512(r0, r1, r2, r3, q, &d)
	} else {
		for lo := 0; lo < w4; lo += hamBlock {
			hi := min(lo+hamBlock, w4)
			var b [4]uint32
			hamming4AVX2(r0[lo:hi], r1[lo:hi], r2[lo:hi], r3[lo:hi], q[lo:hi], &b)
			d[0] += b[0]
			d[1] += b[1]
			d[2] += b[2]
			d[3] += b[3]
		}
	}
	if w4 < w {
		qt := q[w4:]
		d[0] += hammingTail(r0[w4:], qt)
		d[1] += hammingTail(r1[w4:], qt)
		d[2] += hammingTail(r2[w4:], qt)
		d[3] += hammingTail(r3[w4:], qt)
	}
	out[0], out[1], out[2], out[3] = d[0], d[1], d[2], d[3]
}

// dotInt8 uses the sign-extension kernel: it takes any int8 values, where
// the faster dotInt8x4AVX2 would need a scan of one operand for -128 first.
func dotInt8(a, b []int8) int32 {
	b = b[:len(a)]
	n16 := len(a) &^ 15
	if active == levelGeneric || n16 == 0 {
		return dotInt8Generic(a, b)
	}
	return dotInt8AVX2(a[:n16], b[:n16]) + dotInt8Generic(a[n16:], b[n16:])
}

// hasMinInt8 reports whether q holds -128, which dotInt8x4AVX2 cannot take.
// (bytes.IndexByte is vectorized; the check is once per call.)
func hasMinInt8(q []int8) bool {
	return bytes.IndexByte(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(q))), len(q)), 0x80) >= 0
}

// dotInt8Rows4 sets out[0:4] to the dot products of r0..r3 with q (all of
// length len(q)): dotInt8x4AVX2 for the 16-byte blocks, then the scalar
// remainders.
func dotInt8Rows4(r0, r1, r2, r3, q []int8, out []int32) {
	var d [4]int32
	dotInt8x4AVX2(r0, r1, r2, r3, q, &d)
	n16 := len(q) &^ 15
	qt := q[n16:]
	out = out[:4]
	if len(qt) == 0 {
		out[0], out[1], out[2], out[3] = d[0], d[1], d[2], d[3]
		return
	}
	out[0] = d[0] + dotInt8Generic(r0[n16:], qt)
	out[1] = d[1] + dotInt8Generic(r1[n16:], qt)
	out[2] = d[2] + dotInt8Generic(r2[n16:], qt)
	out[3] = d[3] + dotInt8Generic(r3[n16:], qt)
}

func dotInt8All(codes []int8, dim int, q []int8, out []int32) {
	q = q[:dim]
	if active == levelGeneric || dim < 16 {
		dotInt8AllGeneric(codes, dim, q, out)
		return
	}
	// Four rows at a time with the fast kernel if q allows it, then the
	// rest (or, if q holds -128, all rows) with the sign-extension kernel.
	i := 0
	if !hasMinInt8(q) {
		for ; i+4 <= len(out); i += 4 {
			o := codes[i*dim : (i+4)*dim]
			dotInt8Rows4(o[:dim], o[dim:2*dim], o[2*dim:3*dim], o[3*dim:], q, out[i:i+4])
		}
	}
	n16 := dim &^ 15
	q16, qt := q[:n16], q[n16:]
	for ; i < len(out); i++ {
		row := codes[i*dim : (i+1)*dim]
		out[i] = dotInt8AVX2(row[:n16], q16) + dotInt8Generic(row[n16:], qt)
	}
}

func dotInt8Many(codes []int8, dim int, rows []int32, q []int8, out []int32) {
	q = q[:dim]
	out = out[:len(rows)]
	if active == levelGeneric || dim < 16 {
		dotInt8ManyGeneric(codes, dim, rows, q, out)
		return
	}
	row := func(r int32) []int8 { return codes[int(r)*dim : (int(r)+1)*dim] }
	// Four rows at a time with the fast kernel if q allows it, then the
	// rest (or, if q holds -128, all rows) with the sign-extension kernel.
	i := 0
	if !hasMinInt8(q) {
		for ; i+4 <= len(rows); i += 4 {
			dotInt8Rows4(row(rows[i]), row(rows[i+1]), row(rows[i+2]), row(rows[i+3]), q, out[i:i+4])
		}
	}
	n16 := dim &^ 15
	q16, qt := q[:n16], q[n16:]
	for ; i < len(rows); i++ {
		r := row(rows[i])
		out[i] = dotInt8AVX2(r[:n16], q16) + dotInt8Generic(r[n16:], qt)
	}
}

// hammingManyStride is hammingMany for codes stride words apart.
func hammingManyStride(codes []uint64, stride, words int, rows []int32, q []uint64, out []uint32) {
	q = q[:words]
	out = out[:len(rows)]
	if active == levelGeneric || words < 4 {
		hammingManyStrideGeneric(codes, stride, words, rows, q, out)
		return
	}
	row := func(r int32) []uint64 { return codes[int(r)*stride : int(r)*stride+words] }
	i := 0
	for ; i+4 <= len(rows); i += 4 {
		hamming4(row(rows[i]), row(rows[i+1]), row(rows[i+2]), row(rows[i+3]), q, out[i:i+4])
	}
	hammingManyStrideGeneric(codes, stride, words, rows[i:], q, out[i:])
}

func dotNormMany(arena []float32, dim int, rows []int32, q, dots, norms []float32) {
	q = q[:dim]
	n8 := dim &^ 7
	q8, qt := q[:n8], q[n8:]
	dots, norms = dots[:len(rows)], norms[:len(rows)]
	switch active {
	case levelAVX2:
		var r [2]float32
		for i, rw := range rows {
			row := arena[int(rw)*dim : (int(rw)+1)*dim]
			dotNormAVX2(row[:n8], q8, &r)
			dots[i] = r[0] + dotTail(row[n8:], qt)
			norms[i] = r[1] + dotTail(row[n8:], row[n8:])
		}
	default:
		// AVX-512 and generic: the row's second pass reads it from L1/L2.
		for i, rw := range rows {
			row := arena[int(rw)*dim : (int(rw)+1)*dim]
			dots[i] = dot(row, q)
			norms[i] = dot(row, row)
		}
	}
}
