//go:build !goexperiment.simd || !amd64 || purego

package vec

func dotU2All(codes []uint8, stride int, q []int8, out []int32) {
	dotU2AllGeneric(codes, stride, q, out)
}

func dotU2Many(codes []uint8, stride int, rows []int32, q []int8, out []int32) {
	dotU2ManyGeneric(codes, stride, rows, q, out)
}
