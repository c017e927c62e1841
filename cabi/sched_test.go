package main

import (
	"testing"

	"github.com/tinylib/msgp/msgp"
)

func schedCall(t *testing.T, op string, h int64, args ...[]byte) any {
	t.Helper()
	out, err := dispatch(req(op, h, args...))
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	v, _, err := msgp.ReadIntfBytes(out)
	if err != nil {
		t.Fatalf("%s response: %v", op, err)
	}
	return v
}

func TestSchedOps(t *testing.T) {
	h := schedCall(t, "sched_new", 0, i(3), i(2), f(0), f(0)).(int64)
	defer schedCall(t, "sched_close", h)
	for _, want := range []int64{0, 1} {
		got := schedCall(t, "sched_acquire", h, f(0.1)).([]any)
		if got[0] != "run" || got[1] != want || got[2] != -1.0 {
			t.Fatalf("acquire = %v, want run %d without deadline", got, want)
		}
	}
	if got := schedCall(t, "sched_acquire", h, f(0.01)).([]any); got[0] != "wait" {
		t.Fatalf("acquire with slots full = %v, want wait", got)
	}
	if got := schedCall(t, "sched_finish", h, i(0), s("done")).([]any); got[0] != true {
		t.Fatalf("finish = %v", got)
	}
	if got := schedCall(t, "sched_finish", h, i(0), s("failed")).([]any); got[0] != false {
		t.Fatalf("second finish = %v, want not accepted", got)
	}
	if got := schedCall(t, "sched_check", h, i(1)); got != "" {
		t.Fatalf("check = %v", got)
	}
	if got := schedCall(t, "sched_cancel", h); got != true {
		t.Fatalf("cancel = %v", got)
	}
	if got := schedCall(t, "sched_check", h, i(1)); got != "cancelled" {
		t.Fatalf("check after cancel = %v", got)
	}
	if got := schedCall(t, "sched_acquire", h, f(1)).([]any); got[0] != "stopped" {
		t.Fatalf("acquire after cancel = %v", got)
	}
	ex := schedCall(t, "sched_expired", h, f(1)).([]any)
	if ex[0] != "expired" || len(ex[1].([]any)) != 1 {
		t.Fatalf("expired = %v", ex)
	}
	schedCall(t, "sched_finish", h, i(1), s("cancelled"))
	if got := schedCall(t, "sched_wait", h, f(1)); got != true {
		t.Fatalf("wait = %v", got)
	}
	states := schedCall(t, "sched_states", h).([]byte)
	if string(states) != "\x02\x05\x05" {
		t.Fatalf("states = %v", states)
	}
	sum := schedCall(t, "sched_summary", h).(map[string]any)
	if sum["done"] != int64(1) || sum["cancelled"] != int64(2) || sum["stop"] != "cancelled" {
		t.Fatalf("summary = %v", sum)
	}
}

func TestSchedOpErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  []byte
		kind string
	}{
		{"zero concurrency", req("sched_new", 0, i(1), i(0), f(0), f(0)), "invalid_argument"},
		{"negative timeout", req("sched_new", 0, i(1), i(1), f(-1), f(0)), "invalid_argument"},
		{"unknown handle", req("sched_acquire", 999999, f(0)), "sched_closed"},
		{"bad outcome", req("sched_finish", 999999, i(0), s("done")), "sched_closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dispatch(tc.req)
			if err == nil {
				t.Fatal("no error")
			}
			if k := kindOf(err).kind; k != tc.kind {
				t.Fatalf("kind %q (%v), want %q", k, err, tc.kind)
			}
		})
	}
}
