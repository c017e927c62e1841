// Package sched is crewcore's run scheduler: a bounded-concurrency queue of
// numbered inputs with per-run and overall deadlines and one cancellation
// state, driven by workers that live outside Go.
//
// A Scheduler knows nothing about what a run does. Workers (Python threads
// or asyncio tasks behind the C ABI, or goroutines in Go programs) loop:
//
//	lease, err := s.Acquire(ctx)   // blocks for a free slot and a pending input
//	... run input lease.Index, calling s.Check(lease.Index) at safe points ...
//	s.Finish(lease.Index, sched.Done)
//
// Inputs are handed out in index order. At most Config.Concurrency runs hold
// a slot at once. Cancel (or the overall deadline) marks every pending input
// Cancelled so that it never starts, and makes Check report a stop reason to
// every running run, which is expected to stop at its next safe point. A
// watchdog calls Expired to learn which running runs passed their deadline or
// were cancelled, so it can interrupt runs that never reach a safe point.
//
// Every blocking method takes a context: callers bound their waits with it
// (the C ABI waits at most about a second per call) and Close wakes them all.
package sched

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// State is the state of one input.
type State uint8

// The states of an input. Pending and Running are transient; the others are
// final.
const (
	// Pending: not started yet.
	Pending State = iota
	// Running: leased to a worker.
	Running
	// Done: finished successfully.
	Done
	// Failed: finished with an error.
	Failed
	// TimedOut: stopped because it passed its per-run or overall deadline.
	TimedOut
	// Cancelled: never started, or stopped by Cancel.
	Cancelled
)

var stateNames = [...]string{"pending", "running", "done", "failed", "timed_out", "cancelled"}

