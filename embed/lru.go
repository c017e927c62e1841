package embed

import (
	"container/list"
	"crypto/sha256"
	"sync"
)

// Key is the content address of one text's embedding: SHA-256 over the
// namespace, a NUL byte and the text.
type Key [32]byte

// KeyOf returns the key of text under namespace ns.
func KeyOf(ns, text string) Key {
	h := sha256.New()
	h.Write([]byte(ns))
	h.Write([]byte{0})
	h.Write([]byte(text))
	var k Key
	h.Sum(k[:0])
	return k
}

// Entry is one cached embedding.
type Entry struct {
	Key Key
	// NS is the namespace the key was made under (kept for statistics and
	// per-namespace clearing).
	NS string
	// Vec is the embedding; callers must not modify it.
	Vec []float32
	// Tokens is what the provider counted for the text: what a hit saves.
	Tokens int
}

func (e *Entry) size() int64 { return int64(4*len(e.Vec) + len(e.NS)/8 + 96) }

// memLRU is the in-process level of a Cache: entries by key, the least
// recently used dropped past maxBytes. Safe for concurrent use.
type memLRU struct {
	mu       sync.Mutex
	maxBytes int64
	bytes    int64
	ll       *list.List // front: most recent; values *Entry
	items    map[Key]*list.Element
}

func newMemLRU(maxBytes int64) *memLRU {
	return &memLRU{maxBytes: maxBytes, ll: list.New(), items: make(map[Key]*list.Element)}
}

func (m *memLRU) get(k Key) (*Entry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[k]
	if !ok {
		return nil, false
	}
	m.ll.MoveToFront(el)
	return el.Value.(*Entry), true
}

func (m *memLRU) add(e *Entry) {
	if m.maxBytes <= 0 || e.size() > m.maxBytes {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[e.Key]; ok {
		m.ll.MoveToFront(el)
		return
	}
	m.items[e.Key] = m.ll.PushFront(e)
	m.bytes += e.size()
	for m.bytes > m.maxBytes {
		last := m.ll.Back()
		old := last.Value.(*Entry)
		m.ll.Remove(last)
		delete(m.items, old.Key)
		m.bytes -= old.size()
	}
}

func (m *memLRU) clear(ns string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, el := range m.items {
		if e := el.Value.(*Entry); ns == "" || e.NS == ns {
			m.ll.Remove(el)
			delete(m.items, k)
			m.bytes -= e.size()
		}
	}
}

func (m *memLRU) len() (int, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items), m.bytes
}
