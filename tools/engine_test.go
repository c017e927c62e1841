package tools

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

// args encodes a map of string keys in the given order.
func args(kv ...any) []byte {
	b := msgp.AppendMapHeader(nil, uint32(len(kv)/2))
	for i := 0; i < len(kv); i += 2 {
		b = msgp.AppendString(b, kv[i].(string))
		var err error
		b, err = msgp.AppendIntf(b, kv[i+1])
		if err != nil {
			panic(err)
		}
	}
	return b
}

func TestPolicyValidate(t *testing.T) {
	ok := DefaultPolicy()
	cases := []struct {
		name string
		mod  func(*Policy)
		want string // "" = valid
	}{
		{"default", func(*Policy) {}, ""},
		{"zero", func(p *Policy) { *p = Policy{} }, ""},
		{"negative timeout", func(p *Policy) { p.Timeout = -time.Second }, "timeout"},
		{"sub-ms timeout", func(p *Policy) { p.Timeout = time.Microsecond }, "timeout"},
		{"negative task calls", func(p *Policy) { p.MaxCallsPerTask = -1 }, "max_calls_per_task"},
		{"task above run", func(p *Policy) { p.MaxCallsPerTask = 10; p.MaxCallsPerRun = 5 }, "larger than"},
		{"loop threshold 1", func(p *Policy) { p.LoopThreshold = 1 }, "loop_threshold"},
		{"window below threshold", func(p *Policy) { p.LoopThreshold = 5; p.LoopWindow = 3 }, "loop_window"},
		{"negative rate", func(p *Policy) { p.RatePerSec = -1 }, "rate_limit"},
		{"cache without bound", func(p *Policy) { p.CacheTTL = time.Second; p.CacheMaxBytes = 0 }, "cache"},
		{"negative depth", func(p *Policy) { p.MaxDepth = -2 }, "max_depth"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := ok
			c.mod(&p)
			err := p.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("valid policy refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrInvalidPolicy mentioning %q", err, c.want)
			}
			if _, err := NewEngine(p, nil); !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("NewEngine accepted an invalid policy: %v", err)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	same := [][2][]byte{
		{args("a", 1, "b", "x"), args("b", "x", "a", 1)},
		{args("n", 2.0), args("n", int64(2))},
		{args("n", uint8(7)), args("n", int64(7))},
		{args("m", map[string]any{"y": 1, "x": []any{1.0, "s"}}), args("m", map[string]any{"x": []any{1, "s"}, "y": 1})},
	}
	for i, p := range same {
		a, _, err := Canonical(nil, p[0])
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := Canonical(nil, p[1])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("case %d: %x != %x", i, a, b)
		}
	}
	diff := [][2][]byte{
		{args("a", 1), args("a", 2)},
		{args("a", 1.5), args("a", 1)},
		{args("a", "1"), args("a", 1)},
	}
	for i, p := range diff {
		a, _, _ := Canonical(nil, p[0])
		b, _, _ := Canonical(nil, p[1])
		if bytes.Equal(a, b) {
			t.Errorf("case %d: different values share an encoding", i)
		}
	}
	// Too deep, truncated, and a lying length are refused.
	deep := []byte{}
	for range MaxNesting + 2 {
		deep = msgp.AppendArrayHeader(deep, 1)
	}
	deep = msgp.AppendNil(deep)
	bad := [][]byte{deep, args("a", "hello")[:5], {0xdd, 0xff, 0xff, 0xff, 0xff}, {0xc7, 0x01, 0x05, 0x00}}
	for i, b := range bad {
		if _, _, err := Canonical(nil, b); !errors.Is(err, ErrInvalidArgs) {
			t.Errorf("bad input %d: got %v, want ErrInvalidArgs", i, err)
		}
	}
}

