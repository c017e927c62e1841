package sched

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func mustNew(t *testing.T, cfg Config) *Scheduler {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"negative total", Config{Total: -1, Concurrency: 1}},
		{"zero concurrency", Config{Total: 1, Concurrency: 0}},
		{"negative timeout", Config{Total: 1, Concurrency: 1, RunTimeout: -time.Second}},
		{"negative deadline", Config{Total: 1, Concurrency: 1, Deadline: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); !errors.Is(err, ErrInvalid) {
				t.Fatalf("New(%+v) = %v, want ErrInvalid", tc.cfg, err)
			}
		})
	}
}

// run drives s with workers goroutines; each run calls body(index) and
// finishes with its outcome. It returns the indices in start order.
func run(t *testing.T, s *Scheduler, workers int, body func(i int) State) []int {
	t.Helper()
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				l, err := s.Acquire(ctx)
				cancel()
				if errors.Is(err, context.DeadlineExceeded) {
					continue
				}
				if err != nil {
					return
				}
				mu.Lock()
				order = append(order, l.Index)
				mu.Unlock()
				if _, err := s.Finish(l.Index, body(l.Index)); err != nil {
					t.Errorf("Finish(%d): %v", l.Index, err)
				}
			}
		}()
	}
	wg.Wait()
	return order
}

func TestRunsAllInOrderWithinConcurrency(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		total, conc, workers int
	}{
		{"empty", 0, 4, 4},
		{"one", 1, 1, 1},
		{"more workers than slots", 200, 8, 32},
		{"more slots than workers", 200, 64, 4},
		{"serial", 50, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustNew(t, Config{Total: tc.total, Concurrency: tc.conc})
			var cur, peak atomic.Int64
			order := run(t, s, tc.workers, func(i int) State {
				n := cur.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(time.Millisecond)
				cur.Add(-1)
				return Done
			})
			if len(order) != tc.total {
				t.Fatalf("ran %d inputs, want %d", len(order), tc.total)
			}
			seen := make([]bool, tc.total)
			for _, i := range order {
				if seen[i] {
					t.Fatalf("input %d ran twice", i)
				}
				seen[i] = true
			}
			if p := peak.Load(); p > int64(tc.conc) {
				t.Errorf("peak concurrency %d > %d", p, tc.conc)
			}
			sum := s.Summary()
			if sum.Done != tc.total || sum.Pending+sum.Running+sum.Failed+sum.Cancelled+sum.TimedOut != 0 {
				t.Errorf("summary %+v", sum)
			}
			if tc.total > 0 && (sum.P50 <= 0 || sum.P95 < sum.P50 || sum.Max < sum.P95) {
				t.Errorf("percentiles %v %v %v", sum.P50, sum.P95, sum.Max)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := s.Wait(ctx); err != nil {
				t.Errorf("Wait: %v", err)
			}
		})
	}
}

func TestAcquireIsInIndexOrder(t *testing.T) {
	s := mustNew(t, Config{Total: 5, Concurrency: 5})
	for want := range 5 {
		l, err := s.Acquire(context.Background())
		if err != nil || l.Index != want {
			t.Fatalf("Acquire = %d, %v; want %d", l.Index, err, want)
		}
	}
	if _, err := s.Acquire(context.Background()); !errors.Is(err, ErrDrained) {
		t.Fatalf("Acquire after all leased = %v, want ErrDrained", err)
	}
}

