package memory

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/crewcore/crewcore/internal/vec"
)

// entry is one record held in memory.
type entry struct {
	rid                 int64
	id, content         string
	scopeID             int32
	cats                []string
	catsJSON            string
	meta                string
	importance          float64
	created, accessed   string
	source              string
	private             bool
	slot                int32 // row in the vector arena, -1 without a vector
	metaOnce            sync.Once
	metaParsed          map[string]any
	createdT, accessedT time.Time
	timesParsed         bool
	// bad says why the stored row failed its checksum ("" when intact).
	// A bad entry has no vector and is never served (checksum.go).
	bad string
}

func (e *entry) metadata() map[string]any {
	e.metaOnce.Do(func() {
		m, err := DecodeJSONObject(e.meta)
		if err != nil || m == nil {
			m = map[string]any{}
		}
		e.metaParsed = m
	})
	return e.metaParsed
}

// scopeStat is the per-scope index that answers list_scopes, scope info,
// categories and counts without touching records.
type scopeStat struct {
	path           string
	count          int
	cats           map[string]int
	oldest, newest string
	stale          bool // oldest/newest need recomputing after a removal
}

// index is the in-memory state of a store: every record, the vector arena
// and per-scope statistics. It is guarded by Store.mu.
type index struct {
	dim     int
	entries []*entry       // dense; order is not meaningful
	pos     map[string]int // id -> position in entries
	// Vector arena: slot i holds vecs[i*dim:(i+1)*dim].
	vecs  []float32
	norms []float32
	codes []uint64 // binary codes, words per slot
	words int
	// center is subtracted before taking sign bits, so data that is not
	// centred at the origin (say, all components positive) still spreads
	// over the codes. It is recomputed, and every code rebuilt, each time
	// the number of vectors doubles (amortized O(1) per vector).
	center     []float32
	recenterAt int
	q8         []int8    // int8 codes, dim per slot
	q8scale    []float32 // per-slot scale: vector ~= scale * code
	slotEntry  []int32   // slot -> position in entries
	slotScope  []int32   // slot -> scope id, so scope filters scan a flat array
	slotCats   []uint64  // slot -> bit i set for category id i < 63; bit 63: has a later category
	catIDs     map[string]int
	// Scopes: ids are stable for the life of the index.
	scopes   []*scopeStat
	scopeIDs map[string]int32
	staleAny bool
	// corrupt maps the id of every bad entry to why (checksum.go).
	corrupt map[string]string
}

func newIndex(dim int) *index {
	ix := &index{pos: map[string]int{}, scopeIDs: map[string]int32{}, recenterAt: minRecenter}
	ix.setDim(dim)
	return ix
}

func (ix *index) setDim(dim int) {
	ix.dim = dim
	if dim > 0 {
		ix.words = vec.Words(dim)
	} else {
		ix.words = 0
	}
}

func (ix *index) len() int { return len(ix.entries) }

func (ix *index) slots() int { return len(ix.slotEntry) }

func (ix *index) scopeFor(path string) int32 {
	if id, ok := ix.scopeIDs[path]; ok {
		return id
	}
	id := int32(len(ix.scopes))
	ix.scopes = append(ix.scopes, &scopeStat{path: path, cats: map[string]int{}})
	ix.scopeIDs[path] = id
	return id
}

