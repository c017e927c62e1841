package runq

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver"
)

// python is the repository's venv interpreter (crewcore installed in it);
// the Go tests start real Python worker processes.
func python(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CREWCORE_PYTHON"); p != "" {
		return p
	}
	p, err := filepath.Abs("../.venv/bin/python")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no Python with crewcore installed at %s (run make build, or set CREWCORE_PYTHON): %v", p, err)
	}
	return p
}

func crewPath(t *testing.T) string {
	p, err := filepath.Abs("testdata/crews")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// specs are the queues every worker test runs on: a SQLite file, and the
// test PostgreSQL server when CREWCORE_PG_DSN is set.
func specs(t *testing.T) map[string]func(t *testing.T) Spec {
	out := map[string]func(t *testing.T) Spec{
		"sqlite": func(t *testing.T) Spec {
			s, err := ParseSpec(filepath.Join(t.TempDir(), "runs.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	if dsn := os.Getenv("CREWCORE_PG_DSN"); dsn != "" {
		out["postgres"] = func(t *testing.T) Spec {
			schema := fmt.Sprintf("runq_go_%d", time.Now().UnixNano()%1_000_000_000)
			sep := "?"
			if strings.Contains(dsn, "?") {
				sep = "&"
			}
			s, err := ParseSpec(dsn + sep + "schema=" + schema)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dropSchema(t, s) })
			return s
		}
	} else {
		t.Log("CREWCORE_PG_DSN is not set: PostgreSQL cases not run (make pg-up prints a DSN)")
	}
	return out
}

func dropSchema(t *testing.T, s Spec) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		t.Logf("drop schema %s: %v", s.Schema, err)
		return
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `DROP SCHEMA IF EXISTS "`+s.Schema+`" CASCADE`); err != nil {
		t.Logf("drop schema %s: %v", s.Schema, err)
	}
}

// TestCoalesce checks Wait's gathering time on SQLite: none for a few runs
// (one run's result is seen at once), growing with the runs awaited, capped.
func TestCoalesce(t *testing.T) {
	for _, tc := range []struct {
		ids  int
		want time.Duration
	}{
		{0, 0}, {1, 0}, {4, 0}, {5, 100 * time.Microsecond}, {100, 2 * time.Millisecond},
		{1000, 20 * time.Millisecond}, {1250, 25 * time.Millisecond}, {100000, 25 * time.Millisecond},
	} {
		if got := coalesce(tc.ids); got != tc.want {
			t.Errorf("coalesce(%d) = %v, want %v", tc.ids, got, tc.want)
		}
	}
}

func TestPgPoll(t *testing.T) {
	for _, tc := range []struct {
		ids  int
		want time.Duration
	}{
		{0, 2 * time.Millisecond}, {1, 2100 * time.Microsecond}, {100, 12 * time.Millisecond},
		{1000, 102 * time.Millisecond}, {2480, 250 * time.Millisecond}, {100000, 250 * time.Millisecond},
	} {
		if got := pgPoll(tc.ids); got != tc.want {
			t.Errorf("pgPoll(%d) = %v, want %v", tc.ids, got, tc.want)
		}
	}
}

