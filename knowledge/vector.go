package knowledge

import (
	"math"
	"runtime"
	"sort"
	"sync"

	"github.com/crewcore/crewcore/internal/par"
	"github.com/crewcore/crewcore/internal/vec"
)

// Exact vector search: a cascade of bounded passes.
//
// Every row's vector v is unit length and kept three ways: float32 (the
// exact score), int8 codes v8 with the error norm |v - v8|, and 2-bit
// codes v2 (vec.QuantizeU2: four levels per coordinate, 384 bytes a row
// at 1536 dimensions) with |v2| and |v - v2|. For the unit query q and its
// int8 code q8 (error eq = |q - q8|), for either code v':
//
//	q.v = q8.v' + (q - q8).v' + q.(v - v')
//	    <= q8.v' + eq*|v'| + |q|*|v - v'|
//
// q8.v' is computed exactly in integers, so the right side is an upper
// bound of the row's exact cosine. The 2-bit pass computes it for every
// candidate; the k best by q8.v2 are scored in float32, which gives tau,
// the k-th best exact score so far (a lower bound of the final k-th). A
// row whose bound is under tau cannot be in the top k and is dropped; the
// rest survive. When few survive they are scored in float32; when many do
// (data the 2-bit codes describe too coarsely for the bound to decide) the
// int8 codes run the same step on the survivors, with their tighter bound,
// before the float32 scores. A slack of 2e-4 covers the float32 rounding
// of the exact dot products. So the answer is always the float32 scan's;
// only the work depends on the data.

const (
	// exactBelow is the candidate count under which every candidate is
	// scored in float32 directly.
	exactBelow = 2048
	// directBelow is the survivor count of the 2-bit pass under which the
	// survivors are scored in float32 without the int8 pass.
	directBelow = 1024
	// scoreSlack covers the float32 rounding of the exact dot products.
	scoreSlack = 2e-4
	// parallelBytes is the size of a code scan above which other cores are
	// offered a share of it: 100k 2-bit rows of 1536 dimensions (38 MB)
	// are; 10k (3.8 MB, ~0.3 ms of one core) are not: through the bridge
	// the Go runtime is parked between calls, and waking a second thread
	// cost what it saved (p50 0.41-0.46 ms offered at 1 MB, 0.43 ms not).
	// The scan is cut in chunks of scanChunk rows that the calling
	// goroutine and the helpers claim in turn, so a helper that gets no
	// core (a loaded machine) takes nothing and the caller does the whole
	// scan alone; only a chunk a helper has already claimed is waited for.
	// This replaced a fixed split in halves, which on a loaded machine
	// waited for the second half (100k in the Go benchmark: 2.47 ms in
	// halves, 2.01 ms in chunks).
	parallelBytes = 16 << 20
	// scanChunk is the rows a goroutine claims at a time.
	scanChunk = 512
)

