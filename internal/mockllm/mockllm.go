// Package mockllm is a local, deterministic, OpenAI-compatible HTTP server
// for offline demos, tests and benchmarks of CrewAI crews (and of anything
// else speaking the OpenAI API: point the official SDK at it with
// OPENAI_BASE_URL=http://ADDR/v1 and any OPENAI_API_KEY).
//
// Endpoints (each also without the /v1 prefix):
//
//	POST /v1/chat/completions  chat completions, streaming (SSE) or not
//	POST /v1/embeddings        deterministic feature-hashing embeddings
//	GET  /v1/models            model list (GET /v1/models/{id}: one model)
//	GET  /stats                request counters as JSON (see Stats)
//	GET  /healthz              {"status":"ok"}
//	POST /_mock/faults         {"embeddings": "429*2,close"}: the embeddings
//	                           fault plan (see ParseEmbedFaults); GET shows it
//
// Chat answers, in order of precedence: the first matching scripted Reply;
// a tool call when tool_choice forces one (arguments synthesized from the
// tool's parameter schema); for response_format json_schema a JSON object
// synthesized to validate against the schema (strings derived from the
// prompt, schema defaults honoured); for json_object a small JSON object;
// otherwise a deterministic text answer that names the task and its key
// words and echoes any recalled memories found in the prompt. Without
// "tools" in the request that text is in CrewAI's ReAct format
// ("Thought: I now know the final answer\nFinal Answer: ..."); with tools
// (native function calling, where CrewAI takes plain content as the final
// answer) it is the bare answer.
//
// Errors use OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
package mockllm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures the mock server. The zero value is a usable server with
// no latency, no script and the default model list.
type Config struct {
	// Latency is slept before answering each chat completion, embeddings
	// and models request (not /stats or /healthz). A request whose context
	// is cancelled during the sleep is abandoned without a response and
	// counted in Stats.Cancelled.
	Latency time.Duration
	// Script is an optional list of scripted chat replies, first match
	// wins (see Reply and LoadScript).
	Script []Reply
	// Models are the model ids GET /v1/models reports; empty means
	// DefaultModels. Any model name is accepted by the other endpoints.
	Models []string
	// EmbeddingDimensions is the embedding length for requests without a
	// "dimensions" field; 0 means 3072 for "*-3-large" models and
	// DefaultEmbeddingDimensions otherwise.
	EmbeddingDimensions int
	// Log, when non-nil, receives one line per request: method, path,
	// status, duration and a short description.
	Log io.Writer
	// LogBodies additionally writes every request body to Log (debugging).
	LogBodies bool
	// LatencyDist, when its Kind is set, replaces Latency: each request
	// sleeps a latency drawn from it (see ParseLatencyDist).
	LatencyDist LatencyDist
	// ErrorRate is the probability (0..1) that a chat completion request is
	// answered with an injected error instead (after the latency), with a
	// status drawn from ErrorStatuses. Counted in Stats.Injected.
	ErrorRate float64
	// ErrorStatuses are the statuses of injected errors; empty means
	// DefaultErrorStatuses (500 and 429).
	ErrorStatuses []int
	// RetryAfter is sent with injected 429s (retry-after-ms and
	// Retry-After headers, which OpenAI's SDK honours); 0 means retry now.
	RetryAfter time.Duration
	// Seed seeds the generator behind LatencyDist and ErrorRate, so a run
	// is reproducible (in request arrival order).
	Seed uint64
	// EmbedFaults is a plan of failures applied to embeddings requests in
	// arrival order, one per request, before they are answered normally
	// again (see EmbedFault, ParseEmbedFaults). POST /_mock/faults replaces
	// it at run time.
	EmbedFaults []EmbedFault
}

// DefaultModels is the model list GET /v1/models reports when
// Config.Models is empty.
var DefaultModels = []string{
	"gpt-4o-mini",
	"gpt-4o",
	"gpt-4.1-mini",
	"gpt-5.4-mini",
	"text-embedding-3-small",
	"text-embedding-3-large",
	"text-embedding-ada-002",
}

// Stats are the request counters a server reports as JSON on GET /stats.
// Successful requests only, except Errors and Cancelled.
type Stats struct {
	// Chat counts answered chat completion requests.
	Chat int64 `json:"chat"`
	// Streamed counts chat requests answered as server-sent events.
	Streamed int64 `json:"streamed"`
	// Structured counts chat requests with response_format json_schema.
	Structured int64 `json:"structured"`
	// Scripted counts chat requests answered by a script rule.
	Scripted int64 `json:"scripted"`
	// ToolCalls counts chat answers carrying tool calls.
	ToolCalls int64 `json:"tool_calls"`
	// Embeddings counts answered embeddings requests.
	Embeddings int64 `json:"embeddings"`
	// EmbeddedTexts counts the inputs embedded over all embeddings requests.
	EmbeddedTexts int64 `json:"embedded_texts"`
	// Models counts model list and model lookup requests.
	Models int64 `json:"models"`
	// Errors counts requests answered with an error status.
	Errors int64 `json:"errors"`
	// Cancelled counts requests abandoned because their context was
	// cancelled while waiting for Latency.
	Cancelled int64 `json:"cancelled"`
	// Injected counts chat requests answered with an injected error
	// (Config.ErrorRate); they are also counted in Errors.
	Injected int64 `json:"injected_errors"`
	// EmbedFaults counts embeddings requests that got a planned fault
	// (Config.EmbedFaults).
	EmbedFaults int64 `json:"embed_faults"`
}

