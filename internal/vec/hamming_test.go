package vec

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// hammingSizes are the code sizes (in words) the Hamming scans are checked
// with: every size up to 70 (around the 4- and 16-word blocks of the
// kernels, hamShort, and the 24- and 48-word specializations), and sizes
// around hamBlock, where the AVX2 kernels split a row.
func hammingSizes() []int {
	var s []int
	for w := 1; w <= 70; w++ {
		s = append(s, w)
	}
	return append(s, 96, 123, 124, 125, 128, 200, 248, 249, 250)
}

// hammingFills are the code patterns: random bits, and the extremes, where
// every byte of the AVX2 byte accumulators reaches its largest count.
var hammingFills = []struct {
	name string
	row  func(r *rand.Rand, i int) uint64 // word of a code, i = row
	q    func(r *rand.Rand) uint64
}{
	{"random", func(r *rand.Rand, _ int) uint64 { return r.Uint64() }, (*rand.Rand).Uint64},
	{"ones-vs-zeros", func(*rand.Rand, int) uint64 { return ^uint64(0) }, func(*rand.Rand) uint64 { return 0 }},
	{"zeros-vs-ones", func(*rand.Rand, int) uint64 { return 0 }, func(*rand.Rand) uint64 { return ^uint64(0) }},
	{"zeros-vs-zeros", func(*rand.Rand, int) uint64 { return 0 }, func(*rand.Rand) uint64 { return 0 }},
	{"ones-vs-ones", func(*rand.Rand, int) uint64 { return ^uint64(0) }, func(*rand.Rand) uint64 { return ^uint64(0) }},
	{"mixed-rows", func(r *rand.Rand, i int) uint64 {
		switch i % 3 {
		case 0:
			return ^uint64(0)
		case 1:
			return 0
		}
		return r.Uint64()
	}, (*rand.Rand).Uint64},
}

// TestHammingSizes compares HammingAll and HammingMany with the bit-by-bit
// reference for every code size of hammingSizes and every fill, in every
// implementation. The row counts vary so that every remainder of the groups
// of four rows occurs; the codes start off the start of their allocation and
// end (after a partial code that must be ignored) at its end.
func TestHammingSizes(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(19, 20))
		for _, words := range hammingSizes() {
			for _, fill := range hammingFills {
				n := 9 + words%4 + r.IntN(4)
				off := r.IntN(3)
				buf := make([]uint64, off+n*words+words/2)
				codes := buf[off:]
				for i := range codes {
					codes[i] = fill.row(r, i/words)
				}
				q := make([]uint64, words)
				for i := range q {
					q[i] = fill.q(r)
				}
				want := make([]uint32, n)
				for i := range n {
					want[i] = refHamming(codes[i*words:], q)
				}

				out := make([]uint32, n+1)
				out[n] = 42
				HammingAll(codes, words, q, out)
				if !slices.Equal(out[:n], want) {
					t.Errorf("HammingAll words %d %s = %v, want %v", words, fill.name, out[:n], want)
				}
				if out[n] != 42 {
					t.Errorf("HammingAll words %d %s wrote past n", words, fill.name)
				}

				rows := make([]int32, r.IntN(2*n))
				for i := range rows {
					rows[i] = int32(r.IntN(n))
				}
				if len(rows) > 2 {
					rows[0], rows[1] = int32(n-1), 0
				}
				many := make([]uint32, len(rows)+1)
				many[len(rows)] = 42
				HammingMany(codes, words, rows, q, many)
				for i, row := range rows {
					if many[i] != want[row] {
						t.Errorf("HammingMany words %d %s row %d = %d, want %d", words, fill.name, row, many[i], want[row])
					}
				}
				if many[len(rows)] != 42 {
					t.Errorf("HammingMany words %d %s wrote past len(rows)", words, fill.name)
				}
			}
		}
	})
}

// TestHammingLevelsAgree checks every implementation against the generic one
// on larger random arrays of the common sizes.
func TestHammingLevelsAgree(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	r := rand.New(rand.NewPCG(21, 22))
	for _, words := range []int{6, 12, 16, 24, 48} {
		const n = 1003
		codes, q := randCodes(r, n*words), randCodes(r, words)
		rows := make([]int32, 500)
		for i := range rows {
			rows[i] = int32(r.IntN(n))
		}
		slices.Sort(rows)
		active = levelGeneric
		wantAll, wantMany := make([]uint32, n), make([]uint32, len(rows))
		HammingAll(codes, words, q, wantAll)
		HammingMany(codes, words, rows, q, wantMany)
		for _, l := range levels() {
			active = l
			all, many := make([]uint32, n), make([]uint32, len(rows))
			HammingAll(codes, words, q, all)
			HammingMany(codes, words, rows, q, many)
			if !slices.Equal(all, wantAll) {
				t.Errorf("%s HammingAll words %d differs from generic", l, words)
			}
			if !slices.Equal(many, wantMany) {
				t.Errorf("%s HammingMany words %d differs from generic", l, words)
			}
		}
	}
}

