package memory

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

var ctx = context.Background()

func openT(t *testing.T, opts *Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "memory.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rec(id, scope string, v ...float32) Record {
	return Record{ID: id, Content: "content " + id, Scope: scope, Embedding: v, Importance: 0.5,
		CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), LastAccessed: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func ids(ms []Match) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Record.ID
	}
	return out
}

func TestNormalizeScope(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"", "/", false},
		{"/", "/", false},
		{"crew/a", "/crew/a", false},
		{"/crew//a/", "/crew/a", false},
		{"/a_b/100%/'q\"", "/a_b/100%/'q\"", false},
		{"/a/../b", "", true},
		{"/a/./b", "", true},
		{"/a\x00b", "", true},
		{"/a\nb", "", true},
	}
	for _, tt := range tests {
		got, err := NormalizeScope(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("NormalizeScope(%q) = %q, %v; want %q, err=%v", tt.in, got, err, tt.want, tt.err)
		}
		if err != nil && !errors.Is(err, ErrInvalidScope) {
			t.Errorf("NormalizeScope(%q) error %v does not wrap ErrInvalidScope", tt.in, err)
		}
	}
}

func TestSearchScoresAndOrder(t *testing.T) {
	for _, metric := range []Metric{L2, Cosine} {
		t.Run(metric.String(), func(t *testing.T) {
			s := openT(t, &Options{Metric: metric})
			recs := []Record{rec("a", "/", 1, 0, 0), rec("b", "/", 0, 1, 0), rec("c", "/", 0.8, 0.6, 0), rec("d", "/", 3, 4, 0)}
			if err := s.Save(ctx, recs); err != nil {
				t.Fatal(err)
			}
			got, err := s.Search(ctx, Query{Vector: []float32{1, 0, 0}, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]float64{}
			for _, r := range recs {
				v := r.Embedding
				if metric == L2 {
					d := (float64(v[0])-1)*(float64(v[0])-1) + float64(v[1])*float64(v[1]) + float64(v[2])*float64(v[2])
					want[r.ID] = 1 / (1 + d)
				} else {
					want[r.ID] = float64(v[0]) / math.Sqrt(float64(v[0]*v[0]+v[1]*v[1]+v[2]*v[2]))
				}
			}
			if len(got) != 4 {
				t.Fatalf("got %d results", len(got))
			}
			for i, m := range got {
				if math.Abs(m.Score-want[m.Record.ID]) > 1e-5 {
					t.Errorf("%s score %v, want %v", m.Record.ID, m.Score, want[m.Record.ID])
				}
				if i > 0 && got[i-1].Score < m.Score {
					t.Errorf("results not best first: %v", ids(got))
				}
			}
			if got[0].Record.ID != "a" {
				t.Errorf("best = %s, want a", got[0].Record.ID)
			}
			// min_score drops lower scores.
			got, _ = s.Search(ctx, Query{Vector: []float32{1, 0, 0}, Limit: 10, MinScore: want["c"] - 1e-6})
			if len(got) != 2 {
				t.Errorf("min score kept %v", ids(got))
			}
		})
	}
}

func TestFiltersNeverUnderfill(t *testing.T) {
	s := openT(t, nil)
	var recs []Record
	// 200 records in /noise closer to the query than the 5 in /crew/a.
	for i := range 200 {
		recs = append(recs, rec(fmt.Sprintf("n%d", i), "/noise", 1, 0.01*float32(i), 0))
	}
	for i := range 5 {
		r := rec(fmt.Sprintf("a%d", i), "/crew/a", 0, 1, float32(i))
		r.Categories = []string{"keep"}
		r.Metadata = []byte(fmt.Sprintf(`{"n": %d, "tag": "x"}`, i%2))
		recs = append(recs, r)
	}
	recs = append(recs, rec("ab", "/crew/ab", 0, 1, 0))
	if err := s.Save(ctx, recs); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    Query
		want int
	}{
		{"scope", Query{ScopePrefix: "/crew/a", Limit: 10}, 5},
		{"scope trailing slash", Query{ScopePrefix: "/crew/a/", Limit: 10}, 5},
		{"scope parent", Query{ScopePrefix: "/crew", Limit: 10}, 6},
		{"category", Query{Categories: []string{"keep", "other"}, Limit: 3}, 3},
		{"metadata", Query{Metadata: map[string]any{"n": int64(1)}, Limit: 10}, 2},
		{"metadata two keys", Query{Metadata: map[string]any{"n": 0.0, "tag": "x"}, Limit: 10}, 3},
		{"metadata missing key", Query{Metadata: map[string]any{"zzz": "x"}, Limit: 10}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.q.Vector = []float32{1, 0, 0}
			got, err := s.Search(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Fatalf("got %d (%v), want %d", len(got), ids(got), tt.want)
			}
			for _, m := range got {
				if strings.HasPrefix(m.Record.ID, "n") {
					t.Errorf("filter let %s through", m.Record.ID)
				}
			}
		})
	}
}

