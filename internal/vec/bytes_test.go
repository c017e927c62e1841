package vec

import (
	"encoding/binary"
	"math"
	"testing"
)

func TestFromLittleEndian(t *testing.T) {
	want := []float32{0, -0.5, 1, float32(math.Inf(-1)), 3.4028234e38, 1e-45}
	b := make([]byte, 0, 4*len(want))
	for _, x := range want {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	got := make([]float32, len(want)+1)
	got[len(want)] = 7 // past the bytes: untouched
	FromLittleEndian(got, b)
	for i, x := range want {
		if math.Float32bits(got[i]) != math.Float32bits(x) {
			t.Fatalf("value %d: %v, want %v", i, got[i], x)
		}
	}
	if got[len(want)] != 7 {
		t.Fatal("a value past the bytes was written")
	}
	FromLittleEndian(nil, nil) // nothing to do
	defer func() {
		if recover() == nil {
			t.Fatal("a short destination did not panic")
		}
	}()
	FromLittleEndian(got[:2], b)
}
