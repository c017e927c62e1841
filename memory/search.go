package memory

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"

	"github.com/crewcore/crewcore/internal/vec"
)

// parallelWork is the scan size (in bytes) above which one search splits
// its scan across all cores.
const parallelWork = 1 << 20

var (
	f32Pool  = sync.Pool{New: func() any { return new([]float32) }}
	u32Pool  = sync.Pool{New: func() any { return new([]uint32) }}
	i32Pool  = sync.Pool{New: func() any { return new([]int32) }}
	i32bPool = sync.Pool{New: func() any { return new([]int32) }}
)

func getI32b(n int) *[]int32 {
	p := i32bPool.Get().(*[]int32)
	if cap(*p) < n {
		*p = make([]int32, n)
	}
	*p = (*p)[:n]
	return p
}

func getF32(n int) *[]float32 {
	p := f32Pool.Get().(*[]float32)
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	*p = (*p)[:n]
	return p
}

func getU32(n int) *[]uint32 {
	p := u32Pool.Get().(*[]uint32)
	if cap(*p) < n {
		*p = make([]uint32, n)
	}
	*p = (*p)[:n]
	return p
}

func getI32(n int) *[]int32 {
	p := i32Pool.Get().(*[]int32)
	if cap(*p) < n {
		*p = make([]int32, n)
	}
	*p = (*p)[:n]
	return p
}

// Search returns the records nearest to q.Vector, best first. Filters are
// applied before selection, so the result holds min(q.Limit, matches) records.
func (s *Store) Search(ctx context.Context, q Query) ([]Match, error) {
	if q.Limit < 0 {
		return nil, fmt.Errorf("%w: limit must be >= 0, got %d", ErrInvalidArgument, q.Limit)
	}
	if math.IsNaN(q.MinScore) {
		return nil, fmt.Errorf("%w: min_score is NaN", ErrInvalidArgument)
	}
	if err := checkVector(q.Vector, "query vector"); err != nil {
		return nil, err
	}
	prefix, err := normalizePrefix(q.ScopePrefix)
	if err != nil {
		return nil, err
	}
	if err := CheckQuery(&q); err != nil { // contract.go
		return nil, err
	}
	var out []Match
	err = s.read(ctx, func(ix *index) error {
		if q.Limit == 0 { // nothing asked: no dimension check either (as pgmemory and the fallback)
			out = []Match{}
			return nil
		}
		if ix.dim > 0 && len(q.Vector) != ix.dim {
			return &DimensionError{Stored: ix.dim, Got: len(q.Vector)}
		}
		hits := s.searchIndex(ix, &q, prefix)
		out = make([]Match, len(hits))
		for i, h := range hits {
			out[i] = Match{Record: ix.record(ix.entries[ix.slotEntry[h.slot]], q.WithEmbeddings), Score: h.score}
		}
		return nil
	})
	return out, err
}

// hit is a scored vector slot.
type hit struct {
	slot  int32
	rid   int64
	score float64
}

// better orders hits: higher score first, then newer rid.
func better(a, b hit) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.rid > b.rid
}

// hitHeap is a min-heap on "better" (the worst hit on top).
type hitHeap []hit