// scratch holds the per-candidate buffers of a search, reused across
// searches (at 100k candidates they are 1.2 MB a query).
type scratch struct {
	dots   []int32
	approx []float64
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// get returns the buffers sized m (their contents are overwritten).
func (s *scratch) get(m int) ([]int32, []float64) {
	if cap(s.dots) < m {
		s.dots = make([]int32, m)
		s.approx = make([]float64, m)
	}
	return s.dots[:m], s.approx[:m]
}

// passStats counts what the cascade did (tests read it).
type passStats struct {
	u2, int8, exact int // rows scanned by each pass
}

// topVector returns the k rows (of rows, or of all when rows is nil) with
// the highest cosine to the unit query q, best first (ties: older row);
// exactly the rows a full float32 scan would pick.
func (c *coll) topVector(q []float32, rows []int32, k int) []scored {
	top, _ := c.topVectorStats(q, rows, k)
	return top
}

func (c *coll) topVectorStats(q []float32, rows []int32, k int) ([]scored, passStats) {
	var st passStats
	m := c.n()
	if rows != nil {
		m = len(rows)
	}
	if m == 0 || k <= 0 {
		return nil, st
	}
	if m < exactBelow || k >= m {
		all := rows
		if all == nil {
			all = make([]int32, m)
			for j := range all {
				all[j] = int32(j)
			}
		}
		st.exact = m
		return c.exactTop(q, all, k, nil), st
	}
	var qq float64
	for _, x := range q {
		qq += float64(x) * float64(x)
	}
	qnorm := math.Sqrt(qq) * (1 + 1e-6)
	qc := make([]int8, c.dim)
	qs := float64(vec.QuantizeInt8(q, qc))
	var eq float64
	for i, x := range q {
		d := float64(x) - qs*float64(qc[i])
		eq += d * d
	}
	eq = math.Sqrt(eq) * (1 + 1e-6)

	// pass 1: 2-bit codes of every candidate
	qp := make([]int8, vec.U2QueryLen(c.dim))
	copy(qp, qc)
	var sumq int64
	for _, x := range qc {
		sumq += int64(x)
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	dots, approx := sc.get(m)
	c.scan(rows, dots, len(c.u2Delta) > 0 && m*c.u2Stride >= parallelBytes, func(rs []int32, lo, hi int, out []int32) {
		if rs == nil {
			vec.DotU2All(c.u2[lo*c.u2Stride:hi*c.u2Stride], c.u2Stride, qp, out)
		} else {
			vec.DotU2Many(c.u2, c.u2Stride, rs, qp, out)
		}
	})
	st.u2 = m
	off := 1.5 * float64(sumq)
	for j, d := range dots {
		r := int32(j)
		if rows != nil {
			r = rows[j]
		}
		approx[j] = qs * float64(c.u2Delta[r]) * (float64(d) - off)
	}
	rowAt := func(j int32) int32 {
		if rows == nil {
			return j
		}
		return rows[j]
	}
	first := topIdx(approx, k)
	cand := make([]int32, len(first))
	for i, j := range first {
		cand[i] = rowAt(j)
		approx[j] = math.Inf(-1) // scored exactly now
	}
	st.exact += len(cand)
	top := c.exactTop(q, cand, k, nil)
	tau := float64(top[len(top)-1].cos)
	// most rows fail the first comparison, against the largest bound
	floor := tau - eq*float64(c.u2MaxNorm) - qnorm*float64(c.u2MaxErr) - scoreSlack
	var more []int32
	for j, a := range approx {
		if a < floor {
			continue
		}
		r := rowAt(int32(j))
		if a+eq*float64(c.u2Norm[r])+qnorm*float64(c.u2Err[r])+scoreSlack >= tau {
			more = append(more, r)
		}
	}
	if len(more) == 0 {
		return top, st
	}
	if len(more) < directBelow {
		st.exact += len(more)
		return c.exactTop(q, more, k, top), st
	}

	// pass 2: int8 codes of the survivors, the same step with a tighter
	// bound (|v8| <= 1 + |v - v8|)
	st.int8 = len(more)
	d8 := make([]int32, len(more))
	c.scan(more, d8, len(more)*c.dim >= parallelBytes, func(rs []int32, _, _ int, out []int32) {
		vec.DotInt8Many(c.codes, c.dim, rs, qc, out)
	})
	ap8 := make([]float64, len(more))
	for i, d := range d8 {
		ap8[i] = float64(d) * qs * float64(c.scales[more[i]])
	}
	first = topIdx(ap8, k)
	cand = cand[:0]
	for _, i := range first {
		cand = append(cand, more[i])
		ap8[i] = math.Inf(-1)
	}
	st.exact += len(cand)
	top = c.exactTop(q, cand, k, top)
	tau = float64(top[len(top)-1].cos)
	floor = tau - eq*(1+float64(c.maxErr)) - qnorm*float64(c.maxErr) - scoreSlack
	var last []int32
	for i, a := range ap8 {
		if a < floor {
			continue
		}
		e := float64(c.errs[more[i]])
		if a+eq*(1+e)+qnorm*e+scoreSlack >= tau {
			last = append(last, more[i])
		}
	}
	if len(last) == 0 {
		return top, st
	}
	st.exact += len(last)
	return c.exactTop(q, last, k, top), st
}

// scan runs f over the candidates (rows, or all rows [0, len(out)) when
// rows is nil) writing out. When parallel, the work is cut in chunks of
// scanChunk rows that this goroutine and one helper per other core claim in
// turn (par.Pieces: the scan never waits on a helper that did not start).
func (c *coll) scan(rows []int32, out []int32, parallel bool, f func(rs []int32, lo, hi int, out []int32)) {
	m := len(out)
	helpers := runtime.GOMAXPROCS(0) - 1
	if !parallel || helpers < 1 || m <= scanChunk {
		var rs []int32
		if rows != nil {
			rs = rows[:m]
		}
		f(rs, 0, m, out)
		return
	}
	chunks := (m + scanChunk - 1) / scanChunk
	par.Pieces(chunks, helpers, func(i int) {
		lo := i * scanChunk
		hi := min(m, lo+scanChunk)
		var rs []int32
		if rows != nil {
			rs = rows[lo:hi]
		}
		f(rs, lo, hi, out[lo:hi])
	})
}

// exactTop scores rows exactly and merges them with prev (already exact),
// returning the k best, best first.
func (c *coll) exactTop(q []float32, rows []int32, k int, prev []scored) []scored {
	dots := make([]float32, len(rows))
	vec.DotMany(c.vecs, c.dim, rows, q, dots)
	all := make([]scored, 0, len(rows)+len(prev))
	all = append(all, prev...)
	for i, r := range rows {
		all = append(all, scored{row: r, cos: dots[i]})
	}
	sort.Slice(all, func(i, j int) bool { return c.better(all[i], all[j]) })
	if len(all) > k {
		all = all[:k]
	}
	return all
}
