package runq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// PeriodicSpec is a crew River enqueues on a schedule (River's periodic
// jobs: only the elected leader among the workers of a queue enqueues, so
// any number of workers may carry the same list).
type PeriodicSpec struct {
	// ID names the schedule (unique among a worker's periodic crews).
	ID string `json:"id"`
	// Crew is the factory, "package.module:attr".
	Crew string `json:"crew"`
	// Every is the interval in seconds (>= 1).
	Every float64 `json:"every"`
	// Inputs is the JSON object each run gets (default {}).
	Inputs json.RawMessage `json:"inputs,omitempty"`
	// RunOnStart enqueues a run as soon as a leader starts.
	RunOnStart bool `json:"run_on_start,omitempty"`
	// Priority, MaxAttempts and Timeout as in SubmitRequest.
	Priority    int     `json:"priority,omitempty"`
	MaxAttempts int     `json:"attempts,omitempty"`
	Timeout     float64 `json:"timeout,omitempty"`
}

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// Spec is the queue.
	Spec Spec
	// RiverQueue is the River queue worked (default DefaultRiverQueue).
	RiverQueue string
	// Supervisor configures the Python processes (Processes, Concurrency,
	// Python, CrewPath, StopGrace).
	Supervisor SupervisorConfig
	// RunTimeout is the time limit of a run that names none (default 10 min).
	RunTimeout time.Duration
	// RescueAfter is how long a run may stay "running" before River's
	// rescuer takes its worker for dead and retries it elsewhere. Default:
	// RunTimeout plus the stop wait plus 30 s; it must exceed RunTimeout.
	RescueAfter time.Duration
	// ShutdownGrace is how long a stopping worker lets running crews finish
	// before it stops them and returns their jobs to the queue (default 30 s).
	ShutdownGrace time.Duration
	// FetchPoll is how often River looks for new jobs when no notification
	// arrives (default 1 s: a fallback, inserts notify on both databases,
	// see WakePoll; on SQLite a 20 ms poll cost an idle worker 3% of a
	// core).
	FetchPoll time.Duration
	// Keep is how long completed and cancelled runs (with their results)
	// stay in the queue before River's cleaner deletes them (default 24 h,
	// River's; discarded runs stay 7 days). Only the leader cleans.
	Keep time.Duration
	// Periodic crews this worker's River client schedules when it leads.
	Periodic []PeriodicSpec
	// Logger receives River's log lines (default: warnings to stderr).
	Logger *slog.Logger
	// Log receives the worker's own lines (default os.Stderr).
	Log io.Writer
}

// Worker works the runs of one queue: a River client whose job workers hand
// each run to a Supervisor of Python processes.
type Worker struct {
	cfg WorkerConfig
	q   *Queue
	sup *Supervisor
	cl  runner

	stopping atomic.Bool
	hard     atomic.Bool
	stopOnce sync.Once
	stopped  chan struct{}

	// Counters of this worker's runs.
	Done, Failed, Requeued atomic.Int64
}

