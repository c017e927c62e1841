package pgmemory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var ctx = context.Background()

// testDSN is the server every test uses: CREWCORE_PG_DSN (the Makefile's
// test-go sets it from `make pg-up`), else one started here with
// tools/pgctl.py. Empty when no server could be had: tests then skip loudly.
var (
	testDSN   string
	noServer  string
	schemaSeq atomic.Int64
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// venvPython is the repository venv's interpreter (it has pgserver).
func venvPython() string {
	p := filepath.Join(repoRoot(), ".venv", "bin", "python")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "python3"
}

// pgctl runs tools/pgctl.py with env extra and returns its last stdout line.
func pgctl(extra []string, args ...string) (string, error) {
	cmd := exec.Command(venvPython(), append([]string{filepath.Join(repoRoot(), "tools", "pgctl.py")}, args...)...)
	cmd.Env = append(os.Environ(), extra...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("pgctl %v: %v: %s", args, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), nil
}

func TestMain(m *testing.M) {
	testDSN = os.Getenv("CREWCORE_PG_DSN")
	if testDSN == "" {
		dsn, err := pgctl(nil, "up")
		if err != nil {
			noServer = err.Error()
		}
		testDSN = dsn
	}
	if testDSN == "" && os.Getenv("CI") != "" {
		fmt.Fprintf(os.Stderr, "pgmemory: no PostgreSQL server under CI (.ci/run starts one): %s\n", noServer)
		os.Exit(1)
	}
	if testDSN == "" {
		fmt.Fprintf(os.Stderr, "\n%s\n!!! pgmemory: NO POSTGRESQL SERVER: every Postgres test SKIPS.\n!!! %s\n!!! Run `make pg-up` (needs the pgserver wheel in .venv) or set CREWCORE_PG_DSN.\n%s\n\n",
			strings.Repeat("!", 78), noServer, strings.Repeat("!", 78))
	}
	os.Exit(m.Run())
}

// needPG skips (loudly) without a server.
func needPG(t testing.TB) {
	t.Helper()
	if testDSN == "" {
		t.Skipf("!!! NO POSTGRESQL SERVER (%s): run `make pg-up` or set CREWCORE_PG_DSN", noServer)
	}
}

// newSchema returns a fresh schema name, dropped at cleanup.
func newSchema(t testing.TB) string {
	t.Helper()
	needPG(t)
	name := fmt.Sprintf("t_%d_%d_%d", os.Getpid(), schemaSeq.Add(1), rand.IntN(1_000_000))
	t.Cleanup(func() { dropSchema(testDSN, name) })
	return name
}

func dropSchema(dsn, name string) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return
	}
	defer c.Close(ctx)
	c.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`)
}

// openT opens a store in a fresh schema (or in opts.Schema when set).
func openT(t testing.TB, opts *Options) *Store {
	t.Helper()
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Schema == "" {
		o.Schema = newSchema(t)
	}
	s, err := Open(ctx, testDSN, &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// privateServer starts a server of the test's own in a temporary data
// directory (for tests that stop it) and returns its DSN.
func privateServer(t *testing.T) (dsn string, env []string) {
	t.Helper()
	needPG(t)
	dir, err := os.MkdirTemp("", "crewcore-pg-")
	if err != nil {
		t.Fatal(err)
	}
	env = []string{"CREWCORE_PGDATA=" + filepath.Join(dir, "data")}
	os.Chmod(dir, 0o755)
	dsn, err = pgctl(env, "up")
	if err != nil {
		t.Fatalf("start a private server: %v", err)
	}
	t.Cleanup(func() {
		pgctl(env, "down")
		os.RemoveAll(dir)
	})
	return dsn, env
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
