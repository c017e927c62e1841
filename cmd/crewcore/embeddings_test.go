package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crewcore/crewcore/embed"
)

func TestEmbeddingsCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "embeddings.db")
	s, err := embed.OpenSQLite(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	ns := embed.Namespace("openai", "http://x/v1/embeddings", "m", 0)
	var entries []*embed.Entry
	for _, text := range []string{"a", "b", "c"} {
		entries = append(entries, &embed.Entry{Key: embed.KeyOf(ns, text), NS: ns, Vec: []float32{1, 2, 3}, Tokens: 2})
	}
	other := "local||m2|0"
	entries = append(entries, &embed.Entry{Key: embed.KeyOf(other, "a"), NS: other, Vec: []float32{1}, Tokens: 1})
	if err := s.Put(context.Background(), entries, time.Now()); err != nil {
		t.Fatal(err)
	}
	s.Record(context.Background(), nil, embed.Counters{Hits: 5, CallsSaved: 4, TokensSaved: 10})
	s.Close()

	runCmd := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"embeddings"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := runCmd("stats", "--path", path, "--json")
	var st map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("stats: %d %q %q", code, out, errs)
	}
	if st["entries"] != 4.0 || st["calls_saved"] != 4.0 || st["tokens_saved"] != 10.0 || len(st["namespaces"].([]any)) != 2 {
		t.Fatalf("stats %v", st)
	}
	if code, out, _ := runCmd("stats", "--path", path); code != 0 || !strings.Contains(out, "API calls saved") || !strings.Contains(out, ns) {
		t.Fatalf("text stats: %d %q", code, out)
	}
	if code, out, _ := runCmd("clear", "--path", path, "--namespace", other); code != 0 || !strings.Contains(out, "cleared 1 ") {
		t.Fatalf("clear namespace: %d %q", code, out)
	}
	if code, out, _ := runCmd("clear", "--path", path); code != 0 || !strings.Contains(out, "cleared 3 ") {
		t.Fatalf("clear: %d %q", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"stats", "--path", filepath.Join(t.TempDir(), "none.db")}, 1, "no embedding cache"},
		{[]string{"purge"}, 2, "unknown subcommand"},
		{[]string{"stats", "extra"}, 2, "unexpected argument"},
		{[]string{"stats", "--path", path, "--dsn", "postgresql://x/y"}, 1, "not both"},
	} {
		code, _, errs := runCmd(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d %q, want %d %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
	var out2, err2 bytes.Buffer
	if code := run(context.Background(), []string{"mockllm", "--embed-faults", "boom"}, &out2, &err2); code != 2 || !strings.Contains(err2.String(), "embed-faults") {
		t.Fatalf("mockllm --embed-faults boom: %d %q", code, err2.String())
	}
}
