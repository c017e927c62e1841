package embed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crewcore/crewcore/internal/mockllm"
)

// mock starts crewcore's mock OpenAI server in process with the given
// embeddings fault plan and latency.
func mock(t *testing.T, plan string, latency time.Duration) *httptest.Server {
	t.Helper()
	faults, err := mockllm.ParseEmbedFaults(plan)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mockllm.NewHandler(mockllm.Config{EmbedFaults: faults, Latency: latency}))
	t.Cleanup(srv.Close)
	return srv
}

func mockStats(t *testing.T, srv *httptest.Server) mockllm.Stats {
	t.Helper()
	resp, err := http.Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st mockllm.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sameVec(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func fast(cfg Config) Config {
	cfg.Provider = "openai"
	if cfg.Model == "" {
		cfg.Model = "text-embedding-3-small"
	}
	cfg.RetryBase = time.Millisecond
	cfg.RetryMax = 5 * time.Millisecond
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	return cfg
}

// The vectors are exactly the server's float32 values, in input order.
func TestClientVectorsAreTheProviders(t *testing.T) {
	srv := mock(t, "", 0)
	for _, dims := range []int{0, 64} {
		c := newClient(t, fast(Config{BaseURL: srv.URL + "/v1", APIKey: "sk-test", Dimensions: dims}))
		texts := []string{"alpha beta", "gamma", "alpha beta", "delta epsilon zeta"}
		resp, err := c.Embed(context.Background(), texts)
		if err != nil {
			t.Fatal(err)
		}
		want := dims
		if want == 0 {
			want = mockllm.DefaultEmbeddingDimensions
		}
		for i, text := range texts {
			if !sameVec(resp.Vectors[i], mockllm.Embed(text, want)) {
				t.Fatalf("dims %d text %d: vector differs from the server's", dims, i)
			}
		}
		if resp.Tokens <= 0 || len(resp.PerText) != len(texts) {
			t.Fatalf("tokens %d per text %v", resp.Tokens, resp.PerText)
		}
		if st := c.Stats(); st.Deduplicated != 1 || st.Sent != 3 || st.Requests != 1 {
			t.Fatalf("stats %+v", st)
		}
	}
}

// Both answer formats decode to the same float32 values.
func TestDecodeResponseFormats(t *testing.T) {
	b64 := `{"data":[{"index":1,"embedding":"AACAPwAAAMA="},{"index":0,"embedding":"AAAAAAAAgD8="}],"usage":{"prompt_tokens":3,"total_tokens":3}}`
	arr := `{"data":[{"embedding":[0,1]},{"embedding":[1.0,-2.0]}],"usage":{"prompt_tokens":3}}`
	for name, body := range map[string]string{"base64": b64, "float": arr} {
		r, err := DecodeResponse([]byte(body), 2)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !sameVec(r.Vectors[0], []float32{0, 1}) || !sameVec(r.Vectors[1], []float32{1, -2}) || r.Tokens != 3 {
			t.Fatalf("%s: %+v", name, r)
		}
	}
	for _, tc := range []struct{ body, want string }{
		{`{"data":[]}`, "0 embeddings for 2 inputs"},
		{`{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[1]}]}`, "appears twice"},
		{`{"data":[{"index":0,"embedding":[1]},{"index":5,"embedding":[1]}]}`, "out of range"},
		{`{"data":[{"embedding":[1]},{"embedding":[1,2]}]}`, "has 2 dimensions"},
		{`{"data":[{"embedding":"AAA="},{"embedding":[1]}]}`, "whole number"},
		{`{"data":[{"embedding":[1e39]},{"embedding":[1]}]}`, "+Inf"},
		{`{"data":[{"embedding":[]},{"embedding":[1]}]}`, "empty vector"},
		{`not json`, "invalid character"},
	} {
		if _, err := DecodeResponse([]byte(tc.body), 2); !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.body, err, tc.want)
		}
	}
}

