package memory

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
	"unsafe"
)

// lowSnapshotMin makes stores of a few hundred records keep a snapshot.
func lowSnapshotMin(t *testing.T) {
	t.Helper()
	old, oldChunk := snapshotMin, snapshotChunk
	snapshotMin, snapshotChunk = 10, 64 // several chunks
	t.Cleanup(func() { snapshotMin, snapshotChunk = old, oldChunk })
}

func openPath(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// snapRecords are n records over 12 scopes and 70 categories (past the 63
// of the bit sets), some private, some without a vector.
func snapRecords(rng *rand.Rand, prefix string, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		r := rec(fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("/crew/c%d/a%d", i%3, i%4), randVec(rng, 16, nil, 0)...)
		r.Categories = []string{fmt.Sprintf("k%d", i%70), fmt.Sprintf("k%d", (i*7)%70)}
		r.Metadata = json.RawMessage(fmt.Sprintf(`{"i":%d,"tag":"t%d"}`, i, i%5))
		r.Importance = float64(i%10) / 10
		r.CreatedAt = time.Date(2026, 1, 1+i%28, 0, 0, i, 0, time.UTC)
		r.Source = fmt.Sprintf("src%d", i%3)
		r.Private = i%9 == 0
		if i%17 == 0 {
			r.Embedding = nil
		}
		out[i] = r
	}
	return out
}

// storeState is everything a caller can observe of a store.
type storeState struct {
	Records    []Record
	Count      int
	Categories map[string]int
	Scopes     []string
	Info       ScopeInfo
	Searches   [][]Match
}

