package mockllm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EmbedFault is one scripted failure of an embeddings request
// (Config.EmbedFaults, the --embed-faults flag, POST /_mock/faults). Exactly
// one of its fields says what happens to the request it is applied to.
type EmbedFault struct {
	// Status answers with this HTTP error status (400-599) in OpenAI's error
	// shape; a 429 carries Retry-After / retry-after-ms headers of
	// RetryAfter.
	Status int `json:"status,omitempty"`
	// RetryAfter is sent with a Status 429 (0: retry at once).
	RetryAfter time.Duration `json:"-"`
	// Hang delays the answer by this long (a client's timeout fires first);
	// the answer, if the client is still there, is a normal one.
	Hang time.Duration `json:"-"`
	// Close drops the connection without any response.
	Close bool `json:"close,omitempty"`
	// Dimensions answers normally but with vectors of this length, whatever
	// the request asked for (a provider returning the wrong dimension).
	Dimensions int `json:"dimensions,omitempty"`
}

// String renders f in ParseEmbedFaults' syntax.
func (f EmbedFault) String() string {
	switch {
	case f.Close:
		return "close"
	case f.Hang > 0:
		return "hang:" + f.Hang.String()
	case f.Dimensions > 0:
		return "dim:" + strconv.Itoa(f.Dimensions)
	case f.Status == http.StatusTooManyRequests && f.RetryAfter > 0:
		return "429:" + f.RetryAfter.String()
	default:
		return strconv.Itoa(f.Status)
	}
}

// ParseEmbedFaults parses a comma-separated plan of embeddings faults,
// applied to embeddings requests in arrival order (requests after the plan
// are answered normally). Each item is one of
//
//	500 | 503 | 429 | 429:200ms    an error status (a 429 with its Retry-After)
//	hang:5s                        answer only after 5 s
//	close                          close the connection without answering
//	dim:7                          answer with 7-dimensional vectors
//
// optionally followed by *N to repeat it N times ("429*3,close").
func ParseEmbedFaults(s string) ([]EmbedFault, error) {
	var out []EmbedFault
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		n := 1
		if body, rep, ok := strings.Cut(item, "*"); ok {
			v, err := strconv.Atoi(strings.TrimSpace(rep))
			if err != nil || v < 1 || v > 1_000_000 {
				return nil, fmt.Errorf("embed fault %q: repeat count must be an integer in [1, 1000000]", item)
			}
			item, n = strings.TrimSpace(body), v
		}
		f, err := parseEmbedFault(item)
		if err != nil {
			return nil, err
		}
		for range n {
			out = append(out, f)
		}
	}
	return out, nil
}

func parseEmbedFault(item string) (EmbedFault, error) {
	kind, arg, hasArg := strings.Cut(item, ":")
	dur := func() (time.Duration, error) {
		d, err := time.ParseDuration(arg)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("embed fault %q: want a duration >= 0 after ':'", item)
		}
		return d, nil
	}
	switch kind {
	case "close":
		if hasArg {
			return EmbedFault{}, fmt.Errorf("embed fault %q: close takes no argument", item)
		}
		return EmbedFault{Close: true}, nil
	case "hang":
		d, err := dur()
		if err != nil || d == 0 {
			return EmbedFault{}, fmt.Errorf("embed fault %q: want hang:DURATION (> 0)", item)
		}
		return EmbedFault{Hang: d}, nil
	case "dim":
		v, err := strconv.Atoi(arg)
		if err != nil || v < 1 || v > MaxEmbeddingDimensions {
			return EmbedFault{}, fmt.Errorf("embed fault %q: want dim:N with N in [1, %d]", item, MaxEmbeddingDimensions)
		}
		return EmbedFault{Dimensions: v}, nil
	}
	code, err := strconv.Atoi(kind)
	if err != nil || code < 400 || code > 599 {
		return EmbedFault{}, fmt.Errorf("embed fault %q: want an HTTP status 400-599, hang:D, close or dim:N", item)
	}
	f := EmbedFault{Status: code}
	if hasArg {
		if code != http.StatusTooManyRequests {
			return EmbedFault{}, fmt.Errorf("embed fault %q: only 429 takes a retry-after", item)
		}
		if f.RetryAfter, err = dur(); err != nil {
			return EmbedFault{}, err
		}
	}
	return f, nil
}

// embedPlan is the run-time queue of embeddings faults, replaceable through
// POST /_mock/faults.
type embedPlan struct {
	mu    sync.Mutex
	queue []EmbedFault
}

// next pops the fault for the next embeddings request (ok false: none).
func (p *embedPlan) next() (EmbedFault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return EmbedFault{}, false
	}
	f := p.queue[0]
	p.queue = p.queue[1:]
	return f, true
}

func (p *embedPlan) set(q []EmbedFault) {
	p.mu.Lock()
	p.queue = append([]EmbedFault(nil), q...)
	p.mu.Unlock()
}

func (p *embedPlan) pending() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.queue))
	for i, f := range p.queue {
		out[i] = f.String()
	}
	return out
}

// serveFaults is POST /_mock/faults: {"embeddings": "429*2,close"} replaces
// the plan (an empty string clears it); GET returns what is left of it.
func (h *handler) serveFaults(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		var req struct {
			Embeddings *string `json:"embeddings"`
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err == nil {
			err = json.Unmarshal(body, &req)
		}
		if err == nil && req.Embeddings == nil {
			err = errors.New(`want {"embeddings": "<plan>"}`)
		}
		var plan []EmbedFault
		if err == nil {
			plan, err = ParseEmbedFaults(*req.Embeddings)
		}
		if err != nil {
			h.fail(w, http.StatusBadRequest, "invalid_request_error", "fault plan: "+err.Error(), "embeddings", "")
			return
		}
		h.embedPlan.set(plan)
	} else if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, POST")
		h.fail(w, http.StatusMethodNotAllowed, "invalid_request_error", "use GET or POST", "", "method_not_allowed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"embeddings": h.embedPlan.pending()})
}

// applyEmbedFault applies the next planned fault to an embeddings request.
// It returns true when the request was answered (or dropped) by the fault,
// and otherwise the dimension override (0: none).
func (h *handler) applyEmbedFault(w http.ResponseWriter, r *http.Request) (done bool, dims int) {
	f, ok := h.embedPlan.next()
	if !ok {
		return false, 0
	}
	h.stats.embedFaults.Add(1)
	note(r, "embed fault "+f.String())
	switch {
	case f.Close:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true, 0
			}
		}
		panic(http.ErrAbortHandler) // net/http drops the connection
	case f.Hang > 0:
		t := time.NewTimer(f.Hang)
		defer t.Stop()
		select {
		case <-t.C:
			return false, 0
		case <-r.Context().Done():
			h.stats.cancels.Add(1)
			return true, 0
		}
	case f.Dimensions > 0:
		return false, f.Dimensions
	}
	typ, code, msg := "server_error", "server_error", "The server had an error while processing your request (embed fault injected by mockllm)."
	switch {
	case f.Status == http.StatusTooManyRequests:
		typ, code, msg = "requests", "rate_limit_exceeded", "Rate limit reached for requests (embed fault injected by mockllm)."
		w.Header().Set("retry-after-ms", strconv.FormatInt(f.RetryAfter.Milliseconds(), 10))
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(f.RetryAfter.Seconds())), 10))
	case f.Status < 500:
		typ, code, msg = "invalid_request_error", "injected_error", "Injected client error (embed fault, mockllm)."
	}
	h.fail(w, f.Status, typ, msg, "", code)
	return true, 0
}