// String returns the state's lower-case name ("timed_out" for TimedOut).
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState returns the State named name (see State.String).
func ParseState(name string) (State, error) {
	for i, n := range stateNames {
		if n == name {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown run state %q", ErrInvalid, name)
}

// Final reports whether s is a final state.
func (s State) Final() bool { return s >= Done && s <= Cancelled }

// Reason says why a run must stop.
type Reason uint8

// Stop reasons, as reported by Check and Expired.
const (
	// None: the run may go on.
	None Reason = iota
	// Cancel: Cancel was called (or the scheduler was closed).
	Cancel
	// RunTimeout: the run passed Config.RunTimeout.
	RunTimeout
	// Deadline: the overall Config.Deadline passed.
	Deadline
)

var reasonNames = [...]string{"", "cancelled", "timeout", "deadline"}

// String returns "" for None, "cancelled", "timeout" or "deadline".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Sentinel errors. Errors returned by a Scheduler wrap one of them.
var (
	// ErrInvalid: a bad Config or argument (negative count, unknown index).
	ErrInvalid = errors.New("sched: invalid argument")
	// ErrDrained: Acquire found no pending input left; the worker should exit.
	ErrDrained = errors.New("sched: no input left to start")
	// ErrStopped: Acquire was refused because the scheduler was cancelled
	// or its overall deadline passed; the worker should exit.
	ErrStopped = errors.New("sched: stopped")
	// ErrNotRunning: Finish named an input that is not running (it was
	// already finished, for example reaped by a watchdog).
	ErrNotRunning = errors.New("sched: input is not running")
	// ErrClosed: the scheduler was closed.
	ErrClosed = errors.New("sched: closed")
	// ErrAllFinished: Expired has nothing left to watch: every input is final.
	ErrAllFinished = errors.New("sched: every input is finished")
)

// Config configures a Scheduler.
type Config struct {
	// Total is the number of inputs, indexed 0..Total-1 (0 is allowed).
	Total int
	// Concurrency is the number of slots, at least 1 (the maximum when
	// Adaptive is set).
	Concurrency int
	// Adaptive lets the scheduler use fewer slots than Concurrency when
	// more runs at once only make each run slower (see Limit). Runs that
	// wait on something outside the process overlap freely; runs that
	// compete for one resource (Python's GIL) are not piled up past the
	// point where throughput stops growing.
	Adaptive bool
	// RunTimeout bounds each run from its Acquire; 0 means no limit.
	RunTimeout time.Duration
	// Deadline bounds the whole batch from New; 0 means no limit. When it
	// passes, pending inputs are cancelled and running runs are told to
	// stop with reason Deadline (they end TimedOut).
	Deadline time.Duration
}

// Lease is a started run.
type Lease struct {
	// Index is the input's index.
	Index int
	// Started is when the run got its slot.
	Started time.Time
	// Deadline is when the run must stop (the earlier of its RunTimeout and
	// the overall deadline); zero means none.
	Deadline time.Time
}

// Expiry names a running run that must stop, as returned by Expired.
type Expiry struct {
	// Index is the input's index.
	Index int
	// Reason says why.
	Reason Reason
}

// Summary counts the inputs by state and gives run-time percentiles.
type Summary struct {
	Total, Pending, Running, Done, Failed, TimedOut, Cancelled int
	// P50, P95 and Max are run times of the runs that finished Done
	// (nearest-rank percentiles); zero when none did.
	P50, P95, Max time.Duration
	// Elapsed is the time since New (until the last input finished, once
	// all have).
	Elapsed time.Duration
	// Stop is the scheduler-wide stop reason (None, Cancel or Deadline).
	Stop Reason
	// Limit is the number of runs allowed at once at the time of the
	// summary (Config.Concurrency unless adaptive).
	Limit int
}

// Scheduler is the queue, slots, deadlines and cancellation state of one
// batch. It is safe for concurrent use.
type Scheduler struct {
	mu       sync.Mutex
	cfg      Config
	start    time.Time
	end      time.Time // when the last input became final
	deadline time.Time // overall; zero: none
	next     int       // next pending index
	running  int
	final    int
	states   []State
	started  []time.Time
	runDL    []time.Time
	elapsed  []time.Duration
	stopped  []Reason // why a running run was told to stop (reported by Expired)
	stop     Reason   // scheduler-wide
	closed   bool
	limit    float64       // slots in use when adaptive
	minRT    time.Duration // shortest successful run
	avgRT    float64       // smoothed successful run time, ns
	wake     chan struct{} // closed and replaced on every change
	timer    *time.Timer
}

// New returns a Scheduler for cfg; its overall deadline starts now.
func New(cfg Config) (*Scheduler, error) {
	switch {
	case cfg.Total < 0:
		return nil, fmt.Errorf("%w: total %d is negative", ErrInvalid, cfg.Total)
	case cfg.Concurrency < 1:
		return nil, fmt.Errorf("%w: concurrency %d must be at least 1", ErrInvalid, cfg.Concurrency)
	case cfg.RunTimeout < 0:
		return nil, fmt.Errorf("%w: run timeout %v is negative", ErrInvalid, cfg.RunTimeout)
	case cfg.Deadline < 0:
		return nil, fmt.Errorf("%w: deadline %v is negative", ErrInvalid, cfg.Deadline)
	}
	s := &Scheduler{
		cfg:     cfg,
		start:   time.Now(),
		states:  make([]State, cfg.Total),
		started: make([]time.Time, cfg.Total),
		runDL:   make([]time.Time, cfg.Total),
		elapsed: make([]time.Duration, cfg.Total),
		stopped: make([]Reason, cfg.Total),
		wake:    make(chan struct{}),
	}
	if cfg.Total == 0 {
		s.end = s.start
	}
	s.limit = float64(cfg.Concurrency)
	if cfg.Adaptive {
		s.limit = float64(min(cfg.Concurrency, adaptiveStart))
	}
	if cfg.Deadline > 0 {
		s.deadline = s.start.Add(cfg.Deadline)
		s.timer = time.AfterFunc(cfg.Deadline, func() { s.halt(Deadline) })
	}
	return s, nil
}

// broadcast wakes every waiter; s.mu must be held.
func (s *Scheduler) broadcast() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// setFinal records a final state for a pending or running input; s.mu held.
func (s *Scheduler) setFinal(i int, st State, now time.Time) {
	if s.states[i] == Running {
		s.running--
		s.elapsed[i] = now.Sub(s.started[i])
	}
	s.states[i] = st
	s.final++
	if s.final == len(s.states) {
		s.end = now
	}
}

// halt stops the whole batch for reason r: pending inputs are cancelled
// (they never start), running runs see r from Check and Expired.
func (s *Scheduler) halt(r Reason) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.haltLocked(r)
}

// pollDeadlineLocked halts the batch if the overall deadline has passed
// (the timer may not have fired yet); s.mu must be held.
func (s *Scheduler) pollDeadlineLocked(now time.Time) {
	if s.stop == None && !s.deadline.IsZero() && !now.Before(s.deadline) {
		s.haltLocked(Deadline)
	}
}

func (s *Scheduler) haltLocked(r Reason) bool {
	if s.stop != None {
		return false
	}
	s.stop = r
	now := time.Now()
	for i := s.next; i < len(s.states); i++ {
		s.setFinal(i, Cancelled, now)
	}
	s.next = len(s.states)
	s.broadcast()
	return true
}

// Cancel stops the batch: pending inputs never start and running runs are
// told to stop. It reports whether this call stopped it (false if it was
// already stopped).
func (s *Scheduler) Cancel() bool { return s.halt(Cancel) }

// Acquire waits for a free slot and a pending input and leases it. It
// returns ErrDrained when no input is left, ErrStopped after Cancel or the
// overall deadline, ErrClosed after Close, or ctx's error when ctx ends
// first (the caller may simply call again).
func (s *Scheduler) Acquire(ctx context.Context) (Lease, error) {
	for {
		s.mu.Lock()
		s.pollDeadlineLocked(time.Now())
		switch {
		case s.closed:
			s.mu.Unlock()
			return Lease{}, ErrClosed
		case s.stop != None:
			r := s.stop
			s.mu.Unlock()
			return Lease{}, fmt.Errorf("%w (%s)", ErrStopped, r)
		case s.next >= len(s.states):
			s.mu.Unlock()
			return Lease{}, ErrDrained
		case s.running < s.slots():
			i := s.next
			s.next++
			s.running++
			now := time.Now()
			s.states[i] = Running
			s.started[i] = now
			dl := time.Time{}
			if s.cfg.RunTimeout > 0 {
				dl = now.Add(s.cfg.RunTimeout)
			}
			if !s.deadline.IsZero() && (dl.IsZero() || s.deadline.Before(dl)) {
				dl = s.deadline
			}
			s.runDL[i] = dl
			s.broadcast() // Expired re-plans its timer
			s.mu.Unlock()
			return Lease{Index: i, Started: now, Deadline: dl}, nil
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return Lease{}, ctx.Err()
		}
	}
}

func (s *Scheduler) checkIndex(i int) error {
	if i < 0 || i >= len(s.states) {
		return fmt.Errorf("%w: input index %d out of range [0, %d)", ErrInvalid, i, len(s.states))
	}
	return nil
}

// Finish records the outcome of running input i (Done, Failed, TimedOut or
// Cancelled) and frees its slot. It returns the run's time, or ErrNotRunning
// when i is not running (already finished: the outcome is ignored).
func (s *Scheduler) Finish(i int, outcome State) (time.Duration, error) {
	if outcome < Done || outcome > Cancelled {
		return 0, fmt.Errorf("%w: %s is not an outcome", ErrInvalid, outcome)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkIndex(i); err != nil {
		return 0, err
	}
	if s.states[i] != Running {
		return s.elapsed[i], fmt.Errorf("%w: input %d is %s", ErrNotRunning, i, s.states[i])
	}
	s.setFinal(i, outcome, time.Now())
	if outcome == Done {
		s.adapt(s.elapsed[i])
	}
	s.broadcast()
	return s.elapsed[i], nil
}

// adaptiveStart is the number of slots an adaptive scheduler starts with.
const adaptiveStart = 4

// Tolerance of the adaptive limit: runs may take up to this many times the
// shortest run before the limit shrinks.
const adaptiveTolerance = 2.0

// slots is the number of runs allowed at once; s.mu held.
func (s *Scheduler) slots() int {
	if !s.cfg.Adaptive {
		return s.cfg.Concurrency
	}
	return max(1, min(s.cfg.Concurrency, int(s.limit)))
}

// adapt updates the adaptive limit with one successful run time (a gradient
// limiter in the manner of TCP Vegas: the limit grows by its square root
// while runs take at most adaptiveTolerance times the shortest run, and
// shrinks in proportion when they take longer); s.mu held.
func (s *Scheduler) adapt(rt time.Duration) {
	if !s.cfg.Adaptive || rt <= 0 {
		return
	}
	if s.minRT == 0 || rt < s.minRT {
		s.minRT = rt
	}
	if s.avgRT == 0 {
		s.avgRT = float64(rt)
	} else {
		s.avgRT = 0.8*s.avgRT + 0.2*float64(rt)
	}
	grad := max(0.5, min(1.0, adaptiveTolerance*float64(s.minRT)/s.avgRT))
	next := s.limit*grad + math.Sqrt(s.limit)
	s.limit = max(1, min(float64(s.cfg.Concurrency), 0.8*s.limit+0.2*next))
}

// Limit returns the number of runs allowed at once now: Config.Concurrency,
// or the adaptive limit.
func (s *Scheduler) Limit() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slots()
}

// reasonLocked is why running input i must stop now (None: it may go on).
func (s *Scheduler) reasonLocked(i int, now time.Time) Reason {
	s.pollDeadlineLocked(now)
	if s.stop != None {
		return s.stop
	}
	if dl := s.runDL[i]; !dl.IsZero() && !now.Before(dl) {
		if !s.deadline.IsZero() && !now.Before(s.deadline) {
			return Deadline
		}
		return RunTimeout
	}
	return None
}

// Check tells running input i whether to stop and why. A run that is no
// longer running (reaped) gets the reason it was stopped for, or Cancel.
func (s *Scheduler) Check(i int) (Reason, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkIndex(i); err != nil {
		return None, err
	}
	switch s.states[i] {
	case Running:
		return s.reasonLocked(i, time.Now()), nil
	case Pending:
		return s.stop, nil
	case TimedOut:
		if s.stopped[i] != None {
			return s.stopped[i], nil
		}
		return RunTimeout, nil
	default:
		return Cancel, nil
	}
}

// Expired waits until some running run must stop (past its deadline, or
// the batch was stopped) and returns those it has not returned before, each
// once. It returns ErrAllFinished once every input is final (or when none
// is left to watch after a stop), ErrClosed after Close, or ctx's error.
func (s *Scheduler) Expired(ctx context.Context) ([]Expiry, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		if s.final == len(s.states) {
			s.mu.Unlock()
			return nil, ErrAllFinished
		}
		now := time.Now()
		var out []Expiry
		var nextDL time.Time
		for i := range s.states {
			if s.states[i] != Running || s.stopped[i] != None {
				continue
			}
			if r := s.reasonLocked(i, now); r != None {
				s.stopped[i] = r
				out = append(out, Expiry{Index: i, Reason: r})
			} else if dl := s.runDL[i]; !dl.IsZero() && (nextDL.IsZero() || dl.Before(nextDL)) {
				nextDL = dl
			}
		}
		wake := s.wake
		s.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		var t *time.Timer
		var tc <-chan time.Time
		if !nextDL.IsZero() {
			t = time.NewTimer(time.Until(nextDL))
			tc = t.C
		}
		var err error
		select {
		case <-wake:
		case <-tc:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if t != nil {
			t.Stop()
		}
		if err != nil {
			return nil, err
		}
	}
}

// Wait blocks until every input is final; it returns ctx's error if ctx
// ends first, ErrClosed after Close.
func (s *Scheduler) Wait(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.final == len(s.states) {
			s.mu.Unlock()
			return nil
		}
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// States returns a copy of every input's state, by index.
func (s *Scheduler) States() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.states)
}

