package tools

import (
	"bytes"
	"testing"
)

// FuzzCanonical checks that Canonical never panics and is idempotent: the
// canonical form of a canonical form is itself.
func FuzzCanonical(f *testing.F) {
	f.Add(args("a", 1, "b", "x"))
	f.Add(args("m", map[string]any{"y": 1.5, "x": []any{1, "s", nil, true}}))
	f.Add([]byte{0x81, 0xa1, 0x61, 0xcb, 0x40, 0x00, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, n, err := Canonical(nil, in)
		if err != nil {
			return
		}
		if n <= 0 || n > len(in) {
			t.Fatalf("consumed %d of %d bytes", n, len(in))
		}
		again, m, err := Canonical(nil, out)
		if err != nil || m != len(out) || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %x -> %x (%v)", out, again, err)
		}
	})
}
