package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crewcore/crewcore/knowledge"
)

func TestKnowledgeCommand(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "knowledge.db")
	s, err := knowledge.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, "knowledge_crew", []knowledge.Chunk{
		{ID: "a", Content: "The pump PX-7 has a five year warranty.", Embedding: []float32{1, 0}},
		{ID: "b", Content: "The valve weighs two kilograms.", Embedding: []float32{0, 1}},
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"stats", []string{"stats", "--path", path}, 0, "knowledge_crew  2"},
		{"stats-dir", []string{"stats", "--path", filepath.Dir(path), "--json"}, 0, `"Chunks":2`},
		{"search", []string{"search", "--path", path, "--text", "PX-7 warranty"}, 0, "five year warranty"},
		{"search-none", []string{"search", "--path", path, "--text", "zebra"}, 0, "no results"},
		{"search-unknown", []string{"search", "--path", path, "--collection", "nope", "--text", "x"}, 1, "collection not found"},
		{"search-bad-mode", []string{"search", "--path", path, "--text", "x", "--mode", "fuzzy"}, 1, "unknown search mode"},
		{"vector-needs-embedder", []string{"search", "--path", path, "--text", "x", "--mode", "vector", "--embed-url", ""}, 1, "--embed-url"},
		{"reset-needs-target", []string{"reset", "--path", path}, 2, "--collection"},
		{"reset", []string{"reset", "--path", path, "--collection", "knowledge_crew"}, 0, "reset knowledge_crew"},
		{"reset-again", []string{"reset", "--path", path, "--collection", "knowledge_crew"}, 1, "no collection"},
		{"no-store", []string{"stats", "--path", filepath.Join(t.TempDir(), "none.db")}, 1, "no store"},
		{"unknown-sub", []string{"frobnicate"}, 2, "unknown subcommand"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(ctx, append([]string{"knowledge"}, tc.args...), &out, &errb)
			if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", code, tc.code, out.String(), errb.String(), tc.want)
			}
		})
	}
}
