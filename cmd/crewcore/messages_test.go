package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crewcore/crewcore/memory"
	"github.com/crewcore/crewcore/pgmemory"
)

// withPassword puts user:hunter2 into the test server's DSN (the server
// trusts 127.0.0.1, so the password is accepted).
func withPassword(dsn, user string) string {
	scheme, rest, _ := strings.Cut(dsn, "://")
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		if user == "" {
			user, _, _ = strings.Cut(rest[:i], ":")
		}
		rest = rest[i+1:]
	}
	return scheme + "://" + user + ":hunter2@" + rest
}

// TestMemoryCommandsTakeADSN: "crewcore memory stats|scopes|search --path"
// takes a postgresql:// DSN with a #schema, as MemoryStorage does (it was
// taken for a relative directory: "no store at .../postgresql:/..."), and
// never prints the DSN's password.
func TestMemoryCommandsTakeADSN(t *testing.T) {
	ctx := context.Background()
	dsn := testPG(t)
	schema := fmt.Sprintf("cli_dsn_%d", time.Now().UnixNano())
	defer pgmemory.DropSchema(ctx, dsn, schema)
	pg, err := pgmemory.Open(ctx, dsn, &pgmemory.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	err = pg.Save(ctx, []memory.Record{
		{ID: "r1", Content: "launch on friday", Scope: "/crew/plan", Embedding: []float32{1, 0}},
		{ID: "r2", Content: "budget ten", Scope: "/crew/money", Embedding: []float32{0, 1}},
	})
	pg.Close()
	if err != nil {
		t.Fatal(err)
	}
	spec := withPassword(dsn, "") + "#" + schema
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"memory", "stats", "--path", spec}, 0, "records       2"},
		{[]string{"memory", "scopes", "--path", spec}, 0, "    plan (1)"},
		{[]string{"memory", "search", "--path", spec, "--like", "r2", "--limit", "1"}, 0, "/crew/money  r2"},
		{[]string{"memory", "stats", "--path", withPassword(dsn, "nobody_here") + "#" + schema}, 1, "nobody_here"},
		{[]string{"memory", "stats", "--path", "postgresql://bob:hunter2@127.0.0.1:notaport/db"}, 1, "notaport"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(ctx, tt.args, &out, &errb)
		all := out.String() + errb.String()
		if code != tt.code {
			t.Errorf("%v: exit %d, want %d: %s", tt.args, code, tt.code, all)
		}
		if !strings.Contains(all, tt.want) {
			t.Errorf("%v: output lacks %q:\n%s", tt.args, tt.want, all)
		}
		if strings.Contains(all, "hunter2") {
			t.Errorf("%v: the password is shown:\n%s", tt.args, all)
		}
		if strings.Contains(all, "postgresql:/bob") || strings.Contains(all, "no store at") {
			t.Errorf("%v: the DSN was taken for a path:\n%s", tt.args, all)
		}
	}
}

// TestKnowledgeCommandTakesADSN: "crewcore knowledge stats --path" takes the
// postgresql:// DSN crewcore.KnowledgeStore takes (it was mangled into a
// relative directory, with the password in the message).
func TestKnowledgeCommandTakesADSN(t *testing.T) {
	ctx := context.Background()
	dsn := testPG(t)
	schema := fmt.Sprintf("cli_kn_%d", time.Now().UnixNano())
	defer pgmemory.DropSchema(ctx, dsn, schema)
	for _, tt := range []struct {
		spec string
		code int
		want string
	}{
		{withPassword(dsn, "") + "#" + schema, 0, "store: postgresql://"},
		{"postgresql://bob:hunter2@127.0.0.1:notaport/db", 1, "notaport"},
	} {
		var out, errb bytes.Buffer
		code := run(ctx, []string{"knowledge", "stats", "--path", tt.spec}, &out, &errb)
		all := out.String() + errb.String()
		if code != tt.code || !strings.Contains(all, tt.want) {
			t.Errorf("%s: exit %d (want %d), output lacks %q:\n%s", tt.spec, code, tt.code, tt.want, all)
		}
		if strings.Contains(all, "hunter2") || strings.Contains(all, "no store at") {
			t.Errorf("%s: password shown or DSN taken for a path:\n%s", tt.spec, all)
		}
	}
}

// TestMigrateSaysWhatWasDoneAboutTheIndex: a PostgreSQL destination of
// vectors larger than pgvector's HNSW limit gets no index, and migrate says
// so (it printed "HNSW index built" for 3,072 dimensions); a small one gets
// the index and says that.
func TestMigrateSaysWhatWasDoneAboutTheIndex(t *testing.T) {
	ctx := context.Background()
	dsn := testPG(t)
	for _, tc := range []struct {
		dim          int
		want, unwant string
	}{
		{pgmemory.MaxIndexDim + 100, "no HNSW index: pgvector indexes vectors of up to 2000 dimensions, these have 2100", "index built"},
		{8, "HNSW index built in", "no HNSW index"},
	} {
		t.Run(fmt.Sprint(tc.dim), func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src.db")
			s, err := memory.Open(src, nil)
			if err != nil {
				t.Fatal(err)
			}
			var recs []memory.Record
			for i := 0; i < 20; i++ {
				v := make([]float32, tc.dim)
				v[i%tc.dim] = 1
				recs = append(recs, memory.Record{ID: fmt.Sprint("r", i), Content: "c", Embedding: v})
			}
			err = s.Save(ctx, recs)
			s.Close()
			if err != nil {
				t.Fatal(err)
			}
			schema := fmt.Sprintf("cli_idx_%d_%d", tc.dim, time.Now().UnixNano())
			defer pgmemory.DropSchema(ctx, dsn, schema)
			var out, errb bytes.Buffer
			if code := run(ctx, []string{"memory", "migrate", "--from", src, "--to", dsn + "#" + schema}, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			if !strings.Contains(out.String(), tc.want) || strings.Contains(out.String(), tc.unwant) {
				t.Fatalf("output %q: want %q, not %q", out.String(), tc.want, tc.unwant)
			}
		})
	}
}
