package embed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	pgOnce sync.Once
	pgDSN  string
	pgWhy  string
)

// testPG returns the test server's DSN: CREWCORE_PG_DSN, else the
// repository's server started with tools/pgctl.py. Without one the test
// skips loudly (and fails under CI, which guarantees a server).
func testPG(t *testing.T) string {
	t.Helper()
	pgOnce.Do(func() {
		if pgDSN = os.Getenv("CREWCORE_PG_DSN"); pgDSN != "" {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		py := filepath.Join(root, ".venv", "bin", "python")
		out, err := exec.Command(py, filepath.Join(root, "tools", "pgctl.py"), "up").Output()
		if err != nil {
			pgWhy = err.Error()
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		pgDSN = strings.TrimSpace(lines[len(lines)-1])
	})
	if pgDSN == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("no PostgreSQL server under CI: %s", pgWhy)
		}
		t.Skipf("!!! NO POSTGRESQL SERVER (%s): run `make pg-up` or set CREWCORE_PG_DSN", pgWhy)
	}
	return pgDSN
}

func pgSchema(t *testing.T, dsn string) string {
	name := fmt.Sprintf("embed_t_%d_%d", os.Getpid(), time.Now().UnixNano()%1_000_000_000)
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, dsn)
		if err == nil {
			c.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`)
			c.Close(ctx)
		}
	})
	return name
}

// The PostgreSQL store behaves as the SQLite one: shared between opens,
// bounded with LRU eviction, counters, clear.
func TestPGStore(t *testing.T) {
	dsn := testPG(t)
	schema := pgSchema(t, dsn)
	one := entryBytes(entry("ns", "x", 100))
	a, err := OpenPG(ctx, dsn, schema, 10*one)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenPG(ctx, dsn, schema, 10*one)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if strings.Contains(a.Where(), "password") && !strings.Contains(a.Where(), "xxxxx") {
		t.Fatalf("where %q shows a password", a.Where())
	}
	t0 := time.Now()
	var all []*Entry
	for i := range 10 {
		e := entry("ns", fmt.Sprintf("text-%d", i), 100)
		all = append(all, e)
		if err := a.Put(ctx, []*Entry{e}, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.Get(ctx, []Key{all[3].Key, KeyOf("ns", "absent")})
	if err != nil || len(got) != 1 || !sameVec(got[all[3].Key].Vec, all[3].Vec) {
		t.Fatalf("get: %v %v", got, err)
	}
	if err := b.Record(ctx, map[Key]Use{all[0].Key: {At: t0.Add(time.Minute).UnixMilli(), Count: 2}}, Counters{Hits: 2, CallsSaved: 1}); err != nil {
		t.Fatal(err)
	}
	extra := entry("ns", "one too many", 100)
	if err := b.Put(ctx, []*Entry{extra, all[5]}, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, _ = a.Get(ctx, []Key{all[0].Key, all[1].Key, extra.Key})
	if got[all[0].Key] == nil || got[extra.Key] == nil || got[all[1].Key] != nil {
		t.Fatalf("after eviction: %d of 3", len(got))
	}
	st, err := a.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes > 10*one || st.Counters.Evictions < 1 || st.Counters.Hits != 2 || st.Counters.Stored != 11 {
		t.Fatalf("stats %+v", st)
	}
	if n, err := a.Clear(ctx, "ns"); err != nil || n != st.Entries {
		t.Fatalf("clear: %d %v", n, err)
	}

	// Through a Cache and an Embedder: a hit after a miss.
	srv := mock(t, "", 0)
	cl := newClient(t, fast(Config{BaseURL: srv.URL + "/v1"}))
	big, err := OpenPG(ctx, dsn, schema, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	e := &Embedder{Client: cl, Cache: NewCache(big, nil, &CacheOptions{MemBytes: -1})}
	if _, err := e.Embed(ctx, []string{"pg cached"}); err != nil {
		t.Fatal(err)
	}
	e2 := &Embedder{Client: cl, Cache: NewCache(b, nil, &CacheOptions{MemBytes: -1})}
	if r, err := e2.Embed(ctx, []string{"pg cached"}); err != nil || r.Hits != 1 {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestPGStoreUnreachable(t *testing.T) {
	_, err := OpenPG(ctx, "postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2", "", 0)
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %v (want a failure that hides the password)", err)
	}
}