// maxBodyBytes bounds request bodies.
const maxBodyBytes = 64 << 20

type counters struct {
	chat, streamed, structured, scripted, toolCalls  atomic.Int64
	embeddings, embeddedTexts, models, errs, cancels atomic.Int64
	injected                                         atomic.Int64
	embedFaults                                      atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Chat:          c.chat.Load(),
		Streamed:      c.streamed.Load(),
		Structured:    c.structured.Load(),
		Scripted:      c.scripted.Load(),
		ToolCalls:     c.toolCalls.Load(),
		Embeddings:    c.embeddings.Load(),
		EmbeddedTexts: c.embeddedTexts.Load(),
		Models:        c.models.Load(),
		Errors:        c.errs.Load(),
		Cancelled:     c.cancels.Load(),
		Injected:      c.injected.Load(),
		EmbedFaults:   c.embedFaults.Load(),
	}
}

type handler struct {
	cfg     Config
	script  *script
	mux     *http.ServeMux
	stats   counters
	seq     atomic.Int64 // completion ids
	callSeq atomic.Int64 // tool call ids
	logMu   sync.Mutex
	started int64
	faults  *faults // LatencyDist, ErrorRate
	// embedPlan is Config.EmbedFaults as a queue (POST /_mock/faults).
	embedPlan embedPlan
}

// NewHandler returns the mock server's HTTP handler for cfg. The handler is
// safe for concurrent use; its counters live as long as it does.
func NewHandler(cfg Config) http.Handler {
	h := &handler{cfg: cfg, script: newScript(cfg.Script), mux: http.NewServeMux(), started: time.Now().Unix()}
	h.faults = newFaults(cfg.Seed)
	h.embedPlan.set(cfg.EmbedFaults)
	h.mux.HandleFunc("/_mock/faults", h.serveFaults)
	for _, prefix := range []string{"/v1", ""} {
		h.mux.HandleFunc(prefix+"/chat/completions", h.api(http.MethodPost, h.chat))
		h.mux.HandleFunc(prefix+"/embeddings", h.api(http.MethodPost, h.embeddings))
		h.mux.HandleFunc(prefix+"/models", h.api(http.MethodGet, h.listModels))
		h.mux.HandleFunc(prefix+"/models/{id...}", h.api(http.MethodGet, h.getModel))
		h.mux.HandleFunc(prefix+"/stats", h.only(http.MethodGet, h.serveStats))
	}
	h.mux.HandleFunc("/healthz", h.only(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, http.StatusNotFound, "invalid_request_error",
			fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path), "", "unknown_url")
	})
	return h
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Log == nil {
		h.mux.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	h.mux.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), noteKey{}, &rec.note)))
	h.logf("%s %s %d %s %s", r.Method, r.URL.Path, rec.status, time.Since(start).Round(time.Microsecond), rec.note)
}

// only wraps a handler that answers one method.
func (h *handler) only(method string, fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			h.fail(w, http.StatusMethodNotAllowed, "invalid_request_error",
				fmt.Sprintf("Method %s not allowed for %s (use %s)", r.Method, r.URL.Path, method), "", "method_not_allowed")
			return
		}
		fn(w, r)
	}
}

// api wraps an API handler: method check, reading the whole body, then
// Latency. The body is read first so that the server notices a client that
// goes away during the sleep (net/http watches the connection only once the
// body is consumed).
func (h *handler) api(method string, fn http.HandlerFunc) http.HandlerFunc {
	return h.only(method, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				h.fail(w, http.StatusRequestEntityTooLarge, "invalid_request_error",
					fmt.Sprintf("Request body larger than %d bytes", maxBodyBytes), "", "request_too_large")
				return
			}
			h.fail(w, http.StatusBadRequest, "invalid_request_error", "Could not read the request body: "+err.Error(), "", "")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if !h.sleep(r.Context()) {
			h.stats.cancels.Add(1)
			note(r, "cancelled during latency")
			return
		}
		fn(w, r)
	})
}

// sleep waits Config.Latency (or a draw from Config.LatencyDist); false if
// ctx ended first.
func (h *handler) sleep(ctx context.Context) bool {
	lat := h.faults.latency(&h.cfg)
	if lat <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(lat)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (h *handler) serveStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.stats.snapshot())
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (h *handler) modelIDs() []string {
	if len(h.cfg.Models) > 0 {
		return h.cfg.Models
	}
	return DefaultModels
}

