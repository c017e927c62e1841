package embed

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/crewcore/crewcore/internal/mockllm"
)

var ctx = context.Background()

func openStore(t *testing.T, path string, maxBytes int64) *SQLiteStore {
	t.Helper()
	s, err := OpenSQLite(path, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func entry(ns, text string, dim int) *Entry {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(len(text)*31+i) / 7
	}
	return &Entry{Key: KeyOf(ns, text), NS: ns, Vec: v, Tokens: len(text)}
}

// Two opens of one file (two processes, as far as SQLite knows: separate
// connections) see each other's entries; vectors round-trip bit for bit.
func TestSQLiteStoreSharedRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache", "embeddings.db")
	a, b := openStore(t, path, 0), openStore(t, path, 0)
	e1, e2 := entry("ns", "hello", 16), entry("ns", "world", 16)
	if err := a.Put(ctx, []*Entry{e1, e2}, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := b.Get(ctx, []Key{e1.Key, KeyOf("other", "hello"), e2.Key})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !sameVec(got[e1.Key].Vec, e1.Vec) || got[e2.Key].Tokens != 5 || got[e2.Key].NS != "ns" {
		t.Fatalf("got %+v", got)
	}
	// A second put of the same key is not counted twice.
	if err := b.Put(ctx, []*Entry{e1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	st, err := a.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 2 || st.Bytes != entryBytes(e1)+entryBytes(e2) || st.Counters.Stored != 2 || len(st.Namespaces) != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Past the bound the least recently used entries go first.
func TestSQLiteStoreEvictsLeastRecentlyUsed(t *testing.T) {
	one := entryBytes(entry("ns", "x", 100))
	s := openStore(t, filepath.Join(t.TempDir(), "e.db"), 10*one)
	t0 := time.Now()
	var all []*Entry
	for i := range 10 {
		e := entry("ns", fmt.Sprintf("text-%d", i), 100)
		all = append(all, e)
		if err := s.Put(ctx, []*Entry{e}, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	// Use the oldest one: it must survive the eviction.
	if err := s.Record(ctx, map[Key]Use{all[0].Key: {At: t0.Add(time.Minute).UnixMilli(), Count: 1}}, Counters{Hits: 1}); err != nil {
		t.Fatal(err)
	}
	extra := entry("ns", "one too many", 100)
	if err := s.Put(ctx, []*Entry{extra}, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, []Key{all[0].Key, all[1].Key, all[2].Key, extra.Key})
	if got[all[0].Key] == nil || got[extra.Key] == nil || got[all[1].Key] != nil || got[all[2].Key] != nil {
		t.Fatalf("after eviction: %d of the 4 checked remain (want the used one and the new one)", len(got))
	}
	st, _ := s.Stats(ctx)
	if st.Bytes > 10*one || st.Counters.Evictions < 2 || st.Counters.Hits != 1 {
		t.Fatalf("stats %+v", st)
	}
	if n, err := s.Clear(ctx, ""); err != nil || n != st.Entries {
		t.Fatalf("clear: %d, %v", n, err)
	}
	if st, _ := s.Stats(ctx); st.Entries != 0 || st.Bytes != 0 || st.Counters != (Counters{}) {
		t.Fatalf("after clear: %+v", st)
	}
}

func TestSQLiteStoreRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	notSQLite := filepath.Join(dir, "notes.db")
	os.WriteFile(notSQLite, []byte("these are my notes, not a database......................................................"), 0o644)
	foreign := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite3", foreign)
	if err != nil {
		t.Fatal(err)
	}
	db.Exec(`CREATE TABLE users (id INTEGER)`)
	db.Close()
	before, _ := os.ReadFile(foreign)
	for _, p := range []string{notSQLite, foreign} {
		if _, err := OpenSQLite(p, 0); !errors.Is(err, ErrCacheCorrupt) {
			t.Fatalf("%s: error %v, want ErrCacheCorrupt", p, err)
		}
	}
	if after, _ := os.ReadFile(foreign); string(after) != string(before) {
		t.Fatal("the foreign file was modified")
	}
	// A crewcore memory store file may hold the cache too.
	mem := filepath.Join(dir, "memory.db")
	db, _ = sql.Open("sqlite3", mem)
	db.Exec(`CREATE TABLE crewcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); CREATE TABLE records (rid INTEGER)`)
	db.Close()
	openStore(t, mem, 0)
}

// The Embedder answers repeated texts from the cache, stores nothing when
// the API fails, and counts what the cache saved.
func TestEmbedderCachesAndCounts(t *testing.T) {
	srv := mock(t, "", 0)
	path := filepath.Join(t.TempDir(), "e.db")
	cl := newClient(t, fast(Config{BaseURL: srv.URL + "/v1"}))
	cache := NewCache(openStore(t, path, 0), nil, nil)
	e := &Embedder{Client: cl, Cache: cache}
	r, err := e.Embed(ctx, []string{"a b", "c d", "a b"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Hits != 0 || r.Misses != 2 || !sameVec(r.Vectors[2], mockllm.Embed("a b", mockllm.DefaultEmbeddingDimensions)) {
		t.Fatalf("first call: %+v", r)
	}
	r, err = e.Embed(ctx, []string{"c d", "a b"})
	if err != nil || r.Hits != 2 || r.Misses != 0 || !sameVec(r.Vectors[0], mockllm.Embed("c d", mockllm.DefaultEmbeddingDimensions)) {
		t.Fatalf("second call: %+v %v", r, err)
	}
	if n := mockStats(t, srv).Embeddings; n != 1 {
		t.Fatalf("%d API calls, want 1", n)
	}
	// Another process (a second store on the file, with a cold LRU) hits too.
	cache2 := NewCache(openStore(t, path, 0), nil, nil)
	e2 := &Embedder{Client: cl, Cache: cache2}
	if r, err := e2.Embed(ctx, []string{"a b"}); err != nil || r.Hits != 1 {
		t.Fatalf("second cache: %+v %v", r, err)
	}
	st, err := cache.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Process.Hits != 2 || st.Process.CallsSaved != 1 || st.Process.TokensSaved <= 0 || st.Process.APICalls != 1 {
		t.Fatalf("process counters %+v", st.Process)
	}
	if st.Store.Counters.Hits != 2 || st.Store.Entries != 2 {
		t.Fatalf("store %+v", st.Store)
	}
	st2, _ := cache2.Stats(ctx)
	if st2.Store.Counters.Hits != 3 || st2.Store.Counters.CallsSaved != 2 {
		t.Fatalf("store counters after both flushed: %+v", st2.Store.Counters)
	}

	// An API failure stores nothing.
	srvBad := mock(t, "500*99", 0)
	bad := newClient(t, fast(Config{BaseURL: srvBad.URL + "/v1", MaxRetries: 1}))
	eb := &Embedder{Client: bad, Cache: cache, NS: cl.Namespace()}
	if _, err := eb.Embed(ctx, []string{"a b", "never stored"}); !errors.Is(err, ErrServer) {
		t.Fatalf("error %v", err)
	}
	if got, _ := cache.store.Get(ctx, []Key{KeyOf(cl.Namespace(), "never stored")}); len(got) != 0 {
		t.Fatal("a failed call left an entry")
	}
}

// A cache whose store fails for good turns itself off, says so once, and
// the embedder keeps working through the API.
func TestCacheTurnsOffOnLastingFailure(t *testing.T) {
	srv := mock(t, "", 0)
	cl := newClient(t, fast(Config{BaseURL: srv.URL + "/v1"}))
	path := filepath.Join(t.TempDir(), "e.db")
	store := openStore(t, path, 0)
	cache := NewCache(store, nil, nil)
	e := &Embedder{Client: cl, Cache: cache}
	store.Close() // every later store call fails with ErrClosed
	for range 2 {
		if r, err := e.Embed(ctx, []string{"x y"}); err != nil || r.Dim != mockllm.DefaultEmbeddingDimensions {
			t.Fatalf("embed with a failing cache: %+v %v", r, err)
		}
	}
	if cache.Disabled() == nil {
		t.Fatal("the cache did not turn off")
	}
	if w := cache.TakeWarning(); w == nil {
		t.Fatal("no warning")
	}
	if w := cache.TakeWarning(); w != nil {
		t.Fatalf("warned twice: %v", w)
	}
	// A cache that could not open is off from the start.
	off := NewCache(nil, fmt.Errorf("%w: test", ErrCacheCorrupt), nil)
	e2 := &Embedder{Client: cl, Cache: off}
	if r, err := e2.Embed(ctx, []string{"x y"}); err != nil || r.Misses != 1 {
		t.Fatalf("%+v %v", r, err)
	}
	if w := off.TakeWarning(); !errors.Is(w, ErrCacheCorrupt) {
		t.Fatalf("warning %v", w)
	}
}

func TestMemLRUBound(t *testing.T) {
	e := entry("ns", "a", 10)
	m := newMemLRU(3 * e.size())
	for i := range 5 {
		m.add(entry("ns", fmt.Sprint(i), 10))
	}
	if n, b := m.len(); n != 3 || b != 3*e.size() {
		t.Fatalf("%d entries, %d bytes", n, b)
	}
	if _, ok := m.get(KeyOf("ns", "0")); ok {
		t.Fatal("the oldest entry survived")
	}
	m.clear("ns")
	if n, _ := m.len(); n != 0 {
		t.Fatal("clear")
	}
}
