package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/crewcore/crewcore/runq"
)

const workerUsage = `usage: crewcore worker --queue SPEC [flags]

Works the crew runs of a queue (crewcore.runs.submit / kickoff_many(queue=...)):
River fetches and leases the jobs; --processes Python processes (one GIL each,
crewcore.install() done) run up to --concurrency crews each. Workers on other
machines pointed at the same PostgreSQL DSN share the work.

SPEC is a SQLite file path or a postgresql:// DSN (an optional schema=NAME
parameter names the schema of River's tables, default crewcore_runs).

Signals: SIGTERM (or a first Ctrl-C) stops fetching, lets running crews finish
for --shutdown-grace, then stops them and returns their jobs to the queue;
a second Ctrl-C stops at once. A killed worker's runs are retried by River's
rescuer after --rescue-after (runs are at-least-once).

Flags:
`

func init() {
	commands["worker"] = command{
		summary: "work the crew runs of a durable queue (River; SQLite file or PostgreSQL)",
		run:     runWorker,
	}
}

// listFlag collects a repeated string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// workerFlags are the parsed flags of "crewcore worker".
type workerFlags struct {
	cfg      runq.WorkerConfig
	stdinEOF bool
}

func parseWorkerFlags(args []string, stderr io.Writer) (*workerFlags, int) {
	fs := flag.NewFlagSet("crewcore worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, workerUsage)
		fs.PrintDefaults()
	}
	queue := fs.String("queue", os.Getenv("CREWCORE_QUEUE"), "the queue: a SQLite file or a postgresql:// DSN (default $CREWCORE_QUEUE)")
	procs := fs.String("processes", "1", `Python worker processes, or "auto" (one per CPU)`)
	conc := fs.Int("concurrency", 4, "runs at once in each process (threads)")
	var crewPath listFlag
	fs.Var(&crewPath, "crew-path", "a directory put first on the processes' sys.path (repeatable)")
	python := fs.String("python", "", "Python interpreter with crewcore installed (default $CREWCORE_PYTHON, else python3)")
	timeout := fs.Duration("timeout", 10*time.Minute, "time limit of a run that sets none")
	rescue := fs.Duration("rescue-after", 0, "a run 'running' this long is taken for lost and retried (default timeout + stop time + 30s)")
	shutdown := fs.Duration("shutdown-grace", 30*time.Second, "on SIGTERM, how long running crews may finish")
	stopGrace := fs.Duration("stop-grace", 2*time.Second, "a run told to stop: time before its thread is interrupted, and again before its process is killed")
	riverQueue := fs.String("river-queue", runq.DefaultRiverQueue, "the River queue to work")
	poll := fs.Duration("poll", 0, "how often to look for new runs without a notification (default 1s: a fallback, inserts notify the workers)")
	keep := fs.Duration("keep", 24*time.Hour, "how long completed and cancelled runs (and their results) stay before River's cleaner deletes them")
	pin := fs.String("pin", "auto", `pin each Python process to one CPU: "auto" (when --processes equals the CPUs this worker may use, e.g. --processes auto), "on", "off", or CPU numbers ("0,2", "4-7")`)
	noInstall := fs.Bool("no-install", false, "do not call crewcore.install() in the processes")
	stdinEOF := fs.Bool("stop-on-stdin-eof", false, "stop gracefully when stdin reaches end of file (crewcore.runs.Worker: its Python owner is gone)")
	var periodic listFlag
	fs.Var(&periodic, "periodic", `a periodic crew as JSON: {"id":"nightly","crew":"pkg.mod:build","every":3600,"inputs":{...}} (repeatable; only the elected leader enqueues)`)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "crewcore worker: unexpected argument %q\n", fs.Arg(0))
		return nil, 2
	}
	if *queue == "" {
		fmt.Fprintln(stderr, "crewcore worker: --queue is required (a SQLite file or a postgresql:// DSN)")
		return nil, 2
	}
	spec, err := runq.ParseSpec(*queue)
	if err != nil {
		fmt.Fprintf(stderr, "crewcore worker: %v\n", err)
		return nil, 2
	}
	n := runtime.NumCPU()
	if *procs != "auto" {
		n, err = strconv.Atoi(*procs)
		if err != nil || n < 1 {
			fmt.Fprintf(stderr, "crewcore worker: --processes %q must be a number >= 1 or \"auto\"\n", *procs)
			return nil, 2
		}
	}
	cpus, err := runq.PinCPUs(*pin, n, runq.AllowedCPUs())
	if err != nil {
		fmt.Fprintf(stderr, "crewcore worker: %v\n", err)
		return nil, 2
	}
	var specs []runq.PeriodicSpec
	for _, p := range periodic {
		var ps runq.PeriodicSpec
		dec := json.NewDecoder(strings.NewReader(p))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ps); err != nil {
			fmt.Fprintf(stderr, "crewcore worker: --periodic %s: %v\n", p, err)
			return nil, 2
		}
		specs = append(specs, ps)
	}
	var env []string
	if *noInstall {
		env = append(env, "CREWCORE_RUNQ_INSTALL=0")
	}
	wf := &workerFlags{cfg: runq.WorkerConfig{
		Spec:       spec,
		RiverQueue: *riverQueue,
		Supervisor: runq.SupervisorConfig{
			Processes: n, Concurrency: *conc, Python: *python, CrewPath: crewPath, Env: env, StopGrace: *stopGrace,
			CPUs: cpus,
		},
		RunTimeout:    *timeout,
		RescueAfter:   *rescue,
		ShutdownGrace: *shutdown,
		FetchPoll:     *poll,
		Keep:          *keep,
		Periodic:      specs,
		Log:           stderr,
	}, stdinEOF: *stdinEOF}
	return wf, -1
}

