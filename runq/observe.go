package runq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Run is one run job as the queue holds it.
type Run struct {
	ID          int64
	Args        RunArgs
	State       string
	Attempt     int
	MaxAttempts int
	Priority    int
	RiverQueue  string
	Tags        []string
	CreatedAt   time.Time
	ScheduledAt time.Time
	AttemptedAt time.Time // zero if never attempted
	FinalizedAt time.Time // zero until final
	AttemptedBy []string
	// Errors are the failed attempts (River's attempt errors), oldest first.
	Errors []rivertype.AttemptError
	// Output is the result envelope the worker recorded (JSON; nil if none).
	Output json.RawMessage
	// CancelRequested is set once a cancel of the running job was asked.
	CancelRequested bool
}

// Final reports whether the run is completed, cancelled or discarded.
func (r *Run) Final() bool { return IsFinal(r.State) }

// RunTime is the last attempt's run time (final runs only).
func (r *Run) RunTime() time.Duration {
	if r.AttemptedAt.IsZero() || r.FinalizedAt.IsZero() {
		return 0
	}
	return r.FinalizedAt.Sub(r.AttemptedAt)
}

func runOf(j *rivertype.JobRow) Run {
	r := Run{
		ID: j.ID, State: string(j.State), Attempt: j.Attempt, MaxAttempts: j.MaxAttempts,
		Priority: j.Priority, RiverQueue: j.Queue, Tags: j.Tags, CreatedAt: j.CreatedAt,
		ScheduledAt: j.ScheduledAt, AttemptedBy: j.AttemptedBy, Errors: j.Errors,
	}
	if j.AttemptedAt != nil {
		r.AttemptedAt = *j.AttemptedAt
	}
	if j.FinalizedAt != nil {
		r.FinalizedAt = *j.FinalizedAt
	}
	// Args written by Submit always decode; a job of another kind would
	// not be listed (every query filters on Kind).
	_ = json.Unmarshal(j.EncodedArgs, &r.Args)
	var md struct {
		Output            json.RawMessage `json:"output"`
		CancelAttemptedAt *time.Time      `json:"cancel_attempted_at"`
	}
	if json.Unmarshal(j.Metadata, &md) == nil {
		if len(md.Output) > 0 && string(md.Output) != "null" {
			r.Output = md.Output
		}
		r.CancelRequested = md.CancelAttemptedAt != nil
	}
	return r
}

// Get returns the run with that id.
func (q *Queue) Get(ctx context.Context, id int64) (Run, error) {
	if err := q.live(); err != nil {
		return Run{}, err
	}
	j, err := q.kit.get(ctx, id)
	if err != nil {
		if errors.Is(err, rivertype.ErrNotFound) {
			return Run{}, fmt.Errorf("%w: no run %d in %s", ErrRunNotFound, id, q.spec)
		}
		return Run{}, fmt.Errorf("runq: get run %d from %s: %w", id, q.spec, classify(q.spec, err))
	}
	if j.Kind != Kind {
		return Run{}, fmt.Errorf("%w: job %d in %s is not a crew run (kind %q)", ErrRunNotFound, id, q.spec, j.Kind)
	}
	return runOf(j), nil
}

// ListRequest filters List.
type ListRequest struct {
	States     []string // River states; empty: all
	Batch      string   // only this batch
	RiverQueue string   // only this River queue
	Limit      int      // newest first; default 100, at most 10,000
}

// List returns runs, newest first.
func (q *Queue) List(ctx context.Context, req ListRequest) ([]Run, error) {
	if err := q.live(); err != nil {
		return nil, err
	}
	if req.Limit <= 0 {
		req.Limit = 100
	}
	if req.Limit > 10_000 {
		return nil, fmt.Errorf("%w: limit %d (at most 10000)", ErrInvalid, req.Limit)
	}
	p := river.NewJobListParams().Kinds(Kind).OrderBy(river.JobListOrderByID, river.SortOrderDesc).First(req.Limit)
	if len(req.States) > 0 {
		st, err := states(req.States)
		if err != nil {
			return nil, err
		}
		p = p.States(st...)
	}
	if req.Batch != "" {
		p = p.TagsAll(req.Batch)
	}
	if req.RiverQueue != "" {
		p = p.Queues(req.RiverQueue)
	}
	res, err := q.kit.list(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("runq: list runs of %s: %w", q.spec, classify(q.spec, err))
	}
	out := make([]Run, len(res.Jobs))
	for i, j := range res.Jobs {
		out[i] = runOf(j)
	}
	return out, nil
}

var allStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStateCancelled, rivertype.JobStateCompleted,
	rivertype.JobStateDiscarded, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

func states(names []string) ([]rivertype.JobState, error) {
	out := make([]rivertype.JobState, 0, len(names))
	for _, n := range names {
		if !slices.Contains(allStates, rivertype.JobState(n)) {
			return nil, fmt.Errorf("%w: state %q is not one of River's (available, cancelled, completed, discarded, pending, retryable, running, scheduled)", ErrInvalid, n)
		}
		out = append(out, rivertype.JobState(n))
	}
	return out, nil
}

// Finished returns the final runs among ids (any order).
func (q *Queue) Finished(ctx context.Context, ids []int64) ([]Run, error) {
	if err := q.live(); err != nil {
		return nil, err
	}
	var out []Run
	for start := 0; start < len(ids); start += 1000 {
		chunk := ids[start:min(start+1000, len(ids))]
		p := river.NewJobListParams().Kinds(Kind).IDs(chunk...).States(finalStates...).First(len(chunk))
		res, err := q.kit.list(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("runq: read runs of %s: %w", q.spec, classify(q.spec, err))
		}
		for _, j := range res.Jobs {
			out = append(out, runOf(j))
		}
	}
	return out, nil
}

// WaitPoll is how often Wait looks for results on SQLite when it cannot
// watch the queue's -wal file, where a look that finds no commit by another
// connection since the last one costs a pragma.
const WaitPoll = time.Millisecond

// WaitNotifiedPoll is how often Wait looks on SQLite while it watches the
// -wal file (Linux): a commit wakes it at once, this timer only covers what
// the watch cannot see.
const WaitNotifiedPoll = 50 * time.Millisecond

// coalesce is how long Wait on SQLite lets commits gather after the first
// wakes it, by the number of runs awaited: nothing for a few (a single run's
// result is seen at once), 20 us more per run, at most 25 ms. A look reads
// every awaited id, and each run commits several times (fetched, running,
// finished), so waiting for 1,500 runs looked after every commit of every
// worker.
func coalesce(ids int) time.Duration {
	if ids <= 4 {
		return 0
	}
	return min(time.Duration(ids)*20*time.Microsecond, 25*time.Millisecond)
}

// pgPoll is Wait's interval on PostgreSQL, where every look is a query over
// the ids: 2 ms for one run, 100 us more per awaited run, at most 250 ms.
// A look costs the server about 1.5 us per id, so waiting on a big batch
// costs about 1.5% of a core whatever its size (at 20 us per id a 1,000-run
// batch cost the server and the submitter ~3 ms of CPU per run, on the
// machine the crews need); a result is seen at most one interval late
// (100 ms when 1,000 runs are awaited, 2.1 ms for one).
func pgPoll(ids int) time.Duration {
	return min(2*time.Millisecond+time.Duration(ids)*100*time.Microsecond, 250*time.Millisecond)
}

// firstLook is how long a Wait waits before its first look: what is left
// of interval (pgPoll on PostgreSQL, coalesce on SQLite) since the previous
// look of this Queue at last (unix nanoseconds; 0: never), so that calling
// Wait again right after it returned (as wait_all does after every run that
// ends) does not read every awaited id again at once.
func firstLook(last int64, now time.Time, interval time.Duration) time.Duration {
	if last == 0 {
		return 0
	}
	return max(0, interval-now.Sub(time.Unix(0, last)))
}