func stateOf(t *testing.T, s *Store) storeState {
	t.Helper()
	var st storeState
	var err error
	if st.Records, err = s.ListWithVectors(ctx, "/", 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(st.Records, func(a, b Record) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	if st.Count, err = s.Count(ctx, "/"); err != nil {
		t.Fatal(err)
	}
	if st.Categories, err = s.ListCategories(ctx, "/"); err != nil {
		t.Fatal(err)
	}
	if st.Scopes, err = s.ListScopes(ctx, "/crew"); err != nil {
		t.Fatal(err)
	}
	if st.Info, err = s.ScopeInfo(ctx, "/crew/c1"); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	src := "src1"
	for i := range 6 {
		q := Query{Vector: randVec(rng, 16, nil, 0), Limit: 7}
		switch i {
		case 1:
			q.ScopePrefix = "/crew/c2"
		case 2:
			q.Categories = []string{"k65", "k3"}
		case 3:
			q.Privacy = &src
		case 4:
			q.Metadata = map[string]any{"tag": "t2"}
		}
		m, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		st.Searches = append(st.Searches, m)
	}
	return st
}

// fromDatabase is the state of the store at path loaded from SQLite, with
// the snapshot moved aside and put back after.
func fromDatabase(t *testing.T, path string) storeState {
	t.Helper()
	snap := snapshotPath(path)
	aside := snap + ".aside"
	had := os.Rename(snap, aside) == nil
	s := openPath(t, path)
	if s.fromSnapshot {
		t.Fatal("opened from a snapshot that was moved aside")
	}
	st := stateOf(t, s)
	s.Close()
	os.Remove(snap) // the one this open wrote
	if had {
		os.Rename(aside, snap)
	}
	return st
}

func TestSnapshotOpen(t *testing.T) {
	tests := []struct {
		name string
		// change acts on the store after its snapshot was written (s is
		// closed; path is its database).
		change       func(t *testing.T, path string)
		fromSnapshot bool
	}{
		{name: "unchanged", change: func(*testing.T, string) {}, fromSnapshot: true},
		{name: "another process wrote after it", fromSnapshot: true, change: func(t *testing.T, path string) {
			o := openPath(t, path)
			defer o.Close()
			rng := rand.New(rand.NewPCG(5, 6))
			must(t, o.Save(ctx, snapRecords(rng, "new", 40)))
			upd := snapRecords(rng, "r", 5)
			upd[2].Content, upd[3].Embedding = "rewritten", nil
			for _, r := range upd {
				must(t, o.Update(ctx, r))
			}
			_, err := o.Delete(ctx, Filter{IDs: []string{"r10", "r11", "r12", "missing"}})
			must(t, err)
			must(t, o.Touch(ctx, []string{"r20", "r21"}))
		}},
		{name: "a scope was reset", fromSnapshot: true, change: func(t *testing.T, path string) {
			o := openPath(t, path)
			defer o.Close()
			must(t, o.Reset(ctx, "/crew/c1"))
		}},
		{name: "optimize compacted the segments", change: func(t *testing.T, path string) {
			o := openPath(t, path)
			defer o.Close()
			_, err := o.Delete(ctx, Filter{ScopePrefix: "/crew/c2"})
			must(t, err)
			must(t, o.Optimize(ctx))
		}},
		{name: "a flipped byte", change: func(t *testing.T, path string) {
			b, err := os.ReadFile(snapshotPath(path))
			must(t, err)
			b[len(b)/2] ^= 0x10
			must(t, os.WriteFile(snapshotPath(path), b, 0o644))
		}},
		{name: "truncated", change: func(t *testing.T, path string) {
			st, err := os.Stat(snapshotPath(path))
			must(t, err)
			must(t, os.Truncate(snapshotPath(path), st.Size()/3))
		}},
		{name: "empty", change: func(t *testing.T, path string) {
			must(t, os.Truncate(snapshotPath(path), 0)) // nothing to map
		}},
		{name: "shorter than its header", change: func(t *testing.T, path string) {
			must(t, os.Truncate(snapshotPath(path), 20))
		}},
		{name: "another store's snapshot", change: func(t *testing.T, path string) {
			other := filepath.Join(t.TempDir(), "memory.db")
			o := openPath(t, other)
			must(t, o.Save(ctx, snapRecords(rand.New(rand.NewPCG(8, 9)), "r", 300)))
			o.Close()
			o = openPath(t, other) // writes its snapshot
			o.Close()
			b, err := os.ReadFile(snapshotPath(other))
			must(t, err)
			must(t, os.WriteFile(snapshotPath(path), b, 0o644))
		}},
		{name: "an older copy of the database came back", change: func(t *testing.T, path string) {
			// Back up the files, write and snapshot more, restore the
			// backup and write something else up to the snapshot's seq.
			dir := t.TempDir()
			files, _ := filepath.Glob(globEscape(path) + "*")
			for _, f := range files {
				if f != snapshotPath(path) {
					b, err := os.ReadFile(f)
					must(t, err)
					must(t, os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644))
				}
			}
			o := openPath(t, path)
			must(t, o.Save(ctx, snapRecords(rand.New(rand.NewPCG(10, 11)), "late", 30)))
			o.saveSnapshot(ctx)
			o.Close()
			newer, err := os.ReadFile(snapshotPath(path))
			must(t, err)
			for _, f := range files {
				if f != snapshotPath(path) {
					b, err := os.ReadFile(filepath.Join(dir, filepath.Base(f)))
					must(t, err)
					must(t, os.WriteFile(f, b, 0o644))
				}
			}
			os.Remove(path + "-wal")
			os.Remove(path + "-shm")
			// As many other writes (the pure-Python engine, say, which
			// writes no snapshot), then the newer snapshot is back.
			o = openPath(t, path)
			must(t, o.Save(ctx, snapRecords(rand.New(rand.NewPCG(12, 13)), "other", 30)))
			o.Close()
			must(t, os.WriteFile(snapshotPath(path), newer, 0o644))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lowSnapshotMin(t)
			path := filepath.Join(t.TempDir(), "memory.db")
			s := openPath(t, path)
			must(t, s.Save(ctx, snapRecords(rand.New(rand.NewPCG(1, 2)), "r", 300)))
			s.Close() // writes the snapshot: 300 changes, none yet
			if _, err := os.Stat(snapshotPath(path)); err != nil {
				t.Fatalf("no snapshot after a close with 300 records: %v", err)
			}
			tc.change(t, path)
			s = openPath(t, path)
			got := stateOf(t, s)
			used := s.fromSnapshot
			s.Close()
			if used != tc.fromSnapshot {
				t.Errorf("opened from the snapshot: %v, want %v", used, tc.fromSnapshot)
			}
			want := fromDatabase(t, path)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the store opened from the snapshot differs from the database:\n got %d records %v\nwant %d records %v",
					len(got.Records), got.Categories, len(want.Records), want.Categories)
			}
			if want.Count == 0 {
				t.Error("nothing compared")
			}
		})
	}
}

// A store below snapshotMin keeps no snapshot, and a damaged snapshot
// changes nothing in the database.
func TestSnapshotSmallStoreHasNone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory.db")
	s := openPath(t, path)
	must(t, s.Save(ctx, snapRecords(rand.New(rand.NewPCG(1, 2)), "r", 50)))
	s.Close()
	s = openPath(t, path)
	s.Close()
	if _, err := os.Stat(snapshotPath(path)); !os.IsNotExist(err) {
		t.Fatalf("a store of 50 records wrote a snapshot (%v)", err)
	}
}

