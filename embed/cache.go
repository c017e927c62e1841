package embed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// CacheOptions tune a Cache. The zero value is the default.
type CacheOptions struct {
	// MemBytes bounds the in-process LRU (default 64 MiB; negative: none).
	MemBytes int64
	// FlushEvery is how often recorded uses and counters are written to the
	// store (default 2s); they are also written when 4,096 keys are pending,
	// by Flush and by Close.
	FlushEvery time.Duration
	// Timeout bounds one store operation (default 5s). A lookup that times
	// out is a miss and a store that times out is skipped: the cache never
	// holds an embedding call up for long.
	Timeout time.Duration
}

// Cache is the two-level embedding cache: an in-process LRU over a Store.
// It never fails a caller: a store error that will not go away (corrupt or
// foreign file, read-only file or directory, full disk) turns the cache off
// for the process (Disabled says why), and a transient one (the file locked
// past the deadline) is a miss. Safe for concurrent use.
type Cache struct {
	store Store
	mem   *memLRU
	opts  CacheOptions

	mu       sync.Mutex
	off      error // why the cache is off (nil: on)
	reported bool  // TakeWarning returned off once
	uses     map[Key]Use
	pending  Counters
	timer    *time.Timer
	flushing bool
	closed   bool

	local struct {
		hits, misses, callsSaved, tokensSaved, apiCalls, apiTokens, stored, errors atomic.Int64
	}
}

// NewCache returns a cache over store (nil: a cache that is off from the
// start with the reason off, so callers need no special case).
func NewCache(store Store, off error, opts *CacheOptions) *Cache {
	var o CacheOptions
	if opts != nil {
		o = *opts
	}
	if o.MemBytes == 0 {
		o.MemBytes = 64 << 20
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = 2 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	c := &Cache{store: store, mem: newMemLRU(o.MemBytes), opts: o, uses: map[Key]Use{}}
	if store == nil {
		if off == nil {
			off = errors.New("no cache store")
		}
		c.off = off
	}
	return c
}

// Where names the store ("" without one).
func (c *Cache) Where() string {
	if c.store == nil {
		return ""
	}
	return c.store.Where()
}

// Disabled returns why the cache is off, or nil.
func (c *Cache) Disabled() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.off
}

// TakeWarning returns why the cache is off the first time it is asked
// after the cache went off (then nil), so a caller can say so once.
func (c *Cache) TakeWarning() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off == nil || c.reported {
		return nil
	}
	c.reported = true
	return c.off
}

// fail turns the cache off when err will not go away; it reports whether
// the cache is (now) off.
func (c *Cache) fail(err error) bool {
	c.local.errors.Add(1)
	if errors.Is(err, ErrCacheCorrupt) || errors.Is(err, ErrCacheAccess) || errors.Is(err, ErrClosed) ||
		(errors.Is(err, ErrCacheUnavailable) && !isTransient(err)) {
		c.mu.Lock()
		if c.off == nil {
			c.off = fmt.Errorf("embedding cache %s turned off: %w", c.store.Where(), err)
		}
		c.mu.Unlock()
		return true
	}
	return false
}

// isTransient reports a store error worth trying again (a lock held past
// the deadline, a deadline).
func isTransient(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errStoreBusy) || (errors.As(err, &t) && t.Timeout())
}

// errStoreBusy is wrapped by stores' lock and deadline failures.
var errStoreBusy = errors.New("store busy")

func (c *Cache) isOff() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.off != nil
}

