package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewcore/crewcore/memory"
	"github.com/crewcore/crewcore/pgmemory"
)

var (
	pgOnce sync.Once
	pgDSN  string
	pgWhy  string
)

// testPG returns the test server's DSN: CREWCORE_PG_DSN, else the server of
// tools/pgctl.py (started if needed). It skips loudly without one.
func testPG(t *testing.T) string {
	pgOnce.Do(func() {
		if pgDSN = os.Getenv("CREWCORE_PG_DSN"); pgDSN != "" {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
		py := filepath.Join(root, ".venv", "bin", "python")
		if _, err := os.Stat(py); err != nil {
			py = "python3"
		}
		var stderr bytes.Buffer
		cmd := exec.Command(py, filepath.Join(root, "tools", "pgctl.py"), "up")
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			pgWhy = fmt.Sprintf("%v: %s", err, stderr.String())
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		pgDSN = lines[len(lines)-1]
	})
	if pgDSN == "" && os.Getenv("CI") != "" {
		t.Fatalf("no PostgreSQL server under CI (.ci/run starts one): %s", pgWhy)
	}
	if pgDSN == "" {
		t.Skipf("!!! NO POSTGRESQL SERVER (%s): run `make pg-up` or set CREWCORE_PG_DSN", pgWhy)
	}
	return pgDSN
}

func dump(t *testing.T, s memory.Backend) string {
	t.Helper()
	rs, err := s.ListWithVectors(context.Background(), "", 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range rs {
		var m map[string]any
		json.Unmarshal(r.Metadata, &m)
		fmt.Fprintf(&b, "%s|%s|%s|%v|%v|%v|%s|%s|%s|%v|%v\n", r.ID, r.Content, r.Scope, r.Categories, m, r.Importance,
			r.CreatedAt.Format(memory.TimeLayout), r.LastAccessed.Format(memory.TimeLayout), r.Source, r.Private, r.Embedding)
	}
	return b.String()
}

func TestMigrateBothWays(t *testing.T) {
	dsn := testPG(t)
	ctx := context.Background()
	dir := t.TempDir()
	src, err := memory.Open(filepath.Join(dir, "src.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 123000, time.UTC)
	var recs []memory.Record
	for i := range 2500 {
		r := memory.Record{ID: fmt.Sprintf("r%04d", i), Content: fmt.Sprintf("fact %d ✓", i), Scope: fmt.Sprintf("/crew/s%d", i%7),
			Categories: []string{fmt.Sprintf("c%d", i%3)}, Metadata: json.RawMessage(fmt.Sprintf(`{"i":%d,"big":1152921504606846977}`, i)),
			Importance: float64(i%10) / 10, CreatedAt: t0.Add(time.Duration(i) * time.Second), LastAccessed: t0.Add(time.Hour), // saved in created order, as CrewAI does
			Private: i%5 == 0, Embedding: []float32{float32(i % 13), float32(i % 7), 1, float32(i%3) / 4}}
		if i%4 == 0 {
			r.Source = "agent"
		}
		if i%97 == 0 {
			r.Embedding = nil
		}
		recs = append(recs, r)
	}
	if err := src.Save(ctx, recs); err != nil {
		t.Fatal(err)
	}
	want := dump(t, src)
	q := memory.Query{Vector: []float32{3, 2, 1, 0}, Limit: 20, ScopePrefix: "/crew"}
	wantHits, _ := src.Search(ctx, q)
	src.Close()

	schema := fmt.Sprintf("migrate_%d", time.Now().UnixNano())
	defer pgmemory.DropSchema(ctx, dsn, schema)
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"memory", "migrate", "--from", filepath.Join(dir, "src.db"), "--to", dsn + "#" + schema, "--batch", "700"}, &out, &errb); code != 0 {
		t.Fatalf("to postgres: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "copied 2500 records") || !strings.Contains(out.String(), "HNSW index built") {
		t.Fatalf("output: %s", out.String())
	}
	pg, err := pgmemory.Open(ctx, dsn, &pgmemory.Options{Schema: schema, ExactBelow: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got := dump(t, pg); got != want {
		t.Fatal("postgres copy differs from the source")
	}
	gotHits, err := pg.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotHits) != len(wantHits) {
		t.Fatalf("%d hits, want %d", len(gotHits), len(wantHits))
	}
	for i := range gotHits {
		if gotHits[i].Record.ID != wantHits[i].Record.ID {
			t.Fatalf("hit %d: %s, want %s (tie order lost)", i, gotHits[i].Record.ID, wantHits[i].Record.ID)
		}
	}
	pg.Close()

	out.Reset()
	back := filepath.Join(dir, "back")
	if code := run(ctx, []string{"memory", "migrate", "--from", dsn + "#" + schema, "--to", back}, &out, &errb); code != 0 {
		t.Fatalf("from postgres: exit %d: %s", code, errb.String())
	}
	b, err := memory.Open(filepath.Join(back, "memory.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := dump(t, b); got != want {
		t.Fatal("round trip differs from the source")
	}
	backHits, _ := b.Search(ctx, q)
	if !reflect.DeepEqual(ids(backHits), ids(wantHits)) {
		t.Fatal("search order differs after the round trip")
	}
}

func ids(ms []memory.Match) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Record.ID
	}
	return out
}

func TestMigrateErrors(t *testing.T) {
	ctx := context.Background()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"memory", "migrate", "--from", "x"}, &out, &errb); code != 2 {
		t.Fatalf("missing --to: exit %d", code)
	}
	errb.Reset()
	if code := run(ctx, []string{"memory", "migrate", "--from", filepath.Join(t.TempDir(), "none.db"), "--to", filepath.Join(t.TempDir(), "b")}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no store at") {
		t.Fatalf("missing source: exit %d: %s", code, errb.String())
	}
}