// Faults are retried within the deadline, then reported as typed errors
// naming the provider, the model and the status.
func TestClientFaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		plan     string
		cfg      Config
		kind     error
		status   int
		requests int64 // embeddings requests the server saw (answered or failed)
	}{
		{"429 then ok", "429:20ms,429", Config{}, nil, 0, 3},
		{"500 then ok", "500*2", Config{}, nil, 0, 3},
		{"closed connection then ok", "close", Config{}, nil, 0, 2},
		{"wrong dimension then ok", "dim:7", Config{Dimensions: 32}, nil, 0, 2},
		{"hang then ok", "hang:2s", Config{AttemptTimeout: 100 * time.Millisecond}, nil, 0, 2},
		{"429 until the retries run out", "429*9", Config{MaxRetries: 2}, ErrRateLimited, 429, 3},
		{"500 until the retries run out", "503*9", Config{MaxRetries: 3}, ErrServer, 503, 4},
		{"closed until the retries run out", "close*9", Config{MaxRetries: 2}, ErrConnection, 0, 3},
		{"wrong dimension every time", "dim:7*9", Config{Dimensions: 32, MaxRetries: 1}, ErrDimension, 0, 2},
		{"400 is not retried", "400", Config{}, ErrStatus, 400, 1},
		{"hang past the deadline", "hang:3s*3", Config{Timeout: 300 * time.Millisecond}, ErrTimeout, 0, 1},
		{"retry-after past the deadline fails at once", "429:10s", Config{Timeout: 2 * time.Second}, ErrRateLimited, 429, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := mock(t, tc.plan, 0)
			cfg := tc.cfg
			cfg.BaseURL = srv.URL + "/v1"
			c := newClient(t, fast(cfg))
			start := time.Now()
			resp, err := c.Embed(context.Background(), []string{"one text", "another text"})
			if tc.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				want := mockllm.Embed("another text", max(cfg.Dimensions, 0))
				if cfg.Dimensions == 0 {
					want = mockllm.Embed("another text", mockllm.DefaultEmbeddingDimensions)
				}
				if !sameVec(resp.Vectors[1], want) {
					t.Fatal("vector differs from the server's")
				}
			} else {
				if !errors.Is(err, tc.kind) {
					t.Fatalf("error %v, want %v", err, tc.kind)
				}
				msg := err.Error()
				if !strings.Contains(msg, "openai") || !strings.Contains(msg, "text-embedding-3-small") {
					t.Fatalf("error %q does not name the provider and model", msg)
				}
				var ae *APIError
				if errors.As(err, &ae) && ae.Status != tc.status {
					t.Fatalf("status %d, want %d (%v)", ae.Status, tc.status, err)
				}
				if tc.status != 0 && !strings.Contains(msg, fmt.Sprintf("HTTP %d", tc.status)) {
					t.Fatalf("error %q does not name the status", msg)
				}
			}
			if tc.kind == ErrTimeout && time.Since(start) > 2*time.Second {
				t.Fatalf("the call outlived its deadline: %s", time.Since(start))
			}
			// Let the server count requests it is still sleeping in.
			deadline := time.Now().Add(3 * time.Second)
			for {
				st := mockStats(t, srv)
				if got := st.Embeddings + st.EmbedFaults - st.Cancelled*0; got >= tc.requests || time.Now().After(deadline) {
					if st.EmbedFaults+st.Embeddings < tc.requests {
						t.Fatalf("server saw %d faults + %d answers, want %d requests", st.EmbedFaults, st.Embeddings, tc.requests)
					}
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// A 429's Retry-After is waited for before the next attempt.
func TestClientHonoursRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	inner := mockllm.NewHandler(mockllm.Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		n := len(times)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "0.3")
			http.Error(w, `{"error":{"message":"slow down"}}`, http.StatusTooManyRequests)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := newClient(t, fast(Config{BaseURL: srv.URL}))
	if _, err := c.Embed(context.Background(), []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if len(times) != 2 || times[1].Sub(times[0]) < 300*time.Millisecond {
		t.Fatalf("attempts at %v: the retry did not wait for Retry-After", times)
	}
}

// Concurrent calls from many goroutines share API calls.
func TestClientBatchesConcurrentCalls(t *testing.T) {
	srv := mock(t, "", 30*time.Millisecond)
	c := newClient(t, fast(Config{BaseURL: srv.URL + "/v1", MaxInFlight: 1}))
	const n = 40
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := fmt.Sprintf("text number %d", i%20) // every text twice
			r, err := c.Embed(context.Background(), []string{text})
			if err != nil || !sameVec(r.Vectors[0], mockllm.Embed(text, mockllm.DefaultEmbeddingDimensions)) {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	st := c.Stats()
	if bad.Load() != 0 {
		t.Fatalf("%d calls failed or got the wrong vector", bad.Load())
	}
	if st.Requests >= n/2 || st.Batched == 0 || st.Sent > 20*int64(st.Requests) {
		t.Fatalf("%d API calls for %d concurrent calls: %+v", st.Requests, n, st)
	}
	if srvN := mockStats(t, srv).Embeddings; srvN != st.Requests {
		t.Fatalf("server saw %d calls, client counted %d", srvN, st.Requests)
	}
}

// Calls larger than MaxBatch are split; each part is one API call.
func TestClientSplitsLargeCalls(t *testing.T) {
	srv := mock(t, "", 0)
	c := newClient(t, fast(Config{BaseURL: srv.URL + "/v1", MaxBatch: 3, MaxInFlight: 1}))
	texts := make([]string, 10)
	for i := range texts {
		texts[i] = fmt.Sprintf("t%d", i)
	}
	r, err := c.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		if !sameVec(r.Vectors[i], mockllm.Embed(text, mockllm.DefaultEmbeddingDimensions)) {
			t.Fatalf("text %d", i)
		}
	}
	if got := mockStats(t, srv).Embeddings; got != 4 {
		t.Fatalf("%d API calls, want 4", got)
	}
}

// The client-side rate limit spaces API calls.
func TestClientRateLimit(t *testing.T) {
	srv := mock(t, "", 0)
	c := newClient(t, fast(Config{BaseURL: srv.URL + "/v1", RateLimit: 20, RateBurst: 1}))
	start := time.Now()
	for i := range 5 {
		if _, err := c.Embed(context.Background(), []string{fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el < 190*time.Millisecond {
		t.Fatalf("5 calls at 20/s took %s, want >= 200ms", el)
	}
	// A deadline the limiter cannot meet fails as a timeout.
	slow := newClient(t, fast(Config{BaseURL: srv.URL + "/v1", RateLimit: 0.1, Timeout: 200 * time.Millisecond}))
	slow.Embed(context.Background(), []string{"first"})
	if _, err := slow.Embed(context.Background(), []string{"second"}); !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v, want ErrTimeout", err)
	}
}

func TestClientRequestShape(t *testing.T) {
	var got struct {
		path, query, auth, apiKey, org string
		body                           map[string]any
	}
	inner := mockllm.NewHandler(mockllm.Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.path, got.query = r.URL.Path, r.URL.RawQuery
		got.auth, got.apiKey, got.org = r.Header.Get("Authorization"), r.Header.Get("api-key"), r.Header.Get("OpenAI-Organization")
		b, _ := io.ReadAll(r.Body)
		got.body = nil
		json.Unmarshal(b, &got.body)
		r.URL.Path = "/v1/embeddings"
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := newClient(t, fast(Config{BaseURL: srv.URL + "/v1/", APIKey: "sk-1", Dimensions: 8, Headers: map[string]string{"OpenAI-Organization": "org-1"}}))
	if _, err := c.Embed(context.Background(), []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if got.path != "/v1/embeddings" || got.auth != "Bearer sk-1" || got.org != "org-1" ||
		got.body["encoding_format"] != "base64" || got.body["dimensions"] != float64(8) || got.body["model"] != "text-embedding-3-small" {
		t.Fatalf("openai request: %+v", got)
	}
	az := newClient(t, fast(Config{Provider: "azure", BaseURL: srv.URL, APIKey: "az-key", AzureDeployment: "emb dep", AzureAPIVersion: "2024-02-01"}))
	if _, err := az.Embed(context.Background(), []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if got.path != "/openai/deployments/emb dep/embeddings" || got.query != "api-version=2024-02-01" || got.apiKey != "az-key" || got.auth != "" {
		t.Fatalf("azure request: %+v", got)
	}
	if _, ok := got.body["dimensions"]; ok {
		t.Fatal("dimensions sent without being configured")
	}
}

func TestClientRefusesBadInput(t *testing.T) {
	for _, cfg := range []Config{
		{Model: "m"},
		{BaseURL: "ftp://x", Model: "m"},
		{BaseURL: "http://x"},
		{BaseURL: "http://x", Model: "m", Dimensions: -1},
		{BaseURL: "http://x", Model: "m", AzureDeployment: "d"},
		{BaseURL: "http://x", Model: "m", RateLimit: -1},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%+v) error %v, want ErrInvalid", cfg, err)
		}
	}
	srv := mock(t, "", 0)
	c := newClient(t, fast(Config{BaseURL: srv.URL}))
	if _, err := c.Embed(context.Background(), []string{"a", ""}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty text: %v", err)
	}
	c.Close()
	if _, err := c.Embed(context.Background(), []string{"a"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed client: %v", err)
	}
}