// put inserts or replaces a record. vector may be nil (no embedding); when
// keep is true and the record exists, its current vector is kept.
func (ix *index) put(e *entry, vector []float32, keep bool) {
	if i, ok := ix.pos[e.id]; ok {
		old := ix.entries[i]
		if keep && old.slot >= 0 && vector == nil {
			vector = ix.vector(old.slot)
			vector = slices.Clone(vector)
		}
		ix.removeAt(i)
	}
	e.slot = -1
	if len(vector) > 0 && len(vector) == ix.dim {
		e.slot = ix.addVector(vector, int32(len(ix.entries)), e.scopeID, ix.catBits(e.cats))
	}
	ix.pos[e.id] = len(ix.entries)
	ix.entries = append(ix.entries, e)
	if e.bad != "" {
		if ix.corrupt == nil {
			ix.corrupt = map[string]string{}
		}
		ix.corrupt[e.id] = e.bad
	}
	st := ix.scopes[e.scopeID]
	st.count++
	for _, c := range uniq(e.cats) {
		st.cats[c]++
	}
	switch {
	case st.count == 1:
		st.oldest, st.newest, st.stale = e.created, e.created, false
	case st.stale:
		// fixStale recomputes both ends from scratch.
	default:
		st.oldest = min(st.oldest, e.created)
		st.newest = max(st.newest, e.created)
	}
}

func (ix *index) vector(slot int32) []float32 {
	off := int(slot) * ix.dim
	return ix.vecs[off : off+ix.dim : off+ix.dim]
}

// overflowCat marks a slot with a category whose id is 63 or more.
const overflowCat = uint64(1) << 63

// catBits returns the category bit set of cats, assigning new ids.
func (ix *index) catBits(cats []string) uint64 {
	var b uint64
	for _, c := range cats {
		id, ok := ix.catIDs[c]
		if !ok {
			if ix.catIDs == nil {
				ix.catIDs = map[string]int{}
			}
			id = len(ix.catIDs)
			ix.catIDs[c] = id
		}
		if id < 63 {
			b |= 1 << uint(id)
		} else {
			b |= overflowCat
		}
	}
	return b
}

// catMask is the bit set of wanted categories; exact is false when a wanted
// category has an id of 63 or more (then overflow slots need a closer look).
func (ix *index) catMask(want []string) (mask uint64, exact bool) {
	exact = true
	for _, c := range want {
		id, ok := ix.catIDs[c]
		switch {
		case !ok: // no record has it
		case id < 63:
			mask |= 1 << uint(id)
		default:
			exact = false
		}
	}
	return mask, exact
}

func (ix *index) addVector(v []float32, entryPos, scopeID int32, cats uint64) int32 {
	slot := int32(len(ix.slotEntry))
	ix.vecs = append(growDouble(ix.vecs, len(v)), v...)
	ix.norms = append(ix.norms, vec.SquaredNorm(v))
	n := len(ix.codes)
	ix.codes = growDouble(ix.codes, ix.words)[:n+ix.words]
	binarize(v, ix.center, ix.codes[n:n+ix.words])
	m := len(ix.q8)
	ix.q8 = growDouble(ix.q8, ix.dim)[:m+ix.dim]
	ix.q8scale = append(ix.q8scale, vec.QuantizeInt8(v, ix.q8[m:m+ix.dim]))
	ix.slotEntry = append(ix.slotEntry, entryPos)
	ix.slotScope = append(ix.slotScope, scopeID)
	ix.slotCats = append(ix.slotCats, cats)
	if len(ix.slotEntry) >= ix.recenterAt {
		ix.recenter()
	}
	return slot
}

// minRecenter is the number of vectors at which codes are first centred.
const minRecenter = 512

// recenter sets center to the mean vector and rebuilds every binary code.
func (ix *index) recenter() {
	n, d := len(ix.slotEntry), ix.dim
	ix.recenterAt = max(2*n, minRecenter)
	if n == 0 || d == 0 {
		return
	}
	sum := make([]float64, d)
	for i := 0; i < n; i++ {
		for j, x := range ix.vecs[i*d : (i+1)*d] {
			sum[j] += float64(x)
		}
	}
	c := make([]float32, d)
	for j := range c {
		c[j] = float32(sum[j] / float64(n))
	}
	ix.center = c
	w := ix.words
	for i := 0; i < n; i++ {
		binarize(ix.vecs[i*d:(i+1)*d], c, ix.codes[i*w:(i+1)*w])
	}
}

var diffPool = sync.Pool{New: func() any { return new([]float32) }}

