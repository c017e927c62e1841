package main

// Bridge ops of the durable run queue (package runq). Python's
// crewcore.runs.queue drives them. Times are Unix seconds (float), absent
// ones nil; every blocking op waits at most maxRunqWait per call.
//
//	runq_open         0  spec connect_timeout_s                    -> handle
//	runq_close        h                                            -> nil (idempotent)
//	runq_submit       h  crew [inputs_json] river_queue priority attempts timeout_s
//	                     scheduled_at key batch                    -> [batch, [[id, state, duplicate]...]]
//	runq_wait         h  [ids] wait_s                              -> [run...] (final ones)
//	runq_get          h  id                                        -> run
//	runq_list         h  [states] batch river_queue limit          -> [run...] newest first
//	runq_cancel       h  id                                        -> run
//	runq_cancel_batch h  batch                                     -> n
//	runq_retry        h  id                                        -> run
//	runq_stats        h  batch sample failures                     -> map (see appendRunqStats)
//
// A run is a map: id index batch key crew inputs (JSON text) timeout state
// attempt max_attempts priority river_queue created_at scheduled_at
// attempted_at finalized_at attempted_by errors ([[attempt, at, text]...])
// output (JSON text or nil) cancel_requested.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/crewcore/crewcore/runq"
	"github.com/tinylib/msgp/msgp"
)

// maxRunqWait bounds one runq_wait call (the caller loops).
const maxRunqWait = 2 * time.Second

var errRunqHandle = errors.New("run queue handle is not open")

var (
	runqMu   sync.RWMutex
	runqTab  = map[int64]*runq.Queue{}
	runqNext int64
)

func runqOf(h int64) (*runq.Queue, error) {
	runqMu.RLock()
	q := runqTab[h]
	runqMu.RUnlock()
	if q == nil {
		return nil, fmt.Errorf("%w: %d", errRunqHandle, h)
	}
	return q, nil
}

func runqSeconds(what string, v float64) (time.Duration, error) {
	if v != v || v < 0 || v > 1e9 {
		return 0, fmt.Errorf("%w: %s must be a number of seconds >= 0, got %v", runq.ErrInvalid, what, v)
	}
	return time.Duration(v * float64(time.Second)), nil
}

func unixTime(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return msgp.AppendNil(b)
	}
	return msgp.AppendFloat64(b, unixTime(t))
}

func appendRun(b []byte, r runq.Run) []byte {
	b = msgp.AppendMapHeader(b, 21)
	b = msgp.AppendString(b, "id")
	b = msgp.AppendInt64(b, r.ID)
	b = msgp.AppendString(b, "index")
	b = msgp.AppendInt(b, r.Args.Index)
	b = msgp.AppendString(b, "batch")
	b = msgp.AppendString(b, r.Args.Batch)
	b = msgp.AppendString(b, "key")
	b = msgp.AppendString(b, r.Args.Key)
	b = msgp.AppendString(b, "crew")
	b = msgp.AppendString(b, r.Args.Crew)
	b = msgp.AppendString(b, "inputs")
	b = msgp.AppendString(b, string(r.Args.Inputs))
	b = msgp.AppendString(b, "timeout")
	b = msgp.AppendFloat64(b, r.Args.Timeout)
	b = msgp.AppendString(b, "state")
	b = msgp.AppendString(b, r.State)
	b = msgp.AppendString(b, "attempt")
	b = msgp.AppendInt(b, r.Attempt)
	b = msgp.AppendString(b, "max_attempts")
	b = msgp.AppendInt(b, r.MaxAttempts)
	b = msgp.AppendString(b, "priority")
	b = msgp.AppendInt(b, r.Priority)
	b = msgp.AppendString(b, "river_queue")
	b = msgp.AppendString(b, r.RiverQueue)
	b = msgp.AppendString(b, "created_at")
	b = appendTime(b, r.CreatedAt)
	b = msgp.AppendString(b, "scheduled_at")
	b = appendTime(b, r.ScheduledAt)
	b = msgp.AppendString(b, "attempted_at")
	b = appendTime(b, r.AttemptedAt)
	b = msgp.AppendString(b, "finalized_at")
	b = appendTime(b, r.FinalizedAt)
	b = msgp.AppendString(b, "attempted_by")
	b = msgp.AppendArrayHeader(b, uint32(len(r.AttemptedBy)))
	for _, s := range r.AttemptedBy {
		b = msgp.AppendString(b, s)
	}
	b = msgp.AppendString(b, "errors")
	b = msgp.AppendArrayHeader(b, uint32(len(r.Errors)))
	for _, e := range r.Errors {
		b = msgp.AppendArrayHeader(b, 3)
		b = msgp.AppendInt(b, e.Attempt)
		b = appendTime(b, e.At)
		b = msgp.AppendString(b, e.Error)
	}
	b = msgp.AppendString(b, "output")
	if r.Output == nil {
		b = msgp.AppendNil(b)
	} else {
		b = msgp.AppendString(b, string(r.Output))
	}
	b = msgp.AppendString(b, "cancel_requested")
	b = msgp.AppendBool(b, r.CancelRequested)
	b = msgp.AppendString(b, "tags")
	b = msgp.AppendArrayHeader(b, uint32(len(r.Tags)))
	for _, s := range r.Tags {
		b = msgp.AppendString(b, s)
	}
	return b
}