func TestFirstLookWaitsOutTheInterval(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		name     string
		last     time.Time
		interval time.Duration
		want     time.Duration
	}{
		{"never looked", time.Time{}, pgPoll(1000), 0},
		{"looked just now", now, pgPoll(1000), 102 * time.Millisecond},
		{"looked 40 ms ago", now.Add(-40 * time.Millisecond), pgPoll(1000), 62 * time.Millisecond},
		{"interval passed", now.Add(-time.Second), pgPoll(1000), 0},
		{"one run on PostgreSQL, looked just now", now, pgPoll(1), 2100 * time.Microsecond},
		{"a few runs on SQLite: no wait", now, coalesce(3), 0},
	} {
		last := int64(0)
		if !tc.last.IsZero() {
			last = tc.last.UnixNano()
		}
		if got := firstLook(last, now, tc.interval); got != tc.want {
			t.Errorf("%s: firstLook = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseSpec(t *testing.T) {
	cases := []struct {
		in      string
		path    bool
		schema  string
		wantErr error
	}{
		{in: "runs.db", path: true},
		{in: "sqlite:///tmp/x.db", path: true},
		{in: "file:/tmp/x.db", path: true},
		{in: "postgresql://u@h/db", schema: DefaultSchema},
		{in: "postgres://u:p@h:5/db?sslmode=disable&schema=team_a", schema: "team_a"},
		{in: "postgresql://h/db?schema=1bad", wantErr: ErrInvalid},
		{in: "", wantErr: ErrInvalid},
		{in: "sqlite://", wantErr: ErrInvalid},
		{in: "a\x00b", wantErr: ErrInvalid},
	}
	for _, c := range cases {
		s, err := ParseSpec(c.in)
		if c.wantErr != nil {
			if !errors.Is(err, c.wantErr) {
				t.Errorf("%q: got %v, want %v", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if c.path != (s.Path != "") || s.Schema != c.schema {
			t.Errorf("%q: got %+v", c.in, s)
		}
		if strings.Contains(s.DSN, "schema=") {
			t.Errorf("%q: runq's schema parameter left in the DSN %q", c.in, s.DSN)
		}
	}
	s, _ := ParseSpec("postgres://u:secret@h/db")
	if strings.Contains(s.String(), "secret") {
		t.Errorf("String() shows the password: %s", s)
	}
}

// TestSQLiteURIKeepsRiversStatements checks the queue's SQLite connections
// keep their prepared statements (River prepares every query again
// otherwise: a submit took 0.52 ms in Go with 37% of it in
// sqlite3_prepare_v2, 0.23 ms with the cache), and that the busy timeout,
// BEGIN IMMEDIATE and synchronous=NORMAL are set.
func TestSQLiteURIKeepsRiversStatements(t *testing.T) {
	u := sqliteURI("/tmp/q?#%.db")
	for _, want := range []string{"_stmt_cache_size=", "_busy_timeout=", "_txlock=immediate", "_synchronous=NORMAL"} {
		if !strings.Contains(u, want) {
			t.Errorf("sqliteURI = %q: no %s", u, want)
		}
	}
	if !strings.HasPrefix(u, "file:/tmp/q%3f%23%25.db?") {
		t.Errorf("sqliteURI = %q: path not escaped", u)
	}
}

func TestOpenRefusesWhatIsNotAQueue(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notes.txt")
	os.WriteFile(notDB, bytes.Repeat([]byte("not a database "), 100), 0o644)
	foreign := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite3", foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE records (id TEXT)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(foreign)
	cases := []struct {
		name string
		spec string
		want error
	}{
		{"missing directory", filepath.Join(dir, "nope", "runs.db"), ErrNotFound},
		{"a directory", dir, ErrInvalid},
		{"not SQLite", notDB, ErrCorrupt},
		{"another database", foreign, ErrCorrupt},
		{"server down", "postgresql://crewcore@127.0.0.1:1/none?connect_timeout=2", ErrUnavailable},
	}
	if dsn := os.Getenv("CREWCORE_PG_DSN"); dsn != "" {
		cases = append(cases, struct {
			name string
			spec string
			want error
		}{"no such database", replaceDB(dsn, "crewcore_no_such_db"), ErrNotFound})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSpec(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			q, err := Open(context.Background(), s, Options{ConnectTimeout: 2 * time.Second})
			if err == nil {
				q.Close()
				t.Fatalf("opened %s", c.spec)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	after, _ := os.ReadFile(foreign)
	if !bytes.Equal(before, after) {
		t.Error("the foreign database was modified")
	}
}

func replaceDB(dsn, db string) string {
	i := strings.Index(dsn, "://")
	rest := dsn[i+3:]
	j := strings.Index(rest, "/")
	if j < 0 {
		return dsn + "/" + db
	}
	k := strings.IndexAny(rest[j+1:], "?")
	if k < 0 {
		return dsn[:i+3+j+1] + db
	}
	return dsn[:i+3+j+1] + db + rest[j+1+k:]
}

func TestSubmitChecksItsArguments(t *testing.T) {
	s, _ := ParseSpec(filepath.Join(t.TempDir(), "runs.db"))
	q, err := Open(context.Background(), s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ok := [][]byte{[]byte(`{"topic":"x"}`)}
	cases := []struct {
		name string
		req  SubmitRequest
	}{
		{"crew without attr", SubmitRequest{Crew: "pkg.mod", Inputs: ok}},
		{"crew with spaces", SubmitRequest{Crew: "pkg mod:f", Inputs: ok}},
		{"input not an object", SubmitRequest{Crew: "m:f", Inputs: [][]byte{[]byte(`[1,2]`)}}},
		{"input not JSON", SubmitRequest{Crew: "m:f", Inputs: [][]byte{[]byte(`{"a":`)}}},
		{"priority 5", SubmitRequest{Crew: "m:f", Inputs: ok, Priority: 5}},
		{"attempts -1", SubmitRequest{Crew: "m:f", Inputs: ok, MaxAttempts: -1}},
		{"negative timeout", SubmitRequest{Crew: "m:f", Inputs: ok, Timeout: -1}},
		{"bad river queue", SubmitRequest{Crew: "m:f", Inputs: ok, RiverQueue: "Has Space"}},
		{"bad batch", SubmitRequest{Crew: "m:f", Inputs: ok, Batch: "a b"}},
		{"long key", SubmitRequest{Crew: "m:f", Inputs: ok, Key: strings.Repeat("k", 201)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := q.Submit(context.Background(), c.req); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	runs, err := q.List(context.Background(), ListRequest{})
	if err != nil || len(runs) != 0 {
		t.Fatalf("refused submits queued %d runs (%v)", len(runs), err)
	}
}

func TestUniqueKeyFindsTheEarlierRuns(t *testing.T) {
	for name, mk := range specs(t) {
		t.Run(name, func(t *testing.T) {
			q, err := Open(context.Background(), mk(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			in := [][]byte{[]byte(`{"n":1}`), []byte(`{"n":2}`)}
			a, err := q.Submit(context.Background(), SubmitRequest{Crew: "m:f", Inputs: in, Key: "nightly-2026-01-01"})
			if err != nil {
				t.Fatal(err)
			}
			b, err := q.Submit(context.Background(), SubmitRequest{Crew: "m:f", Inputs: in, Key: "nightly-2026-01-01"})
			if err != nil {
				t.Fatal(err)
			}
			for i := range a {
				if a[i].Duplicate || !b[i].Duplicate || a[i].ID != b[i].ID {
					t.Fatalf("input %d: first %+v, second %+v", i, a[i], b[i])
				}
			}
			c, err := q.Submit(context.Background(), SubmitRequest{Crew: "m:f", Inputs: in, Key: "nightly-2026-01-02"})
			if err != nil {
				t.Fatal(err)
			}
			if c[0].Duplicate || c[0].ID == a[0].ID {
				t.Fatalf("another key found the same run: %+v", c[0])
			}
		})
	}
}

// startWorker runs a worker on spec until the test ends.
func startWorker(t *testing.T, spec Spec, procs, conc int, mod func(*WorkerConfig)) *Worker {
	t.Helper()
	var log bytes.Buffer
	var logMu sync.Mutex
	cfg := WorkerConfig{
		Spec: spec,
		Supervisor: SupervisorConfig{
			Processes: procs, Concurrency: conc, Python: python(t), CrewPath: []string{crewPath(t)},
			Env: []string{"CREWCORE_RUNQ_INSTALL=0"}, StopGrace: 300 * time.Millisecond,
		},
		RunTimeout:    20 * time.Second,
		ShutdownGrace: 2 * time.Second,
		Log:           lockedWriter{&log, &logMu},
	}
	if mod != nil {
		mod(&cfg)
	}
	w, err := NewWorker(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("worker did not start: %v\n%s", err, log.String())
	case <-time.After(2 * time.Minute):
		t.Fatal("worker not ready after 2 minutes")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("worker did not stop within a minute")
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("worker log:\n%s", log.String())
			logMu.Unlock()
		}
	})
	return w
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// waitAll waits for every id to be final and returns them by id.
func waitAll(t *testing.T, q *Queue, ids []int64, limit time.Duration) map[int64]Run {
	t.Helper()
	out := map[int64]Run{}
	end := time.Now().Add(limit)
	pending := append([]int64(nil), ids...)
	for len(pending) > 0 {
		if time.Now().After(end) {
			t.Fatalf("%d of %d runs not final after %s", len(pending), len(ids), limit)
		}
		done, err := q.Wait(context.Background(), pending, 500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range done {
			out[r.ID] = r
		}
		var rest []int64
		for _, id := range pending {
			if _, ok := out[id]; !ok {
				rest = append(rest, id)
			}
		}
		pending = rest
	}
	return out
}

type record struct {
	OK     bool `json:"ok"`
	Result struct {
		Value struct {
			Echo map[string]any `json:"echo"`
			PID  int            `json:"pid"`
		} `json:"value"`
	} `json:"result"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	Permanent bool `json:"permanent"`
}

func recordOf(t *testing.T, r Run) record {
	t.Helper()
	var rec record
	if err := json.Unmarshal(r.Output, &rec); err != nil {
		t.Fatalf("run %d (%s): output %q: %v", r.ID, r.State, r.Output, err)
	}
	return rec
}

func TestWorkerRunsEveryInputOnceInItsProcesses(t *testing.T) {
	for name, mk := range specs(t) {
		t.Run(name, func(t *testing.T) {
			spec := mk(t)
			w := startWorker(t, spec, 2, 2, nil)
			q, err := Open(context.Background(), spec, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			var in [][]byte
			for i := range 40 {
				in = append(in, []byte(fmt.Sprintf(`{"i":%d,"spin":0.02}`, i)))
			}
			sub, err := q.Submit(context.Background(), SubmitRequest{Crew: "runq_testcrews:echo", Inputs: in})
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]int64, len(sub))
			for i, s := range sub {
				ids[i] = s.ID
			}
			got := waitAll(t, q, ids, 2*time.Minute)
			pids := map[int]int{}
			for i, s := range sub {
				r := got[s.ID]
				if r.State != "completed" || r.Attempt != 1 {
					t.Fatalf("run %d: %s after %d attempts: %s", i, r.State, r.Attempt, r.Output)
				}
				rec := recordOf(t, r)
				if n, _ := rec.Result.Value.Echo["i"].(float64); int(n) != i || !rec.OK {
					t.Fatalf("run %d returned %s", i, r.Output)
				}
				pids[rec.Result.Value.PID]++
			}
			if len(pids) != 2 {
				t.Fatalf("runs spread over %d processes, want 2: %v", len(pids), pids)
			}
			if d := w.Done.Load(); d != 40 {
				t.Fatalf("worker counted %d done runs", d)
			}
			st, err := q.Stats(context.Background(), StatsRequest{Batch: sub[0].Batch})
			if err != nil {
				t.Fatal(err)
			}
			if st.Counts["completed"] != 40 || st.Sample != 40 || st.P50 <= 0 || st.P95 < st.P50 || st.Throughput <= 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestFailuresRetriesAndPermanentErrors(t *testing.T) {
	for name, mk := range specs(t) {
		t.Run(name, func(t *testing.T) {
			spec := mk(t)
			startWorker(t, spec, 1, 2, nil)
			q, err := Open(context.Background(), spec, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			ctx := context.Background()
			fail, err := q.Submit(ctx, SubmitRequest{Crew: "runq_testcrews:echo", Inputs: [][]byte{[]byte(`{"fail":"boom"}`)}, MaxAttempts: 2})
			if err != nil {
				t.Fatal(err)
			}
			noMod, err := q.Submit(ctx, SubmitRequest{Crew: "no_such_module_xyz:build", Inputs: [][]byte{[]byte(`{}`)}})
			if err != nil {
				t.Fatal(err)
			}
			broken, err := q.Submit(ctx, SubmitRequest{Crew: "runq_testcrews:broken", Inputs: [][]byte{[]byte(`{}`)}, MaxAttempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			got := waitAll(t, q, []int64{fail[0].ID, noMod[0].ID, broken[0].ID}, 2*time.Minute)
			r := got[fail[0].ID]
			if r.State != "discarded" || r.Attempt != 2 || len(r.Errors) != 2 || !strings.Contains(r.Errors[1].Error, "asked to fail: boom") {
				t.Fatalf("failing run: %s after %d attempts, errors %+v", r.State, r.Attempt, r.Errors)
			}
			if rec := recordOf(t, r); rec.OK || rec.Error.Type != "ValueError" {
				t.Fatalf("failing run's record: %s", r.Output)
			}
			r = got[noMod[0].ID]
			if r.State != "cancelled" || r.Attempt != 1 || !strings.Contains(r.Errors[0].Error, "no_such_module_xyz") {
				t.Fatalf("unimportable factory: %s after %d attempts, errors %+v", r.State, r.Attempt, r.Errors)
			}
			if rec := recordOf(t, r); !rec.Permanent || rec.Error.Type != "CrewFactoryError" {
				t.Fatalf("unimportable factory's record: %s", r.Output)
			}
			r = got[broken[0].ID]
			if r.State != "discarded" || !strings.Contains(r.Errors[0].Error, "the factory itself fails") {
				t.Fatalf("failing factory: %s, errors %+v", r.State, r.Errors)
			}
			st, err := q.Stats(ctx, StatsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Failures) != 3 || st.Counts["discarded"] != 2 || st.Counts["cancelled"] != 1 {
				t.Fatalf("stats: %+v", st)
			}
		})
	}
}

// waitState polls until run id is in state.
func waitState(t *testing.T, q *Queue, id int64, state string, limit time.Duration) Run {
	t.Helper()
	end := time.Now().Add(limit)
	for {
		r, err := q.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State == state {
			return r
		}
		if time.Now().After(end) {
			t.Fatalf("run %d is %s after %s, want %s", id, r.State, limit, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCancelTimeoutAndShutdown(t *testing.T) {
	for name, mk := range specs(t) {
		t.Run(name, func(t *testing.T) {
			spec := mk(t)
			w := startWorker(t, spec, 1, 4, nil)
			q, err := Open(context.Background(), spec, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			ctx := context.Background()
			crew := "runq_testcrews:echo"
			// A running run cancelled: it stops (the spin is Python code, so
			// the interrupt reaches it) and ends cancelled, not retried.
			long, _ := q.Submit(ctx, SubmitRequest{Crew: crew, Inputs: [][]byte{[]byte(`{"spin":60}`)}})
			waitState(t, q, long[0].ID, "running", time.Minute)
			pidsBefore := w.Supervisor().PIDs()
			if _, err := q.Cancel(ctx, long[0].ID); err != nil {
				t.Fatal(err)
			}
			r := waitState(t, q, long[0].ID, "cancelled", 30*time.Second)
			if r.Attempt != 1 {
				t.Fatalf("cancelled run attempted %d times", r.Attempt)
			}
			if got := w.Supervisor().PIDs(); fmt.Sprint(got) != fmt.Sprint(pidsBefore) {
				t.Fatalf("the process was replaced (%v -> %v): the interrupt should have stopped the run", pidsBefore, got)
			}
			// A pending batch cancelled: nothing of it runs.
			far := time.Now().Add(time.Hour)
			later, _ := q.Submit(ctx, SubmitRequest{Crew: crew, Inputs: [][]byte{[]byte(`{}`), []byte(`{}`)}, ScheduledAt: far, Batch: "later-batch"})
			n, err := q.CancelBatch(ctx, "later-batch")
			if err != nil || n != 2 {
				t.Fatalf("cancel batch: %d, %v", n, err)
			}
			for _, s := range later {
				if r, _ := q.Get(ctx, s.ID); r.State != "cancelled" || r.Attempt != 0 {
					t.Fatalf("scheduled run after batch cancel: %s, %d attempts", r.State, r.Attempt)
				}
			}
			// A timeout: stopped, then (one attempt) discarded.
			slow, _ := q.Submit(ctx, SubmitRequest{Crew: crew, Inputs: [][]byte{[]byte(`{"spin":60}`)}, Timeout: 0.5, MaxAttempts: 1})
			r = waitState(t, q, slow[0].ID, "discarded", time.Minute)
			if len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Error, "RunTimeout") {
				t.Fatalf("timed-out run: errors %+v", r.Errors)
			}
			// A run stuck in one C call ignores the interrupt: its process is
			// killed and replaced.
			stuck, _ := q.Submit(ctx, SubmitRequest{Crew: crew, Inputs: [][]byte{[]byte(`{"block":60}`)}, Timeout: 0.5, MaxAttempts: 1})
			r = waitState(t, q, stuck[0].ID, "discarded", time.Minute)
			if !strings.Contains(r.Errors[0].Error, "WorkerProcessError") {
				t.Fatalf("stuck run: errors %+v", r.Errors)
			}
			// Retry brings a final run back.
			if _, err := q.Retry(ctx, slow[0].ID); err != nil {
				t.Fatal(err)
			}
			if r, _ := q.Get(ctx, slow[0].ID); r.State != "available" && r.State != "running" {
				t.Fatalf("retried run is %s", r.State)
			}
			if _, err := q.Cancel(ctx, slow[0].ID); err != nil {
				t.Fatal(err)
			}
			if _, err := q.Get(ctx, 1<<40); !errors.Is(err, ErrRunNotFound) {
				t.Fatalf("missing run: %v", err)
			}
		})
	}
}

func TestShutdownReturnsRunningJobsToTheQueue(t *testing.T) {
	spec, _ := ParseSpec(filepath.Join(t.TempDir(), "runs.db"))
	q, err := Open(context.Background(), spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	cfg := WorkerConfig{
		Spec: spec,
		Supervisor: SupervisorConfig{Processes: 1, Concurrency: 2, Python: python(t), CrewPath: []string{crewPath(t)},
			Env: []string{"CREWCORE_RUNQ_INSTALL=0"}, StopGrace: 200 * time.Millisecond},
		ShutdownGrace: 500 * time.Millisecond,
		Log:           os.Stderr,
	}
	w, err := NewWorker(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, nil) }()
	sub, _ := q.Submit(context.Background(), SubmitRequest{Crew: "runq_testcrews:echo", Inputs: [][]byte{[]byte(`{"spin":60}`), []byte(`{"spin":0.1}`)}})
	waitState(t, q, sub[0].ID, "running", 2*time.Minute)
	waitState(t, q, sub[1].ID, "completed", time.Minute)
	t0 := time.Now()
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el > 10*time.Second {
		t.Fatalf("shutdown took %s with a 0.5 s grace", el)
	}
	r, _ := q.Get(context.Background(), sub[0].ID)
	if r.State != "available" || r.Attempt != 0 {
		t.Fatalf("after shutdown the running run is %s with %d attempts, want available with 0", r.State, r.Attempt)
	}
}

func TestWakeListenerDeliversInsertNotifications(t *testing.T) {
	spec, _ := ParseSpec(filepath.Join(t.TempDir(), "runs.db"))
	q, err := Open(context.Background(), spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	k := q.kit.(*riverKit[*sql.Tx])
	l := k.driver.GetListener(&riverdriver.GetListenenerParams{})
	if _, ok := l.(*wakeListener); !ok {
		t.Fatalf("the SQLite driver's listener is a %T", l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	if err := l.Listen(ctx, "river_insert"); err != nil {
		t.Fatal(err)
	}
	other, err := Open(context.Background(), spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		// Commits that are not notifications wake the listener first; it
		// must go on waiting, then deliver the insert's notification.
		for i := range 5 {
			other.Submit(ctx, SubmitRequest{Crew: "m:f", Inputs: [][]byte{[]byte(`{}`)}, RiverQueue: "other", ScheduledAt: time.Now().Add(time.Hour), Key: fmt.Sprint(i)})
			time.Sleep(5 * time.Millisecond)
		}
		other.Submit(ctx, SubmitRequest{Crew: "m:f", Inputs: [][]byte{[]byte(`{}`)}, RiverQueue: "wanted"})
	}()
	for {
		n, err := l.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		if strings.Contains(n.Payload, `"wanted"`) {
			return
		}
	}
}

func TestAWorkerThatNeverPollsStillGetsNewRuns(t *testing.T) {
	spec, _ := ParseSpec(filepath.Join(t.TempDir(), "runs.db"))
	startWorker(t, spec, 1, 1, func(c *WorkerConfig) { c.FetchPoll = time.Hour })
	q, err := Open(context.Background(), spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for i := range 3 {
		sub, err := q.Submit(context.Background(), SubmitRequest{Crew: "runq_testcrews:echo", Inputs: [][]byte{[]byte(`{}`)}})
		if err != nil {
			t.Fatal(err)
		}
		// Only the insert notification can start it (the poll is an hour).
		waitState(t, q, sub[0].ID, "completed", time.Minute)
		_ = i
	}
}

// TestWakePollBacksOffWhenIdle checks the wake listener's look interval:
// every WakePoll within WakeIdleAfter of the last change seen, WakeIdlePoll
// after it and before any change.
func TestWakePollBacksOffWhenIdle(t *testing.T) {
	now := time.Unix(1000, 0)
	cases := []struct {
		name string
		last int64
		want time.Duration
	}{
		{"never changed", 0, WakeIdlePoll},
		{"just changed", now.Add(-time.Millisecond).UnixNano(), WakePoll},
		{"changed within the idle time", now.Add(-WakeIdleAfter / 2).UnixNano(), WakePoll},
		{"quiet for the idle time", now.Add(-WakeIdleAfter).UnixNano(), WakeIdlePoll},
		{"quiet for long", now.Add(-time.Hour).UnixNano(), WakeIdlePoll},
	}
	for _, c := range cases {
		if got := pollAfter(c.last, now); got != c.want {
			t.Errorf("%s: pollAfter = %s, want %s", c.name, got, c.want)
		}
	}
}

func TestGenericPlans(t *testing.T) {
	dsn := os.Getenv("CREWCORE_PG_DSN")
	if dsn == "" {
		t.Skip("CREWCORE_PG_DSN is not set (make pg-up prints a DSN)")
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	for _, tc := range []struct{ dsn, want string }{
		{dsn, "force_generic_plan"},
		{dsn + sep + "plan_cache_mode=force_custom_plan", "force_custom_plan"}, // the DSN chooses
	} {
		cfg, err := pgxpool.ParseConfig(tc.dsn)
		if err != nil {
			t.Fatal(err)
		}
		genericPlans(cfg)
		ctx := context.Background()
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = pool.QueryRow(ctx, "SHOW plan_cache_mode").Scan(&got)
		pool.Close()
		if err != nil || got != tc.want {
			t.Errorf("%s: plan_cache_mode = %q, %v; want %q", tc.dsn, got, err, tc.want)
		}
	}
}
