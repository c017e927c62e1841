package memory

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// readOnlyFor makes path (a directory or a file) read-only, even for root
// (tests run as root in CI, where chmod does not stop writes: a read-only
// bind mount does, as tests/conftest.py's read_only). It returns the
// function that makes it writable again (also run at cleanup).
func readOnlyFor(t *testing.T, path string) func() {
	t.Helper()
	if os.Geteuid() != 0 {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o444)
		if st.IsDir() {
			mode = 0o555
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		undo := func() { os.Chmod(path, st.Mode().Perm()) } //nolint:errcheck
		t.Cleanup(undo)
		return undo
	}
	if _, err := exec.LookPath("mount"); err != nil {
		t.Fatalf("running as root without mount(8): no way to make %s read-only: %v", path, err)
	}
	if out, err := exec.Command("mount", "--bind", path, path).CombinedOutput(); err != nil {
		t.Fatalf("bind mount %s: %v: %s", path, err, out)
	}
	mounted := true
	undo := func() {
		if mounted {
			if out, err := exec.Command("umount", path).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", path, err, out)
			}
			mounted = false
		}
	}
	t.Cleanup(undo)
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", path, path).CombinedOutput(); err != nil {
		t.Fatalf("remount %s read-only: %v: %s", path, err, out)
	}
	return undo
}