// Get returns the cached entry of each key (nil for a miss), in order.
// The uses are recorded for the LRU (written later, in batches).
func (c *Cache) Get(ctx context.Context, keys []Key) []*Entry {
	out := make([]*Entry, len(keys))
	var missing []Key
	for i, k := range keys {
		if e, ok := c.mem.get(k); ok {
			out[i] = e
		} else {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 && !c.isOff() {
		ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
		found, err := c.store.Get(ctx, missing)
		cancel()
		if err != nil {
			c.fail(err)
		}
		for i, k := range keys {
			if out[i] == nil {
				if e := found[k]; e != nil {
					out[i] = e
					c.mem.add(e)
				}
			}
		}
	}
	now := time.Now().UnixMilli()
	c.mu.Lock()
	for _, e := range out {
		if e != nil {
			u := c.uses[e.Key]
			c.uses[e.Key] = Use{At: now, Count: u.Count + 1}
		}
	}
	c.scheduleLocked()
	c.mu.Unlock()
	return out
}

// Put stores entries (one transaction: all or none). A failure is not
// returned: the entries stay in the process's LRU, and a lasting failure
// turns the cache off.
func (c *Cache) Put(ctx context.Context, entries []*Entry) {
	if len(entries) == 0 {
		return
	}
	for _, e := range entries {
		c.mem.add(e)
	}
	if c.isOff() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if err := c.store.Put(ctx, entries, time.Now()); err != nil {
		c.fail(err)
		return
	}
	c.local.stored.Add(int64(len(entries)))
}

// Count adds to the savings and costs counters (written with the uses).
func (c *Cache) Count(add Counters) {
	c.local.hits.Add(add.Hits)
	c.local.misses.Add(add.Misses)
	c.local.callsSaved.Add(add.CallsSaved)
	c.local.tokensSaved.Add(add.TokensSaved)
	c.local.apiCalls.Add(add.APICalls)
	c.local.apiTokens.Add(add.APITokens)
	c.mu.Lock()
	c.pending.add(add)
	c.scheduleLocked()
	c.mu.Unlock()
}

// scheduleLocked arranges a flush: at once past 4,096 pending keys, else
// after FlushEvery. c.mu is held.
func (c *Cache) scheduleLocked() {
	if c.off != nil || c.closed || c.flushing {
		return
	}
	if len(c.uses) >= 4096 {
		if c.timer != nil {
			c.timer.Stop()
			c.timer = nil
		}
		c.flushing = true
		go c.flushBackground()
		return
	}
	if c.timer == nil && (len(c.uses) > 0 || c.pending != (Counters{})) {
		c.timer = time.AfterFunc(c.opts.FlushEvery, func() {
			c.mu.Lock()
			c.timer = nil
			if c.flushing || c.closed {
				c.mu.Unlock()
				return
			}
			c.flushing = true
			c.mu.Unlock()
			c.flushBackground()
		})
	}
}

func (c *Cache) flushBackground() {
	_ = c.flush(context.Background())
	c.mu.Lock()
	c.flushing = false
	c.scheduleLocked()
	c.mu.Unlock()
}

// flush writes the pending uses and counters.
func (c *Cache) flush(ctx context.Context) error {
	c.mu.Lock()
	uses, add := c.uses, c.pending
	c.uses, c.pending = map[Key]Use{}, Counters{}
	off := c.off
	c.mu.Unlock()
	if off != nil || (len(uses) == 0 && add == (Counters{})) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	err := c.store.Record(ctx, uses, add)
	if err != nil && !c.fail(err) {
		// Transient: keep them for the next flush.
		c.mu.Lock()
		for k, u := range uses {
			if cur, ok := c.uses[k]; ok {
				u.Count += cur.Count
				u.At = max(u.At, cur.At)
			}
			c.uses[k] = u
		}
		c.pending.add(add)
		c.mu.Unlock()
	}
	return err
}

// Flush writes the pending uses and counters now.
func (c *Cache) Flush(ctx context.Context) error {
	c.mu.Lock()
	for c.flushing {
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
		c.mu.Lock()
	}
	c.flushing = true
	c.mu.Unlock()
	err := c.flush(ctx)
	c.mu.Lock()
	c.flushing = false
	c.mu.Unlock()
	return err
}

// CacheStats describe a Cache: its store (all processes) and this process.
type CacheStats struct {
	Store StoreStats
	// Process counts this process's lookups and savings since the cache
	// was made; Memory is the in-process LRU's size.
	Process        Counters
	MemoryEntries  int
	MemoryBytes    int64
	Off            string
	Errors         int64
	ProcessPending int
}

// Stats flushes, then reads the store's statistics and this process's.
func (c *Cache) Stats(ctx context.Context) (CacheStats, error) {
	var st CacheStats
	st.Process = Counters{Hits: c.local.hits.Load(), Misses: c.local.misses.Load(), CallsSaved: c.local.callsSaved.Load(),
		TokensSaved: c.local.tokensSaved.Load(), APICalls: c.local.apiCalls.Load(), APITokens: c.local.apiTokens.Load(),
		Stored: c.local.stored.Load()}
	st.Errors = c.local.errors.Load()
	st.MemoryEntries, st.MemoryBytes = c.mem.len()
	if err := c.Disabled(); err != nil {
		st.Off = err.Error()
		return st, nil
	}
	_ = c.Flush(ctx)
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	s, err := c.store.Stats(ctx)
	if err != nil {
		c.fail(err)
		return st, err
	}
	st.Store = s
	return st, nil
}

// Clear deletes the entries of namespace ns ("" for all) from the store
// and the process's LRU.
func (c *Cache) Clear(ctx context.Context, ns string) (int64, error) {
	c.mem.clear(ns)
	if err := c.Disabled(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	return c.store.Clear(ctx, ns)
}

// Close flushes and closes the store. Later calls behave as a cache that
// is off.
func (c *Cache) Close() error {
	_ = c.Flush(context.Background())
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.off == nil {
		c.off = fmt.Errorf("%w: embedding cache", ErrClosed)
		c.reported = true
	}
	c.mu.Unlock()
	if c.store == nil {
		return nil
	}
	return c.store.Close()
}
