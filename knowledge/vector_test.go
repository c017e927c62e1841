package knowledge

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/crewcore/crewcore/internal/vec"
)

// memColl builds the in-memory state of a collection from vectors, as
// loading them from the file does (coll.add), without SQLite.
func memColl(t testing.TB, vs [][]float32) *coll {
	t.Helper()
	c := &coll{name: "t", dim: len(vs[0]), pos: map[int64]int32{}}
	emb := make([]byte, 4*c.dim)
	for i, v := range vs {
		for j, x := range v {
			binary.LittleEndian.PutUint32(emb[4*j:], math.Float32bits(x))
		}
		if err := c.add(int64(i+1), "", emb); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// fullScan is the reference the cascade must equal: the float32 score of
// every candidate with the same kernel, sorted by coll.better.
func fullScan(c *coll, q []float32, rows []int32, k int) []scored {
	if rows == nil {
		rows = make([]int32, c.n())
		for i := range rows {
			rows[i] = int32(i)
		}
	}
	dots := make([]float32, len(rows))
	vec.DotMany(c.vecs, c.dim, rows, q, dots)
	all := make([]scored, len(rows))
	for i, r := range rows {
		all[i] = scored{row: r, cos: dots[i]}
	}
	sort.Slice(all, func(i, j int) bool { return c.better(all[i], all[j]) })
	return all[:min(k, len(all))]
}

// benchLike is the benchmark's data (bench/bench_knowledge.py clustered):
// n/20 random centers, members center + 0.8*noise, normalized.
func benchLike(r *rand.Rand, n, dim int) [][]float32 {
	centers := make([][]float32, max(1, n/20))
	for i := range centers {
		centers[i] = randVec(r, dim)
	}
	out := make([][]float32, n)
	for i := range out {
		c := centers[r.IntN(len(centers))]
		v := make([]float32, dim)
		for j := range v {
			v[j] = c[j] + 0.8*float32(r.NormFloat64())
		}
		out[i] = normalize(v)
	}
	return out
}

// The cascade (2-bit pass, int8 pass, float32) returns exactly the rows and
// scores of a full float32 scan, on the benchmark's data and on data made to
// defeat the quantized bounds: near-duplicates (every bound overlaps tau),
// spiky vectors (a few huge coordinates the 2-bit levels cannot hold),
// exact ties, zero vectors and queries, dimensions that are not a multiple
// of the 128-coordinate code block, filters, and large k. It also checks
// that the 2-bit bound does prune on the benchmark's data and that the int8
// pass takes over where it cannot decide, so both paths are exercised.
func TestCascadeEqualsFullScan(t *testing.T) {
	gauss := func(r *rand.Rand, n, dim int) [][]float32 {
		out := make([][]float32, n)
		for i := range out {
			out[i] = randVec(r, dim)
		}
		return out
	}
	nearDup := func(r *rand.Rand, n, dim int) [][]float32 {
		base := randVec(r, dim)
		out := make([][]float32, n)
		for i := range out {
			v := make([]float32, dim)
			for j := range v {
				v[j] = base[j] + 1e-3*float32(r.NormFloat64())
			}
			out[i] = v
		}
		return out
	}
	spiky := func(r *rand.Rand, n, dim int) [][]float32 {
		out := make([][]float32, n)
		for i := range out {
			v := make([]float32, dim)
			for j := range v {
				v[j] = 0.01 * float32(r.NormFloat64())
			}
			for s := 0; s < 3; s++ {
				v[r.IntN(4)*7+s] = float32(r.NormFloat64() * 10)
			}
			out[i] = v
		}
		return out
	}
	ties := func(r *rand.Rand, n, dim int) [][]float32 {
		protos := gauss(r, 40, dim)
		out := make([][]float32, n)
		for i := range out {
			out[i] = append([]float32(nil), protos[r.IntN(len(protos))]...)
		}
		for i := 0; i < n; i += 97 {
			out[i] = make([]float32, dim) // zero vectors score 0
		}
		return out
	}
	cases := []struct {
		name      string
		n, dim, k int
		gen       func(r *rand.Rand, n, dim int) [][]float32
		filter    bool
		wantPrune bool // the 2-bit pass decides alone (no int8 pass, few float32 scores)
		wantInt8  bool // the 2-bit bound cannot decide: the int8 pass runs
	}{
		{"bench-like-1536", 3000, 1536, 5, benchLike, false, true, false},
		{"bench-like-1536-k50", 3000, 1536, 50, benchLike, false, false, false},
		{"bench-like-filtered", 6000, 384, 5, benchLike, true, false, false},
		{"gauss-300", 5000, 300, 10, gauss, false, false, false},
		{"gauss-129-k200", 4000, 129, 200, gauss, false, false, false},
		{"near-duplicates", 5000, 256, 5, nearDup, false, false, true},
		{"spiky", 5000, 200, 5, spiky, false, false, false},
		{"ties-and-zeros", 5000, 64, 30, ties, false, false, false},
		{"clustered-tight", 8000, 96, 20, clustered, false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(11, uint64(tc.n*tc.dim+tc.k)))
			vs := tc.gen(r, tc.n, tc.dim)
			c := memColl(t, vs)
			var rows []int32
			if tc.filter {
				rows = []int32{}
				for i := 0; i < c.n(); i++ {
					if i%3 != 1 {
						rows = append(rows, int32(i))
					}
				}
			}
			queries := 12
			pruned, int8Runs := 0, 0
			for qi := 0; qi < queries; qi++ {
				var q []float32
				switch qi {
				case 0:
					q = make([]float32, tc.dim) // the zero query: every score is 0
				case 1:
					q = randVec(r, tc.dim) // far from everything
				default:
					base := vs[r.IntN(len(vs))]
					q = make([]float32, tc.dim)
					for j := range q {
						q[j] = base[j] + 0.3*float32(r.NormFloat64())/float32(math.Sqrt(float64(tc.dim)))
					}
				}
				qn := normalize(q)
				got, st := c.topVectorStats(qn, rows, tc.k)
				want := fullScan(c, qn, rows, tc.k)
				if len(got) != len(want) {
					t.Fatalf("query %d: %d results, want %d", qi, len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("query %d rank %d: got row %d (%.8f), full scan has row %d (%.8f) [passes %+v]",
							qi, i, got[i].row, got[i].cos, want[i].row, want[i].cos, st)
					}
				}
				if qi >= 2 {
					if st.int8 == 0 && st.exact < 200 {
						pruned++
					}
					if st.int8 > 0 {
						int8Runs++
					}
				}
			}
			if tc.wantPrune && pruned != queries-2 {
				t.Fatalf("the 2-bit bound decided alone on %d of %d queries near the data, want all", pruned, queries-2)
			}
			if tc.wantInt8 && int8Runs == 0 {
				t.Fatalf("the int8 pass never ran: the fallback is not exercised")
			}
		})
	}
}