func TestCache(t *testing.T) {
	clk := newClock()
	c := NewCache(time.Minute, 100, 3, clk.now)
	c.Put("a", []byte("1"))
	c.Put("b", []byte("2"))
	c.Put("c", []byte("3"))
	if _, ok := c.Get("a"); !ok { // a is now most recent
		t.Fatal("a missing")
	}
	c.Put("d", []byte("4")) // evicts b (LRU)
	if _, ok := c.Get("b"); ok {
		t.Fatal("b should have been evicted")
	}
	clk.add(time.Minute)
	if _, ok := c.Get("a"); ok {
		t.Fatal("a should have expired")
	}
	if c.Put("big", make([]byte, 200)) {
		t.Fatal("a value above the byte bound was stored")
	}
	c.Put("x", make([]byte, 60))
	c.Put("y", make([]byte, 60)) // byte bound evicts x
	if _, ok := c.Get("x"); ok {
		t.Fatal("x should have been evicted by the byte bound")
	}
	if st := c.Stats(); st.Bytes > 100 || st.Entries > 3 {
		t.Fatalf("bounds not held: %+v", st)
	}
}

func TestEngineLimits(t *testing.T) {
	type step struct {
		call    Call
		advance time.Duration
		want    Verdict
		limit   string
	}
	a := args("q", "x")
	b := args("q", "y")
	cases := []struct {
		name  string
		pol   Policy
		steps []step
	}{
		{"loop", Policy{LoopThreshold: 2, LoopWindow: 4}, []step{
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
			{call: Call{Tool: "t", Args: args("q", "x"), Task: "1"}, want: Allow},
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Refused, limit: LimitLoop},
			{call: Call{Tool: "t", Args: a, Task: "2"}, want: Allow}, // other task
			{call: Call{Tool: "t", Args: b, Task: "1"}, want: Allow},
			{call: Call{Tool: "u", Args: a, Task: "1"}, want: Allow}, // other tool
		}},
		{"loop window slides", Policy{LoopThreshold: 2, LoopWindow: 2}, []step{
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
			{call: Call{Tool: "t", Args: b, Task: "1"}, want: Allow},
			{call: Call{Tool: "t", Args: b, Task: "1"}, want: Allow},
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow}, // a fell out of the window
		}},
		{"task budget", Policy{MaxCallsPerTask: 2}, []step{
			{call: Call{Tool: "t", Args: a, Task: "1", Run: "r"}, want: Allow},
			{call: Call{Tool: "t", Args: b, Task: "1", Run: "r"}, want: Allow},
			{call: Call{Tool: "t", Args: a, Task: "1", Run: "r"}, want: Refused, limit: LimitTaskCalls},
			{call: Call{Tool: "t", Args: a, Task: "2", Run: "r"}, want: Allow},
		}},
		{"run budget", Policy{MaxCallsPerRun: 2}, []step{
			{call: Call{Tool: "t", Args: a, Task: "1", Run: "r"}, want: Allow},
			{call: Call{Tool: "t", Args: b, Task: "2", Run: "r"}, want: Allow},
			{call: Call{Tool: "t", Args: a, Task: "3", Run: "r"}, want: Refused, limit: LimitRunCalls},
			{call: Call{Tool: "t", Args: a, Task: "3", Run: "r2"}, want: Allow},
		}},
		{"depth", Policy{MaxDepth: 2}, []step{
			{call: Call{Tool: "t", Args: a, Depth: 2}, want: Allow},
			{call: Call{Tool: "t", Args: a, Depth: 3}, want: Refused, limit: LimitDepth},
		}},
		{"arg bytes", Policy{MaxArgBytes: 8}, []step{
			{call: Call{Tool: "t", Args: a}, want: Allow},
			{call: Call{Tool: "t", Args: args("q", strings.Repeat("z", 20))}, want: Refused, limit: LimitArgs},
		}},
		{"rate", Policy{RatePerSec: 2, RateBurst: 1}, []step{
			{call: Call{Tool: "t", Args: a}, want: Allow},
			{call: Call{Tool: "t", Args: b}, want: Refused, limit: LimitRate},
			{call: Call{Tool: "u", Args: b}, want: Allow}, // per tool
			{call: Call{Tool: "t", Args: b}, advance: 500 * time.Millisecond, want: Allow},
		}},
		{"count only: budgets and loops, no rate token", Policy{RatePerSec: 0.001, RateBurst: 1, LoopThreshold: 2, LoopWindow: 4, MaxCallsPerTask: 3}, []step{
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
			{call: Call{Tool: "t", Args: a, Task: "1", CountOnly: true}, want: Cached}, // no token needed
			{call: Call{Tool: "t", Args: a, Task: "1", CountOnly: true}, want: Refused, limit: LimitLoop},
			{call: Call{Tool: "t", Args: b, Task: "1", CountOnly: true}, want: Cached},
			{call: Call{Tool: "t", Args: args("q", "z"), Task: "1", CountOnly: true}, want: Refused, limit: LimitTaskCalls},
			{call: Call{Tool: "t", Args: b, Task: "2"}, want: Refused, limit: LimitRate}, // the token is still spent
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := newClock()
			e, err := NewEngine(c.pol, clk.now)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range c.steps {
				clk.add(s.advance)
				d, err := e.Begin(s.call)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if d.Verdict != s.want {
					t.Fatalf("step %d: verdict %v, want %v (refusal %+v)", i, d.Verdict, s.want, d.Refusal)
				}
				if s.want == Refused {
					if d.Refusal.Limit != s.limit || d.Refusal.Message == "" || d.Refusal.Hint == "" {
						t.Fatalf("step %d: refusal %+v, want limit %s with message and hint", i, d.Refusal, s.limit)
					}
				}
			}
		})
	}
}

