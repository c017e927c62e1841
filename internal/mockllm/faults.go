package mockllm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LatencyDist is a distribution of per-request latencies (Config.LatencyDist).
// Samples are clamped to [0, 10*mean+max] so that a heavy tail cannot stall
// a benchmark.
type LatencyDist struct {
	// Kind is "fixed", "normal", "uniform", "exp" or "lognormal".
	Kind string
	// A and B are the parameters: fixed: A; normal: mean A, stddev B
	// (negative samples become 0); uniform: between A and B; exp: mean A;
	// lognormal: median A (shape in Sigma).
	A, B time.Duration
	// Sigma is lognormal's shape parameter (unitless).
	Sigma float64
}

// String renders d in ParseLatencyDist's syntax.
func (d LatencyDist) String() string {
	switch d.Kind {
	case "normal", "uniform":
		return fmt.Sprintf("%s:%s,%s", d.Kind, d.A, d.B)
	case "lognormal":
		return fmt.Sprintf("lognormal:%s,%g", d.A, d.Sigma)
	case "":
		return ""
	default:
		return fmt.Sprintf("%s:%s", d.Kind, d.A)
	}
}

// ParseLatencyDist parses a latency distribution:
//
//	50ms | fixed:50ms                 always 50 ms
//	normal:50ms,10ms                  mean 50 ms, standard deviation 10 ms (>= 0)
//	uniform:20ms,80ms                 uniform between 20 and 80 ms
//	exp:50ms                          exponential with mean 50 ms
//	lognormal:50ms,0.5                median 50 ms, sigma 0.5 (a long tail)
func ParseLatencyDist(s string) (LatencyDist, error) {
	s = strings.TrimSpace(s)
	kind, args, ok := strings.Cut(s, ":")
	if !ok {
		kind, args = "fixed", s
	}
	parts := strings.Split(args, ",")
	dur := func(i int) (time.Duration, error) {
		d, err := time.ParseDuration(strings.TrimSpace(parts[i]))
		if err != nil {
			return 0, fmt.Errorf("latency %q: %w", s, err)
		}
		if d < 0 {
			return 0, fmt.Errorf("latency %q: negative duration %s", s, d)
		}
		return d, nil
	}
	want := map[string]int{"fixed": 1, "exp": 1, "normal": 2, "uniform": 2, "lognormal": 2}
	n, known := want[kind]
	if !known {
		return LatencyDist{}, fmt.Errorf("latency %q: unknown distribution %q (want fixed, normal, uniform, exp or lognormal)", s, kind)
	}
	if len(parts) != n {
		return LatencyDist{}, fmt.Errorf("latency %q: %s takes %d parameter(s), got %d", s, kind, n, len(parts))
	}
	d := LatencyDist{Kind: kind}
	var err error
	if d.A, err = dur(0); err != nil {
		return LatencyDist{}, err
	}
	switch kind {
	case "normal", "uniform":
		if d.B, err = dur(1); err != nil {
			return LatencyDist{}, err
		}
		if kind == "uniform" && d.B < d.A {
			return LatencyDist{}, fmt.Errorf("latency %q: uniform upper bound below the lower", s)
		}
	case "lognormal":
		d.Sigma, err = strconv.ParseFloat(strings.TrimSpace(parts[1]), 64)
		if err != nil || d.Sigma < 0 || math.IsNaN(d.Sigma) || math.IsInf(d.Sigma, 0) {
			return LatencyDist{}, fmt.Errorf("latency %q: sigma must be a number >= 0", s)
		}
	}
	return d, nil
}

// faults is the run-time state of the random parts of Config: one seeded
// generator, so a run with a fixed Seed is reproducible request by request
// (in arrival order).
type faults struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newFaults(seed uint64) *faults {
	return &faults{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// latency draws one latency for cfg (Config.Latency when no distribution).
func (f *faults) latency(cfg *Config) time.Duration {
	d := cfg.LatencyDist
	if d.Kind == "" {
		return cfg.Latency
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var v float64
	a, b := float64(d.A), float64(d.B)
	switch d.Kind {
	case "fixed":
		return d.A
	case "normal":
		v = a + b*f.rng.NormFloat64()
	case "uniform":
		v = a + (b-a)*f.rng.Float64()
	case "exp":
		v = a * f.rng.ExpFloat64()
	case "lognormal":
		v = a * math.Exp(d.Sigma*f.rng.NormFloat64())
	}
	limit := 10*a + b
	return time.Duration(max(0, min(v, limit)))
}

// injectedStatus says whether this request gets an injected error, and
// which status (0: none).
func (f *faults) injectedStatus(cfg *Config) int {
	if cfg.ErrorRate <= 0 {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rng.Float64() >= cfg.ErrorRate {
		return 0
	}
	codes := cfg.ErrorStatuses
	if len(codes) == 0 {
		codes = DefaultErrorStatuses
	}
	return codes[f.rng.IntN(len(codes))]
}

// DefaultErrorStatuses are the statuses injected errors use when
// Config.ErrorStatuses is empty: a server error and a rate limit.
var DefaultErrorStatuses = []int{http.StatusInternalServerError, http.StatusTooManyRequests}

// ParseStatuses parses a comma-separated list of HTTP error statuses
// (400-599), e.g. "500,429,503".
func ParseStatuses(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		c, err := strconv.Atoi(p)
		if err != nil || c < 400 || c > 599 {
			return nil, fmt.Errorf("error status %q: want an HTTP status between 400 and 599", p)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no error status in %q", s)
	}
	return out, nil
}

// failInjected answers a chat completion with an injected error in
// OpenAI's shape (a 429 carries retry-after headers of Config.RetryAfter).
func (h *handler) failInjected(w http.ResponseWriter, status int) {
	h.stats.injected.Add(1)
	typ, code, msg := "server_error", "server_error", "The server had an error while processing your request (injected by mockllm)."
	switch {
	case status == http.StatusTooManyRequests:
		typ, code, msg = "requests", "rate_limit_exceeded", "Rate limit reached for requests (injected by mockllm)."
		ra := h.cfg.RetryAfter
		w.Header().Set("retry-after-ms", strconv.FormatInt(ra.Milliseconds(), 10))
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(ra.Seconds())), 10))
	case status < 500:
		typ, code, msg = "invalid_request_error", "injected_error", "Injected client error (mockllm)."
	}
	h.fail(w, status, typ, msg, "", code)
}