// Elapsed returns the run time of input i (zero if it never ran).
func (s *Scheduler) Elapsed(i int) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkIndex(i); err != nil {
		return 0, err
	}
	if s.states[i] == Running {
		return time.Since(s.started[i]), nil
	}
	return s.elapsed[i], nil
}

// Summary counts inputs by state and computes run-time percentiles.
func (s *Scheduler) Summary() Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pollDeadlineLocked(time.Now())
	sum := Summary{Total: len(s.states), Stop: s.stop, Limit: s.slots()}
	var times []time.Duration
	for i, st := range s.states {
		switch st {
		case Pending:
			sum.Pending++
		case Running:
			sum.Running++
		case Done:
			sum.Done++
			times = append(times, s.elapsed[i])
		case Failed:
			sum.Failed++
		case TimedOut:
			sum.TimedOut++
		case Cancelled:
			sum.Cancelled++
		}
	}
	if len(times) > 0 {
		slices.Sort(times)
		sum.P50 = Percentile(times, 50)
		sum.P95 = Percentile(times, 95)
		sum.Max = times[len(times)-1]
	}
	if s.end.IsZero() {
		sum.Elapsed = time.Since(s.start)
	} else {
		sum.Elapsed = s.end.Sub(s.start)
	}
	return sum
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100 + 0.999999999)
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// Close stops the batch (as Cancel) and wakes every waiter with ErrClosed.
// Runs still leased may still Finish. Close is idempotent.
func (s *Scheduler) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.haltLocked(Cancel)
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.broadcast()
}