func (h *handler) listModels(w http.ResponseWriter, r *http.Request) {
	data := []modelObject{}
	for _, id := range h.modelIDs() {
		data = append(data, modelObject{ID: id, Object: "model", Created: h.started, OwnedBy: "mockllm"})
	}
	h.stats.models.Add(1)
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (h *handler) getModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	for _, m := range h.modelIDs() {
		if m == id {
			h.stats.models.Add(1)
			writeJSON(w, http.StatusOK, modelObject{ID: id, Object: "model", Created: h.started, OwnedBy: "mockllm"})
			return
		}
	}
	h.fail(w, http.StatusNotFound, "invalid_request_error",
		fmt.Sprintf("The model '%s' does not exist", id), "model", "model_not_found")
}

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     *int            `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
	User           string          `json:"user"`
}

type embeddingData struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32 or base64 string
}

func (h *handler) embeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingRequest
	if !h.decode(w, r, &req) {
		return
	}
	texts, err := embeddingInputs(req.Input)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "invalid_request_error", err.Error(), "input", "")
		return
	}
	done, wrongDim := h.applyEmbedFault(w, r)
	if done {
		return
	}
	dim := h.cfg.EmbeddingDimensions
	if dim <= 0 {
		dim = DefaultEmbeddingDimensions
		if strings.Contains(req.Model, "-3-large") {
			dim = 3072
		}
	}
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > MaxEmbeddingDimensions {
			h.fail(w, http.StatusBadRequest, "invalid_request_error",
				fmt.Sprintf("Invalid 'dimensions': %d (must be between 1 and %d)", *req.Dimensions, MaxEmbeddingDimensions), "dimensions", "invalid_value")
			return
		}
		dim = *req.Dimensions
	}
	if wrongDim > 0 {
		dim = wrongDim
	}
	base64Out := false
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		base64Out = true
	default:
		h.fail(w, http.StatusBadRequest, "invalid_request_error",
			fmt.Sprintf("Invalid 'encoding_format': %q (want \"float\" or \"base64\")", req.EncodingFormat), "encoding_format", "invalid_value")
		return
	}
	model := req.Model
	if model == "" {
		model = "text-embedding-3-small"
	}
	data := make([]embeddingData, len(texts))
	tokens := 0
	for i, t := range texts {
		v := Embed(t, dim)
		var emb any = v
		if base64Out {
			emb = encodeBase64(v)
		}
		data[i] = embeddingData{Object: "embedding", Index: i, Embedding: emb}
		tokens += approxTokens(t)
	}
	h.stats.embeddings.Add(1)
	h.stats.embeddedTexts.Add(int64(len(texts)))
	note(r, fmt.Sprintf("embeddings n=%d dim=%d format=%s", len(texts), dim, map[bool]string{true: "base64", false: "float"}[base64Out]))
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list",
		"data":   data,
		"model":  model,
		"usage":  map[string]int{"prompt_tokens": tokens, "total_tokens": tokens},
	})
}

// decode parses the JSON request body (already read by api) into v,
// answering 400 on failure.
func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "invalid_request_error", "Could not read the request body: "+err.Error(), "", "")
		return false
	}
	if h.cfg.Log != nil && h.cfg.LogBodies {
		h.logf("%s %s body: %s", r.Method, r.URL.Path, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		h.fail(w, http.StatusBadRequest, "invalid_request_error",
			"We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. "+
				"The OpenAI API expects a JSON payload, but what was sent was not valid JSON.) Detail: "+err.Error(), "", "invalid_json")
		return false
	}
	return true
}

// apiError is OpenAI's error object.
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (h *handler) fail(w http.ResponseWriter, status int, typ, msg, param, code string) {
	h.stats.errs.Add(1)
	e := apiError{Message: msg, Type: typ}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	writeJSON(w, status, map[string]apiError{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"message":"internal error encoding response","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (h *handler) logf(format string, args ...any) {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	fmt.Fprintf(h.cfg.Log, "mockllm: "+format+"\n", args...)
}

// noteKey carries a *string in the request context where handlers leave a
// short description for the request log.
type noteKey struct{}

func note(r *http.Request, s string) {
	if p, ok := r.Context().Value(noteKey{}).(*string); ok {
		*p = s
	}
}

// statusRecorder remembers the status code for the request log, passing
// flushes through for streaming.
type statusRecorder struct {
	http.ResponseWriter
	status int
	note   string
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ListenAndServe listens on addr (host:port; port 0 picks a free one) and
// serves the mock API with cfg until ctx is cancelled, then shuts down
// gracefully (in-flight requests get up to 5 seconds). It returns nil after a
// clean shutdown.
func ListenAndServe(ctx context.Context, addr string, cfg Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return Serve(ctx, ln, cfg)
}

// Serve is ListenAndServe on an existing listener, which it closes. Use it
// to learn the real address (ln.Addr()) before serving.
func Serve(ctx context.Context, ln net.Listener, cfg Config) error {
	srv := &http.Server{
		Handler:           NewHandler(cfg),
		ReadHeaderTimeout: 30 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		srv.Close()
	}
	return err
}
