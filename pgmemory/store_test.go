package pgmemory

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crewcore/crewcore/memory"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func rec(id, scope string, v ...float32) memory.Record {
	return memory.Record{ID: id, Content: "content " + id, Scope: scope, Embedding: v, Importance: 0.5,
		CreatedAt: t0, LastAccessed: t0}
}

func ids(ms []memory.Match) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Record.ID
	}
	return out
}

func recIDs(rs []memory.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRoundTripAndScores(t *testing.T) {
	s := openT(t, nil)
	full := memory.Record{
		ID: "full", Content: "Héllo ✓ 多语言 'q' \"dq\"", Scope: "crew//research/", Categories: []string{"b", "a"},
		Metadata:   json.RawMessage(`{"team":"red","n":3,"big":1152921504606846977,"f":0.5,"nested":{"x":[1,2]},"none":null}`),
		Importance: 0.75, CreatedAt: t0.Add(1500 * time.Microsecond), LastAccessed: t0.Add(time.Hour),
		Source: "user-1", Private: true, Embedding: []float32{1, -0.5, 0.25, 2},
	}
	bare := memory.Record{ID: "bare", Content: "plain", Embedding: []float32{0, 1, 0, 0}}
	must(t, s.Save(ctx, []memory.Record{full, bare}))
	g, ok, err := s.Get(ctx, "full")
	must(t, err)
	if !ok || g.Scope != "/crew/research" || !slices.Equal(g.Categories, []string{"b", "a"}) || g.Source != "user-1" ||
		!g.Private || g.Importance != 0.75 || !g.CreatedAt.Equal(full.CreatedAt) || !g.LastAccessed.Equal(full.LastAccessed) ||
		!slices.Equal(g.Embedding, full.Embedding) || string(g.Metadata) != string(full.Metadata) {
		t.Fatalf("round trip: %+v", g)
	}
	b, _, _ := s.Get(ctx, "bare")
	if b.Scope != "/" || len(b.Categories) != 0 || string(b.Metadata) != "{}" || b.Source != "" || b.CreatedAt.IsZero() {
		t.Fatalf("bare: %+v", b)
	}
	if _, ok, _ := s.Get(ctx, "nope"); ok {
		t.Fatal("unknown id found")
	}
	ms, err := s.Search(ctx, memory.Query{Vector: []float32{1, -0.5, 0.25, 2}, Limit: 2})
	must(t, err)
	if len(ms) != 2 || ms[0].Record.ID != "full" || math.Abs(ms[0].Score-1) > 1e-9 {
		t.Fatalf("search: %v", ms)
	}
	// bare is at squared distance 1+2.25+0.0625+4 = 7.3125.
	if want := 1 / (1 + 7.3125); math.Abs(ms[1].Score-want) > 1e-6 {
		t.Fatalf("l2 score %v, want %v", ms[1].Score, want)
	}
	if ms[0].Record.Embedding != nil {
		t.Fatal("vector returned without WithEmbeddings")
	}
}

func TestDimensionChecks(t *testing.T) {
	s := openT(t, nil)
	must(t, s.Save(ctx, []memory.Record{rec("a", "/", 1, 0, 0)}))
	var de *memory.DimensionError
	err := s.Save(ctx, []memory.Record{rec("b", "/", 1, 0)})
	if !errors.As(err, &de) || de.Stored != 3 || de.Got != 2 || !errors.Is(err, memory.ErrDimensionMismatch) {
		t.Fatalf("save wrong dim: %v", err)
	}
	if _, err := s.Search(ctx, memory.Query{Vector: []float32{1, 0}, Limit: 1}); !errors.As(err, &de) {
		t.Fatalf("search wrong dim: %v", err)
	}
	// A batch mixing dimensions stores nothing.
	err = s.Save(ctx, []memory.Record{rec("c", "/", 1, 1, 1), rec("d", "/", 1, 1)})
	if !errors.Is(err, memory.ErrDimensionMismatch) {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, ""); n != 1 {
		t.Fatalf("count %d after refused batch", n)
	}
	// Another handle sees the dimension; Options.Dim must agree.
	if _, err := Open(ctx, testDSN, &Options{Schema: s.Schema(), Dim: 5}); !errors.As(err, &de) {
		t.Fatalf("open with other Dim: %v", err)
	}
	// A full reset forgets the dimension.
	must(t, s.Reset(ctx, ""))
	must(t, s.Save(ctx, []memory.Record{rec("e", "/", 1, 2)}))
	if s.Dim() != 2 {
		t.Fatalf("dim %d after reset", s.Dim())
	}
	// Bad records are refused with the embedded store's sentinels.
	for _, bad := range []memory.Record{
		rec("", "/", 1, 2),
		rec("nan", "/", float32(math.NaN()), 1),
		{ID: "meta", Metadata: json.RawMessage(`[1]`)},
		{ID: "nul", Content: "a\x00b"},
	} {
		if err := s.Save(ctx, []memory.Record{bad}); !errors.Is(err, memory.ErrInvalidRecord) {
			t.Errorf("%q: %v", bad.ID, err)
		}
	}
	if err := s.Save(ctx, []memory.Record{rec("x", "/a/../b", 1, 2)}); !errors.Is(err, memory.ErrInvalidScope) {
		t.Error(err)
	}
	if err := s.Update(ctx, rec("missing", "/", 1, 2)); !errors.Is(err, memory.ErrNotFound) {
		t.Error(err)
	}
	if _, err := s.Search(ctx, memory.Query{Vector: []float32{1, 2}, Limit: -1}); !errors.Is(err, memory.ErrInvalidArgument) {
		t.Error(err)
	}
}

func TestFixedDimAndNoVectorSearch(t *testing.T) {
	s := openT(t, &Options{Dim: 3})
	if s.Dim() != 3 {
		t.Fatal(s.Dim())
	}
	ms, err := s.Search(ctx, memory.Query{Vector: []float32{1, 2, 3}, Limit: 5})
	must(t, err)
	if len(ms) != 0 {
		t.Fatal(ms)
	}
	must(t, s.Save(ctx, []memory.Record{{ID: "novec", Content: "x"}, rec("v", "/", 1, 2, 3)}))
	ms, _ = s.Search(ctx, memory.Query{Vector: []float32{1, 2, 3}, Limit: 5})
	if !slices.Equal(ids(ms), []string{"v"}) {
		t.Fatal(ids(ms))
	}
	must(t, s.Reset(ctx, "/"))
	if s.Dim() != 3 {
		t.Fatal("fixed dimension forgotten")
	}
}

// TestSameAsEmbedded runs one random workload against the embedded store and
// the Postgres store and requires identical answers from every read.
func TestSameAsEmbedded(t *testing.T) {
	for _, metric := range []memory.Metric{memory.L2, memory.Cosine} {
		t.Run(metric.String(), func(t *testing.T) {
			emb, err := memory.Open(filepath.Join(t.TempDir(), "m.db"), &memory.Options{Metric: metric, ExactBelow: -1})
			must(t, err)
			defer emb.Close()
			pg := openT(t, &Options{Metric: metric})
			differential(t, emb, pg, 400, 7)
		})
	}
}

// TestSameAsEmbeddedThroughIndex forces HNSW searches (ExactBelow 1): with
// ef_search over the store size the graph search visits everything, so the
// answers are still exact.
func TestSameAsEmbeddedThroughIndex(t *testing.T) {
	emb, err := memory.Open(filepath.Join(t.TempDir(), "m.db"), &memory.Options{ExactBelow: -1})
	must(t, err)
	defer emb.Close()
	pg := openT(t, &Options{ExactBelow: 1, EfSearch: 1000})
	differential(t, emb, pg, 300, 11)
}

func differential(t *testing.T, a, b memory.Backend, n int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	const dim = 8
	scopes := []string{"/", "/a", "/a/b", "/a/bc", "/ab", "/x/y/z", "/a/b/c"}
	cats := []string{"red", "green", "blue", "x"}
	v := func() []float32 {
		out := make([]float32, dim)
		for i := range out {
			out[i] = float32(rng.IntN(129)-64) / 64
		}
		return out
	}
	mk := func(i int) memory.Record {
		r := rec(fmt.Sprintf("r%03d", i), scopes[rng.IntN(len(scopes))], v()...)
		r.CreatedAt = t0.Add(time.Duration(rng.IntN(1000)) * time.Second)
		r.LastAccessed = r.CreatedAt
		for _, c := range cats {
			if rng.IntN(3) == 0 {
				r.Categories = append(r.Categories, c)
			}
		}
		r.Metadata = json.RawMessage(fmt.Sprintf(`{"k":%d,"big":%d,"s":"v%d"}`, rng.IntN(3), 1<<60+rng.IntN(2), rng.IntN(2)))
		r.Private = rng.IntN(4) == 0
		if rng.IntN(2) == 0 {
			r.Source = fmt.Sprintf("src%d", rng.IntN(2))
		}
		if rng.IntN(20) == 0 {
			r.Embedding = nil
		}
		return r
	}
	both := func(what string, fa, fb func() (any, error)) {
		t.Helper()
		x, errA := fa()
		y, errB := fb()
		if (errA == nil) != (errB == nil) {
			t.Fatalf("%s: embedded err %v, postgres err %v", what, errA, errB)
		}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("%s:\n embedded %v\n postgres %v", what, x, y)
		}
	}
	batch := []memory.Record{}
	for i := range n {
		batch = append(batch, mk(i))
		if len(batch) == 97 || i == n-1 {
			must(t, a.Save(ctx, batch))
			must(t, b.Save(ctx, batch))
			batch = nil
		}
	}
	pick := func(ss []string) []string {
		var out []string
		for _, s := range ss {
			if rng.IntN(3) == 0 {
				out = append(out, s)
			}
		}
		return out
	}
	for round := range 60 {
		q := memory.Query{Vector: v(), Limit: 1 + rng.IntN(15), ScopePrefix: scopes[rng.IntN(len(scopes))],
			Categories: pick(cats), MinScore: -1}
		if rng.IntN(3) == 0 {
			q.Metadata = map[string]any{"k": json.Number(fmt.Sprint(rng.IntN(3)))}
			if rng.IntN(2) == 0 {
				q.Metadata["big"] = json.Number(fmt.Sprint(1<<60 + 1))
			}
		}
		if rng.IntN(3) == 0 {
			p := fmt.Sprintf("src%d", rng.IntN(3))
			if rng.IntN(4) == 0 {
				p = ""
			}
			q.Privacy = &p
		}
		sr := func(s memory.Backend) func() (any, error) {
			return func() (any, error) {
				ms, err := s.Search(ctx, q)
				out := make([]string, len(ms))
				for i, m := range ms {
					out[i] = fmt.Sprintf("%s %.5f", m.Record.ID, m.Score)
				}
				return out, err
			}
		}
		both(fmt.Sprintf("round %d search %+v", round, q), sr(a), sr(b))
		prefix := scopes[rng.IntN(len(scopes))]
		both("count "+prefix, func() (any, error) { return a.Count(ctx, prefix) }, func() (any, error) { return b.Count(ctx, prefix) })
		both("categories "+prefix, func() (any, error) { return a.ListCategories(ctx, prefix) }, func() (any, error) { return b.ListCategories(ctx, prefix) })
		both("scopes "+prefix, func() (any, error) { return a.ListScopes(ctx, prefix) }, func() (any, error) { return b.ListScopes(ctx, prefix) })
		both("info "+prefix, func() (any, error) { return a.ScopeInfo(ctx, prefix) }, func() (any, error) { return b.ScopeInfo(ctx, prefix) })
		lim, off := rng.IntN(30), rng.IntN(20)
		both("list", func() (any, error) { r, e := a.List(ctx, prefix, lim, off); return recIDs(r), e },
			func() (any, error) { r, e := b.List(ctx, prefix, lim, off); return recIDs(r), e })
		switch rng.IntN(6) {
		case 0:
			f := memory.Filter{ScopePrefix: scopes[rng.IntN(len(scopes))], Categories: pick(cats)}
			if rng.IntN(2) == 0 {
				f.OlderThan = t0.Add(time.Duration(rng.IntN(1000)) * time.Second)
			}
			if rng.IntN(3) == 0 {
				f.Metadata = map[string]any{"s": "v1"}
			}
			both("delete", func() (any, error) { return a.Delete(ctx, f) }, func() (any, error) { return b.Delete(ctx, f) })
		case 1:
			r := mk(rng.IntN(n))
			if rng.IntN(2) == 0 {
				r.Embedding = nil // keep the stored vector
			}
			both("update "+r.ID, func() (any, error) { return nil, a.Update(ctx, r) }, func() (any, error) { return nil, b.Update(ctx, r) })
		case 2:
			f := memory.Filter{IDs: []string{fmt.Sprintf("r%03d", rng.IntN(n)), fmt.Sprintf("r%03d", rng.IntN(n)), "zz"}}
			both("delete ids", func() (any, error) { return a.Delete(ctx, f) }, func() (any, error) { return b.Delete(ctx, f) })
		case 3:
			r := []memory.Record{mk(n + round)}
			both("save", func() (any, error) { return nil, a.Save(ctx, r) }, func() (any, error) { return nil, b.Save(ctx, r) })
		}
	}
	// Full contents, with vectors.
	all := func(s memory.Backend) func() (any, error) {
		return func() (any, error) {
			rs, err := s.ListWithVectors(ctx, "", 100000, 0)
			sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
			var out []string
			for _, r := range rs {
				var m map[string]any
				json.Unmarshal(r.Metadata, &m)
				out = append(out, fmt.Sprintf("%s|%s|%s|%v|%v|%v|%s|%s|%s|%v|%v", r.ID, r.Content, r.Scope, r.Categories, m, r.Importance,
					r.CreatedAt.UTC().Format(memory.TimeLayout), r.LastAccessed.UTC().Format(memory.TimeLayout), r.Source, r.Private, r.Embedding))
			}
			return strings.Join(out, "\n"), err
		}
	}
	both("contents", all(a), all(b))
}