// NewWorker checks cfg and opens the queue; Run starts working.
func NewWorker(ctx context.Context, cfg WorkerConfig) (*Worker, error) {
	if cfg.RiverQueue == "" {
		cfg.RiverQueue = DefaultRiverQueue
	}
	if !queueRE.MatchString(cfg.RiverQueue) {
		return nil, fmt.Errorf("%w: River queue name %q", ErrInvalid, cfg.RiverQueue)
	}
	if cfg.RunTimeout <= 0 {
		cfg.RunTimeout = 10 * time.Minute
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.Supervisor.Stderr == nil {
		cfg.Supervisor.Stderr = cfg.Log
	}
	sup, err := NewSupervisor(cfg.Supervisor)
	if err != nil {
		return nil, err
	}
	jobTimeout := cfg.RunTimeout + sup.StopWait() + time.Second
	if cfg.RescueAfter <= 0 {
		cfg.RescueAfter = jobTimeout + 25*time.Second
	}
	if cfg.RescueAfter < jobTimeout {
		return nil, fmt.Errorf("%w: rescue-after %s must be at least the run timeout %s plus %s to stop a run",
			ErrInvalid, cfg.RescueAfter, cfg.RunTimeout, jobTimeout-cfg.RunTimeout)
	}
	if cfg.FetchPoll <= 0 {
		cfg.FetchPoll = time.Second
	}
	periodic, err := periodicJobs(cfg.Periodic, cfg.RiverQueue)
	if err != nil {
		return nil, err
	}
	slots := cfg.Supervisor.Processes * cfg.Supervisor.Concurrency
	q, err := Open(ctx, cfg.Spec, Options{MaxConns: int32(min(slots/4+6, 32)), Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, q: q, sup: sup, stopped: make(chan struct{})}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &runWorker{w: w}); err != nil {
		q.Close()
		return nil, fmt.Errorf("runq: register worker: %w", err)
	}
	cl, err := q.kit.newRunner(&river.Config{
		Queues:                      map[string]river.QueueConfig{cfg.RiverQueue: {MaxWorkers: slots}},
		Workers:                     workers,
		FetchCooldown:               time.Millisecond,
		FetchPollInterval:           cfg.FetchPoll,
		JobTimeout:                  jobTimeout,
		RescueStuckJobsAfter:        cfg.RescueAfter,
		SoftStopTimeout:             cfg.ShutdownGrace,
		PeriodicJobs:                periodic,
		CompletedJobRetentionPeriod: cfg.Keep,
		CancelledJobRetentionPeriod: cfg.Keep,
		MaxAttempts:                 DefaultMaxAttempts,
		Logger:                      cfg.Logger,
	})
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("runq: River client for %s: %w", cfg.Spec, err)
	}
	w.cl = cl
	return w, nil
}

func periodicJobs(specs []PeriodicSpec, riverQueue string) ([]*river.PeriodicJob, error) {
	var out []*river.PeriodicJob
	seen := map[string]bool{}
	for _, p := range specs {
		if p.ID == "" || !batchRE.MatchString("p-"+p.ID) {
			return nil, fmt.Errorf("%w: periodic crew id %q must be 1-96 letters, digits, '_' or '-'", ErrInvalid, p.ID)
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("%w: periodic crew id %q given twice", ErrInvalid, p.ID)
		}
		seen[p.ID] = true
		if err := CheckCrew(p.Crew); err != nil {
			return nil, err
		}
		if !(p.Every >= 1) {
			return nil, fmt.Errorf("%w: periodic crew %q: every %v must be at least 1 second", ErrInvalid, p.ID, p.Every)
		}
		inputs := []byte("{}")
		if len(p.Inputs) > 0 {
			inputs = p.Inputs
		}
		req := SubmitRequest{Crew: p.Crew, Inputs: [][]byte{inputs}, RiverQueue: riverQueue, Priority: p.Priority,
			MaxAttempts: p.MaxAttempts, Timeout: p.Timeout, Batch: "p-" + p.ID}
		if err := req.check(); err != nil {
			return nil, fmt.Errorf("periodic crew %q: %w", p.ID, err)
		}
		args := RunArgs{Crew: req.Crew, Inputs: json.RawMessage(bytes.TrimSpace(inputs)), Batch: req.Batch, Timeout: req.Timeout}
		opts := &river.InsertOpts{MaxAttempts: req.MaxAttempts, Priority: req.Priority, Queue: riverQueue, Tags: []string{req.Batch}}
		out = append(out, river.NewPeriodicJob(
			river.PeriodicInterval(time.Duration(p.Every*float64(time.Second))),
			func() (river.JobArgs, *river.InsertOpts) { return args, opts },
			&river.PeriodicJobOpts{ID: p.ID, RunOnStart: p.RunOnStart},
		))
	}
	return out, nil
}

// runTimeout is a run's time limit.
func (w *Worker) runTimeout(a RunArgs) time.Duration {
	if a.Timeout > 0 {
		return time.Duration(a.Timeout * float64(time.Second))
	}
	return w.cfg.RunTimeout
}

// Queue is the worker's queue.
func (w *Worker) Queue() *Queue { return w.q }

// Supervisor is the worker's supervisor of Python processes.
func (w *Worker) Supervisor() *Supervisor { return w.sup }

// ClientID is River's id of this worker (in a run's attempted_by).
func (w *Worker) ClientID() string { return w.cl.ID() }

