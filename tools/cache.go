package tools

import (
	"container/list"
	"sync"
	"time"
)

// Cache is a bounded LRU map of tool results with a time to live. It is
// safe for concurrent use. Sizes count key and value bytes.
type Cache struct {
	mu         sync.Mutex
	ttl        time.Duration
	maxBytes   int64
	maxEntries int
	now        func() time.Time
	ll         *list.List
	items      map[string]*list.Element
	bytes      int64
	hits       int64
	misses     int64
	evictions  int64
}

type cacheEntry struct {
	key     string
	val     []byte
	expires time.Time
}

// NewCache returns a cache whose entries live ttl and that holds at most
// maxEntries entries and maxBytes bytes. now is the clock (time.Now when nil).
func NewCache(ttl time.Duration, maxBytes int64, maxEntries int, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{ttl: ttl, maxBytes: maxBytes, maxEntries: maxEntries, now: now,
		ll: list.New(), items: map[string]*list.Element{}}
}

// Get returns the live value stored under key. The returned slice must not
// be modified.
func (c *Cache) Get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		c.misses++
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.remove(el)
		c.misses++
		return nil, false
	}
	c.ll.MoveToFront(el)
	c.hits++
	return e.val, true
}

// Put stores a copy of val under key, evicting the least recently used
// entries to stay within the bounds. A value larger than the whole byte
// bound is not stored; Put reports whether it stored the value.
func (c *Cache) Put(key string, val []byte) bool {
	size := int64(len(key) + len(val))
	if size > c.maxBytes || c.maxEntries <= 0 {
		return false
	}
	v := append([]byte(nil), val...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.remove(el)
	}
	e := &cacheEntry{key: key, val: v, expires: c.now().Add(c.ttl)}
	c.items[key] = c.ll.PushFront(e)
	c.bytes += size
	for c.bytes > c.maxBytes || c.ll.Len() > c.maxEntries {
		c.remove(c.ll.Back())
		c.evictions++
	}
	return true
}

func (c *Cache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.ll.Remove(el)
	delete(c.items, e.key)
	c.bytes -= int64(len(e.key) + len(e.val))
}

// CacheStats are a cache's counters.
type CacheStats struct {
	Entries   int
	Bytes     int64
	Hits      int64
	Misses    int64
	Evictions int64
}

// Stats returns the current counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Entries: c.ll.Len(), Bytes: c.bytes, Hits: c.hits, Misses: c.misses, Evictions: c.evictions}
}