// The snapshot is written again by a close, or by an open, that finds it
// more than snapshotReplayMax changes behind; not after a few changes.
func TestSnapshotRewrittenWhenFarBehind(t *testing.T) {
	lowSnapshotMin(t)
	path := filepath.Join(t.TempDir(), "memory.db")
	s := openPath(t, path)
	must(t, s.Save(ctx, snapRecords(rand.New(rand.NewPCG(1, 2)), "r", 100)))
	s.Close()
	h := readHeader(t, path)
	if h.records != 100 {
		t.Fatalf("snapshot of %d records, want 100", h.records)
	}
	// A few changes: the close leaves the snapshot as it is.
	s = openPath(t, path)
	must(t, s.Save(ctx, snapRecords(rand.New(rand.NewPCG(3, 2)), "few", 20)))
	s.Close()
	if got := readHeader(t, path); got.seq != h.seq {
		t.Fatalf("20 changes rewrote the snapshot (seq %d -> %d)", h.seq, got.seq)
	}
	// Many changes by a process that never closed (its close's snapshot is
	// undone): the next open replays them and writes it again.
	old, err := os.ReadFile(snapshotPath(path))
	must(t, err)
	s = openPath(t, path)
	must(t, s.Save(ctx, snapRecords(rand.New(rand.NewPCG(3, 3)), "many", snapshotReplayMax+10)))
	s.Close()
	if got := readHeader(t, path); got.records != 120+snapshotReplayMax+10 {
		t.Fatalf("close after %d changes: snapshot of %d records", snapshotReplayMax+10, got.records)
	}
	must(t, os.WriteFile(snapshotPath(path), old, 0o644))
	s = openPath(t, path)
	if !s.fromSnapshot {
		t.Error("not opened from the snapshot")
	}
	s.Close()
	if got := readHeader(t, path); got.seq <= h.seq || got.records != 120+snapshotReplayMax+10 {
		t.Fatalf("after an open that replayed %d changes: seq %d (was %d), %d records", snapshotReplayMax+30, got.seq, h.seq, got.records)
	}
}

