//go:build !goexperiment.simd || !amd64 || purego

package vec

// Without GOEXPERIMENT=simd on amd64 (or with the purego tag) only the
// portable implementation exists.

func detectLevel() level { return levelGeneric }

// levels lists the implementations this build and CPU can run.
func levels() []level { return []level{levelGeneric} }

func dot(a, b []float32) float32 { return dotGeneric(a, b) }

func dotAll(arena []float32, dim int, q, out []float32) {
	dotAllGeneric(arena, dim, q, out)
}

func dotMany(arena []float32, dim int, rows []int32, q, out []float32) {
	dotManyGeneric(arena, dim, rows, q, out)
}

func binarize(v []float32, dst []uint64) { binarizeGeneric(v, dst) }

func hammingAll(codes []uint64, words int, q []uint64, out []uint32) {
	hammingAllGeneric(codes, words, q, out)
}

func hammingMany(codes []uint64, words int, rows []int32, q []uint64, out []uint32) {
	hammingManyGeneric(codes, words, rows, q, out)
}

func dotInt8(a, b []int8) int32 { return dotInt8Generic(a, b) }

func dotInt8All(codes []int8, dim int, q []int8, out []int32) {
	dotInt8AllGeneric(codes, dim, q, out)
}

func dotInt8Many(codes []int8, dim int, rows []int32, q []int8, out []int32) {
	dotInt8ManyGeneric(codes, dim, rows, q, out)
}

func hammingManyStride(codes []uint64, stride, words int, rows []int32, q []uint64, out []uint32) {
	hammingManyStrideGeneric(codes, stride, words, rows, q, out)
}

func dotNormMany(arena []float32, dim int, rows []int32, q, dots, norms []float32) {
	q = q[:dim]
	for i, r := range rows {
		off := int(r) * dim
		row := arena[off : off+dim : off+dim]
		dots[i] = dotGeneric(row, q)
		norms[i] = dotGeneric(row, row)
	}
}