// binarize sets bit j of dst iff v[j] > center[j] (center nil: 0).
func binarize(v, center []float32, dst []uint64) {
	if center == nil {
		vec.Binarize(v, dst)
		return
	}
	p := diffPool.Get().(*[]float32)
	if cap(*p) < len(v) {
		*p = make([]float32, len(v))
	}
	d := (*p)[:len(v)]
	for j, x := range v {
		d[j] = x - center[j]
	}
	vec.Binarize(d, dst)
	diffPool.Put(p)
}

// removeAt deletes the entry at position i (swap with the last).
func (ix *index) removeAt(i int) *entry {
	e := ix.entries[i]
	if e.slot >= 0 {
		ix.removeSlot(e.slot)
	}
	last := len(ix.entries) - 1
	if i != last {
		moved := ix.entries[last]
		ix.entries[i] = moved
		ix.pos[moved.id] = i
		if moved.slot >= 0 {
			ix.slotEntry[moved.slot] = int32(i)
		}
	}
	ix.entries[last] = nil
	ix.entries = ix.entries[:last]
	delete(ix.pos, e.id)
	if e.bad != "" {
		delete(ix.corrupt, e.id)
	}
	st := ix.scopes[e.scopeID]
	st.count--
	for _, c := range uniq(e.cats) {
		if st.cats[c]--; st.cats[c] <= 0 {
			delete(st.cats, c)
		}
	}
	if st.count == 0 {
		st.oldest, st.newest, st.stale = "", "", false
	} else if e.created == st.oldest || e.created == st.newest {
		st.stale, ix.staleAny = true, true
	}
	return e
}

// removeSlot frees a vector slot by moving the last slot into it.
func (ix *index) removeSlot(slot int32) {
	last := int32(len(ix.slotEntry) - 1)
	d, w := ix.dim, ix.words
	if slot != last {
		copy(ix.vecs[int(slot)*d:int(slot+1)*d], ix.vecs[int(last)*d:int(last+1)*d])
		copy(ix.codes[int(slot)*w:int(slot+1)*w], ix.codes[int(last)*w:int(last+1)*w])
		copy(ix.q8[int(slot)*d:int(slot+1)*d], ix.q8[int(last)*d:int(last+1)*d])
		ix.q8scale[slot] = ix.q8scale[last]
		ix.norms[slot] = ix.norms[last]
		ep := ix.slotEntry[last]
		ix.slotEntry[slot] = ep
		ix.slotScope[slot] = ix.slotScope[last]
		ix.slotCats[slot] = ix.slotCats[last]
		ix.entries[ep].slot = slot
	}
	ix.vecs = ix.vecs[:int(last)*d]
	ix.codes = ix.codes[:int(last)*w]
	ix.q8 = ix.q8[:int(last)*d]
	ix.q8scale = ix.q8scale[:last]
	ix.norms = ix.norms[:last]
	ix.slotEntry = ix.slotEntry[:last]
	ix.slotScope = ix.slotScope[:last]
	ix.slotCats = ix.slotCats[:last]
}

// remove deletes a record by id; it reports whether it existed.
func (ix *index) remove(id string) bool {
	i, ok := ix.pos[id]
	if !ok {
		return false
	}
	ix.removeAt(i)
	return true
}

// fixStale recomputes oldest/newest of scopes whose extremes were removed.
func (ix *index) fixStale() {
	if !ix.staleAny {
		return
	}
	for _, st := range ix.scopes {
		if st.stale {
			st.oldest, st.newest = "", ""
		}
	}
	for _, e := range ix.entries {
		st := ix.scopes[e.scopeID]
		if !st.stale {
			continue
		}
		if st.oldest == "" || e.created < st.oldest {
			st.oldest = e.created
		}
		if e.created > st.newest {
			st.newest = e.created
		}
	}
	for _, st := range ix.scopes {
		st.stale = false
	}
	ix.staleAny = false
}

