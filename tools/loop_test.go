package tools

import (
	"errors"
	"testing"
)

// Identical calls past the loop threshold get identical refusals: the
// message carries no running count (CrewAI stops a run after 5 identical
// calls with identical results, and a count in the text made every refusal
// differ, so that stop never came).
func TestLoopRefusalIsIdenticalForIdenticalCalls(t *testing.T) {
	cases := []struct {
		name              string
		threshold, window int
		calls             int
	}{
		{"threshold 2, window 4", 2, 4, 12},
		{"threshold 3, window 10 (the Python default)", 3, 10, 20},
		{"window full of the same call", 2, 2, 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := NewEngine(Policy{LoopThreshold: c.threshold, LoopWindow: c.window}, newClock().now)
			if err != nil {
				t.Fatal(err)
			}
			var msgs []string
			var counts []float64
			for i := range c.calls {
				d, err := e.Begin(Call{Tool: "lookup", Args: args("q", "same"), Task: "t"})
				if err != nil {
					t.Fatal(err)
				}
				if i < c.threshold {
					if d.Verdict != Allow {
						t.Fatalf("call %d: %v, want Allow", i+1, d.Verdict)
					}
					continue
				}
				if d.Verdict != Refused || d.Refusal.Limit != LimitLoop {
					t.Fatalf("call %d: %+v, want a loop refusal", i+1, d)
				}
				msgs = append(msgs, d.Refusal.Message+"|"+d.Refusal.Hint)
				counts = append(counts, d.Refusal.Count)
			}
			for i, m := range msgs {
				if m != msgs[0] {
					t.Fatalf("refusal %d differs from the first:\n%s\n%s", i+1, m, msgs[0])
				}
			}
			want := LoopMessage("lookup", c.threshold, c.window) + "|" + LoopHint
			if msgs[0] != want {
				t.Fatalf("refusal %q, want %q", msgs[0], want)
			}
			// The count stays available to programs (Refusal.Count).
			if counts[0] != float64(c.threshold+1) {
				t.Fatalf("first refusal count %v, want %d", counts[0], c.threshold+1)
			}
		})
	}
}

// Forget takes a call out of its loop window (the executor calls it for a
// call whose tool raised, which CrewAI retries), and nothing else.
func TestForget(t *testing.T) {
	a, b := args("q", "x"), args("q", "y")
	type step struct {
		forget bool
		call   Call
		want   Verdict
	}
	cases := []struct {
		name  string
		pol   Policy
		steps []step
	}{
		{"a forgotten call is not a repeat", Policy{LoopThreshold: 2, LoopWindow: 4}, []step{
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
			{forget: true, call: Call{Tool: "t", Args: a, Task: "1"}},
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
			{forget: true, call: Call{Tool: "t", Args: a, Task: "1"}},
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Refused},
		}},
		{"forgets one occurrence, of that call only", Policy{LoopThreshold: 2, LoopWindow: 8}, []step{
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
			{forget: true, call: Call{Tool: "t", Args: b, Task: "1"}}, // not in the window: no-op
			{forget: true, call: Call{Tool: "u", Args: a, Task: "1"}}, // other tool: no-op
			{forget: true, call: Call{Tool: "t", Args: a, Task: "2"}}, // other task: no-op
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Refused},
			{forget: true, call: Call{Tool: "t", Args: args("q", "x"), Task: "1"}},
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Refused}, // two of three remain
		}},
		{"run and global scopes", Policy{LoopThreshold: 2, LoopWindow: 4}, []step{
			{call: Call{Tool: "t", Args: a, Run: "r"}, want: Allow},
			{call: Call{Tool: "t", Args: a, Run: "r"}, want: Allow},
			{forget: true, call: Call{Tool: "t", Args: a, Run: "r"}},
			{call: Call{Tool: "t", Args: a, Run: "r"}, want: Allow},
			{call: Call{Tool: "t", Args: a}, want: Allow},
			{call: Call{Tool: "t", Args: a}, want: Allow},
			{forget: true, call: Call{Tool: "t", Args: a}},
			{call: Call{Tool: "t", Args: a}, want: Allow},
			{call: Call{Tool: "t", Args: a}, want: Refused},
		}},
		{"budgets keep counting forgotten calls", Policy{LoopThreshold: 2, LoopWindow: 4, MaxCallsPerTask: 2}, []step{
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
			{forget: true, call: Call{Tool: "t", Args: a, Task: "1"}},
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
			{forget: true, call: Call{Tool: "t", Args: a, Task: "1"}},
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Refused},
		}},
		{"loop detection off", Policy{MaxCallsPerTask: 5}, []step{
			{forget: true, call: Call{Tool: "t", Args: a, Task: "1"}},
			{call: Call{Tool: "t", Args: a, Task: "1"}, want: Allow},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := NewEngine(c.pol, newClock().now)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range c.steps {
				if s.forget {
					if err := e.Forget(s.call); err != nil {
						t.Fatalf("step %d: Forget: %v", i, err)
					}
					continue
				}
				d, err := e.Begin(s.call)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if d.Verdict != s.want {
					t.Fatalf("step %d: verdict %v, want %v (refusal %+v)", i, d.Verdict, s.want, d.Refusal)
				}
			}
		})
	}
	e, err := NewEngine(Policy{LoopThreshold: 2, LoopWindow: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Forget(Call{Tool: "t", Args: []byte{0xc1}}); !errors.Is(err, ErrInvalidArgs) {
		t.Fatalf("bad args: %v", err)
	}
}
