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

Runs a local, deterministic OpenAI-compatible server (POST /v1/chat/completions,
POST /v1/embeddings, GET /v1/models, GET /stats). Once listening it prints one line
"mockllm listening on http://ADDR/v1" to stdout; SIGINT/SIGTERM stop it cleanly.
Point OpenAI clients at it with:

    OPENAI_BASE_URL=http://ADDR/v1 OPENAI_API_KEY=anything

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

	cfg := mockllm.Config{Latency: *latency, EmbeddingDimensions: *dims}
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
