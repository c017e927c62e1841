package main

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/crewcore/crewcore/runq"
	"github.com/tinylib/msgp/msgp"
)

func runqCall(t *testing.T, op string, h int64, args ...[]byte) any {
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

func TestRunqOpsThroughTheDispatcher(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.db")
	h := runqCall(t, "runq_open", 0, s(path), f(5)).(int64)
	defer runqCall(t, "runq_close", h)
	got := runqCall(t, "runq_submit", h, s("pkg.mod:build"), arr(s(`{"topic":"a"}`), s(`{"topic":"b"}`)),
		s(""), i(2), i(4), f(30), f(0), s("k1"), s("")).([]any)
	batch, rows := got[0].(string), got[1].([]any)
	if batch == "" || len(rows) != 2 {
		t.Fatalf("submit = %v", got)
	}
	id := rows[1].([]any)[0].(int64)
	run := runqCall(t, "runq_get", h, i(id)).(map[string]any)
	if run["crew"] != "pkg.mod:build" || run["inputs"] != `{"topic":"b"}` || run["index"] != int64(1) ||
		run["batch"] != batch || run["key"] != "k1#1" || run["priority"] != int64(2) || run["max_attempts"] != int64(4) ||
		run["timeout"] != 30.0 || run["state"] != "available" || run["output"] != nil || run["attempted_at"] != nil {
		t.Fatalf("get = %v", run)
	}
	if n := runqCall(t, "runq_cancel_batch", h, s(batch)); n != int64(2) {
		t.Fatalf("cancel batch = %v", n)
	}
	done := runqCall(t, "runq_wait", h, arr(i(id)), f(1)).([]any)
	if len(done) != 1 || done[0].(map[string]any)["state"] != "cancelled" {
		t.Fatalf("wait = %v", done)
	}
	st := runqCall(t, "runq_stats", h, s(""), i(10), i(10)).(map[string]any)
	if st["counts"].(map[string]any)["cancelled"] != int64(2) {
		t.Fatalf("stats = %v", st)
	}
	list := runqCall(t, "runq_list", h, arr(s("cancelled")), s(batch), s(""), i(10)).([]any)
	if len(list) != 2 {
		t.Fatalf("list = %v", list)
	}
}

func TestRunqOpsMapErrorsToKinds(t *testing.T) {
	dir := t.TempDir()
	h := runqCall(t, "runq_open", 0, s(filepath.Join(dir, "runs.db")), f(5)).(int64)
	runqCall(t, "runq_close", h)
	cases := []struct {
		name string
		req  []byte
		kind string
	}{
		{"missing directory", req("runq_open", 0, s(filepath.Join(dir, "no", "runs.db")), f(5)), "runq_not_found"},
		{"handle 0", req("runq_submit", 0, s("x:y"), arr(s("[]"))), "runq_closed"},
		{"closed handle", req("runq_get", h, i(1)), "runq_closed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := dispatch(c.req)
			if err == nil {
				t.Fatal("no error")
			}
			if k := kindOf(err).kind; k != c.kind {
				t.Fatalf("kind %q (%v), want %q", k, err, c.kind)
			}
		})
	}
	h2 := runqCall(t, "runq_open", 0, s(filepath.Join(dir, "runs.db")), f(5)).(int64)
	defer runqCall(t, "runq_close", h2)
	_, err := dispatch(req("runq_submit", h2, s("x:y"), arr(s("[1]")), s(""), i(0), i(0), f(0), f(0), s(""), s("")))
	if !errors.Is(err, runq.ErrInvalid) || kindOf(err).kind != "runq_invalid" {
		t.Fatalf("non-object input: %v", err)
	}
	_, err = dispatch(req("runq_get", h2, i(999)))
	if kindOf(err).kind != "runq_run_not_found" {
		t.Fatalf("missing run: %v", err)
	}
}
