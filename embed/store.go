package embed

import (
	"context"
	"time"
)

// Store is the persistent level of a Cache (SQLiteStore, PGStore). Every
// method is safe for concurrent use; errors wrap ErrCacheCorrupt,
// ErrCacheAccess or ErrCacheUnavailable.
type Store interface {
	// Get returns the stored entries of keys (missing keys are absent).
	Get(ctx context.Context, keys []Key) (map[Key]*Entry, error)
	// Put stores entries in one transaction (all or none; keys already
	// stored keep their vector and get their use time refreshed), then
	// evicts the least recently used entries past the size bound.
	Put(ctx context.Context, entries []*Entry, now time.Time) error
	// Record adds uses (the time of each key's last use and how many) and
	// counters, in one transaction.
	Record(ctx context.Context, uses map[Key]Use, add Counters) error
	// Stats reads the store's size and its counters (all processes).
	Stats(ctx context.Context) (StoreStats, error)
	// Clear deletes the entries of namespace ns ("": every entry, and the
	// counters are reset) and returns how many were deleted.
	Clear(ctx context.Context, ns string) (int64, error)
	// Where names the store (a file path, a redacted DSN and schema).
	Where() string
	// Close releases the store.
	Close() error
}

// Use is what a Cache records about a key between flushes.
type Use struct {
	At    int64 // Unix milliseconds of the last use
	Count int64
}

// Counters are the cache's savings and costs. Stores keep them for all
// processes; a Cache also keeps its own process's.
type Counters struct {
	// Hits and Misses count texts looked up.
	Hits, Misses int64
	// CallsSaved counts embedding calls answered wholly from the cache
	// (each would have been at least one API call); TokensSaved the tokens
	// the provider had counted for the texts served from the cache.
	CallsSaved, TokensSaved int64
	// APICalls and APITokens are what the misses cost at the provider;
	// Stored counts entries written.
	APICalls, APITokens, Stored int64
	// Evictions counts entries removed to stay within the size bound.
	Evictions int64
}

func (c *Counters) add(o Counters) {
	c.Hits += o.Hits
	c.Misses += o.Misses
	c.CallsSaved += o.CallsSaved
	c.TokensSaved += o.TokensSaved
	c.APICalls += o.APICalls
	c.APITokens += o.APITokens
	c.Stored += o.Stored
	c.Evictions += o.Evictions
}

func (c *Counters) named() []struct {
	name string
	v    int64
} {
	return []struct {
		name string
		v    int64
	}{
		{"hits", c.Hits}, {"misses", c.Misses}, {"calls_saved", c.CallsSaved}, {"tokens_saved", c.TokensSaved},
		{"api_calls", c.APICalls}, {"api_tokens", c.APITokens}, {"stored", c.Stored}, {"evictions", c.Evictions},
	}
}

func (c *Counters) set(name string, v int64) {
	switch name {
	case "hits":
		c.Hits = v
	case "misses":
		c.Misses = v
	case "calls_saved":
		c.CallsSaved = v
	case "tokens_saved":
		c.TokensSaved = v
	case "api_calls":
		c.APICalls = v
	case "api_tokens":
		c.APITokens = v
	case "stored":
		c.Stored = v
	case "evictions":
		c.Evictions = v
	}
}

// StoreStats describe a Store.
type StoreStats struct {
	Where    string
	Entries  int64
	Bytes    int64
	MaxBytes int64
	Counters Counters
	// Namespaces lists entries and bytes per namespace, largest first.
	Namespaces []NamespaceStats
}

// NamespaceStats are one namespace's entries in a Store.
type NamespaceStats struct {
	NS      string
	Entries int64
	Bytes   int64
}

// entryBytes is what an entry counts against the size bound: the vector,
// the namespace and the key, plus a row overhead.
func entryBytes(e *Entry) int64 { return int64(4*len(e.Vec) + len(e.NS) + 32 + 48) }