// matchingScopes marks the scope ids under prefix ("" = all).
func (ix *index) matchingScopes(prefix string) []bool {
	m := make([]bool, len(ix.scopes))
	for i, st := range ix.scopes {
		m[i] = st.count > 0 && scopeMatches(prefix, st.path)
	}
	return m
}

func (ix *index) count(prefix string) int {
	if prefix == "" {
		return len(ix.entries)
	}
	n := 0
	for _, st := range ix.scopes {
		if st.count > 0 && scopeMatches(prefix, st.path) {
			n += st.count
		}
	}
	return n
}

func (ix *index) categories(prefix string) map[string]int {
	out := map[string]int{}
	for _, st := range ix.scopes {
		if st.count > 0 && scopeMatches(prefix, st.path) {
			for c, n := range st.cats {
				out[c] += n
			}
		}
	}
	return out
}

// children lists the immediate child scopes of parent ("/" for the root).
func (ix *index) children(parent string) []string {
	base := parent
	if base == "/" {
		base = ""
	}
	set := map[string]struct{}{}
	for _, st := range ix.scopes {
		if st.count == 0 {
			continue
		}
		p := st.path
		if !strings.HasPrefix(p, base+"/") || p == base {
			continue
		}
		rest := p[len(base)+1:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			rest = rest[:j]
		}
		if rest != "" {
			set[base+"/"+rest] = struct{}{}
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func (ix *index) scopeInfo(scope string) ScopeInfo {
	ix.fixStale()
	prefix := scope
	if prefix == "/" {
		prefix = ""
	}
	info := ScopeInfo{Path: scope, Categories: []string{}, Children: ix.children(scope)}
	cats := map[string]struct{}{}
	var oldest, newest string
	for _, st := range ix.scopes {
		if st.count == 0 || !scopeMatches(prefix, st.path) {
			continue
		}
		info.Count += st.count
		for c := range st.cats {
			cats[c] = struct{}{}
		}
		if oldest == "" || st.oldest < oldest {
			oldest = st.oldest
		}
		if st.newest > newest {
			newest = st.newest
		}
	}
	for c := range cats {
		info.Categories = append(info.Categories, c)
	}
	sort.Strings(info.Categories)
	if oldest != "" {
		info.Oldest = parseTime(oldest)
		info.Newest = parseTime(newest)
	}
	return info
}

// record converts an entry back to a Record.
func (ix *index) record(e *entry, withVector bool) Record {
	r := Record{
		ID: e.id, Content: e.content, Scope: ix.scopes[e.scopeID].path,
		Categories: slices.Clone(e.cats), Metadata: json.RawMessage(e.meta),
		Importance: e.importance,
		CreatedAt:  parseTime(e.created), LastAccessed: parseTime(e.accessed),
		Source: e.source, Private: e.private,
	}
	if withVector && e.slot >= 0 {
		r.Embedding = slices.Clone(ix.vector(e.slot))
	}
	return r
}

// uniq returns cats without repeats (a record lists a category once for
// counting purposes). It does not allocate for the common short, unique case.
func uniq(cats []string) []string {
	for i := 1; i < len(cats); i++ {
		if slices.Contains(cats[:i], cats[i]) {
			out := make([]string, 0, len(cats))
			for _, c := range cats {
				if !slices.Contains(out, c) {
					out = append(out, c)
				}
			}
			return out
		}
	}
	return cats
}

// growDouble makes room for n more elements, doubling the capacity when it
// must grow (append grows large slices by only 1.25x, which copies a
// gigabyte arena far more often).
func growDouble[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	out := make([]T, len(s), max(2*cap(s), len(s)+n, 1024))
	copy(out, s)
	return out
}

// markBad marks the entry of id as failing its checksum: its vector leaves
// the arena and the store reports it until it is saved again or deleted.
func (ix *index) markBad(id, why string) {
	i, ok := ix.pos[id]
	if !ok || ix.entries[i].bad != "" {
		return
	}
	e := ix.removeAt(i)
	e.bad = why
	ix.put(e, nil, false)
}
