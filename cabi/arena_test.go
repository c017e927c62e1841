package main

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// TestFloatArenaTakesDisjointSlices checks that an arena's slices never
// overlap, have the length and capacity asked for, and that a released
// arena keeps its largest buffer for the next request.
func TestFloatArenaTakesDisjointSlices(t *testing.T) {
	a := new(floatArena)
	var got [][]float32
	for k, n := range []int{3072, 1, arenaChunk, 5, arenaChunk + 7, 1536} {
		v := a.take(n)
		if len(v) != n || cap(v) != n {
			t.Fatalf("take(%d): len %d cap %d", n, len(v), cap(v))
		}
		for j := range v {
			v[j] = float32(k)
		}
		got = append(got, v)
	}
	for k, v := range got {
		for j, x := range v {
			if x != float32(k) {
				t.Fatalf("slice %d element %d is %v: overwritten by a later take", k, j, x)
			}
		}
	}
	biggest := 0
	for _, c := range a.chunks {
		biggest = max(biggest, cap(c))
	}
	a.release()
	b := arenas.Get().(*floatArena)
	if b == a && (len(b.chunks) != 1 || cap(b.cur) != biggest || len(b.cur) != 0) {
		t.Fatalf("released arena kept %d chunks, cap %d len %d; want 1, %d, 0", len(b.chunks), cap(b.cur), len(b.cur), biggest)
	}
	b.release()
}

// TestSaveDecodesVectorsIntoPooledBuffers checks that a save of 100 records
// of 3072 dimensions does not allocate its 1.2 MiB of vectors on the Go
// heap every time (it did: the collector then ran about every twenty
// batches), and that the vectors stored are still the ones sent.
func TestSaveDecodesVectorsIntoPooledBuffers(t *testing.T) {
	h := openStore(t)
	rng := rand.New(rand.NewPCG(1, 2))
	const dim, per = 3072, 100
	batch := func(k int) ([]byte, [][]float32) {
		recs := make([][]byte, per)
		vecs := make([][]float32, per)
		for j := range recs {
			v := make([]float32, dim)
			for d := range v {
				v[d] = rng.Float32()*2 - 1
			}
			vecs[j] = v
			recs[j] = record(fmt.Sprintf("r%d-%d", k, j), "/x", f32bytes(v...))
		}
		return req("save", h, arr(recs...)), vecs
	}
	const rounds = 12
	reqs := make([][]byte, rounds)
	vecs := make([][][]float32, rounds)
	for k := range reqs {
		reqs[k], vecs[k] = batch(k)
	}
	if _, err := dispatch(reqs[0]); err != nil { // warm-up: the arena's first buffer
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for k := 1; k < rounds; k++ {
		if _, err := dispatch(reqs[k]); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&m1)
	perSave := (m1.TotalAlloc - m0.TotalAlloc) / (rounds - 1)
	t.Logf("a save of %d x %d allocated %d bytes on average", per, dim, perSave)
	if vecBytes := uint64(per * dim * 4); perSave >= vecBytes && !raceEnabled {
		t.Errorf("a save allocated %d bytes on average, at least its %d bytes of vectors", perSave, vecBytes)
	}
	// The stored vectors are the ones sent, in every batch (a buffer
	// reused too early would have overwritten earlier ones).
	for k := range rounds {
		for _, j := range []int{0, per / 2, per - 1} {
			out, err := dispatch(req("get", h, s(fmt.Sprintf("r%d-%d", k, j))))
			if err != nil {
				t.Fatal(err)
			}
			n, rest, err := msgp.ReadArrayHeaderBytes(out)
			if err != nil || n < 11 {
				t.Fatalf("get r%d-%d: %d fields, %v", k, j, n, err)
			}
			for range 10 {
				if rest, err = msgp.Skip(rest); err != nil {
					t.Fatal(err)
				}
			}
			b, _, err := msgp.ReadBytesBytes(rest, nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != string(f32bytes(vecs[k][j]...)) {
				t.Fatalf("r%d-%d: stored vector differs from the one sent", k, j)
			}
		}
	}
}