// The bound stored with each 2-bit code holds: |v - v2| and |v2| are at
// least the norms recomputed in float64.
func TestU2BoundsStored(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	vs := benchLike(r, 300, 200)
	c := memColl(t, vs)
	for i := 0; i < c.n(); i++ {
		code := c.u2[i*c.u2Stride : (i+1)*c.u2Stride]
		var nn, ee float64
		for j := 0; j < c.dim; j++ {
			y := vec.U2Value(vec.U2Code(code, j), c.u2Delta[i])
			nn += y * y
			d := float64(c.vecs[i*c.dim+j]) - y
			ee += d * d
		}
		if float64(c.u2Norm[i]) < math.Sqrt(nn) || float64(c.u2Err[i]) < math.Sqrt(ee) {
			t.Fatalf("row %d: stored |v2| %v |v-v2| %v under %v %v", i, c.u2Norm[i], c.u2Err[i], math.Sqrt(nn), math.Sqrt(ee))
		}
		if c.u2Err[i] > c.u2MaxErr || c.u2Norm[i] > c.u2MaxNorm {
			t.Fatalf("row %d: maxima not maintained", i)
		}
	}
}

// TestScanCoversEveryRowOnce checks the chunked parallel scan: every
// candidate is handed to f exactly once, at its own position of out, for
// all rows and for a row list, around the chunk boundaries.
func TestScanCoversEveryRowOnce(t *testing.T) {
	c := &coll{}
	for _, m := range []int{0, 1, scanChunk - 1, scanChunk, scanChunk + 1, 3*scanChunk + 7} {
		for _, withRows := range []bool{false, true} {
			for _, parallel := range []bool{false, true} {
				var rows []int32
				if withRows {
					rows = make([]int32, m)
					for i := range rows {
						rows[i] = int32(1000 + 3*i)
					}
				}
				out := make([]int32, m)
				for i := range out {
					out[i] = -1
				}
				c.scan(rows, out, parallel, func(rs []int32, lo, hi int, o []int32) {
					if len(o) != hi-lo {
						t.Errorf("m=%d: out part of %d for [%d, %d)", m, len(o), lo, hi)
					}
					for i := range o {
						want := int32(lo + i)
						if rs != nil {
							want = rs[i]
						}
						if o[i] != -1 {
							t.Errorf("m=%d: position %d scanned twice", m, lo+i)
						}
						o[i] = want
					}
				})
				for i, v := range out {
					want := int32(i)
					if withRows {
						want = rows[i]
					}
					if v != want {
						t.Fatalf("m=%d rows=%v parallel=%v: out[%d] = %d, want %d", m, withRows, parallel, i, v, want)
					}
				}
			}
		}
	}
}