// runWorker implements "crewcore worker".
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	wf, code := parseWorkerFlags(args, stderr)
	if wf == nil {
		return code
	}
	// main's context ends at the first SIGINT/SIGTERM (graceful stop); this
	// channel counts them, so a second SIGINT stops at once.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	w, err := runq.NewWorker(context.Background(), wf.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "crewcore worker: %v\n", err)
		return 1
	}
	ready := func() {
		pinned := ""
		if cpus := wf.cfg.Supervisor.CPUs; len(cpus) > 0 {
			pinned = ", pinned to CPUs " + runq.FormatCPUList(cpus[:min(len(cpus), wf.cfg.Supervisor.Processes)])
		}
		fmt.Fprintf(stdout, "crewcore worker ready: queue %s, river queue %s, %d processes x %d runs, pids %v, client %s%s\n",
			wf.cfg.Spec, wf.cfg.RiverQueue, wf.cfg.Supervisor.Processes, wf.cfg.Supervisor.Concurrency,
			w.Supervisor().PIDs(), w.ClientID(), pinned)
	}
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx, ready) }()
	stdinGone := make(chan struct{})
	if wf.stdinEOF {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			close(stdinGone)
		}()
	}
	interrupts := 0
	ctxDone := ctx.Done()
	for {
		select {
		case err := <-done:
			fmt.Fprintf(stderr, "crewcore worker: stopped (%d runs done, %d failed, %d returned to the queue)\n",
				w.Done.Load(), w.Failed.Load(), w.Requeued.Load())
			if err != nil {
				fmt.Fprintf(stderr, "crewcore worker: %v\n", err)
				return 1
			}
			return 0
		case s := <-sigs:
			if s == os.Interrupt {
				interrupts++
			}
			if interrupts >= 2 {
				fmt.Fprintln(stderr, "crewcore worker: stopping now")
				w.StopNow()
				cancel()
				continue
			}
			fmt.Fprintf(stderr, "crewcore worker: %v: no new runs; running ones may finish for %s (Ctrl-C again to stop now)\n",
				s, wf.cfg.ShutdownGrace)
			cancel()
		case <-stdinGone:
			stdinGone = nil
			fmt.Fprintln(stderr, "crewcore worker: stdin closed (its owner is gone): stopping")
			cancel()
		case <-ctxDone:
			ctxDone = nil
			cancel()
		}
	}
}