func fiveRecords(t *testing.T, path string) {
	t.Helper()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for i, sc := range []string{"/a", "/a", "/b", "/b/c", "/d"} {
		r := rec(string(rune('p'+i)), sc, float32(i), 1, 0, 0)
		r.Categories = []string{"k"}
		recs = append(recs, r)
	}
	if err := s.Save(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReadOnlyStore: a store that cannot be written (or is asked to be
// read-only) opens read-only, serves every read, refuses every write with
// ErrAccess naming the file, and loses nothing.
func TestReadOnlyStore(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      *Options
		protect   func(t *testing.T, path string) func() // nil: nothing made read-only
		immutable bool
	}{
		{name: "Options.ReadOnly", opts: &Options{ReadOnly: true}},
		{name: "read-only directory", protect: func(t *testing.T, path string) func() {
			return readOnlyFor(t, filepath.Dir(path))
		}, immutable: true},
		{name: "read-only file", protect: func(t *testing.T, path string) func() {
			return readOnlyFor(t, path)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			path := filepath.Join(dir, "memory.db")
			fiveRecords(t, path)
			undo := func() {}
			if tc.protect != nil {
				undo = tc.protect(t, path)
			}
			s, err := Open(path, tc.opts)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if !s.ReadOnly() || s.immutable != tc.immutable {
				t.Errorf("ReadOnly() %v immutable %v, want true %v", s.ReadOnly(), s.immutable, tc.immutable)
			}
			// Reads.
			if n, err := s.Count(ctx, ""); err != nil || n != 5 {
				t.Errorf("count: %d %v", n, err)
			}
			ms, err := s.Search(ctx, Query{Vector: []float32{2, 1, 0, 0}, Limit: 2})
			if err != nil || len(ms) != 2 || ms[0].Record.ID != "r" {
				t.Errorf("search: %v %v", ids(ms), err)
			}
			if r, ok, err := s.Get(ctx, "q"); err != nil || !ok || r.Scope != "/a" || len(r.Embedding) != 4 {
				t.Errorf("get: %+v %v %v", r, ok, err)
			}
			if sc, err := s.ListScopes(ctx, "/"); err != nil || len(sc) != 3 {
				t.Errorf("scopes: %v %v", sc, err)
			}
			if cats, err := s.ListCategories(ctx, ""); err != nil || cats["k"] != 5 {
				t.Errorf("categories: %v %v", cats, err)
			}
			if st, err := s.Stats(ctx); err != nil || st.Records != 5 || st.Dim != 4 {
				t.Errorf("stats: %+v %v", st, err)
			}
			if rs, err := s.List(ctx, "/b", 10, 0); err != nil || len(rs) != 2 {
				t.Errorf("list: %d %v", len(rs), err)
			}
			// Writes.
			for _, w := range []struct {
				op string
				fn func() error
			}{
				{"save", func() error { return s.Save(ctx, []Record{rec("new", "/", 1, 1, 1, 1)}) }},
				{"update", func() error { return s.Update(ctx, rec("p", "/a", 1, 1, 1, 1)) }},
				{"delete", func() error { _, err := s.Delete(ctx, Filter{IDs: []string{"p"}}); return err }},
				{"reset", func() error { return s.Reset(ctx, "") }},
				{"touch", func() error { return s.Touch(ctx, []string{"p"}) }},
				{"optimize", func() error { return s.Optimize(ctx) }},
				{"delete damaged", func() error { _, err := s.DeleteDamaged(ctx); return err }},
			} {
				err := w.fn()
				if !errors.Is(err, ErrAccess) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "read-only") {
					t.Errorf("%s: %v, want ErrAccess naming %s and read-only", w.op, err, path)
				}
			}
			if n, err := s.Count(ctx, ""); err != nil || n != 5 {
				t.Errorf("count after the refused writes: %d %v", n, err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			if err := s.Save(ctx, []Record{rec("x", "/", 1, 1, 1, 1)}); !errors.Is(err, ErrClosed) {
				t.Errorf("save after close: %v, want ErrClosed", err)
			}
			undo()
			// Writable again: nothing was lost, and it writes.
			w, err := Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if w.ReadOnly() {
				t.Error("a writable store opened read-only")
			}
			if n, err := w.Count(ctx, ""); err != nil || n != 5 {
				t.Errorf("count when writable again: %d %v", n, err)
			}
			if err := w.Save(ctx, []Record{rec("new", "/", 1, 1, 1, 1)}); err != nil {
				t.Errorf("save when writable again: %v", err)
			}
		})
	}
}

// TestReadOnlySeesOtherWriters: a read-only store (mode=ro, with the WAL
// index) sees the writes of a writable store on the same file.
func TestReadOnlySeesOtherWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory.db")
	fiveRecords(t, path)
	w, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i, id := range []string{"n1", "n2"} {
		if err := w.Save(ctx, []Record{rec(id, "/new", 9, 9, 9, 9)}); err != nil {
			t.Fatal(err)
		}
		if n, err := r.Count(ctx, "/new"); err != nil || n != i+1 {
			t.Errorf("read-only store after save %d: count %d %v", i+1, n, err)
		}
	}
	if _, err := w.Delete(ctx, Filter{IDs: []string{"p", "n1"}}); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Count(ctx, ""); err != nil || n != 5 {
		t.Errorf("read-only store after the delete: count %d %v, want 5", n, err)
	}
}

// TestReadOnlyRefusals: what a read-only open cannot serve is refused with
// ErrAccess naming the file: no store, a store that needs its upgrade, a
// WAL that cannot be read without its index.
func TestReadOnlyRefusals(t *testing.T) {
	t.Run("no store", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "memory.db")
		_, err := Open(path, &Options{ReadOnly: true})
		if !errors.Is(err, ErrAccess) || !strings.Contains(err.Error(), path) {
			t.Errorf("%v, want ErrAccess naming %s", err, path)
		}
		if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("the read-only open created %s", path)
		}
	})
	for _, version := range []string{"v1", "v2"} {
		t.Run("format "+version, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "memory.db")
			copyFile(t, filepath.Join("testdata/formats", version, "memory.db"), path)
			before, _ := os.ReadFile(path)
			undo := readOnlyFor(t, dir)
			_, err := Open(path, nil)
			if !errors.Is(err, ErrAccess) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "writable once") {
				t.Errorf("%v, want ErrAccess naming %s that says to open it writable once", err, path)
			}
			undo()
			after, _ := os.ReadFile(path)
			if string(before) != string(after) {
				t.Error("the refused read-only open changed the file")
			}
			s, err := Open(path, nil) // writable: upgraded
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
		})
	}
	t.Run("WAL without its index", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "store")
		path := filepath.Join(dir, "memory.db")
		fiveRecords(t, path)
		if err := os.WriteFile(path+"-wal", []byte("frames of a writer that died"), 0o644); err != nil {
			t.Fatal(err)
		}
		undo := readOnlyFor(t, dir)
		_, err := Open(path, nil)
		if !errors.Is(err, ErrAccess) || !strings.Contains(err.Error(), path+"-wal") {
			t.Errorf("%v, want ErrAccess naming %s-wal", err, path)
		}
		undo()
		os.Remove(path + "-wal")
	})
}