// Run starts the Python processes and River, calls ready (if not nil) once
// runs are being fetched, and works until ctx ends. Then it stops fetching,
// lets running crews finish for ShutdownGrace, stops the rest (their jobs
// go back to the queue without spending an attempt) and returns. StopNow
// ends it at once.
func (w *Worker) Run(ctx context.Context, ready func()) error {
	defer close(w.stopped)
	defer w.q.Close()
	if err := w.sup.Start(ctx); err != nil {
		return err
	}
	if err := w.cl.Start(context.WithoutCancel(ctx)); err != nil {
		w.sup.Close(time.Second)
		return fmt.Errorf("runq: start River on %s: %w", w.cfg.Spec, classify(w.cfg.Spec, err))
	}
	if ready != nil {
		ready()
	}
	select {
	case <-ctx.Done():
	case <-w.cl.Stopped():
		w.sup.Close(time.Second)
		return fmt.Errorf("runq: River stopped working %s", w.cfg.Spec)
	}
	w.stopping.Store(true)
	// Soft stop: no new fetches; running jobs get ShutdownGrace, then their
	// contexts end (River's hard stop) and Work hands them back.
	err := w.cl.Stop(context.Background())
	w.sup.Close(w.sup.StopWait())
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("runq: stop River: %w", err)
	}
	return nil
}

// StopNow cancels every running crew at once (their jobs go back to the
// queue) and kills the Python processes; Run then returns.
func (w *Worker) StopNow() {
	w.stopOnce.Do(func() {
		w.hard.Store(true)
		w.stopping.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		go w.sup.Close(0)
		_ = w.cl.StopAndCancel(ctx)
	})
}

// Stopped is closed when Run has returned.
func (w *Worker) Stopped() <-chan struct{} { return w.stopped }

// runWorker is River's worker for Kind.
type runWorker struct {
	river.WorkerDefaults[RunArgs]
	w *Worker
}

// Timeout gives River's own limit: the run's limit plus the time to stop
// it, so the supervisor's stop comes first and River's rescuer never takes
// a run that is still being stopped.
func (rw *runWorker) Timeout(job *river.Job[RunArgs]) time.Duration {
	return rw.w.runTimeout(job.Args) + rw.w.sup.StopWait() + time.Second
}

// Work runs the crew and writes the outcome back to the job.
func (rw *runWorker) Work(ctx context.Context, job *river.Job[RunArgs]) error {
	w := rw.w
	o := w.sup.Run(ctx, RunRequest{
		ID: job.ID, Attempt: job.Attempt, Args: job.Args, Timeout: w.runTimeout(job.Args),
		Reason: func() string {
			if errors.Is(context.Cause(ctx), rivertype.ErrJobCancelledRemotely) {
				return "cancelled"
			}
			return "shutdown"
		},
	})
	bg := context.WithoutCancel(ctx)
	if o.OK {
		if len(o.Record) > 0 {
			if err := river.RecordOutput(ctx, o.Record); err != nil {
				// Too large (River keeps at most 32 MB): trying again
				// would give the same output.
				w.Failed.Add(1)
				return river.JobCancel(fmt.Errorf("OutputTooLarge: the run's result cannot be stored: %w", err))
			}
		}
		w.Done.Add(1)
		cctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		if err := w.q.kit.completeTx(cctx, job); err != nil {
			// River's completer completes it (with the output) instead.
			return nil
		}
		return nil
	}
	if len(o.Record) > 0 {
		_ = river.RecordOutput(ctx, o.Record)
	}
	if w.hard.Load() && o.Stopped != "cancelled" {
		o.Stopped = "shutdown" // its process was killed by StopNow
	}
	switch {
	case o.Stopped == "shutdown" || (o.Requeue && ctx.Err() != nil && o.Stopped != "cancelled"):
		// Back to the queue, no attempt spent (River's soft-stop path).
		w.Requeued.Add(1)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return river.JobSnooze(0)
	case o.Requeue:
		w.Requeued.Add(1)
		return river.JobSnooze(time.Second)
	case o.Stopped == "cancelled":
		w.Failed.Add(1)
		return river.JobCancel(errors.New(o.Error))
	case o.Permanent:
		w.Failed.Add(1)
		return river.JobCancel(errors.New(o.Error))
	}
	w.Failed.Add(1)
	return errors.New(o.Error)
}
