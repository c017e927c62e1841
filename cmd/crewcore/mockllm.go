package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/crewcore/crewcore/internal/mockllm"
)

const mockllmUsage = `Usage: crewcore mockllm [--addr HOST:PORT] [--latency DURATION] [--script FILE.json]
                        [--dimensions N] [--models a,b,...] [--log] [--log-bodies]
                        [--latency-dist DIST] [--error-rate P] [--error-status 500,429]
                        [--retry-after DURATION] [--seed N] [--embed-faults PLAN]

Runs a local, deterministic OpenAI-compatible server (POST /v1/chat/completions,
POST /v1/embeddings, GET /v1/models, GET /stats). Once listening it prints one line
"mockllm listening on http://ADDR/v1" to stdout; SIGINT/SIGTERM stop it cleanly.
Point OpenAI clients at it with:

    OPENAI_BASE_URL=http://ADDR/v1 OPENAI_API_KEY=anything

Benchmark knobs: --latency-dist draws each request's latency from
fixed:50ms | normal:50ms,10ms | uniform:20ms,80ms | exp:50ms | lognormal:50ms,0.5
(it replaces --latency); --error-rate 0.05 answers 5% of chat completions with an
injected error, a status drawn from --error-status (default 500,429); --seed makes
both reproducible. --embed-faults fails embeddings requests in arrival order, one
item each, then answers normally: 500 | 429 | 429:200ms (with Retry-After) | hang:5s |
close (drop the connection) | dim:7 (wrong dimension), each optionally *N, e.g.
"429*2,close"; POST /_mock/faults {"embeddings": PLAN} replaces the plan at run time.

Flags:
`

// runMockLLM implements "crewcore mockllm".
func runMockLLM(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mockllm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, mockllmUsage)
		fs.PrintDefaults()
	}
	addr := fs.String("addr", "127.0.0.1:0", "listen address `host:port` (port 0 picks a free port)")
	latency := fs.Duration("latency", 0, "delay added to every chat, embeddings and models request (e.g. 50ms)")
	scriptPath := fs.String("script", "", "JSON `file` of scripted chat replies: [{\"match\":..., \"reply\":..., \"tool_calls\":[...]}]")
	dims := fs.Int("dimensions", 0, "embedding size when a request has no \"dimensions\" (0: 1536, 3072 for *-3-large)")
	models := fs.String("models", "", "comma-separated model ids for GET /v1/models (default: a built-in list)")
	logReqs := fs.Bool("log", false, "log one line per request to stderr")
	logBodies := fs.Bool("log-bodies", false, "also log request bodies to stderr (implies --log)")
	latencyDist := fs.String("latency-dist", "", "latency `distribution`: fixed:50ms, normal:50ms,10ms, uniform:20ms,80ms, exp:50ms or lognormal:50ms,0.5 (replaces --latency)")
	errorRate := fs.Float64("error-rate", 0, "probability (0..1) that a chat completion gets an injected error")
	errorStatus := fs.String("error-status", "500,429", "comma-separated HTTP `statuses` of injected errors (drawn uniformly)")
	retryAfter := fs.Duration("retry-after", 0, "retry-after sent with injected 429s (0: retry at once)")
	seed := fs.Uint64("seed", 1, "seed of the latency and error draws")
	embedFaults := fs.String("embed-faults", "", "`plan` of embeddings failures, in arrival order: 500,429:200ms,hang:5s,close,dim:7 (each optionally *N)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "crewcore mockllm: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *latency < 0 || *dims < 0 {
		fmt.Fprintln(stderr, "crewcore mockllm: --latency and --dimensions must not be negative")
		return 2
	}

	cfg := mockllm.Config{Latency: *latency, EmbeddingDimensions: *dims, Seed: *seed}
	if *latencyDist != "" {
		if *latency != 0 {
			fmt.Fprintln(stderr, "crewcore mockllm: give --latency or --latency-dist, not both")
			return 2
		}
		d, err := mockllm.ParseLatencyDist(*latencyDist)
		if err != nil {
			fmt.Fprintf(stderr, "crewcore mockllm: --latency-dist: %v\n", err)
			return 2
		}
		cfg.LatencyDist = d
	}
	if *errorRate < 0 || *errorRate > 1 || *errorRate != *errorRate {
		fmt.Fprintln(stderr, "crewcore mockllm: --error-rate must be between 0 and 1")
		return 2
	}
	cfg.ErrorRate = *errorRate
	statuses, err := mockllm.ParseStatuses(*errorStatus)
	if err != nil {
		fmt.Fprintf(stderr, "crewcore mockllm: --error-status: %v\n", err)
		return 2
	}
	cfg.ErrorStatuses = statuses
	if *retryAfter < 0 {
		fmt.Fprintln(stderr, "crewcore mockllm: --retry-after must not be negative")
		return 2
	}
	cfg.RetryAfter = *retryAfter
	if cfg.EmbedFaults, err = mockllm.ParseEmbedFaults(*embedFaults); err != nil {
		fmt.Fprintf(stderr, "crewcore mockllm: --embed-faults: %v\n", err)
		return 2
	}
	if *scriptPath != "" {
		rules, err := mockllm.LoadScript(*scriptPath)
		if err != nil {
			fmt.Fprintf(stderr, "crewcore mockllm: %v\n", err)
			return 1
		}
		cfg.Script = rules
	}
	for _, m := range strings.Split(*models, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Models = append(cfg.Models, m)
		}
	}
	if *logReqs || *logBodies {
		cfg.Log = stderr
		cfg.LogBodies = *logBodies
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "crewcore mockllm: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "mockllm listening on http://%s/v1\n", ln.Addr())
	// os.Stdout is unbuffered; flush a buffered writer a caller passed.
	if f, ok := stdout.(interface{ Flush() error }); ok {
		f.Flush()
	}
	start := time.Now()
	if err := mockllm.Serve(ctx, ln, cfg); err != nil {
		fmt.Fprintf(stderr, "crewcore mockllm: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "mockllm stopped after %s\n", time.Since(start).Round(time.Millisecond))
	return 0
}
