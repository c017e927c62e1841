package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crewcore/crewcore/runq"
)

const runsUsage = `usage: crewcore runs <list|show|cancel|retry|stats> --queue SPEC [flags] [ids]

  list     runs, newest first (--state, --batch, --limit)
  show     one run: its inputs, attempts, errors and output (ID)
  cancel   cancel runs (IDs) or a whole batch (--batch); a running crew stops
           at its next LLM or tool call
  retry    run final runs again (IDs)
  stats    runs per state, throughput, p50/p95 run time, the latest failures

SPEC is a SQLite file path or a postgresql:// DSN (default $CREWCORE_QUEUE).
`

func init() {
	commands["runs"] = command{
		summary: "inspect a durable run queue: list|show|cancel|retry|stats",
		run:     runRuns,
	}
}

// runRuns implements "crewcore runs".
func runRuns(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, runsUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list", "show", "cancel", "retry", "stats":
	default:
		fmt.Fprintf(stderr, "crewcore runs: unknown subcommand %q\n\n%s", sub, runsUsage)
		return 2
	}
	fs := flag.NewFlagSet("crewcore runs "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	queue := fs.String("queue", os.Getenv("CREWCORE_QUEUE"), "the queue: a SQLite file or a postgresql:// DSN")
	asJSON := fs.Bool("json", false, "print JSON (list, stats; show always does)")
	batch := fs.String("batch", "", "only this batch (list, cancel, stats)")
	var states listFlag
	fs.Var(&states, "state", "only runs in this River state (list; repeatable)")
	limit := fs.Int("limit", 50, "at most this many runs (list)")
	// Flags may come before or after the ids.
	var positional []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if *queue == "" {
		fmt.Fprintf(stderr, "crewcore runs %s: --queue is required\n", sub)
		return 2
	}
	var ids []int64
	for _, a := range positional {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "crewcore runs %s: %q is not a run id\n", sub, a)
			return 2
		}
		ids = append(ids, id)
	}
	switch {
	case (sub == "show" || sub == "retry") && len(ids) == 0,
		sub == "cancel" && len(ids) == 0 && *batch == "":
		fmt.Fprintf(stderr, "crewcore runs %s: which runs? give ids%s\n", sub, map[bool]string{true: " or --batch"}[sub == "cancel"])
		return 2
	case (sub == "list" || sub == "stats") && len(ids) > 0:
		fmt.Fprintf(stderr, "crewcore runs %s: unexpected argument %q\n", sub, positional[0])
		return 2
	}
	spec, err := runq.ParseSpec(*queue)
	if err != nil {
		fmt.Fprintf(stderr, "crewcore runs %s: %v\n", sub, err)
		return 2
	}
	q, err := runq.Open(ctx, spec, runq.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "crewcore runs %s: %v\n", sub, err)
		return 1
	}
	defer q.Close()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "crewcore runs %s: %v\n", sub, err)
		return 1
	}
	switch sub {
	case "list":
		runs, err := q.List(ctx, runq.ListRequest{States: states, Batch: *batch, Limit: *limit})
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			return printRunsJSON(stdout, stderr, runsJSON(runs))
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tATTEMPT\tCREW\tBATCH\tINDEX\tRUN TIME\tERROR")
		for _, r := range runs {
			fmt.Fprintf(tw, "%d\t%s\t%d/%d\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.State, r.Attempt, r.MaxAttempts, r.Args.Crew,
				r.Args.Batch, r.Args.Index, runTime(r), lastError(r, 60))
		}
		tw.Flush()
	case "show":
		out := []runJSON{}
		for _, id := range ids {
			r, err := q.Get(ctx, id)
			if err != nil {
				return fail(err)
			}
			out = append(out, toRunJSON(r))
		}
		// One JSON document per run (inputs and output are JSON anyway).
		for _, r := range out {
			if code := printRunsJSON(stdout, stderr, r); code != 0 {
				return code
			}
		}
	case "cancel":
		if *batch != "" {
			n, err := q.CancelBatch(ctx, *batch)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "batch %s: %d runs cancelled or told to stop\n", *batch, n)
		}
		for _, id := range ids {
			r, err := q.Cancel(ctx, id)
			if err != nil {
				return fail(err)
			}
			what := r.State
			if r.State == "running" {
				what = "running, told to stop"
			}
			fmt.Fprintf(stdout, "run %d: %s\n", id, what)
		}
	case "retry":
		for _, id := range ids {
			r, err := q.Retry(ctx, id)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "run %d: %s\n", id, r.State)
		}
	case "stats":
		st, err := q.Stats(ctx, runq.StatsRequest{Batch: *batch})
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			return printRunsJSON(stdout, stderr, statsJSON(st))
		}
		printStats(stdout, spec, *batch, st)
	}
	return 0
}