func appendRuns(b []byte, runs []runq.Run) []byte {
	b = msgp.AppendArrayHeader(b, uint32(len(runs)))
	for _, r := range runs {
		b = appendRun(b, r)
	}
	return b
}

func appendRunqStats(b []byte, st runq.Stats) []byte {
	b = msgp.AppendMapHeader(b, 7)
	b = msgp.AppendString(b, "counts")
	b = msgp.AppendMapHeader(b, uint32(len(st.Counts)))
	for k, v := range st.Counts {
		b = msgp.AppendString(b, k)
		b = msgp.AppendInt(b, v)
	}
	b = msgp.AppendString(b, "sample")
	b = msgp.AppendInt(b, st.Sample)
	b = msgp.AppendString(b, "p50")
	b = msgp.AppendFloat64(b, st.P50.Seconds())
	b = msgp.AppendString(b, "p95")
	b = msgp.AppendFloat64(b, st.P95.Seconds())
	b = msgp.AppendString(b, "max")
	b = msgp.AppendFloat64(b, st.Max.Seconds())
	b = msgp.AppendString(b, "throughput")
	b = msgp.AppendFloat64(b, st.Throughput)
	b = msgp.AppendString(b, "failures")
	return appendRuns(b, st.Failures)
}

func runqInts(r *reader, what string) []int64 {
	n, ok := r.arrayLen(what)
	if !ok {
		return nil
	}
	out := make([]int64, 0, n)
	for range n {
		out = append(out, r.int(what))
	}
	return out
}

