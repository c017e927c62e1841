package mockllm

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseEmbedFaults(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		in   string
		want []EmbedFault
		err  string
	}{
		{"", nil, ""},
		{"500", []EmbedFault{{Status: 500}}, ""},
		{"429:200ms*2, close", []EmbedFault{{Status: 429, RetryAfter: 200 * ms}, {Status: 429, RetryAfter: 200 * ms}, {Close: true}}, ""},
		{"hang:2s,dim:7", []EmbedFault{{Hang: 2 * time.Second}, {Dimensions: 7}}, ""},
		{"200", nil, "HTTP status"},
		{"500:1s", nil, "only 429"},
		{"hang:0s", nil, "hang:DURATION"},
		{"dim:0", nil, "dim:N"},
		{"close:1", nil, "no argument"},
		{"500*0", nil, "repeat count"},
		{"boom", nil, "HTTP status"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseEmbedFaults(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseEmbedFaults(%q) error = %v, want %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("ParseEmbedFaults(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("item %d = %+v, want %+v", i, got[i], tc.want[i])
				}
				if back, err := ParseEmbedFaults(got[i].String()); err != nil || back[0] != got[i] {
					t.Fatalf("round trip of %q: %+v, %v", got[i].String(), back, err)
				}
			}
		})
	}
}

// The plan is applied to embeddings requests in arrival order, then
// requests succeed again; chat requests never consume it.
func TestEmbedFaultPlan(t *testing.T) {
	plan, err := ParseEmbedFaults("429:1500ms,500,dim:3,close,hang:300ms")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, Config{EmbedFaults: plan})
	req := map[string]any{"model": "text-embedding-3-small", "input": []string{"a b", "c"}}

	chat(t, srv, map[string]any{"model": "gpt-4o-mini", "messages": []map[string]string{{"role": "user", "content": "hi"}}})

	resp, body := post(t, srv, "/v1/embeddings", req)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" || resp.Header.Get("retry-after-ms") != "1500" {
		t.Fatalf("first: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body = post(t, srv, "/v1/embeddings", req)
	if resp.StatusCode != 500 || !strings.Contains(string(body), "server_error") {
		t.Fatalf("second: %d %s", resp.StatusCode, body)
	}
	if vs := embed(t, srv, req); len(vs) != 2 || len(vs[0]) != 3 {
		t.Fatalf("third: want two 3-dimensional vectors, got %d x %d", len(vs), len(vs[0]))
	}
	if _, err := http.Post(srv.URL+"/v1/embeddings", "application/json", strings.NewReader(`{"model":"m","input":"x"}`)); err == nil {
		t.Fatal("fourth: the connection should have been closed without a response")
	}
	// hang: a client that gives up first gets nothing; the server notices.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/embeddings", strings.NewReader(`{"model":"m","input":"x"}`))
	if _, err := http.DefaultClient.Do(hr); err == nil {
		t.Fatal("fifth: want a client timeout during the hang")
	}
	if vs := embed(t, srv, req); len(vs) != 2 || len(vs[0]) != DefaultEmbeddingDimensions {
		t.Fatalf("after the plan: %d x %d", len(vs), len(vs[0]))
	}
	if st := stats(t, srv); st.EmbedFaults != 5 || st.Chat != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestEmbedFaultEndpoint(t *testing.T) {
	srv := newServer(t, Config{})
	resp, body := post(t, srv, "/_mock/faults", map[string]string{"embeddings": "503*2"})
	var got struct{ Embeddings []string }
	if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil || len(got.Embeddings) != 2 || got.Embeddings[0] != "503" {
		t.Fatalf("set: %d %s", resp.StatusCode, body)
	}
	req := map[string]any{"model": "m", "input": "x"}
	if resp, _ := post(t, srv, "/v1/embeddings", req); resp.StatusCode != 503 {
		t.Fatalf("want 503, got %d", resp.StatusCode)
	}
	if resp, body := post(t, srv, "/_mock/faults", map[string]string{"embeddings": "nonsense"}); resp.StatusCode != 400 {
		t.Fatalf("bad plan: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, srv, "/_mock/faults"); resp.StatusCode != 200 || !strings.Contains(string(body), `"503"`) {
		t.Fatalf("get: %d %s", resp.StatusCode, body)
	}
	post(t, srv, "/_mock/faults", map[string]string{"embeddings": ""})
	if vs := embed(t, srv, req); len(vs) != 1 {
		t.Fatalf("cleared plan: %d vectors", len(vs))
	}
}
