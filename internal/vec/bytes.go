package vec

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// littleEndian reports whether this machine stores a float32 in
// little-endian byte order, the order of every stored and wire vector.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// FromLittleEndian decodes the little-endian float32 values of b into dst:
// one copy where that is the machine's own layout, a conversion per value
// elsewhere. It panics if dst is shorter than len(b)/4.
func FromLittleEndian(dst []float32, b []byte) {
	n := len(b) / 4
	if n > len(dst) {
		panic("vec: FromLittleEndian destination shorter than the bytes")
	}
	if littleEndian {
		if n > 0 {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(dst))), 4*n), b)
		}
		return
	}
	for i := range n {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}
