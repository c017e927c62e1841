package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crewcore/crewcore/internal/mockllm"
	"github.com/crewcore/crewcore/memory"
)

func TestMemoryCommands(t *testing.T) {
	dir := t.TempDir()
	s, err := memory.Open(filepath.Join(dir, "memory.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Save(context.Background(), []memory.Record{
		{ID: "r1", Content: "launch on friday", Scope: "/crew/plan", Embedding: []float32{1, 0}},
		{ID: "r2", Content: "budget ten", Scope: "/crew/money", Embedding: []float32{0, 1}},
		{ID: "r3", Content: "deep", Scope: "/crew/plan/q1", Embedding: []float32{0.5, 0.5}},
	})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"memory", "stats", "--path", dir}, 0, []string{"records       3", "dimension     2"}},
		{[]string{"memory", "scopes", "--path", dir}, 0, []string{"/ (3)", "  crew (3)", "    plan (2)", "      q1 (1)"}},
		{[]string{"memory", "search", "--path", dir, "--like", "r1", "--limit", "1"}, 0, []string{"1.0000  /crew/plan  r1"}},
		{[]string{"memory", "search", "--path", dir, "--vector", "[0,1]", "--scope", "/crew/plan"}, 0, []string{"/crew/plan/q1"}},
		{[]string{"memory", "search", "--path", dir}, 1, nil},
		{[]string{"memory", "stats", "--path", filepath.Join(dir, "missing.db")}, 1, nil},
		{[]string{"memory", "bogus"}, 2, nil},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(context.Background(), tt.args, &out, &errb)
		if code != tt.code {
			t.Errorf("%v: exit %d, want %d (stderr %s)", tt.args, code, tt.code, errb.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", tt.args, w, out.String())
			}
		}
	}
}

func TestMemorySearchText(t *testing.T) {
	srv := httptest.NewServer(mockllm.NewHandler(mockllm.Config{}))
	defer srv.Close()
	dir := t.TempDir()
	vec, err := embedText(context.Background(), srv.URL+"/v1", "m", "launch on friday", 16)
	if err != nil || len(vec) != 16 {
		t.Fatalf("embed: %v %d", err, len(vec))
	}
	s, _ := memory.Open(filepath.Join(dir, "memory.db"), nil)
	s.Save(context.Background(), []memory.Record{{ID: "hit", Content: "launch on friday", Embedding: vec}})
	other, _ := embedText(context.Background(), srv.URL+"/v1", "m", "unrelated words entirely", 16)
	s.Save(context.Background(), []memory.Record{{ID: "miss", Content: "x", Embedding: other}})
	s.Close()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"memory", "search", "--path", dir, "--text", "friday launch", "--embed-url", srv.URL + "/v1", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rows []struct{ ID string }
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil || len(rows) != 2 || rows[0].ID != "hit" {
		t.Fatalf("rows %+v err %v", rows, err)
	}
}
