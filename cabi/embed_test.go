package main

import (
	"encoding/binary"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crewcore/crewcore/internal/mockllm"
	"github.com/tinylib/msgp/msgp"
)

func embCall(t *testing.T, op string, h int64, args ...[]byte) any {
	t.Helper()
	out, err := dispatch(req(op, h, args...))
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	v, _, err := msgp.ReadIntfBytes(out)
	if err != nil {
		t.Fatalf("%s response: %v", op, err)
	}
	return v
}

func floats(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// The embedding ops end to end against the mock server: a miss, then a hit
// from the cache, statistics, external vectors through get/put, clear.
func TestEmbedOps(t *testing.T) {
	srv := httptest.NewServer(mockllm.NewHandler(mockllm.Config{}))
	defer srv.Close()
	h := embCall(t, "embed_client_new", 0, s(`{"provider":"openai","base_url":"`+srv.URL+`/v1","model":"text-embedding-3-small","dimensions":16,"timeout_s":5}`)).(int64)
	defer embCall(t, "embed_client_close", h)
	path := filepath.Join(t.TempDir(), "embeddings.db")
	open := embCall(t, "embed_cache_open", 0, s(path), s(""), i(0), i(0)).([]any)
	ch := open[0].(int64)
	if open[1] != "" {
		t.Fatalf("cache off: %v", open[1])
	}
	again := embCall(t, "embed_cache_open", 0, s(path), s(""), i(0), i(0)).([]any)
	if again[0].(int64) != ch {
		t.Fatal("a second open of the same file did not share the cache")
	}
	embCall(t, "embed_cache_close", ch) // the first reference goes; the cache stays
	defer embCall(t, "embed_cache_close", ch)

	texts := arr(s("alpha beta"), s("gamma"))
	for round, wantHits := range []int64{0, 2} {
		got := embCall(t, "embed_texts", h, i(ch), s(""), texts, f(0)).([]any)
		if got[0] != int64(16) || got[1] != int64(2) || got[3] != wantHits {
			t.Fatalf("round %d: %v", round, got[:2])
		}
		v := floats(got[2].([]byte))
		want := mockllm.Embed("gamma", 16)
		for k := range want {
			if v[16+k] != want[k] {
				t.Fatalf("round %d: vector differs", round)
			}
		}
	}
	// External vectors: a miss, put, then a hit.
	g := embCall(t, "embed_cache_get", ch, s("local|m|0"), arr(s("x"))).([]any)
	if g[1].([]byte)[0] != 0 {
		t.Fatal("hit before put")
	}
	vec := make([]byte, 8)
	binary.LittleEndian.PutUint32(vec, math.Float32bits(1.5))
	binary.LittleEndian.PutUint32(vec[4:], math.Float32bits(-2))
	embCall(t, "embed_cache_put", ch, s("local|m|0"), arr(s("x")), i(2), bin(vec), arr(i(3)))
	g = embCall(t, "embed_cache_get", ch, s("local|m|0"), arr(s("x"))).([]any)
	if g[0] != int64(2) || g[1].([]byte)[0] != 1 || floats(g[2].([]byte))[1] != -2 {
		t.Fatalf("get after put: %v", g)
	}
	st := embCall(t, "embed_cache_stats", ch).(map[string]any)
	all := st["all_processes"].(map[string]any)
	if st["entries"] != int64(3) || all["hits"] != int64(3) || all["calls_saved"] != int64(2) || all["tokens_saved"].(int64) < 3 {
		t.Fatalf("stats %v", st)
	}
	if n := embCall(t, "embed_cache_clear", ch, s("local|m|0")); n != int64(1) {
		t.Fatalf("clear = %v", n)
	}
	cs := embCall(t, "embed_client_stats", h).(map[string]any)
	if cs["requests"] != int64(1) || cs["dimension"] != int64(16) {
		t.Fatalf("client stats %v", cs)
	}
}

func TestEmbedOpsErrors(t *testing.T) {
	for _, tc := range []struct {
		op   string
		args [][]byte
		kind string
	}{
		{"embed_client_new", [][]byte{s(`{"model":"m"}`)}, "invalid_argument"},
		{"embed_client_new", [][]byte{s(`{"model":"m","base_url":"http://x","bogus":1}`)}, "invalid_argument"},
		{"embed_texts", [][]byte{i(0), s(""), arr(s("x")), f(0)}, "embed_closed"},
		{"embed_cache_get", [][]byte{s(""), arr(s("x"))}, "embed_closed"},
		{"embed_cache_open", [][]byte{s(""), s(""), i(0), i(0)}, "invalid_argument"},
	} {
		_, err := dispatch(req(tc.op, 999, tc.args...))
		if err == nil || kindOf(err).kind != tc.kind {
			t.Errorf("%s: error %v (kind %q), want kind %q", tc.op, err, kindOf(err).kind, tc.kind)
		}
	}
	// A provider failure keeps its kind; a wrong dimension carries both lengths.
	faults, _ := mockllm.ParseEmbedFaults("503*9,dim:3*9")
	srv := httptest.NewServer(mockllm.NewHandler(mockllm.Config{EmbedFaults: faults}))
	defer srv.Close()
	h := embCall(t, "embed_client_new", 0, s(`{"base_url":"`+srv.URL+`","model":"m","dimensions":8,"max_retries":2,"retry_base_s":0.001}`)).(int64)
	defer embCall(t, "embed_client_close", h)
	_, err := dispatch(req("embed_texts", h, i(0), s(""), arr(s("x")), f(0)))
	if be := kindOf(err); be.kind != "embed_server" || !strings.Contains(be.msg, "HTTP 503") {
		t.Fatalf("503: %v", err)
	}
	for range 3 { // use up the 503s
		dispatch(req("embed_texts", h, i(0), s(""), arr(s("x")), f(0)))
	}
	_, err = dispatch(req("embed_texts", h, i(0), s(""), arr(s("x")), f(0)))
	if be := kindOf(err); be.kind != "embed_dimension" || be.stored != 8 || be.got != 3 {
		t.Fatalf("dimension: %+v", kindOf(err))
	}
	// A foreign file gives an off cache with the reason, never an error.
	foreign := filepath.Join(t.TempDir(), "x.db")
	os.WriteFile(foreign, []byte(strings.Repeat("not sqlite ", 20)), 0o644)
	open := embCall(t, "embed_cache_open", 0, s(foreign), s(""), i(0), i(0)).([]any)
	defer embCall(t, "embed_cache_close", open[0].(int64))
	if !strings.Contains(open[1].(string), "corrupt") {
		t.Fatalf("off reason %q", open[1])
	}
}