func (h hitHeap) Len() int           { return len(h) }
func (h hitHeap) Less(i, j int) bool { return better(h[j], h[i]) }
func (h hitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *hitHeap) Push(x any)        { *h = append(*h, x.(hit)) }
func (h *hitHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// candidates returns the vector slots passing the filters, or nil when there
// is no filter (every slot is a candidate).
func (s *Store) candidates(ix *index, q *Query, prefix string) (rows *[]int32, filtered bool) {
	if prefix == "" && len(q.Categories) == 0 && len(q.Metadata) == 0 && q.Privacy == nil {
		return nil, false
	}
	match := ix.matchingScopes(prefix)
	p := getI32(0)
	r := (*p)[:0]
	wantCats := len(q.Categories) > 0
	mask, maskExact := ix.catMask(q.Categories)
	needEntry := len(q.Metadata) > 0 || q.Privacy != nil
	for slot, sid := range ix.slotScope {
		if !match[sid] {
			continue
		}
		catsChecked := false
		if wantCats {
			bits := ix.slotCats[slot]
			if bits&mask == 0 {
				if maskExact || bits&overflowCat == 0 {
					continue
				}
			} else {
				catsChecked = true
			}
		}
		if needEntry || (wantCats && !catsChecked) {
			// Only records that pass the flat checks pay for reading their entry.
			e := ix.entries[ix.slotEntry[slot]]
			if wantCats && !catsChecked && !anyOf(e.cats, q.Categories) {
				continue
			}
			if q.Privacy != nil && e.private && (*q.Privacy == "" || e.source != *q.Privacy) {
				continue
			}
			if len(q.Metadata) > 0 && !metaEqual(e.metadata(), q.Metadata) {
				continue
			}
		}
		r = append(r, int32(slot))
	}
	*p = r
	return p, true
}

// searchIndex scores and selects. Caller holds s.mu for reading.
func (s *Store) searchIndex(ix *index, q *Query, prefix string) []hit {
	if ix.dim == 0 || ix.slots() == 0 || q.Limit == 0 {
		return nil
	}
	rowsP, filtered := s.candidates(ix, q, prefix)
	var rows []int32
	n := ix.slots()
	if filtered {
		defer i32Pool.Put(rowsP)
		rows = *rowsP
		n = len(rows)
	}
	if n == 0 {
		return nil
	}
	k := min(q.Limit, n)
	qn := vec.SquaredNorm(q.Vector)
	if s.opts.ExactBelow < 0 || n < s.opts.ExactBelow {
		return s.exact(ix, q, rows, filtered, n, k, qn)
	}
	return s.quantized(ix, q, rows, filtered, n, k, qn)
}

func (s *Store) score(ix *index, slot int32, dot, qn float32) float64 {
	vn := ix.norms[slot]
	if s.opts.Metric == Cosine {
		if qn == 0 || vn == 0 {
			return 0
		}
		return float64(dot) / math.Sqrt(float64(qn)*float64(vn))
	}
	d := float64(qn) + float64(vn) - 2*float64(dot)
	if d < 0 {
		d = 0
	}
	return 1 / (1 + d)
}

// exact scores every candidate with float32 dot products.
func (s *Store) exact(ix *index, q *Query, rows []int32, filtered bool, n, k int, qn float32) []hit {
	dotsP := getF32(n)
	defer f32Pool.Put(dotsP)
	dots := *dotsP
	parallel(n, n*ix.dim*4, func(lo, hi int) {
		if filtered {
			vec.DotMany(ix.vecs, ix.dim, rows[lo:hi], q.Vector, dots[lo:hi])
		} else {
			vec.DotAll(ix.vecs[lo*ix.dim:hi*ix.dim], ix.dim, q.Vector, dots[lo:hi])
		}
	})
	h := make(hitHeap, 0, k+1)
	for i := 0; i < n; i++ {
		slot := int32(i)
		if filtered {
			slot = rows[i]
		}
		sc := s.score(ix, slot, dots[i], qn)
		if sc < q.MinScore {
			continue
		}
		cand := hit{slot: slot, score: sc}
		if len(h) == k {
			top := h[0]
			if top.score > sc {
				continue
			}
			cand.rid = ix.entries[ix.slotEntry[slot]].rid
			if !better(cand, top) {
				continue
			}
			h[0] = cand
			heap.Fix(&h, 0)
			continue
		}
		cand.rid = ix.entries[ix.slotEntry[slot]].rid
		heap.Push(&h, cand)
	}
	sort.Slice(h, func(i, j int) bool { return better(h[i], h[j]) })
	return h
}

// Cascade sizes: the binary stage keeps at least stage1Min candidates and
// the int8 stage at least stage2Min.
var (
	stage1Min = 3000
	stage2Min = 100
)

// quantized is the cascade: a Hamming scan of 1-bit codes over every
// candidate, int8 dot products over the best of those, exact float32 scores
// over the best of those.
func (s *Store) quantized(ix *index, q *Query, rows []int32, filtered bool, n, k int, qn float32) []hit {
	c1 := max(stage1Min, int(s.opts.Stage1*float64(n)))
	c2 := max(stage2Min, s.opts.Stage2*k)
	if c2 >= n {
		return s.exact(ix, q, rows, filtered, n, k, qn)
	}
	// Stage 1: binary codes.
	var cand []int32
	chosen := false
	if c1 < n {
		qcode := make([]uint64, ix.words)
		binarize(q.Vector, ix.center, qcode)
		distP := getU32(n)
		defer u32Pool.Put(distP)
		dist := *distP
		parallel(n, n*ix.words*8, func(lo, hi int) {
			if filtered {
				vec.HammingMany(ix.codes, ix.words, rows[lo:hi], qcode, dist[lo:hi])
			} else {
				vec.HammingAll(ix.codes[lo*ix.words:hi*ix.words], ix.words, qcode, dist[lo:hi])
			}
		})
		candP := getI32(0)
		defer i32Pool.Put(candP)
		// When the codes do not separate these vectors (a large tie at the
		// cut), every candidate goes on to the int8 stage instead.
		cand, chosen = selectSmallest(dist, ix.words*64, c1, rows, filtered, (*candP)[:0])
		*candP = cand
	}
	switch {
	case chosen:
	case filtered:
		cand = rows
	default:
		candP := getI32(n)
		defer i32Pool.Put(candP)
		cand = *candP
		for i := range cand {
			cand[i] = int32(i)
		}
	}
	// Stage 2: int8 dot products, approximate scores.
	q8 := make([]int8, ix.dim)
	qscale := vec.QuantizeInt8(q.Vector, q8)
	dotsP := getI32b(len(cand))
	defer i32bPool.Put(dotsP)
	dots := *dotsP
	parallel(len(cand), len(cand)*ix.dim, func(lo, hi int) {
		vec.DotInt8Many(ix.q8, ix.dim, cand[lo:hi], q8, dots[lo:hi])
	})
	approx := make(hitHeap, 0, c2+1)
	for i, slot := range cand {
		d := float32(dots[i]) * qscale * ix.q8scale[slot]
		h := hit{slot: slot, score: s.score(ix, slot, d, qn)}
		if len(approx) < c2 {
			heap.Push(&approx, h)
		} else if h.score > approx[0].score {
			approx[0] = h
			heap.Fix(&approx, 0)
		}
	}
	// Stage 3: exact scores on the survivors.
	final := make([]int32, len(approx))
	for i, h := range approx {
		final[i] = h.slot
	}
	return s.exact(ix, q, final, true, len(final), min(k, len(final)), qn)
}

// selectSmallest appends to out the slots of the c smallest distances
// (distances are bounded by maxD) by counting selection, in O(n). It
// reports false, selecting nothing, when the distances do not discriminate:
// the records tied at the cut are as many as c itself, so which of them
// survive would be arbitrary.
func selectSmallest(dist []uint32, maxD, c int, rows []int32, filtered bool, out []int32) ([]int32, bool) {
	hist := make([]int, maxD+2)
	for _, d := range dist {
		hist[min(int(d), maxD+1)]++
	}
	threshold, acc := 0, 0
	for threshold = 0; threshold <= maxD+1; threshold++ {
		acc += hist[threshold]
		if acc >= c {
			break
		}
	}
	tied := hist[min(threshold, maxD+1)]
	room := c - (acc - tied)
	if tied-room >= c {
		return out, false
	}
	for i, d := range dist {
		slot := int32(i)
		if filtered {
			slot = rows[i]
		}
		if int(d) < threshold {
			out = append(out, slot)
		} else if int(d) == threshold && room > 0 {
			out = append(out, slot)
			room--
		}
	}
	return out, true
}

// parallel splits [0,n) across the cores when work is large enough.
func parallel(n, work int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if work < parallelWork || workers < 2 || n < 2*workers {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}