func runTime(r runq.Run) string {
	if d := r.RunTime(); d > 0 {
		return d.Round(time.Millisecond).String()
	}
	return "-"
}

func lastError(r runq.Run, n int) string {
	if len(r.Errors) == 0 {
		return ""
	}
	s := strings.ReplaceAll(r.Errors[len(r.Errors)-1].Error, "\n", " ")
	if len(s) > n {
		s = s[:n-3] + "..."
	}
	return s
}

func printStats(w io.Writer, spec runq.Spec, batch string, st runq.Stats) {
	scope := "queue " + spec.String()
	if batch != "" {
		scope += ", batch " + batch
	}
	fmt.Fprintln(w, scope)
	for _, s := range []string{"available", "scheduled", "pending", "running", "retryable", "completed", "cancelled", "discarded"} {
		fmt.Fprintf(w, "  %-10s %d\n", s, st.Counts[s])
	}
	if st.Sample > 0 {
		fmt.Fprintf(w, "completed runs measured: %d; run time p50 %s, p95 %s, max %s; throughput %.2f runs/s\n",
			st.Sample, st.P50.Round(time.Millisecond), st.P95.Round(time.Millisecond), st.Max.Round(time.Millisecond), st.Throughput)
	}
	if len(st.Failures) > 0 {
		fmt.Fprintln(w, "latest failures:")
		for _, r := range st.Failures {
			fmt.Fprintf(w, "  run %d (%s, attempt %d/%d, %s): %s\n", r.ID, r.State, r.Attempt, r.MaxAttempts, r.Args.Crew, lastError(r, 200))
		}
	}
}

type runJSON struct {
	ID              int64           `json:"id"`
	State           string          `json:"state"`
	Crew            string          `json:"crew"`
	Batch           string          `json:"batch"`
	Index           int             `json:"index"`
	Key             string          `json:"key,omitempty"`
	Inputs          json.RawMessage `json:"inputs"`
	Attempt         int             `json:"attempt"`
	MaxAttempts     int             `json:"max_attempts"`
	Priority        int             `json:"priority"`
	RiverQueue      string          `json:"river_queue"`
	Timeout         float64         `json:"timeout,omitempty"`
	CreatedAt       *time.Time      `json:"created_at"`
	ScheduledAt     *time.Time      `json:"scheduled_at"`
	AttemptedAt     *time.Time      `json:"attempted_at"`
	FinalizedAt     *time.Time      `json:"finalized_at"`
	AttemptedBy     []string        `json:"attempted_by"`
	Errors          []attemptJSON   `json:"errors"`
	Output          json.RawMessage `json:"output"`
	CancelRequested bool            `json:"cancel_requested,omitempty"`
}

type attemptJSON struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toRunJSON(r runq.Run) runJSON {
	out := runJSON{
		ID: r.ID, State: r.State, Crew: r.Args.Crew, Batch: r.Args.Batch, Index: r.Args.Index, Key: r.Args.Key,
		Inputs: r.Args.Inputs, Attempt: r.Attempt, MaxAttempts: r.MaxAttempts, Priority: r.Priority,
		RiverQueue: r.RiverQueue, Timeout: r.Args.Timeout, CreatedAt: tp(r.CreatedAt), ScheduledAt: tp(r.ScheduledAt),
		AttemptedAt: tp(r.AttemptedAt), FinalizedAt: tp(r.FinalizedAt), AttemptedBy: r.AttemptedBy,
		Output: r.Output, CancelRequested: r.CancelRequested, Errors: []attemptJSON{},
	}
	if out.Output == nil {
		out.Output = json.RawMessage("null")
	}
	for _, e := range r.Errors {
		out.Errors = append(out.Errors, attemptJSON{Attempt: e.Attempt, At: e.At, Error: e.Error})
	}
	return out
}

func runsJSON(runs []runq.Run) []runJSON {
	out := make([]runJSON, 0, len(runs))
	for _, r := range runs {
		out = append(out, toRunJSON(r))
	}
	return out
}

func statsJSON(st runq.Stats) map[string]any {
	return map[string]any{
		"counts": st.Counts, "sample": st.Sample, "p50": st.P50.Seconds(), "p95": st.P95.Seconds(),
		"max": st.Max.Seconds(), "throughput": st.Throughput, "failures": runsJSON(st.Failures),
	}
}

func printRunsJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "crewcore runs: %v\n", err)
		return 1
	}
	return 0
}