func init() {
	registerKind(runq.ErrInvalid, "runq_invalid")
	registerKind(runq.ErrNotFound, "runq_not_found")
	registerKind(runq.ErrAccess, "runq_access")
	registerKind(runq.ErrUnavailable, "runq_unavailable")
	registerKind(runq.ErrCorrupt, "runq_corrupt")
	registerKind(runq.ErrRunNotFound, "runq_run_not_found")
	registerKind(runq.ErrClosed, "runq_closed")
	registerKind(errRunqHandle, "runq_closed")

	registerOp("runq_open", func(ctx context.Context, _ int64, r *reader) ([]byte, error) {
		spec := r.str("spec")
		ct := r.float("connect_timeout")
		if r.err != nil {
			return nil, r.err
		}
		s, err := runq.ParseSpec(spec)
		if err != nil {
			return nil, err
		}
		connect, err := runqSeconds("connect_timeout", ct)
		if err != nil {
			return nil, err
		}
		q, err := runq.Open(ctx, s, runq.Options{ConnectTimeout: connect})
		if err != nil {
			return nil, err
		}
		runqMu.Lock()
		runqNext++
		h := runqNext
		runqTab[h] = q
		runqMu.Unlock()
		return msgp.AppendInt64(nil, h), nil
	})

	registerOp("runq_close", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		runqMu.Lock()
		q := runqTab[h]
		delete(runqTab, h)
		runqMu.Unlock()
		if q != nil {
			q.Close()
		}
		return msgp.AppendNil(nil), nil
	})

	registerOp("runq_submit", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		q, err := runqOf(h)
		if err != nil {
			return nil, err
		}
		req := runq.SubmitRequest{Crew: r.str("crew")}
		for _, in := range r.strs("inputs") {
			req.Inputs = append(req.Inputs, []byte(in))
		}
		req.RiverQueue = r.str("river_queue")
		req.Priority = int(min(max(r.int("priority"), -1), 1000))
		req.MaxAttempts = int(min(max(r.int("attempts"), -1), 100_000))
		req.Timeout = r.float("timeout")
		at := r.float("scheduled_at")
		req.Key = r.str("key")
		req.Batch = r.str("batch")
		if r.err != nil {
			return nil, r.err
		}
		if at != 0 {
			if at != at || at < 0 || at > 1e11 {
				return nil, fmt.Errorf("%w: scheduled_at %v is not a Unix time", runq.ErrInvalid, at)
			}
			sec, frac := math.Modf(at)
			req.ScheduledAt = time.Unix(int64(sec), int64(frac*1e9))
		}
		subs, err := q.Submit(ctx, req)
		if err != nil {
			return nil, err
		}
		batch := req.Batch
		if len(subs) > 0 {
			batch = subs[0].Batch
		}
		b := msgp.AppendArrayHeader(nil, 2)
		b = msgp.AppendString(b, batch)
		b = msgp.AppendArrayHeader(b, uint32(len(subs)))
		for _, s := range subs {
			b = msgp.AppendArrayHeader(b, 3)
			b = msgp.AppendInt64(b, s.ID)
			b = msgp.AppendString(b, s.State)
			b = msgp.AppendBool(b, s.Duplicate)
		}
		return b, nil
	})

	registerOp("runq_wait", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		q, err := runqOf(h)
		if err != nil {
			return nil, err
		}
		ids := runqInts(r, "ids")
		w := r.float("wait")
		if r.err != nil {
			return nil, r.err
		}
		wait, err := runqSeconds("wait", w)
		if err != nil {
			return nil, err
		}
		runs, err := q.Wait(ctx, ids, min(wait, maxRunqWait))
		if err != nil {
			return nil, err
		}
		return appendRuns(nil, runs), nil
	})

	registerOp("runq_get", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		q, err := runqOf(h)
		if err != nil {
			return nil, err
		}
		id := r.int("id")
		if r.err != nil {
			return nil, r.err
		}
		run, err := q.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		return appendRun(nil, run), nil
	})

	registerOp("runq_list", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		q, err := runqOf(h)
		if err != nil {
			return nil, err
		}
		req := runq.ListRequest{States: r.strs("states"), Batch: r.str("batch"), RiverQueue: r.str("river_queue")}
		req.Limit = int(min(max(r.int("limit"), -1), 1<<30))
		if r.err != nil {
			return nil, r.err
		}
		runs, err := q.List(ctx, req)
		if err != nil {
			return nil, err
		}
		return appendRuns(nil, runs), nil
	})

	registerOp("runq_cancel", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		q, err := runqOf(h)
		if err != nil {
			return nil, err
		}
		id := r.int("id")
		if r.err != nil {
			return nil, r.err
		}
		run, err := q.Cancel(ctx, id)
		if err != nil {
			return nil, err
		}
		return appendRun(nil, run), nil
	})

	registerOp("runq_cancel_batch", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		q, err := runqOf(h)
		if err != nil {
			return nil, err
		}
		batch := r.str("batch")
		if r.err != nil {
			return nil, r.err
		}
		n, err := q.CancelBatch(ctx, batch)
		if err != nil {
			return nil, err
		}
		return msgp.AppendInt(nil, n), nil
	})

	registerOp("runq_retry", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		q, err := runqOf(h)
		if err != nil {
			return nil, err
		}
		id := r.int("id")
		if r.err != nil {
			return nil, r.err
		}
		run, err := q.Retry(ctx, id)
		if err != nil {
			return nil, err
		}
		return appendRun(nil, run), nil
	})

	registerOp("runq_stats", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		q, err := runqOf(h)
		if err != nil {
			return nil, err
		}
		req := runq.StatsRequest{Batch: r.str("batch")}
		req.Sample = int(min(max(r.int("sample"), -1), 1<<30))
		req.Failures = int(min(max(r.int("failures"), -1), 1<<30))
		if r.err != nil {
			return nil, r.err
		}
		st, err := q.Stats(ctx, req)
		if err != nil {
			return nil, err
		}
		return appendRunqStats(nil, st), nil
	})
}