// benchCodeArrays holds the random code arrays of the benchmarks by size.
var benchCodeArrays = map[[2]int][]uint64{}

func benchHammingCodes(n, words int) []uint64 {
	k := [2]int{n, words}
	if c, ok := benchCodeArrays[k]; ok {
		return c
	}
	c := randCodes(rand.New(rand.NewPCG(uint64(n), uint64(words))), n*words)
	benchCodeArrays[k] = c
	return c
}

// hammingBenchSizes: 100,000 codes of 3072 dimensions (38 MB, more than
// the last-level cache, so read from memory), 10,000 of them (3.8 MB, from
// cache), and 100,000 codes of 1536 and 384 dimensions.
var hammingBenchSizes = []struct{ n, words int }{{100_000, 48}, {10_000, 48}, {100_000, 24}, {100_000, 6}}

// BenchmarkHammingAll runs HammingAll per implementation: "generic" is the
// scalar code (bits.OnesCount64, 4 words per iteration) that was the only
// implementation before the AVX2 kernels.
func BenchmarkHammingAll(b *testing.B) {
	for _, c := range hammingBenchSizes {
		codes := benchHammingCodes(c.n, c.words)
		q := codes[:c.words]
		out := make([]uint32, c.n)
		benchLevels(b, fmt.Sprintf("%dx%dw", c.n, c.words), func(b *testing.B) {
			b.SetBytes(int64(len(codes) * 8))
			for b.Loop() {
				HammingAll(codes, c.words, q, out)
			}
		})
	}
}

// BenchmarkHammingMany scores every 10th code of 100,000 of 48 words.
func BenchmarkHammingMany(b *testing.B) {
	const n, words = 100_000, 48
	codes := benchHammingCodes(n, words)
	q := codes[:words]
	rows := make([]int32, 0, n/10)
	for i := 0; i < n; i += 10 {
		rows = append(rows, int32(i))
	}
	out := make([]uint32, len(rows))
	benchLevels(b, fmt.Sprintf("%dof%dx%dw", len(rows), n, words), func(b *testing.B) {
		b.SetBytes(int64(len(rows) * words * 8))
		for b.Loop() {
			HammingMany(codes, words, rows, q, out)
		}
	})
}

// BenchmarkHammingAllOldVsNew times the generic code ("old") and the active
// implementation ("new") alternately in the same loop, one scan each per
// iteration, so that both see the same load on a shared machine, and
// reports the median time of a scan of each and their ratio.
func BenchmarkHammingAllOldVsNew(b *testing.B) {
	if active == levelGeneric {
		b.Skip("only the generic implementation here")
	}
	saved := active
	defer func() { active = saved }()
	for _, c := range hammingBenchSizes {
		codes := benchHammingCodes(c.n, c.words)
		q := codes[:c.words]
		out := make([]uint32, c.n)
		b.Run(fmt.Sprintf("%dx%dw", c.n, c.words), func(b *testing.B) {
			var old, cur []time.Duration
			for b.Loop() {
				active = levelGeneric
				t0 := time.Now()
				HammingAll(codes, c.words, q, out)
				t1 := time.Now()
				active = saved
				HammingAll(codes, c.words, q, out)
				t2 := time.Now()
				old = append(old, t1.Sub(t0))
				cur = append(cur, t2.Sub(t1))
			}
			mo, mn := median(old), median(cur)
			b.ReportMetric(float64(mo.Microseconds()), "old-µs/scan")
			b.ReportMetric(float64(mn.Microseconds()), "new-µs/scan")
			b.ReportMetric(float64(mo)/float64(mn), "speedup")
		})
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestHammingManyPanics checks that HammingMany rejects rows outside codes
// in every implementation, also when the vector kernels take the rows four
// at a time.
func TestHammingManyPanics(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		const words = 48
		codes, q := make([]uint64, 3*words), make([]uint64, words)
		out := make([]uint32, 8)
		for _, rows := range [][]int32{{0, 1, 3, 2}, {0, -1, 1, 2}, {0, 1, 2, 0, 3}, {3}} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("HammingMany rows %v of 3: no panic", rows)
					}
				}()
				HammingMany(codes, words, rows, q, out)
			}()
		}
	})
}
