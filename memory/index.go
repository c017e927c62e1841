package memory

import (
	"encoding/json"
	"fmt"
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

// index is the in-memory state of a store: every record, the mapped vector
// segments and per-scope statistics. It is guarded by Store.mu.
//
// Vectors are not copied into memory: a record's vector is row r of a
// mapped segment (segment.go), addressed by a slot, segment.base + r. The
// slot arrays below have one element per row of every mapped segment's
// capacity; rows no record references (deleted, replaced, not yet written)
// have slotEntry -1: they are the segments' tombstones in memory.
type index struct {
	dim     int
	entries []*entry       // dense; order is not meaningful
	pos     map[string]int // id -> position in entries
	words   int
	segs    []*segment // by id (and base) ascending
	segByID map[int64]*segment
	// Slot arrays: slot -> position in entries (-1: no record), scope id,
	// category bits.
	slotEntry []int32
	slotScope []int32
	slotCats  []uint64 // bit i set for category id i < 63; bit 63: has a later category
	live      int      // slots with a record
	catIDs    map[string]int
	// Scopes: ids are stable for the life of the index.
	scopes   []*scopeStat
	scopeIDs map[string]int32
	staleAny bool
	// corrupt maps the id of every bad entry to why (checksum.go).
	corrupt map[string]string
	// snap is the mapped index snapshot this index was decoded from
	// (snapshot.go), nil otherwise. Its entries' strings point into it, so
	// it is unmapped with the segments, when the index is dropped, and
	// nothing the package hands out may point into it (record clones).
	snap []byte
}

func newIndex(dim int) *index {
	ix := &index{pos: map[string]int{}, scopeIDs: map[string]int32{}, segByID: map[int64]*segment{}}
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

// slots returns the number of records with a vector.
func (ix *index) slots() int { return ix.live }

func (ix *index) scopeFor(path string) int32 {
	if id, ok := ix.scopeIDs[path]; ok {
		return id
	}
	id := int32(len(ix.scopes))
	ix.scopes = append(ix.scopes, &scopeStat{path: path, cats: map[string]int{}})
	ix.scopeIDs[path] = id
	return id
}

// addSegment gives a newly mapped segment its slots.
func (ix *index) addSegment(sg *segment) {
	sg.base = int32(len(ix.slotEntry))
	n := len(ix.slotEntry) + sg.cap
	for len(ix.slotEntry) < n {
		ix.slotEntry = append(ix.slotEntry, -1)
	}
	ix.slotScope = append(ix.slotScope, make([]int32, sg.cap)...)
	ix.slotCats = append(ix.slotCats, make([]uint64, sg.cap)...)
	ix.segs = append(ix.segs, sg)
	ix.segByID[sg.id] = sg
}

// locate returns the segment and row of a slot.
func (ix *index) locate(slot int32) (*segment, int) {
	i := sort.Search(len(ix.segs), func(i int) bool { return ix.segs[i].base > slot }) - 1
	sg := ix.segs[i]
	return sg, int(slot - sg.base)
}

// put inserts or replaces a record. slot is its vector's slot (-1: no
// vector); when keep is true and the record exists, its current slot is
// kept instead.
func (ix *index) put(e *entry, slot int32, keep bool) {
	if i, ok := ix.pos[e.id]; ok {
		old := ix.entries[i]
		if keep && slot < 0 {
			slot = old.slot
		}
		ix.removeAt(i)
	}
	var bits uint64
	if slot >= 0 && e.bad == "" && ix.slotEntry[slot] < 0 {
		bits = ix.catBits(e.cats)
	}
	ix.add(e, slot, bits)
	st := ix.scopes[e.scopeID]
	for _, c := range uniq(e.cats) {
		st.cats[c]++
	}
}

// add inserts a record that is not in the index yet, with its category
// bits, and counts it in its scope, all but the scope's category counts
// (the caller adds them): put's second half, and the bulk path of an open
// from the snapshot (snapshot.go).
func (ix *index) add(e *entry, slot int32, bits uint64) {
	e.slot = -1
	if slot >= 0 && e.bad == "" {
		if ix.slotEntry[slot] >= 0 {
			sg, r := ix.locate(slot)
			e.bad = fmt.Sprintf("rowid %d: row %d of %s is the vector of another record", e.rid, r, sg.vecPath)
		} else {
			e.slot = slot
			ix.slotEntry[slot] = int32(len(ix.entries))
			ix.slotScope[slot] = e.scopeID
			ix.slotCats[slot] = bits
			ix.live++
			if sg, r := ix.locate(slot); r >= sg.used {
				sg.used = r + 1
			}
		}
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

// vector returns the vector of a slot (a view of the mapped segment).
func (ix *index) vector(slot int32) []float32 {
	sg, r := ix.locate(slot)
	return sg.vector(r)
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
		ix.slotEntry[e.slot] = -1
		ix.live--
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
	// The keys are handed out: copies (see record). Cloned after the
	// counting, as assigning to a string key that is already there stores
	// the new key.
	res := make(map[string]int, len(out))
	for c, n := range out {
		res[strings.Clone(c)] = n
	}
	return res
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
		info.Categories = append(info.Categories, strings.Clone(c)) // handed out (see record)
	}
	sort.Strings(info.Categories)
	if oldest != "" {
		info.Oldest = parseTime(oldest)
		info.Newest = parseTime(newest)
	}
	return info
}

// record converts an entry back to a Record. Its strings are copies: an
// index decoded from the snapshot holds views of the mapped file, which is
// unmapped when the index is dropped (snapshot.go).
func (ix *index) record(e *entry, withVector bool) Record {
	cats := make([]string, len(e.cats))
	for i, c := range e.cats {
		cats[i] = strings.Clone(c)
	}
	r := Record{
		ID: strings.Clone(e.id), Content: strings.Clone(e.content), Scope: strings.Clone(ix.scopes[e.scopeID].path),
		Categories: cats, Metadata: json.RawMessage(e.meta),
		Importance: e.importance,
		CreatedAt:  parseTime(e.created), LastAccessed: parseTime(e.accessed),
		Source: strings.Clone(e.source), Private: e.private,
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
	ix.put(e, -1, false)
}

// unmapAll releases every segment mapping of ix (ix is being dropped).
func (ix *index) unmapAll() {
	for _, sg := range ix.segs {
		sg.unmap()
	}
	ix.segs = nil
	ix.segByID = map[int64]*segment{}
	unmapSnapshot(ix.snap)
	ix.snap = nil
}

// retire drops an index replaced by a reload.
func (ix *index) retire() { ix.unmapAll() }