// Wait returns the final runs among ids, waiting up to maxWait for at
// least one (an empty result when none finished in time). On SQLite it
// sleeps until the queue's -wal file is written (inotify, on Linux) and
// reads the runs only when another connection committed.
func (q *Queue) Wait(ctx context.Context, ids []int64, maxWait time.Duration) ([]Run, error) {
	deadline := time.Now().Add(maxWait)
	var wal *walNotifier
	if !q.spec.IsPostgres() {
		// Made before the first look: a commit after it wakes the wait.
		if wal = newWALNotifier(q.spec.Path); wal != nil {
			defer wal.close()
		}
	}
	seen, looked := int64(0), false
	var settleUntil time.Time // see WALSettle
	interval := coalesce(len(ids))
	if q.spec.IsPostgres() {
		interval = pgPoll(len(ids))
	}
	if d := firstLook(q.lastLook.Load(), time.Now(), interval); d > 0 {
		if err := sleep(ctx, min(d, time.Until(deadline))); err != nil {
			return nil, err
		}
	}
	for {
		v, ok, err := q.kit.dataVersion(ctx)
		if err != nil {
			return nil, fmt.Errorf("runq: wait on %s: %w", q.spec, classify(q.spec, err))
		}
		if !ok || !looked || v != seen {
			seen, looked, settleUntil = v, true, time.Time{}
			q.lastLook.Store(time.Now().UnixNano())
			done, err := q.Finished(ctx, ids)
			if err != nil || len(done) > 0 {
				return done, err
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		switch {
		case !ok:
			err = sleep(ctx, min(pgPoll(len(ids)), left))
		case wal != nil && time.Now().Before(settleUntil):
			// Woken by a write whose commit was not visible yet.
			err = sleep(ctx, min(WALSettlePoll, left))
		case wal != nil:
			if wal.wait(ctx, min(WaitNotifiedPoll, left)) {
				settleUntil = time.Now().Add(WALSettle)
				if gather := coalesce(len(ids)); gather > 0 {
					// Woken by a commit: when many runs are awaited, let
					// a few more commits land before the look, which
					// reads every awaited id (each run commits several
					// times).
					err = sleep(ctx, min(gather, time.Until(deadline)))
				}
			}
			if err == nil {
				err = ctx.Err()
			}
		default:
			err = sleep(ctx, min(WaitPoll, left))
		}
		if err != nil {
			return nil, err
		}
	}
}

// sleep waits d or until ctx ends (its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Cancel cancels one run: a run not started yet never starts; a running
// one is told to stop (its worker stops the crew at its next LLM or tool
// call); a final run is left as it is. Returns the run after the call.
func (q *Queue) Cancel(ctx context.Context, id int64) (Run, error) {
	if _, err := q.Get(ctx, id); err != nil {
		return Run{}, err
	}
	j, err := q.kit.cancel(ctx, id)
	if err != nil {
		if errors.Is(err, rivertype.ErrNotFound) {
			return Run{}, fmt.Errorf("%w: no run %d in %s", ErrRunNotFound, id, q.spec)
		}
		return Run{}, fmt.Errorf("runq: cancel run %d in %s: %w", id, q.spec, classify(q.spec, err))
	}
	return runOf(j), nil
}

// CancelBatch cancels every run of a batch that is not final yet and
// returns how many it cancelled or told to stop.
func (q *Queue) CancelBatch(ctx context.Context, batch string) (int, error) {
	if err := q.live(); err != nil {
		return 0, err
	}
	if !batchRE.MatchString(batch) {
		return 0, fmt.Errorf("%w: batch id %q", ErrInvalid, batch)
	}
	n := 0
	open := []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
		rivertype.JobStateRunning, rivertype.JobStateScheduled,
	}
	p := river.NewJobListParams().Kinds(Kind).TagsAll(batch).States(open...).
		OrderBy(river.JobListOrderByID, river.SortOrderAsc).First(1000)
	for {
		res, err := q.kit.list(ctx, p)
		if err != nil {
			return n, fmt.Errorf("runq: cancel batch %s in %s: %w", batch, q.spec, classify(q.spec, err))
		}
		for _, j := range res.Jobs {
			if _, err := q.kit.cancel(ctx, j.ID); err != nil && !errors.Is(err, rivertype.ErrNotFound) {
				return n, fmt.Errorf("runq: cancel run %d of batch %s: %w", j.ID, batch, classify(q.spec, err))
			}
			n++
		}
		if len(res.Jobs) < 1000 {
			return n, nil
		}
		p = p.After(res.LastCursor)
	}
}

// Retry makes a final (or retryable, or scheduled) run available again at
// once, with its attempts counted from where they are (River's JobRetry).
func (q *Queue) Retry(ctx context.Context, id int64) (Run, error) {
	if _, err := q.Get(ctx, id); err != nil {
		return Run{}, err
	}
	j, err := q.kit.retry(ctx, id)
	if err != nil {
		return Run{}, fmt.Errorf("runq: retry run %d in %s: %w", id, q.spec, classify(q.spec, err))
	}
	return runOf(j), nil
}

// Stats summarizes a queue or one batch.
type Stats struct {
	// Counts per River state (every state present, zero or not).
	Counts map[string]int
	// Sample is the number of completed runs the figures below use (the
	// newest, up to the request's Sample).
	Sample int
	// P50, P95 and Max are run times of those runs (attempt to completion).
	P50, P95, Max time.Duration
	// Throughput is completed runs per second over the sample's span (from
	// its first attempt to its last completion).
	Throughput float64
	// Failures are the newest runs with an error (discarded, cancelled
	// with an error, or retryable), newest first.
	Failures []Run
}

// StatsRequest scopes Stats.
type StatsRequest struct {
	Batch    string // one batch (default: the whole queue)
	Sample   int    // completed runs to measure (default 1000)
	Failures int    // failures to return (default 10)
}

// Stats counts runs per state and measures the newest completed ones.
func (q *Queue) Stats(ctx context.Context, req StatsRequest) (Stats, error) {
	if err := q.live(); err != nil {
		return Stats{}, err
	}
	if req.Sample <= 0 {
		req.Sample = 1000
	}
	req.Sample = min(req.Sample, 10_000)
	if req.Failures <= 0 {
		req.Failures = 10
	}
	req.Failures = min(req.Failures, 1000)
	wrap := func(err error) error { return fmt.Errorf("runq: stats of %s: %w", q.spec, classify(q.spec, err)) }
	st := Stats{Counts: map[string]int{}}
	for _, s := range allStates {
		st.Counts[string(s)] = 0
	}
	if req.Batch == "" {
		c, err := q.kit.counts(ctx)
		if err != nil {
			return st, wrap(err)
		}
		for s, n := range c {
			st.Counts[string(s)] += n
		}
	} else {
		p := river.NewJobListParams().Kinds(Kind).TagsAll(req.Batch).States(allStates...).
			OrderBy(river.JobListOrderByID, river.SortOrderAsc).First(10_000)
		for {
			res, err := q.kit.list(ctx, p)
			if err != nil {
				return st, wrap(err)
			}
			for _, j := range res.Jobs {
				st.Counts[string(j.State)]++
			}
			if len(res.Jobs) < 10_000 {
				break
			}
			p = p.After(res.LastCursor)
		}
	}
	p := river.NewJobListParams().Kinds(Kind).States(rivertype.JobStateCompleted).
		OrderBy(river.JobListOrderByFinalizedAt, river.SortOrderDesc).First(req.Sample)
	if req.Batch != "" {
		p = p.TagsAll(req.Batch)
	}
	res, err := q.kit.list(ctx, p)
	if err != nil {
		return st, wrap(err)
	}
	var times []time.Duration
	var from, to time.Time
	for _, j := range res.Jobs {
		r := runOf(j)
		times = append(times, r.RunTime())
		if from.IsZero() || r.AttemptedAt.Before(from) {
			from = r.AttemptedAt
		}
		if r.FinalizedAt.After(to) {
			to = r.FinalizedAt
		}
	}
	st.Sample = len(times)
	if len(times) > 0 {
		sort.Slice(times, func(a, b int) bool { return times[a] < times[b] })
		st.P50 = times[rank(len(times), 0.50)]
		st.P95 = times[rank(len(times), 0.95)]
		st.Max = times[len(times)-1]
		if span := to.Sub(from); span > 0 {
			st.Throughput = float64(len(times)) / span.Seconds()
		}
	}
	fp := river.NewJobListParams().Kinds(Kind).
		States(rivertype.JobStateDiscarded, rivertype.JobStateCancelled, rivertype.JobStateRetryable).
		OrderBy(river.JobListOrderByID, river.SortOrderDesc).First(req.Failures * 4)
	if req.Batch != "" {
		fp = fp.TagsAll(req.Batch)
	}
	fres, err := q.kit.list(ctx, fp)
	if err != nil {
		return st, wrap(err)
	}
	for _, j := range fres.Jobs {
		if len(j.Errors) == 0 {
			continue // cancelled before it ran: not a failure
		}
		st.Failures = append(st.Failures, runOf(j))
		if len(st.Failures) == req.Failures {
			break
		}
	}
	return st, nil
}

// rank is the nearest-rank index of quantile p in n sorted values.
func rank(n int, p float64) int {
	i := int(float64(n)*p+0.999999) - 1
	return max(0, min(n-1, i))
}