func TestAcquireWaitIsBoundedByContext(t *testing.T) {
	s := mustNew(t, Config{Total: 2, Concurrency: 1})
	if _, err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with all slots taken = %v, want DeadlineExceeded", err)
	}
	// Finishing the first run frees the slot for a waiter.
	got := make(chan Lease, 1)
	go func() {
		l, err := s.Acquire(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	time.Sleep(10 * time.Millisecond)
	if _, err := s.Finish(0, Done); err != nil {
		t.Fatal(err)
	}
	if l := <-got; l.Index != 1 {
		t.Fatalf("waiter got %d, want 1", l.Index)
	}
}

func TestCancel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stop    func(s *Scheduler)
		reason  Reason
		wantErr error
	}{
		{"cancel", func(s *Scheduler) { s.Cancel() }, Cancel, ErrStopped},
		{"close", func(s *Scheduler) { s.Close() }, Cancel, ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustNew(t, Config{Total: 10, Concurrency: 3})
			var leases []Lease
			for range 3 {
				l, err := s.Acquire(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				leases = append(leases, l)
			}
			// A waiter blocked on a full scheduler is woken by the stop.
			waitErr := make(chan error, 1)
			go func() {
				_, err := s.Acquire(context.Background())
				waitErr <- err
			}()
			// A watchdog learns about the running runs.
			expired := make(chan []Expiry, 1)
			go func() {
				e, _ := s.Expired(context.Background())
				expired <- e
			}()
			time.Sleep(10 * time.Millisecond)
			tc.stop(s)
			select {
			case err := <-waitErr:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("blocked Acquire = %v, want %v", err, tc.wantErr)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("blocked Acquire not woken by the stop")
			}
			if tc.name == "cancel" {
				e := <-expired
				if len(e) != 3 {
					t.Fatalf("Expired after cancel = %v, want the 3 running runs", e)
				}
				for _, x := range e {
					if x.Reason != Cancel {
						t.Errorf("expiry %+v, want reason cancel", x)
					}
				}
			}
			for _, l := range leases {
				if r, _ := s.Check(l.Index); r != tc.reason {
					t.Errorf("Check(%d) = %v, want %v", l.Index, r, tc.reason)
				}
				if _, err := s.Finish(l.Index, Cancelled); err != nil {
					t.Errorf("Finish(%d): %v", l.Index, err)
				}
			}
			sum := s.Summary()
			if sum.Cancelled != 10 || sum.Running != 0 || sum.Pending != 0 || sum.Stop != Cancel {
				t.Errorf("summary after cancel: %+v", sum)
			}
			if tc.name == "cancel" && s.Cancel() {
				t.Error("second Cancel reported it stopped the batch")
			}
		})
	}
}

func TestRunTimeoutAndDeadline(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		wantWhy   Reason
		cancelled int // pending inputs cancelled by the deadline
	}{
		{"per-run timeout", Config{Total: 2, Concurrency: 2, RunTimeout: 30 * time.Millisecond}, RunTimeout, 0},
		{"overall deadline", Config{Total: 5, Concurrency: 2, Deadline: 30 * time.Millisecond}, Deadline, 3},
		{"deadline before timeout", Config{Total: 2, Concurrency: 2, RunTimeout: time.Hour, Deadline: 30 * time.Millisecond}, Deadline, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustNew(t, Config(tc.cfg))
			l0, _ := s.Acquire(context.Background())
			l1, _ := s.Acquire(context.Background())
			if l0.Deadline.IsZero() || l1.Deadline.IsZero() {
				t.Fatal("lease without a deadline")
			}
			if r, _ := s.Check(0); r != None {
				t.Fatalf("Check before the deadline = %v", r)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var got []Expiry
			for len(got) < 2 {
				e, err := s.Expired(ctx)
				if err != nil {
					t.Fatalf("Expired: %v (got %v)", err, got)
				}
				got = append(got, e...)
			}
			for _, e := range got {
				if e.Reason != tc.wantWhy {
					t.Errorf("expiry %+v, want %v", e, tc.wantWhy)
				}
			}
			if time.Now().Before(l0.Deadline) {
				t.Error("Expired returned before the deadline")
			}
			if r, _ := s.Check(1); r != tc.wantWhy {
				t.Errorf("Check after deadline = %v, want %v", r, tc.wantWhy)
			}
			// A watchdog reaps run 0; the worker's late Finish is refused.
			if _, err := s.Finish(0, TimedOut); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Finish(0, Done); !errors.Is(err, ErrNotRunning) {
				t.Errorf("late Finish = %v, want ErrNotRunning", err)
			}
			if r, _ := s.Check(0); r == None {
				t.Error("Check of a reaped run says go on")
			}
			s.Finish(1, TimedOut)
			sum := s.Summary()
			if sum.TimedOut != 2 || sum.Cancelled != tc.cancelled {
				t.Errorf("summary %+v", sum)
			}
		})
	}
}

