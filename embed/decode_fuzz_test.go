package embed

import (
	"errors"
	"math"
	"testing"
)

// FuzzDecodeResponse: any body either decodes to n vectors of one length
// with finite values, or fails with ErrBadResponse; it never panics.
func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`{"data":[{"index":0,"embedding":"AACAPwAAAMA="}],"usage":{"prompt_tokens":1,"total_tokens":1}}`), 1)
	f.Add([]byte(`{"data":[{"embedding":[0.5,-1]},{"index":0,"embedding":[1,2]}]}`), 2)
	f.Add([]byte(`{"data":[{"index":1,"embedding":[1]},{"index":0,"embedding":[2]}],"usage":{}}`), 2)
	f.Add([]byte(`{"error":{"message":"x"}}`), 0)
	f.Fuzz(func(t *testing.T, body []byte, n int) {
		if n < 0 || n > 64 {
			return
		}
		r, err := DecodeResponse(body, n)
		if err != nil {
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("error %v does not wrap ErrBadResponse", err)
			}
			return
		}
		if len(r.Vectors) != n {
			t.Fatalf("%d vectors for %d inputs", len(r.Vectors), n)
		}
		for _, v := range r.Vectors {
			if len(v) == 0 || len(v) != len(r.Vectors[0]) {
				t.Fatalf("vector lengths differ or are empty")
			}
			for _, x := range v {
				if f := float64(x); f != f || f > math.MaxFloat32 || f < -math.MaxFloat32 {
					t.Fatalf("non-finite value %v", x)
				}
			}
		}
		_ = errorMessage(body)
	})
}