func TestPrivacyFilter(t *testing.T) {
	s := openT(t, nil)
	pub := rec("pub", "/", 1, 0)
	mine := rec("mine", "/", 1, 0)
	mine.Private, mine.Source = true, "alice"
	anon := rec("anon", "/", 1, 0)
	anon.Private = true
	if err := s.Save(ctx, []Record{pub, mine, anon}); err != nil {
		t.Fatal(err)
	}
	alice, none := "alice", ""
	for _, tt := range []struct {
		priv *string
		want []string
	}{{nil, []string{"anon", "mine", "pub"}}, {&alice, []string{"mine", "pub"}}, {&none, []string{"pub"}}} {
		got, err := s.Search(ctx, Query{Vector: []float32{1, 0}, Limit: 10, Privacy: tt.priv})
		if err != nil {
			t.Fatal(err)
		}
		g := ids(got)
		sort.Strings(g)
		if !slices.Equal(g, tt.want) {
			t.Errorf("privacy %v: got %v want %v", tt.priv, g, tt.want)
		}
	}
}

func TestDimensionAndBadInput(t *testing.T) {
	s := openT(t, nil)
	if err := s.Save(ctx, []Record{rec("a", "/", 1, 2, 3)}); err != nil {
		t.Fatal(err)
	}
	var de *DimensionError
	err := s.Save(ctx, []Record{rec("b", "/", 1, 2)})
	if !errors.As(err, &de) || de.Stored != 3 || de.Got != 2 || !errors.Is(err, ErrDimensionMismatch) {
		t.Fatalf("save wrong dim: %v", err)
	}
	if _, err := s.Search(ctx, Query{Vector: []float32{1}, Limit: 1}); !errors.Is(err, ErrDimensionMismatch) {
		t.Fatalf("search wrong dim: %v", err)
	}
	if err := s.Update(ctx, rec("a", "/", 1)); !errors.Is(err, ErrDimensionMismatch) {
		t.Fatalf("update wrong dim: %v", err)
	}
	bad := []struct {
		name string
		r    Record
		want error
	}{
		{"nan", rec("x", "/", float32(math.NaN()), 0, 0), ErrInvalidRecord},
		{"inf", rec("x", "/", float32(math.Inf(1)), 0, 0), ErrInvalidRecord},
		{"utf8", Record{ID: "x", Content: "a\xffb"}, ErrInvalidRecord},
		{"metadata", Record{ID: "x", Content: "c", Metadata: []byte(`[1]`)}, ErrInvalidRecord},
		{"metadata json", Record{ID: "x", Content: "c", Metadata: []byte(`{`)}, ErrInvalidRecord},
		{"scope", Record{ID: "x", Content: "c", Scope: "/a/../b"}, ErrInvalidScope},
		{"empty id", Record{Content: "c"}, ErrInvalidRecord},
		{"huge", Record{ID: "x", Content: strings.Repeat("a", MaxContentBytes+1)}, ErrInvalidRecord},
	}
	for _, tt := range bad {
		// A bad record anywhere in a batch stores nothing from the batch.
		err := s.Save(ctx, []Record{rec("ok", "/", 1, 1, 1), tt.r})
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	if n, _ := s.Count(ctx, ""); n != 1 {
		t.Fatalf("count after refused batches = %d, want 1", n)
	}
	if _, err := s.Search(ctx, Query{Vector: []float32{1, 2, 3}, Limit: -1}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("negative limit: %v", err)
	}
	if got, err := s.Search(ctx, Query{Vector: []float32{1, 2, 3}, Limit: math.MaxInt32}); err != nil || len(got) != 1 {
		t.Errorf("huge limit: %v %v", got, err)
	}
	if err := s.Update(ctx, rec("nope", "/", 1, 2, 3)); !errors.Is(err, ErrNotFound) {
		t.Errorf("update unknown: %v", err)
	}
	// 10 MB content is stored whole.
	big := rec("big", "/", 1, 1, 1)
	big.Content = strings.Repeat("0123456789", 1<<20)
	if err := s.Save(ctx, []Record{big}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Get(ctx, "big")
	if err != nil || !ok || got.Content != big.Content {
		t.Fatalf("big content round trip failed: ok=%v err=%v len=%d", ok, err, len(got.Content))
	}
}

func TestUpdateKeepsVectorAndUpsert(t *testing.T) {
	s := openT(t, nil)
	if err := s.Save(ctx, []Record{rec("a", "/x", 1, 0)}); err != nil {
		t.Fatal(err)
	}
	u := rec("a", "/y", nil...)
	u.Content = "changed"
	if err := s.Update(ctx, u); err != nil {
		t.Fatal(err)
	}
	r, _, _ := s.Get(ctx, "a")
	if r.Content != "changed" || r.Scope != "/y" || !slices.Equal(r.Embedding, []float32{1, 0}) {
		t.Fatalf("after update: %+v", r)
	}
	// Save with the same id replaces (upsert), it never duplicates.
	if err := s.Save(ctx, []Record{rec("a", "/z", 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, ""); n != 1 {
		t.Fatalf("upsert duplicated: count %d", n)
	}
	if sc, _ := s.ListScopes(ctx, "/"); !slices.Equal(sc, []string{"/z"}) {
		t.Fatalf("scopes after upsert: %v", sc)
	}
}

func TestScopesCategoriesCountsDelete(t *testing.T) {
	s := openT(t, nil)
	day := func(d int) time.Time { return time.Date(2026, 1, d, 0, 0, 0, 0, time.UTC) }
	mk := func(id, scope string, d int, cats ...string) Record {
		r := rec(id, scope, 1, 0)
		r.CreatedAt, r.Categories = day(d), cats
		return r
	}
	if err := s.Save(ctx, []Record{
		mk("1", "/crew/a", 1, "x"), mk("2", "/crew/a/deep", 2, "x", "y"), mk("3", "/crew/ab", 3, "y"),
		mk("4", "/other", 4), mk("5", "/", 5, "z"),
	}); err != nil {
		t.Fatal(err)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	sc, _ := s.ListScopes(ctx, "/")
	check("root children", sc, []string{"/crew", "/other"})
	sc, _ = s.ListScopes(ctx, "/crew")
	check("crew children", sc, []string{"/crew/a", "/crew/ab"})
	n, _ := s.Count(ctx, "/crew/a")
	check("count /crew/a", n, 2)
	n, _ = s.Count(ctx, "")
	check("count all", n, 5)
	cats, _ := s.ListCategories(ctx, "/crew/a")
	check("cats", cats, map[string]int{"x": 2, "y": 1})
	info, _ := s.ScopeInfo(ctx, "/crew")
	check("info count", info.Count, 3)
	check("info cats", info.Categories, []string{"x", "y"})
	check("info oldest", info.Oldest, day(1))
	check("info newest", info.Newest, day(3))
	check("info children", info.Children, []string{"/crew/a", "/crew/ab"})
	list, _ := s.List(ctx, "/crew", 2, 0)
	check("list", []string{list[0].ID, list[1].ID}, []string{"3", "2"})
	list, _ = s.List(ctx, "/crew", 2, 2)
	check("list page 2", len(list), 1)

	del, err := s.Delete(ctx, Filter{ScopePrefix: "/crew", Categories: []string{"y"}, OlderThan: day(3)})
	check("delete AND", del, 1) // only "2": "3" is not older than day 3
	if err != nil {
		t.Fatal(err)
	}
	info, _ = s.ScopeInfo(ctx, "/crew")
	check("info after delete", []any{info.Count, info.Oldest, info.Newest}, []any{2, day(1), day(3)})
	del, _ = s.Delete(ctx, Filter{IDs: []string{"1", "missing"}})
	check("delete ids", del, 1)
	if err := s.Reset(ctx, "/crew"); err != nil {
		t.Fatal(err)
	}
	n, _ = s.Count(ctx, "")
	check("after scoped reset", n, 2)
	if err := s.Reset(ctx, ""); err != nil {
		t.Fatal(err)
	}
	n, _ = s.Count(ctx, "")
	check("after reset", n, 0)
	if s.Dim() != 0 {
		t.Errorf("full reset kept dim %d", s.Dim())
	}
}

func TestTouch(t *testing.T) {
	s := openT(t, nil)
	if err := s.Save(ctx, []Record{rec("a", "/", 1)}); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	if err := s.Touch(ctx, []string{"a", "unknown"}); err != nil {
		t.Fatal(err)
	}
	r, _, _ := s.Get(ctx, "a")
	if r.LastAccessed.Before(before) {
		t.Fatalf("last accessed not updated: %v", r.LastAccessed)
	}
}

func TestTwoStoresOneFileSeeEachOther(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	a, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.Save(ctx, []Record{rec("1", "/s", 1, 0), rec("2", "/s", 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.Count(ctx, "/s"); n != 2 {
		t.Fatalf("b sees %d records", n)
	}
	if _, err := b.Delete(ctx, Filter{IDs: []string{"1"}}); err != nil {
		t.Fatal(err)
	}
	got, err := a.Search(ctx, Query{Vector: []float32{1, 0}, Limit: 5})
	if err != nil || len(got) != 1 || got[0].Record.ID != "2" {
		t.Fatalf("a after b's delete: %v %v", ids(got), err)
	}
	if err := b.Reset(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.Count(ctx, ""); n != 0 {
		t.Fatalf("a after b's reset sees %d", n)
	}
	// Trimmed log: a reloads fully.
	for i := range 5 {
		if err := b.Save(ctx, []Record{rec(fmt.Sprint(i), "/t", 1, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.db.Exec(`DELETE FROM changes`); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(ctx, []Record{rec("last", "/t", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.Count(ctx, "/t"); n != 6 {
		t.Fatalf("a after trimmed log sees %d", n)
	}
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	content := []byte("this is not a database at all, just text........")
	os.WriteFile(garbage, content, 0o644)
	if _, err := Open(garbage, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("garbage: %v", err)
	}
	if b, _ := os.ReadFile(garbage); string(b) != string(content) {
		t.Errorf("garbage file was modified")
	}
	// Another application's SQLite database: refused, header untouched
	// (in particular not switched to WAL).
	foreign := filepath.Join(dir, "app.db")
	fdb, err := sql.Open("sqlite3", foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fdb.Exec(`CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users(name) VALUES ('ann')`); err != nil {
		t.Fatal(err)
	}
	fdb.Close()
	before, _ := os.ReadFile(foreign)
	if _, err := Open(foreign, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("foreign sqlite: %v", err)
	}
	if after, _ := os.ReadFile(foreign); !bytes.Equal(before, after) {
		t.Errorf("foreign sqlite file was modified")
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("directory: %v", err)
	}
	// A path whose parent is a regular file cannot be created.
	if _, err := Open(filepath.Join(garbage, "sub", "m.db"), nil); !errors.Is(err, ErrAccess) {
		t.Errorf("unwritable: %v", err)
	}
}

// TestCascadeRecall checks recall@10 of the quantized cascade against exact
// search on hard data: many small clusters, so the tail of every top-10 is a
// near-tie among unrelated vectors.
func TestCascadeRecall(t *testing.T) {
	const n, dim, clusters = 12000, 768, 1200
	rng := rand.New(rand.NewPCG(1, 2))
	centers := make([][]float32, clusters)
	for i := range centers {
		centers[i] = randVec(rng, dim, nil, 0)
	}
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = rec(fmt.Sprint(i), fmt.Sprintf("/s%d", i%3), randVec(rng, dim, centers[rng.IntN(clusters)], 0.5)...)
	}
	dir := t.TempDir()
	exact, err := Open(filepath.Join(dir, "m.db"), &Options{ExactBelow: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer exact.Close()
	if err := exact.Save(ctx, recs); err != nil {
		t.Fatal(err)
	}
	quant, err := Open(filepath.Join(dir, "m.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer quant.Close()
	for _, scope := range []string{"", "/s1"} {
		hitsN, total := 0, 0
		for range 100 {
			qv := randVec(rng, dim, centers[rng.IntN(clusters)], 0.5)
			want, _ := exact.Search(ctx, Query{Vector: qv, Limit: 10, ScopePrefix: scope})
			got, _ := quant.Search(ctx, Query{Vector: qv, Limit: 10, ScopePrefix: scope})
			set := map[string]bool{}
			for _, m := range got {
				set[m.Record.ID] = true
			}
			for i, m := range want {
				total++
				if set[m.Record.ID] {
					hitsN++
				}
				if i < len(got) && math.Abs(got[i].Score-m.Score) > 1e-6 && set[m.Record.ID] && got[i].Record.ID == m.Record.ID {
					t.Fatalf("cascade score %v differs from exact %v", got[i].Score, m.Score)
				}
			}
		}
		r := float64(hitsN) / float64(total)
		t.Logf("scope %q: recall@10 = %.4f", scope, r)
		if r < 0.99 {
			t.Fatalf("scope %q: recall@10 = %.3f, want >= 0.99", scope, r)
		}
	}
}

func randVec(rng *rand.Rand, dim int, center []float32, noise float32) []float32 {
	v := make([]float32, dim)
	var norm float64
	for i := range v {
		x := float32(rng.NormFloat64())
		if center != nil {
			x = center[i] + noise*x/float32(math.Sqrt(float64(dim)))
		}
		v[i] = x
		norm += float64(x) * float64(x)
	}
	for i := range v {
		v[i] /= float32(math.Sqrt(norm))
	}
	return v
}

func TestConcurrentReadersAndWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	stores := make([]*Store, 3)
	for i := range stores {
		s, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%len(stores)]
			for i := range 40 {
				r := rec(fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("/w%d", w), float32(w), float32(i), 1)
				if err := s.Save(ctx, []Record{r}); err != nil {
					errs <- err
					return
				}
				if _, err := s.Search(ctx, Query{Vector: []float32{1, 1, 1}, Limit: 5, ScopePrefix: fmt.Sprintf("/w%d", w)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, s := range stores {
		if n, _ := s.Count(ctx, ""); n != 240 {
			t.Fatalf("count = %d, want 240", n)
		}
	}
}

// TestCascadeNonNegativeVectors: vectors with no negative component all
// share one sign code unless codes are centred; the cascade must still find
// each stored vector first when searched with it.
func TestCascadeNonNegativeVectors(t *testing.T) {
	const n, dim = 5000, 32
	rng := rand.New(rand.NewPCG(3, 4))
	recs := make([]Record, n)
	for i := range recs {
		v := randVec(rng, dim, nil, 0)
		for j := range v {
			v[j] = float32(math.Abs(float64(v[j])))
		}
		recs[i] = rec(fmt.Sprint(i), "/", v...)
	}
	s := openT(t, nil)
	if err := s.Save(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 125 {
		got, err := s.Search(ctx, Query{Vector: recs[i].Embedding, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || got[0].Record.ID != recs[i].ID || math.Abs(got[0].Score-1) > 1e-6 {
			t.Fatalf("query %d: best %v", i, ids(got))
		}
	}
}

func TestSelectSmallest(t *testing.T) {
	tests := []struct {
		name string
		dist []uint32
		c    int
		want []int32
		ok   bool
	}{
		{"distinct", []uint32{5, 1, 4, 2, 3}, 2, []int32{1, 3}, true},
		{"tie at cut filled in order", []uint32{1, 2, 2, 2, 9}, 3, []int32{0, 1, 2}, true},
		{"all equal: no information", []uint32{7, 7, 7, 7, 7, 7}, 2, nil, false},
		{"tie group larger than c", []uint32{0, 3, 3, 3, 3, 3}, 2, nil, false},
	}
	for _, tt := range tests {
		got, ok := selectSmallest(tt.dist, 16, tt.c, nil, false, nil)
		if ok != tt.ok || (ok && !slices.Equal(got, tt.want)) {
			t.Errorf("%s: got %v %v, want %v %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMetadataFilterLargeIntegersExact(t *testing.T) {
	s := openT(t, nil)
	a, b := rec("a", "/", 1, 0), rec("b", "/", 1, 0)
	a.Metadata = []byte(`{"msg": 1152921504606846976, "f": 1}`)
	b.Metadata = []byte(`{"msg": 1152921504606846977, "f": 1.0}`)
	if err := s.Save(ctx, []Record{a, b}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		filter map[string]any
		want   []string
	}{
		{map[string]any{"msg": int64(1152921504606846977)}, []string{"b"}},
		{map[string]any{"msg": json.Number("1152921504606846976")}, []string{"a"}},
		{map[string]any{"f": 1.0}, []string{"a", "b"}},
		{map[string]any{"f": int64(1)}, []string{"a", "b"}},
	} {
		got, err := s.Search(ctx, Query{Vector: []float32{1, 0}, Limit: 10, Metadata: tt.filter})
		if err != nil {
			t.Fatal(err)
		}
		g := ids(got)
		sort.Strings(g)
		if !slices.Equal(g, tt.want) {
			t.Errorf("filter %v: got %v want %v", tt.filter, g, tt.want)
		}
	}
}

// TestCategoryFilterManyCategories covers categories past the 63 that fit the
// per-slot bit set.
func TestCategoryFilterManyCategories(t *testing.T) {
	s := openT(t, nil)
	var recs []Record
	for i := range 300 {
		r := rec(fmt.Sprint(i), "/", 1, float32(i)/300)
		r.Categories = []string{fmt.Sprintf("c%d", i%100), "all"}
		recs = append(recs, r)
	}
	if err := s.Save(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cats []string
		want int
	}{
		{[]string{"c5"}, 3}, {[]string{"c80"}, 3}, {[]string{"c5", "c80"}, 6},
		{[]string{"c99", "nope"}, 3}, {[]string{"nope"}, 0}, {[]string{"all"}, 300},
	} {
		got, err := s.Search(ctx, Query{Vector: []float32{1, 0}, Limit: 1000, Categories: tt.cats})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tt.want {
			t.Errorf("categories %v: %d results, want %d", tt.cats, len(got), tt.want)
		}
		for _, m := range got {
			if !anyOf(m.Record.Categories, tt.cats) {
				t.Errorf("categories %v: %s has %v", tt.cats, m.Record.ID, m.Record.Categories)
			}
		}
	}
}
