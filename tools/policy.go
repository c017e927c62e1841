package tools

import (
	"fmt"
	"time"
)

// Policy is the set of limits an Engine applies to tool calls. The zero
// value of a limit field disables that limit; DefaultPolicy gives the
// defaults the Python package uses.
type Policy struct {
	// Timeout is the deadline of one call (0: none).
	Timeout time.Duration
	// MaxCallsPerTask caps the calls made within one task (0: no cap).
	MaxCallsPerTask int
	// MaxCallsPerRun caps the calls made within one crew run (0: no cap).
	MaxCallsPerRun int
	// MaxDepth caps the nesting of tool calls (a tool that calls a tool, a
	// delegation that runs an agent whose tools run...). Depth 1 is a call
	// made directly by an agent. 0: no cap.
	MaxDepth int
	// LoopThreshold is how many calls of the same tool with equivalent
	// arguments within the last LoopWindow calls of a task are allowed
	// before further repeats are refused (0: no loop detection).
	LoopThreshold int
	// LoopWindow is the number of recent calls of a task that loop
	// detection looks at; it must be >= LoopThreshold when that is set.
	LoopWindow int
	// RatePerSec is the sustained call rate allowed per tool (0: none);
	// RateBurst calls may be made at once (default: max(1, RatePerSec)).
	RatePerSec float64
	RateBurst  int
	// CacheTTL is how long a stored result is served again (0: no cache).
	CacheTTL time.Duration
	// CacheMaxBytes and CacheMaxEntries bound the result cache; the least
	// recently used entries are evicted first.
	CacheMaxBytes   int64
	CacheMaxEntries int
	// MaxArgBytes caps the encoded size of a call's arguments (0: none).
	MaxArgBytes int
	// MaxResultBytes caps the size of a result stored in the cache, and is
	// passed to the caller as the cap on results shown to the model.
	MaxResultBytes int
}

// DefaultPolicy returns the defaults: 30 s per call, 100 calls per task,
// 500 per run, depth 5, the same call 3 times within 10 refused, no rate
// limit, no cache (32 MiB / 4096 entries when a TTL is set), 1 MiB of
// arguments, 1 MiB results.
func DefaultPolicy() Policy {
	return Policy{
		Timeout:         30 * time.Second,
		MaxCallsPerTask: 100,
		MaxCallsPerRun:  500,
		MaxDepth:        5,
		LoopThreshold:   3,
		LoopWindow:      10,
		CacheMaxBytes:   32 << 20,
		CacheMaxEntries: 4096,
		MaxArgBytes:     1 << 20,
		MaxResultBytes:  1 << 20,
	}
}

// Validate reports the first nonsensical field, wrapping ErrInvalidPolicy.
func (p Policy) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidPolicy}, args...)...)
	}
	switch {
	case p.Timeout < 0:
		return bad("timeout must be >= 0 (got %s)", p.Timeout)
	case p.Timeout > 0 && p.Timeout < time.Millisecond:
		return bad("timeout must be at least 1ms (got %s)", p.Timeout)
	case p.MaxCallsPerTask < 0:
		return bad("max_calls_per_task must be >= 0 (got %d)", p.MaxCallsPerTask)
	case p.MaxCallsPerRun < 0:
		return bad("max_calls_per_run must be >= 0 (got %d)", p.MaxCallsPerRun)
	case p.MaxCallsPerRun > 0 && p.MaxCallsPerTask > p.MaxCallsPerRun:
		return bad("max_calls_per_task (%d) is larger than max_calls_per_run (%d)", p.MaxCallsPerTask, p.MaxCallsPerRun)
	case p.MaxDepth < 0:
		return bad("max_depth must be >= 0 (got %d)", p.MaxDepth)
	case p.LoopThreshold < 0 || p.LoopThreshold == 1:
		return bad("loop_threshold must be 0 (off) or >= 2 (got %d): 1 would refuse every first call", p.LoopThreshold)
	case p.LoopWindow < 0 || p.LoopWindow > 10000:
		return bad("loop_window must be between 0 and 10000 (got %d)", p.LoopWindow)
	case p.LoopThreshold > 0 && p.LoopWindow < p.LoopThreshold:
		return bad("loop_window (%d) must be >= loop_threshold (%d)", p.LoopWindow, p.LoopThreshold)
	case p.RatePerSec < 0 || p.RatePerSec != p.RatePerSec || p.RatePerSec > 1e9:
		return bad("rate_limit must be a number of calls per second >= 0 (got %v)", p.RatePerSec)
	case p.RateBurst < 0:
		return bad("rate_burst must be >= 0 (got %d)", p.RateBurst)
	case p.CacheTTL < 0:
		return bad("cache_ttl must be >= 0 (got %s)", p.CacheTTL)
	case p.CacheMaxBytes < 0:
		return bad("cache_max_bytes must be >= 0 (got %d)", p.CacheMaxBytes)
	case p.CacheMaxEntries < 0:
		return bad("cache_max_entries must be >= 0 (got %d)", p.CacheMaxEntries)
	case p.CacheTTL > 0 && (p.CacheMaxBytes == 0 || p.CacheMaxEntries == 0):
		return bad("a cache (cache_ttl %s) needs cache_max_bytes and cache_max_entries > 0", p.CacheTTL)
	case p.MaxArgBytes < 0:
		return bad("max_arg_bytes must be >= 0 (got %d)", p.MaxArgBytes)
	case p.MaxResultBytes < 0:
		return bad("max_result_bytes must be >= 0 (got %d)", p.MaxResultBytes)
	}
	return nil
}