func TestExpiredEndsWhenAllFinished(t *testing.T) {
	s := mustNew(t, Config{Total: 1, Concurrency: 1})
	l, _ := s.Acquire(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Expired(context.Background())
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	s.Finish(l.Index, Failed)
	select {
	case err := <-done:
		if !errors.Is(err, ErrAllFinished) {
			t.Fatalf("Expired = %v, want ErrAllFinished", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Expired not woken when the last run finished")
	}
	if st := s.States(); st[0] != Failed {
		t.Fatalf("state %v", st[0])
	}
}

func TestBadIndexAndOutcome(t *testing.T) {
	s := mustNew(t, Config{Total: 1, Concurrency: 1})
	for _, tc := range []struct {
		name string
		f    func() error
		want error
	}{
		{"finish out of range", func() error { _, err := s.Finish(5, Done); return err }, ErrInvalid},
		{"finish negative", func() error { _, err := s.Finish(-1, Done); return err }, ErrInvalid},
		{"finish pending", func() error { _, err := s.Finish(0, Done); return err }, ErrNotRunning},
		{"bad outcome", func() error { _, err := s.Finish(0, Running); return err }, ErrInvalid},
		{"check out of range", func() error { _, err := s.Check(1); return err }, ErrInvalid},
		{"elapsed out of range", func() error { _, err := s.Elapsed(1); return err }, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.f(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestStateNames(t *testing.T) {
	for st := Pending; st <= Cancelled; st++ {
		got, err := ParseState(st.String())
		if err != nil || got != st {
			t.Errorf("ParseState(%q) = %v, %v", st.String(), got, err)
		}
	}
	if _, err := ParseState("bogus"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseState(bogus) = %v", err)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 95, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 95, 10 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
	} {
		if got := Percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
		}
	}
}

// The adaptive limit against a model of run times (no wall clock: the
// machine's load cannot move the result). A run takes an outside wait plus
// its share of one resource that serves the runs one at a time: with n runs
// at once each takes wait + n*work. When the resource dominates (resource
// bound), piling up runs only makes each slower, so the limit settles low;
// when the outside wait dominates (wait bound), it grows to the maximum.
func TestAdaptiveLimit(t *testing.T) {
	for _, tc := range []struct {
		name              string
		wait, work        time.Duration
		maxLimit          int
		wantLow, wantHigh int
	}{
		{"resource bound", 2 * time.Millisecond, 4 * time.Millisecond, 64, 1, 12},
		{"wait bound", 40 * time.Millisecond, 100 * time.Microsecond, 32, 16, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustNew(t, Config{Total: 300, Concurrency: tc.maxLimit, Adaptive: true})
			if l := s.Limit(); l != adaptiveStart {
				t.Fatalf("initial limit %d, want %d", l, adaptiveStart)
			}
			for range 300 {
				n := s.Limit()
				s.mu.Lock()
				s.adapt(tc.wait + time.Duration(n)*tc.work)
				s.mu.Unlock()
			}
			if l := s.Limit(); l < tc.wantLow || l > tc.wantHigh {
				t.Errorf("final limit %d, want in [%d, %d]", l, tc.wantLow, tc.wantHigh)
			}
		})
	}
}

// Real runs under an adaptive limit: never more at once than the maximum,
// every run done, and the summary reports the limit.
func TestAdaptiveLimitRuns(t *testing.T) {
	const maxLimit = 16
	s := mustNew(t, Config{Total: 200, Concurrency: maxLimit, Adaptive: true})
	var peak, cur atomic.Int64
	run(t, s, maxLimit+4, func(i int) State {
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(time.Millisecond)
		cur.Add(-1)
		return Done
	})
	if p := peak.Load(); p > maxLimit {
		t.Errorf("peak %d above the maximum %d", p, maxLimit)
	}
	if sum := s.Summary(); sum.Done != 200 || sum.Limit != s.Limit() {
		t.Errorf("summary %+v", sum)
	}
}
