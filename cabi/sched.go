package main

// Bridge ops of the run scheduler (package sched). Python's
// crewcore.scheduler drives them; every blocking op waits at most
// maxSchedWait per call (the caller loops), so a worker thread is never
// stuck in Go past a Close, and ctypes has released the GIL meanwhile.
//
//	sched_new      0  total concurrency run_timeout_s deadline_s [adaptive] -> handle
//	sched_acquire  h  wait_s        -> [kind, index, remaining_s]  kind: run|wait|drained|stopped|closed
//	sched_finish   h  index outcome -> [accepted, elapsed_s]      outcome: done|failed|timed_out|cancelled
//	sched_check    h  index         -> reason                     ""|cancelled|timeout|deadline
//	sched_cancel   h                -> bool (this call stopped the batch)
//	sched_expired  h  wait_s        -> [kind, [[index, reason]...]] kind: expired|wait|finished|closed
//	sched_wait     h  wait_s        -> bool (every input is final)
//	sched_summary  h                -> map (see appendSummary)
//	sched_states   h                -> bin, one sched.State byte per input
//	sched_close    h                -> nil (idempotent)

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/crewcore/crewcore/sched"
	"github.com/tinylib/msgp/msgp"
)

// maxSchedWait bounds one blocking scheduler call.
const maxSchedWait = 2 * time.Second

var errSchedHandle = errors.New("scheduler handle is not open")

var (
	schedMu   sync.RWMutex
	schedTab  = map[int64]*sched.Scheduler{}
	schedNext int64
)

func schedOf(h int64) (*sched.Scheduler, error) {
	schedMu.RLock()
	s := schedTab[h]
	schedMu.RUnlock()
	if s == nil {
		return nil, fmt.Errorf("%w: %d", errSchedHandle, h)
	}
	return s, nil
}

// seconds converts a non-negative float of seconds to a Duration.
func seconds(what string, v float64) (time.Duration, error) {
	if v != v || v < 0 || v > 1e9 {
		return 0, fmt.Errorf("%w: %s must be a number of seconds >= 0, got %v", sched.ErrInvalid, what, v)
	}
	return time.Duration(v * float64(time.Second)), nil
}

// waitCtx is a context bounded by the request's wait (capped).
func waitCtx(ctx context.Context, r *reader) (context.Context, context.CancelFunc, error) {
	w, err := seconds("wait", r.float("wait"))
	if r.err != nil {
		return nil, nil, r.err
	}
	if err != nil {
		return nil, nil, err
	}
	c, cancel := context.WithTimeout(ctx, min(w, maxSchedWait))
	return c, cancel, nil
}