func TestEngineCacheAndReset(t *testing.T) {
	clk := newClock()
	p := Policy{CacheTTL: time.Second, CacheMaxBytes: 1 << 20, CacheMaxEntries: 10, MaxCallsPerTask: 3, MaxResultBytes: 16}
	e, err := NewEngine(p, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := e.Begin(Call{Tool: "t", Args: args("a", 1, "b", 2), Task: "1"})
	if d.Verdict != Allow || d.Key == "" {
		t.Fatalf("first call: %+v", d)
	}
	clk.add(30 * time.Millisecond)
	el, stored := e.End(d.Start, OK, d.Key, []byte("result"))
	if !stored || el != 30*time.Millisecond {
		t.Fatalf("End: elapsed %v stored %v", el, stored)
	}
	d, _ = e.Begin(Call{Tool: "t", Args: args("b", 2.0, "a", 1), Task: "1"})
	if d.Verdict != Cached || string(d.Cached) != "result" {
		t.Fatalf("equivalent call not served from cache: %+v", d)
	}
	if _, stored := e.End(0, OK, "k", make([]byte, 17)); stored {
		t.Fatal("a result above max_result_bytes was cached")
	}
	clk.add(time.Second)
	d, _ = e.Begin(Call{Tool: "t", Args: args("a", 1, "b", 2), Task: "1"})
	if d.Verdict != Allow {
		t.Fatalf("expired entry served: %+v", d)
	}
	d, _ = e.Begin(Call{Tool: "t", Args: args("a", 9), Task: "1"})
	if d.Verdict != Refused || d.Refusal.Limit != LimitTaskCalls {
		t.Fatalf("cached calls must count against the task budget: %+v", d)
	}
	e.Reset("t:1")
	if d, _ = e.Begin(Call{Tool: "t", Args: args("a", 9), Task: "1"}); d.Verdict != Allow {
		t.Fatalf("after Reset: %+v", d)
	}
	st := e.Stats()
	if st.Cached != 1 || st.Refused != 1 || st.RefusedBy[LimitTaskCalls] != 1 || st.Cache.Hits != 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := e.Begin(Call{Tool: "t", Args: []byte{0xc1}}); !errors.Is(err, ErrInvalidArgs) {
		t.Fatalf("bad args: %v", err)
	}
}

func TestEngineConcurrent(t *testing.T) {
	e, err := NewEngine(Policy{MaxCallsPerRun: 1000, CacheTTL: time.Minute, CacheMaxBytes: 1 << 20, CacheMaxEntries: 64}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				d, err := e.Begin(Call{Tool: "t", Args: args("i", i%100, "g", g%2), Run: "r"})
				if err != nil {
					t.Error(err)
					return
				}
				if d.Verdict != Refused {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
				if d.Verdict == Allow {
					e.End(d.Start, OK, d.Key, []byte("v"))
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 1000 {
		t.Fatalf("run budget of 1000 admitted %d calls", allowed)
	}
}
