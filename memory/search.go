package memory

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"

	"github.com/crewcore/crewcore/internal/par"
	"github.com/crewcore/crewcore/internal/vec"
)

// parallelWork is the scan size (in bytes) above which one search splits
// its scan across all cores.
const parallelWork = 1 << 20

// parallelPieces is how many pieces per core parallel cuts a range into.
const parallelPieces = 8

var (
	f32Pool  = sync.Pool{New: func() any { return new([]float32) }}
	f32bPool = sync.Pool{New: func() any { return new([]float32) }}
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

func getF32b(n int) *[]float32 {
	p := f32bPool.Get().(*[]float32)
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
	var bad badSlots
	err = s.read(ctx, func(ix *index) error {
		if q.Limit == 0 { // nothing asked: no dimension check either (as pgmemory and the fallback)
			out = []Match{}
			return nil
		}
		if ix.dim > 0 && len(q.Vector) != ix.dim {
			return &DimensionError{Stored: ix.dim, Got: len(q.Vector)}
		}
		hits := s.searchIndex(ix, &q, prefix, &bad)
		if len(bad.slots) > 0 {
			return nil
		}
		if q.WithEmbeddings {
			for _, h := range hits {
				bad.slots = append(bad.slots, checkVectors(ix, ix.entries[ix.slotEntry[h.slot]])...)
			}
			if len(bad.slots) > 0 {
				return nil
			}
		}
		out = make([]Match, len(hits))
		for i, h := range hits {
			out[i] = Match{Record: ix.record(ix.entries[ix.slotEntry[h.slot]], q.WithEmbeddings), Score: h.score}
		}
		return nil
	})
	if err == nil && len(bad.slots) > 0 {
		return nil, s.markBadSlots(bad.slots)
	}
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

// candidates returns the vector slots passing the filters (every slot with
// a record when there is no filter).
func (s *Store) candidates(ix *index, q *Query, prefix string) *[]int32 {
	p := getI32(0)
	r := (*p)[:0]
	if prefix == "" && len(q.Categories) == 0 && len(q.Metadata) == 0 && q.Privacy == nil {
		for _, sg := range ix.segs {
			for slot := sg.base; slot < sg.base+int32(sg.used); slot++ {
				if ix.slotEntry[slot] >= 0 {
					r = append(r, slot)
				}
			}
		}
		*p = r
		return p
	}
	match := ix.matchingScopes(prefix)
	wantCats := len(q.Categories) > 0
	mask, maskExact := ix.catMask(q.Categories)
	needEntry := len(q.Metadata) > 0 || q.Privacy != nil
	for _, sg := range ix.segs {
		for slot := sg.base; slot < sg.base+int32(sg.used); slot++ {
			ep := ix.slotEntry[slot]
			if ep < 0 || !match[ix.slotScope[slot]] {
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
				e := ix.entries[ep]
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
			r = append(r, slot)
		}
	}
	*p = r
	return p
}

// searchIndex scores and selects. Caller holds s.mu for reading. bad
// collects the slots whose vector failed its checksum.
func (s *Store) searchIndex(ix *index, q *Query, prefix string, bad *badSlots) []hit {
	if ix.dim == 0 || ix.slots() == 0 || q.Limit == 0 {
		return nil
	}
	rowsP := s.candidates(ix, q, prefix)
	defer i32Pool.Put(rowsP)
	rows := *rowsP
	n := len(rows)
	if n == 0 {
		return nil
	}
	k := min(q.Limit, n)
	qn := vec.SquaredNorm(q.Vector)
	if s.opts.ExactBelow < 0 || n < s.opts.ExactBelow {
		return s.exact(ix, q, rows, k, qn, bad)
	}
	return s.quantized(ix, q, rows, k, qn, bad)
}

// badSlots collects, from the goroutines of one search, the slots whose
// vector row failed its checksum.
type badSlots struct {
	mu    sync.Mutex
	slots []int32
}

func (b *badSlots) add(slot int32) {
	b.mu.Lock()
	b.slots = append(b.slots, slot)
	b.mu.Unlock()
}

// dotsOf computes out[i] = dot(vector of rows[i], q) and norms[i] = its
// squared norm, one run of rows of the same segment at a time, checking
// each vector against its checksum (once per row and process).
func dotsOf(ix *index, rows []int32, q []float32, out, norms []float32, bad *badSlots) {
	local := getI32(0)
	defer i32Pool.Put(local)
	for i := 0; i < len(rows); {
		sg, _ := ix.locate(rows[i])
		j := i
		lr := (*local)[:0]
		end := sg.base + int32(sg.cap)
		for ; j < len(rows) && rows[j] >= sg.base && rows[j] < end; j++ {
			r := int(rows[j] - sg.base)
			if vcrc, ok := decodeBinRow(sg.binRow(r), sg.words); !ok || !sg.verifyVector(r, vcrc) {
				bad.add(rows[j])
			}
			lr = append(lr, int32(r))
		}
		*local = lr
		// One pass over each vector for its dot and its norm: this stage
		// reads every candidate's float32 row, and is bound by that.
		vec.DotNormMany(sg.vecs, sg.dim, lr, q, out[i:j], norms[i:j])
		i = j
	}
}

func (s *Store) score(dot, qn, vn float32) float64 {
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
func (s *Store) exact(ix *index, q *Query, rows []int32, k int, qn float32, bad *badSlots) []hit {
	n := len(rows)
	dotsP := getF32(n)
	defer f32Pool.Put(dotsP)
	dots := *dotsP
	normsP := getF32b(n)
	defer f32bPool.Put(normsP)
	norms := *normsP
	parallel(n, n*ix.dim*4, func(lo, hi int) {
		dotsOf(ix, rows[lo:hi], q.Vector, dots[lo:hi], norms[lo:hi], bad)
	})
	h := make(hitHeap, 0, k+1)
	for i, slot := range rows {
		sc := s.score(dots[i], qn, norms[i])
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

// Cascade sizes: the binary stage keeps at least stage1Min candidates.
var stage1Min = 3000

// quantized is the cascade: a Hamming scan of the 1-bit codes of every
// candidate (each segment's codes are signs of v minus that segment's
// center), then exact float32 scores of the best of those.
func (s *Store) quantized(ix *index, q *Query, rows []int32, k int, qn float32, bad *badSlots) []hit {
	n := len(rows)
	c1 := max(stage1Min, int(s.opts.Stage1*float64(n)), s.opts.Stage2*k)
	if c1 >= n {
		return s.exact(ix, q, rows, k, qn, bad)
	}
	qcodes := make([][]uint64, len(ix.segs))
	for i, sg := range ix.segs {
		qcodes[i] = make([]uint64, ix.words)
		binarize(q.Vector, sg.center, qcodes[i])
	}
	distP := getU32(n)
	defer u32Pool.Put(distP)
	dist := *distP
	parallel(n, n*ix.words*8, func(lo, hi int) {
		local := getI32(0)
		defer i32Pool.Put(local)
		for i := lo; i < hi; {
			si := sort.Search(len(ix.segs), func(t int) bool { return ix.segs[t].base > rows[i] }) - 1
			sg := ix.segs[si]
			end := sg.base + int32(sg.cap)
			lr := (*local)[:0]
			j := i
			for ; j < hi && rows[j] < end; j++ {
				lr = append(lr, rows[j]-sg.base)
			}
			*local = lr
			vec.HammingManyStride(sg.codes, ix.words+1, ix.words, lr, qcodes[si], dist[i:j])
			i = j
		}
	})
	candP := getI32(0)
	defer i32Pool.Put(candP)
	// When the codes do not separate these vectors (a large tie at the
	// cut), every candidate is scored exactly instead.
	cand, chosen := selectSmallest(dist, ix.words*64, c1, rows, true, (*candP)[:0])
	*candP = cand
	if !chosen {
		return s.exact(ix, q, rows, k, qn, bad)
	}
	sort.Slice(cand, func(i, j int) bool { return cand[i] < cand[j] })
	return s.exact(ix, q, cand, min(k, len(cand)), qn, bad)
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

// parallel splits [0,n) across the cores when work is large enough: in
// parallelPieces pieces per core that the calling goroutine and one helper
// per further core claim in turn (par.Pieces).
func parallel(n, work int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if work < parallelWork || workers < 2 || n < 2*workers {
		fn(0, n)
		return
	}
	pieces := min(n, workers*parallelPieces)
	chunk := (n + pieces - 1) / pieces
	pieces = (n + chunk - 1) / chunk
	par.Pieces(pieces, workers-1, func(i int) {
		lo := i * chunk
		fn(lo, min(lo+chunk, n))
	})
}