func readHeader(t *testing.T, path string) snapshotHeader {
	t.Helper()
	b, err := os.ReadFile(snapshotPath(path))
	must(t, err)
	_, h, err := decodeSnapshotHeader(b)
	must(t, err)
	return h
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// seal appends the checksum a snapshot ends with.
func seal(body []byte) []byte {
	return binary.LittleEndian.AppendUint32(slices.Clone(body), crc32.Checksum(body, castagnoli))
}

// FuzzSnapshotDecode: no input makes the decoder panic or read past its
// buffer; whatever decodes re-encodes to the same bytes. The input is a
// snapshot without its checksum (the target adds it), so the fuzzer gets
// past the checksum to the records.
func FuzzSnapshotDecode(f *testing.F) {
	ix := newIndex(0)
	for i, e := range []*entry{
		{rid: 1, id: "a", content: "hello", catsJSON: `["x"]`, cats: []string{"x"}, meta: "{}", created: "2026-01-01T00:00:00", accessed: "2026-01-01T00:00:00", slot: -1},
		{rid: 2, id: "b", content: "", catsJSON: "[]", cats: []string{}, meta: `{"k":1}`, source: "s", private: true, bad: "rowid 2: broken", slot: -1},
	} {
		e.scopeID = ix.scopeFor(fmt.Sprintf("/s%d", i))
		ix.put(e, -1, false)
	}
	for _, b := range [][]byte{encodeSnapshot(ix, "0123456789abcdef", 7, "b"), encodeSnapshot(newIndex(16), "id", 0, "")} {
		f.Add(b[:len(b)-4])
	}
	f.Add([]byte(snapshotMagic + "\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, body []byte) {
		out, h, ok := decodeForFuzz(seal(body))
		if !ok {
			return
		}
		// Decoding normalizes (tables in first-use order); from then on
		// encode and decode are each other's inverse.
		once := encodeSnapshot(out, h.store, h.seq, h.atSeq)
		out2, h2, ok := decodeForFuzz(once)
		if !ok {
			t.Fatal("a snapshot the encoder wrote does not decode")
		}
		if twice := encodeSnapshot(out2, h2.store, h2.seq, h2.atSeq); string(twice) != string(once) {
			t.Fatalf("decoded and encoded again: %d bytes, want %d", len(twice), len(once))
		}
	})
}

// decodeForFuzz decodes a snapshot without vector addresses into an index
// (no store needed); ok is false when it does not decode.
func decodeForFuzz(b []byte) (*index, snapshotHeader, bool) {
	r, h, err := decodeSnapshotHeader(b)
	if err != nil {
		return nil, h, false
	}
	out := newIndex(h.dim)
	ids := make([]int32, len(h.scopes))
	for i, p := range h.scopes {
		ids[i] = out.scopeFor(p)
	}
	slab, aux, ok := decodeRecords(r.b, &h)
	if !ok {
		return nil, h, false
	}
	for i := range slab {
		e := &slab[i]
		if aux[i].seg >= 0 { // addresses need a store
			return nil, h, false
		}
		e.scopeID = ids[aux[i].scope]
		e.slot = -1
		out.entries = append(out.entries, e)
	}
	return out, h, true
}

// A snapshot over parallelWork bytes is decoded on every core: the same
// store as from the database (run with -race).
func TestSnapshotParallelDecode(t *testing.T) {
	lowSnapshotMin(t)
	path := filepath.Join(t.TempDir(), "memory.db")
	s := openPath(t, path)
	recs := snapRecords(rand.New(rand.NewPCG(1, 2)), "r", 2500)
	for i := range recs {
		recs[i].Content = fmt.Sprintf("%0600d", i)
	}
	must(t, s.Save(ctx, recs))
	s.Close()
	if st, err := os.Stat(snapshotPath(path)); err != nil || st.Size() < parallelWork {
		t.Fatalf("snapshot of %v bytes (%v), want over %d", st, err, parallelWork)
	}
	s = openPath(t, path)
	got, used := stateOf(t, s), s.fromSnapshot
	s.Close()
	if !used {
		t.Fatal("not opened from the snapshot")
	}
	if want := fromDatabase(t, path); !reflect.DeepEqual(got, want) {
		t.Errorf("the store decoded in parallel differs from the database (%d and %d records)", len(got.Records), len(want.Records))
	}
}

// TestSnapshotStringsAreCopies: an index opened from the snapshot keeps its
// strings as views of the mapped file, which is unmapped when the index is
// dropped (a close, a reload). Every string the store hands out must be a
// copy, or it would fault after that.
func TestSnapshotStringsAreCopies(t *testing.T) {
	lowSnapshotMin(t)
	path := filepath.Join(t.TempDir(), "memory.db")
	s := openPath(t, path)
	must(t, s.Save(ctx, snapRecords(rand.New(rand.NewPCG(1, 2)), "r", 300)))
	s.Close() // writes the snapshot
	s = openPath(t, path)
	defer s.Close()
	if !s.fromSnapshot || s.ix.snap == nil {
		t.Fatalf("not opened from a mapped snapshot (fromSnapshot %v)", s.fromSnapshot)
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(s.ix.snap)))
	hi := lo + uintptr(len(s.ix.snap))
	inside := func(str string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(str)))
		return str != "" && p >= lo && p < hi
	}
	// The index itself does hold views: otherwise this test shows nothing.
	if e := s.ix.entries[0]; !inside(e.id) || !inside(e.content) {
		t.Fatal("the index's strings are not views of the mapped snapshot")
	}
	check := func(what, str string) {
		t.Helper()
		if inside(str) {
			t.Errorf("%s %q points into the mapped snapshot", what, str)
		}
	}
	checkRecord := func(r Record) {
		t.Helper()
		check("record id", r.ID)
		check("content", r.Content)
		check("scope", r.Scope)
		check("source", r.Source)
		for _, c := range r.Categories {
			check("record category", c)
		}
	}
	st := stateOf(t, s)
	for _, r := range st.Records {
		checkRecord(r)
	}
	for _, ms := range st.Searches {
		for _, m := range ms {
			checkRecord(m.Record)
		}
	}
	for c := range st.Categories {
		check("category", c)
	}
	for _, sc := range append(st.Scopes, st.Info.Children...) {
		check("scope", sc)
	}
	for _, c := range st.Info.Categories {
		check("scope info category", c)
	}
	r, ok, err := s.Get(ctx, "r1")
	if err != nil || !ok {
		t.Fatalf("get r1: %v %v", ok, err)
	}
	checkRecord(r)
	if len(st.Records) != 300 || len(st.Categories) == 0 || len(st.Info.Categories) == 0 || len(st.Searches[0]) == 0 {
		t.Fatalf("too little compared: %d records, %d categories, %d in scope info, %d matches",
			len(st.Records), len(st.Categories), len(st.Info.Categories), len(st.Searches[0]))
	}
}