func isWaitOver(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

func remaining(dl time.Time) float64 {
	if dl.IsZero() {
		return -1
	}
	return max(0, time.Until(dl).Seconds())
}

func init() {
	registerKind(sched.ErrInvalid, "invalid_argument")
	registerKind(errSchedHandle, "sched_closed")

	registerOp("sched_new", func(ctx context.Context, _ int64, r *reader) ([]byte, error) {
		total := r.int("total")
		conc := r.int("concurrency")
		to := r.float("run_timeout")
		dl := r.float("deadline")
		adaptive := r.bool("adaptive") // optional
		if r.err != nil {
			return nil, r.err
		}
		if total < 0 || total > math.MaxInt32 || conc < 1 || conc > math.MaxInt32 {
			return nil, fmt.Errorf("%w: total %d and concurrency %d must be in [0, 2^31) and [1, 2^31)", sched.ErrInvalid, total, conc)
		}
		runTimeout, err := seconds("timeout", to)
		if err != nil {
			return nil, err
		}
		deadline, err := seconds("deadline", dl)
		if err != nil {
			return nil, err
		}
		s, err := sched.New(sched.Config{Total: int(total), Concurrency: int(conc), RunTimeout: runTimeout, Deadline: deadline, Adaptive: adaptive})
		if err != nil {
			return nil, err
		}
		schedMu.Lock()
		schedNext++
		h := schedNext
		schedTab[h] = s
		schedMu.Unlock()
		return msgp.AppendInt64(nil, h), nil
	})

	registerOp("sched_acquire", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		s, err := schedOf(h)
		if err != nil {
			return nil, err
		}
		wctx, cancel, err := waitCtx(ctx, r)
		if err != nil {
			return nil, err
		}
		defer cancel()
		l, err := s.Acquire(wctx)
		b := msgp.AppendArrayHeader(nil, 3)
		kind := "run"
		switch {
		case err == nil:
		case isWaitOver(err):
			kind = "wait"
		case errors.Is(err, sched.ErrDrained):
			kind = "drained"
		case errors.Is(err, sched.ErrStopped):
			kind = "stopped"
		case errors.Is(err, sched.ErrClosed):
			kind = "closed"
		default:
			return nil, err
		}
		b = msgp.AppendString(b, kind)
		if kind != "run" {
			b = msgp.AppendInt(b, -1)
			return msgp.AppendFloat64(b, -1), nil
		}
		b = msgp.AppendInt(b, l.Index)
		return msgp.AppendFloat64(b, remaining(l.Deadline)), nil
	})

	registerOp("sched_finish", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		s, err := schedOf(h)
		if err != nil {
			return nil, err
		}
		i := r.int("index")
		name := r.str("outcome")
		if r.err != nil {
			return nil, r.err
		}
		st, err := sched.ParseState(name)
		if err != nil {
			return nil, err
		}
		el, err := s.Finish(int(min(i, math.MaxInt32)), st)
		accepted := err == nil
		if err != nil && !errors.Is(err, sched.ErrNotRunning) {
			return nil, err
		}
		b := msgp.AppendArrayHeader(nil, 2)
		b = msgp.AppendBool(b, accepted)
		return msgp.AppendFloat64(b, el.Seconds()), nil
	})

	registerOp("sched_check", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		s, err := schedOf(h)
		if err != nil {
			return nil, err
		}
		i := r.int("index")
		if r.err != nil {
			return nil, r.err
		}
		why, err := s.Check(int(min(i, math.MaxInt32)))
		if err != nil {
			return nil, err
		}
		return msgp.AppendString(nil, why.String()), nil
	})

	registerOp("sched_cancel", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		s, err := schedOf(h)
		if err != nil {
			return nil, err
		}
		return msgp.AppendBool(nil, s.Cancel()), nil
	})

	registerOp("sched_expired", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		s, err := schedOf(h)
		if err != nil {
			return nil, err
		}
		wctx, cancel, err := waitCtx(ctx, r)
		if err != nil {
			return nil, err
		}
		defer cancel()
		ex, err := s.Expired(wctx)
		kind := "expired"
		switch {
		case err == nil:
		case isWaitOver(err):
			kind = "wait"
		case errors.Is(err, sched.ErrAllFinished):
			kind = "finished"
		case errors.Is(err, sched.ErrClosed):
			kind = "closed"
		default:
			return nil, err
		}
		b := msgp.AppendArrayHeader(nil, 2)
		b = msgp.AppendString(b, kind)
		b = msgp.AppendArrayHeader(b, uint32(len(ex)))
		for _, e := range ex {
			b = msgp.AppendArrayHeader(b, 2)
			b = msgp.AppendInt(b, e.Index)
			b = msgp.AppendString(b, e.Reason.String())
		}
		return b, nil
	})

	registerOp("sched_wait", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		s, err := schedOf(h)
		if err != nil {
			return nil, err
		}
		wctx, cancel, err := waitCtx(ctx, r)
		if err != nil {
			return nil, err
		}
		defer cancel()
		err = s.Wait(wctx)
		if err != nil && !isWaitOver(err) && !errors.Is(err, sched.ErrClosed) {
			return nil, err
		}
		return msgp.AppendBool(nil, err == nil), nil
	})

	registerOp("sched_summary", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		s, err := schedOf(h)
		if err != nil {
			return nil, err
		}
		sum := s.Summary()
		b := msgp.AppendMapHeader(nil, 13)
		for _, kv := range []struct {
			k string
			v int
		}{
			{"total", sum.Total}, {"pending", sum.Pending}, {"running", sum.Running},
			{"done", sum.Done}, {"failed", sum.Failed}, {"timed_out", sum.TimedOut},
			{"cancelled", sum.Cancelled}, {"limit", sum.Limit},
		} {
			b = msgp.AppendString(b, kv.k)
			b = msgp.AppendInt(b, kv.v)
		}
		for _, kv := range []struct {
			k string
			v time.Duration
		}{{"p50", sum.P50}, {"p95", sum.P95}, {"max", sum.Max}, {"elapsed", sum.Elapsed}} {
			b = msgp.AppendString(b, kv.k)
			b = msgp.AppendFloat64(b, kv.v.Seconds())
		}
		b = msgp.AppendString(b, "stop")
		return msgp.AppendString(b, sum.Stop.String()), nil
	})

	registerOp("sched_states", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		s, err := schedOf(h)
		if err != nil {
			return nil, err
		}
		st := s.States()
		raw := make([]byte, len(st))
		for i, x := range st {
			raw[i] = byte(x)
		}
		return msgp.AppendBytes(nil, raw), nil
	})

	registerOp("sched_close", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		schedMu.Lock()
		s := schedTab[h]
		delete(schedTab, h)
		schedMu.Unlock()
		if s != nil {
			s.Close()
		}
		return msgp.AppendNil(nil), nil
	})
}
