package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crewcore/crewcore/memory"
)

// newCheckStore writes a closed store of 20 records; "victim" has a content
// found once in the file.
func newCheckStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "memory.db")
	s, err := memory.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []memory.Record
	for i := range 19 {
		recs = append(recs, memory.Record{ID: fmt.Sprint("r", i), Content: fmt.Sprint("content ", i), Embedding: []float32{1, float32(i)}})
	}
	recs = append(recs, memory.Record{ID: "victim", Content: "VICTIM-CONTENT-needle", Embedding: []float32{2, 2}})
	if err := s.Save(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func flipNeedle(t *testing.T, path, needle string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(needle))
	if i < 0 || bytes.Count(b, []byte(needle)) != 1 {
		t.Fatalf("needle %q not found once in %s", needle, path)
	}
	b[i+7] ^= 0x02
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryCheck(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		args   func(path string) []string
		code   int
		want   []string
	}{
		{"intact", nil, func(p string) []string { return []string{p} }, 0, []string{"records    20", "version    3", "ok"}},
		{"intact --path dir", nil, func(p string) []string { return []string{"--path", filepath.Dir(p)} }, 0, []string{"ok"}},
		{"flipped byte", func(t *testing.T, p string) { flipNeedle(t, p, "VICTIM-CONTENT-needle") },
			func(p string) []string { return []string{p} }, 1, []string{`DAMAGED    record "victim"`, "--repair"}},
		{"flipped byte --repair", func(t *testing.T, p string) { flipNeedle(t, p, "VICTIM-CONTENT-needle") },
			func(p string) []string { return []string{"--repair", p} }, 0, []string{"deleted    1 damaged record(s)", "records    19", "ok"}},
		{"truncated", func(t *testing.T, p string) {
			if err := os.Truncate(p, 0); err != nil {
				t.Fatal(err)
			}
		}, func(p string) []string { return []string{p} }, 1, nil},
		{"missing", nil, func(p string) []string { return []string{p + ".nothing.db"} }, 2, nil},
		{"two paths", nil, func(p string) []string { return []string{p, p} }, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := newCheckStore(t)
			if tt.damage != nil {
				tt.damage(t, path)
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"memory", "check"}, tt.args(path)...), &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errb.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestMemoryCheckJSON(t *testing.T) {
	path := newCheckStore(t)
	flipNeedle(t, path, "VICTIM-CONTENT-needle")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"memory", "check", "--json", path}, &out, &errb); code != 1 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var got struct {
		OK     bool
		Report memory.CheckReport
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if got.OK || len(got.Report.Damaged) != 1 || got.Report.Damaged[0].ID != "victim" || got.Report.Records != 20 {
		t.Fatalf("report %+v", got)
	}
}
