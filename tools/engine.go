package tools

import (
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// Verdict is what Engine.Begin decided about a call.
type Verdict int

const (
	// Allow: run the call.
	Allow Verdict = iota
	// Cached: do not run it; Decision.Cached holds the stored result.
	Cached
	// Refused: do not run it; Decision.Refusal says why.
	Refused
)

// Limit names, as reported in Refusal.Limit and by the Python package.
const (
	LimitDepth     = "max_depth"
	LimitArgs      = "max_arg_bytes"
	LimitLoop      = "loop"
	LimitTaskCalls = "max_calls_per_task"
	LimitRunCalls  = "max_calls_per_run"
	LimitRate      = "rate_limit"
)

// Call describes one tool call submitted to Engine.Begin.
type Call struct {
	// Tool is the tool's name.
	Tool string
	// Args is the call's arguments as one MessagePack value (normally a map).
	Args []byte
	// Task and Run identify the task and crew run the call belongs to
	// ("" when there is none); budgets and loop windows are kept per task
	// and per run.
	Task, Run string
	// Depth is the nesting depth of the call: 1 for a call an agent makes.
	Depth int
	// CountOnly marks a call that another cache (CrewAI's own) answers: it
	// is counted against the budgets, the loop window and the depth limit,
	// but it neither takes a rate-limit token nor is looked up in the
	// cache. Allowed, it is reported as Cached.
	CountOnly bool
}

// Refusal explains a refused call so that a model can act on it.
type Refusal struct {
	// Limit is one of the Limit* names.
	Limit string
	// Max is the configured value of the limit; Count the value reached.
	Max, Count float64
	// RetryAfter is set for rate limits: when a call would be allowed.
	RetryAfter time.Duration
	// Message states what happened; Hint tells the model what to do instead.
	Message, Hint string
}

// Decision is the outcome of Engine.Begin.
type Decision struct {
	Verdict Verdict
	// Key is the cache key of the call (empty when the policy has no cache).
	Key string
	// Cached is the stored result when Verdict is Cached.
	Cached []byte
	// Refusal is set when Verdict is Refused.
	Refusal *Refusal
	// Start is the engine's clock reading at Begin (nanoseconds on the
	// engine's monotonic clock); pass it to Engine.End.
	Start int64
	// Deadline is Start + the policy timeout (0 when there is no timeout).
	Deadline int64
}

// Stats are an engine's counters since it was created.
type Stats struct {
	Calls, Allowed, Cached, Refused, Timeouts, Errors int64
	RefusedBy                                         map[string]int64
	Cache                                             CacheStats
}

// Engine applies one Policy to tool calls. It is safe for concurrent use.
type Engine struct {
	policy Policy
	now    func() time.Time
	epoch  time.Time
	cache  *Cache
	seed   maphash.Seed

	mu      sync.Mutex
	scopes  map[string]*scope
	buckets map[string]*bucket
	stats   Stats
}

type scope struct {
	calls    int
	ring     []uint64
	pos      int
	lastUsed time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxScopes bounds the per-task/per-run state kept for scopes that were
// never Reset; the least recently used half is dropped past it.
const maxScopes = 8192

// NewEngine validates p and returns an engine that applies it. now is the
// clock (time.Now when nil); tests pass a fake one.
func NewEngine(p Policy, now func() time.Time) (*Engine, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if p.RatePerSec > 0 && p.RateBurst == 0 {
		p.RateBurst = int(math.Max(1, math.Ceil(p.RatePerSec)))
	}
	e := &Engine{policy: p, now: now, epoch: now(), seed: maphash.MakeSeed(),
		scopes: map[string]*scope{}, buckets: map[string]*bucket{}}
	e.stats.RefusedBy = map[string]int64{}
	if p.CacheTTL > 0 {
		e.cache = NewCache(p.CacheTTL, p.CacheMaxBytes, p.CacheMaxEntries, now)
	}
	return e, nil
}

// Policy returns the engine's policy.
func (e *Engine) Policy() Policy { return e.policy }

// Clock returns the engine's clock reading in nanoseconds since it was created.
func (e *Engine) Clock() int64 { return int64(e.now().Sub(e.epoch)) }

// Begin decides whether a call may run. It counts the call against the
// budgets when it is allowed or served from the cache. An error is returned
// only for arguments that cannot be canonicalized (ErrInvalidArgs).
func (e *Engine) Begin(c Call) (Decision, error) {
	p := &e.policy
	t := e.now()
	d := Decision{Start: int64(t.Sub(e.epoch))}
	if p.Timeout > 0 {
		d.Deadline = d.Start + int64(p.Timeout)
	}
	refuse := func(r *Refusal) (Decision, error) {
		d.Verdict, d.Refusal = Refused, r
		e.mu.Lock()
		e.stats.Calls++
		e.stats.Refused++
		e.stats.RefusedBy[r.Limit]++
		e.mu.Unlock()
		return d, nil
	}
	if p.MaxDepth > 0 && c.Depth > p.MaxDepth {
		return refuse(&Refusal{Limit: LimitDepth, Max: float64(p.MaxDepth), Count: float64(c.Depth),
			Message: fmt.Sprintf("tool %q was called at nesting depth %d; the limit is %d", c.Tool, c.Depth, p.MaxDepth),
			Hint:    "do not delegate or call tools from inside tools any deeper; answer with what you have at this level"})
	}
	if p.MaxArgBytes > 0 && len(c.Args) > p.MaxArgBytes {
		return refuse(&Refusal{Limit: LimitArgs, Max: float64(p.MaxArgBytes), Count: float64(len(c.Args)),
			Message: fmt.Sprintf("the arguments of tool %q are %d bytes; the limit is %d", c.Tool, len(c.Args), p.MaxArgBytes),
			Hint:    "pass a shorter input (a reference, a summary or a smaller slice) instead of the whole content"})
	}
	var canonBuf [256]byte
	key := canonBuf[:0]
	key = append(key, c.Tool...)
	key = append(key, 0)
	key, _, err := Canonical(key, c.Args)
	if err != nil {
		return d, err
	}
	h := maphash.Bytes(e.seed, key)

	e.mu.Lock()
	var ts, rs *scope
	if c.Task != "" {
		ts = e.scope("t:"+c.Task, t)
	}
	if c.Run != "" {
		rs = e.scope("r:"+c.Run, t)
	}
	if p.LoopThreshold > 0 {
		ls := e.loopScope(ts, rs, t)
		if ls.ring == nil {
			ls.ring = make([]uint64, p.LoopWindow)
		}
		same := 1
		for _, x := range ls.ring {
			if x == h {
				same++
			}
		}
		ls.ring[ls.pos] = h
		ls.pos = (ls.pos + 1) % len(ls.ring)
		if same > p.LoopThreshold {
			e.mu.Unlock()
			// The message names only the policy, never the running count:
			// identical calls get an identical refusal, so a caller that
			// stops after N identical results (CrewAI stops a run after 5
			// identical calls with identical results) sees them as such.
			return refuse(&Refusal{Limit: LimitLoop, Max: float64(p.LoopThreshold), Count: float64(same),
				Message: LoopMessage(c.Tool, p.LoopThreshold, p.LoopWindow),
				Hint:    LoopHint})
		}
	}
	if ts != nil && p.MaxCallsPerTask > 0 && ts.calls >= p.MaxCallsPerTask {
		e.mu.Unlock()
		return refuse(&Refusal{Limit: LimitTaskCalls, Max: float64(p.MaxCallsPerTask), Count: float64(ts.calls),
			Message: fmt.Sprintf("this task already made %d tool calls; the limit is %d", ts.calls, p.MaxCallsPerTask),
			Hint:    "stop calling tools and give your final answer with the information you have"})
	}
	if rs != nil && p.MaxCallsPerRun > 0 && rs.calls >= p.MaxCallsPerRun {
		e.mu.Unlock()
		return refuse(&Refusal{Limit: LimitRunCalls, Max: float64(p.MaxCallsPerRun), Count: float64(rs.calls),
			Message: fmt.Sprintf("this crew run already made %d tool calls; the limit is %d", rs.calls, p.MaxCallsPerRun),
			Hint:    "stop calling tools and give your final answer with the information you have"})
	}
	if ts != nil {
		ts.calls++
	}
	if rs != nil {
		rs.calls++
	}
	if c.CountOnly {
		d.Verdict = Cached
		e.stats.Calls++
		e.stats.Cached++
		e.mu.Unlock()
		return d, nil
	}
	if e.cache != nil {
		d.Key = string(key)
		if v, ok := e.cache.Get(d.Key); ok {
			d.Verdict, d.Cached = Cached, v
			e.stats.Calls++
			e.stats.Cached++
			e.mu.Unlock()
			return d, nil
		}
	}
	if p.RatePerSec > 0 {
		b := e.buckets[c.Tool]
		if b == nil {
			b = &bucket{tokens: float64(p.RateBurst), last: t}
			e.buckets[c.Tool] = b
		}
		b.tokens = math.Min(float64(p.RateBurst), b.tokens+t.Sub(b.last).Seconds()*p.RatePerSec)
		b.last = t
		if b.tokens < 1 {
			wait := time.Duration((1 - b.tokens) / p.RatePerSec * float64(time.Second))
			// The refused call does not spend the budgets it was counted against.
			if ts != nil {
				ts.calls--
			}
			if rs != nil {
				rs.calls--
			}
			e.mu.Unlock()
			return refuse(&Refusal{Limit: LimitRate, Max: p.RatePerSec, Count: float64(p.RateBurst), RetryAfter: wait,
				Message: fmt.Sprintf("tool %q is limited to %g calls per second", c.Tool, p.RatePerSec),
				Hint:    fmt.Sprintf("wait about %d ms before calling %q again, or do something else first", wait.Milliseconds()+1, c.Tool)})
		}
		b.tokens--
	}
	e.stats.Calls++
	e.stats.Allowed++
	e.mu.Unlock()
	return d, nil
}

// LoopHint is the Hint of every loop refusal.
const LoopHint = "use the result you already received, call the tool with different arguments, or give your final answer now"

// LoopMessage is the Message of a loop refusal of tool under a policy with
// the given LoopThreshold and LoopWindow. It depends on nothing else (no
// running count), so identical calls are refused with identical text.
func LoopMessage(tool string, threshold, window int) string {
	return fmt.Sprintf("tool %q was called with the same arguments more than %d times within the last %d calls; the result will not change", tool, threshold, window)
}

// loopScope returns the scope whose loop window a call is counted in: its
// task, else its run, else the global scope. e.mu is held.
func (e *Engine) loopScope(ts, rs *scope, t time.Time) *scope {
	if ts != nil {
		return ts
	}
	if rs != nil {
		return rs
	}
	return e.scope("g:", t)
}

// Forget takes the most recent occurrence of c (tool and canonical
// arguments) out of the loop window of its task (else run, else the global
// scope), as if that call had not been made. The budgets keep counting it.
//
// The Python executor calls it for a call whose tool raised: a failed call
// is not a repeat of a result. CrewAI retries a failed call itself (its text
// path tries up to three times), and a retry refused as a loop would turn
// CrewAI's error handling into a success with a refusal. Forget is a no-op
// when loop detection is off or the call is not in the window. An error is
// returned only for arguments that cannot be canonicalized (ErrInvalidArgs).
func (e *Engine) Forget(c Call) error {
	if e.policy.LoopThreshold <= 0 {
		return nil
	}
	var canonBuf [256]byte
	key := canonBuf[:0]
	key = append(key, c.Tool...)
	key = append(key, 0)
	key, _, err := Canonical(key, c.Args)
	if err != nil {
		return err
	}
	h := maphash.Bytes(e.seed, key)
	e.mu.Lock()
	defer e.mu.Unlock()
	var ls *scope
	switch {
	case c.Task != "":
		ls = e.scopes["t:"+c.Task]
	case c.Run != "":
		ls = e.scopes["r:"+c.Run]
	default:
		ls = e.scopes["g:"]
	}
	if ls == nil || ls.ring == nil {
		return nil
	}
	n := len(ls.ring)
	for i := 1; i <= n; i++ {
		j := (ls.pos - i + n) % n
		if ls.ring[j] == h {
			ls.ring[j] = 0
			return nil
		}
	}
	return nil
}

// scope returns the state of a task or run scope, creating it. e.mu is held.
func (e *Engine) scope(k string, t time.Time) *scope {
	s := e.scopes[k]
	if s == nil {
		if len(e.scopes) >= maxScopes {
			e.dropOldScopes()
		}
		s = &scope{}
		e.scopes[k] = s
	}
	s.lastUsed = t
	return s
}

func (e *Engine) dropOldScopes() {
	var ts []time.Time
	for _, s := range e.scopes {
		ts = append(ts, s.lastUsed)
	}
	// the median age: drop the older half
	var sum int64
	for _, t := range ts {
		sum += t.Sub(e.epoch).Nanoseconds() / int64(len(ts))
	}
	cut := e.epoch.Add(time.Duration(sum))
	for k, s := range e.scopes {
		if !s.lastUsed.After(cut) {
			delete(e.scopes, k)
		}
	}
}

// Outcome is how an allowed call ended, reported to Engine.End.
type Outcome int

const (
	// OK: the call returned a result.
	OK Outcome = iota
	// Failed: the call raised or reported a failure.
	Failed
	// TimedOut: the call passed its deadline.
	TimedOut
)

// End records how a call that Begin allowed ended and returns the time it
// took by the engine's clock. When the call succeeded, the policy caches
// results, key is the Decision's Key and result is non-nil, the result is
// stored (unless larger than MaxResultBytes); stored reports whether it was.
func (e *Engine) End(start int64, outcome Outcome, key string, result []byte) (elapsed time.Duration, stored bool) {
	elapsed = time.Duration(e.Clock() - start)
	e.mu.Lock()
	switch outcome {
	case TimedOut:
		e.stats.Timeouts++
	case Failed:
		e.stats.Errors++
	}
	e.mu.Unlock()
	if outcome == OK && e.cache != nil && key != "" && result != nil &&
		(e.policy.MaxResultBytes == 0 || len(result) <= e.policy.MaxResultBytes) {
		stored = e.cache.Put(key, result)
	}
	return elapsed, stored
}

// Reset forgets the budget and loop state of a task ("t:"+id) or crew run
// ("r:"+id) scope, or of every scope when key is "".
func (e *Engine) Reset(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if key == "" {
		clear(e.scopes)
		return
	}
	delete(e.scopes, key)
}

// Stats returns a copy of the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	s := e.stats
	s.RefusedBy = make(map[string]int64, len(e.stats.RefusedBy))
	for k, v := range e.stats.RefusedBy {
		s.RefusedBy[k] = v
	}
	e.mu.Unlock()
	if e.cache != nil {
		s.Cache = e.cache.Stats()
	}
	return s
}