func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	schema := newSchema(t)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			s, err := Open(ctx, testDSN, &Options{Schema: schema, ExactBelow: 1}) // index from the first vector
			if err == nil {
				err = s.Save(ctx, []memory.Record{rec(fmt.Sprint(time.Now().UnixNano(), rand.Int()), "/w", 1, 2, 3)})
				s.Close()
			}
			errs <- err
		}()
	}
	for range 8 {
		must(t, <-errs)
	}
	s := openT(t, &Options{Schema: schema})
	var v int
	must(t, s.Pool().QueryRow(ctx, `SELECT max(version) FROM `+s.q.schema+`.crewcore_migrations`).Scan(&v))
	if v != SchemaVersion {
		t.Fatalf("schema at %d, want %d", v, SchemaVersion)
	}
	if n, _ := s.Count(ctx, "/w"); n != 8 {
		t.Fatalf("count %d", n)
	}
	var idx int
	must(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'records_hnsw_l2'`, schema).Scan(&idx))
	if idx != 1 {
		t.Fatal("no HNSW index")
	}
}

func TestForeignSchemaRefused(t *testing.T) {
	schema := newSchema(t)
	s := openT(t, &Options{Schema: schema})
	_, err := s.Pool().Exec(ctx, `INSERT INTO `+s.q.schema+`.crewcore_migrations(version) VALUES (99)`)
	must(t, err)
	if _, err := Open(ctx, testDSN, &Options{Schema: schema}); !errors.Is(err, ErrSchema) {
		t.Fatalf("newer schema: %v", err)
	}
	other := newSchema(t)
	_, err = s.Pool().Exec(ctx, `CREATE SCHEMA `+other+`; CREATE TABLE `+other+`.records (x int)`)
	must(t, err)
	if _, err := Open(ctx, testDSN, &Options{Schema: other}); !errors.Is(err, ErrSchema) {
		t.Fatalf("foreign tables: %v", err)
	}
}

func TestUnreachableServerIsClear(t *testing.T) {
	start := time.Now()
	_, err := Open(ctx, "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", &Options{RetryFor: 500 * time.Millisecond})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("want ErrUnavailable naming the server, got %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("RetryFor not honoured")
	}
	if _, err := Open(ctx, "postgresql://u:secret@127.0.0.1:1/x?connect_timeout=1", &Options{RetryFor: 100 * time.Millisecond}); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("password leaked or no error: %v", err)
	}
	if _, err := Open(ctx, "postgresql://%zz", nil); !errors.Is(err, memory.ErrInvalidArgument) {
		t.Fatalf("bad dsn: %v", err)
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, nil)
	s.Close()
	if _, err := s.Count(ctx, ""); !errors.Is(err, memory.ErrClosed) {
		t.Fatal(err)
	}
}
