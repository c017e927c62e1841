package main

import (
	"path/filepath"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

func openKn(t testing.TB, dir string) int64 {
	t.Helper()
	out, err := dispatch(req("kn_open", 0, s(filepath.Join(dir, "k.db")), nilv(), boolv(false)))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := msgp.ReadArrayHeaderBytes(out)
	h, rest, err := msgp.ReadInt64Bytes(rest)
	if err != nil {
		t.Fatal(err)
	}
	if fts, _, _ := msgp.ReadBoolBytes(rest); !fts {
		t.Fatal("the library has no FTS5: build with -tags sqlite_fts5 (make lib)")
	}
	return h
}

func knSave(h int64, coll string, dim int64, docs []string, vecs []byte) []byte {
	ids := make([][]byte, len(docs))
	cs := make([][]byte, len(docs))
	ms := make([][]byte, len(docs))
	for k, d := range docs {
		ids[k], cs[k], ms[k] = s("id-"+d), s(d), s("{}")
	}
	return req("kn_save", h, s(coll), arr(ids...), arr(cs...), arr(ms...), i(dim), bin(vecs))
}

func TestKnowledgeOps(t *testing.T) {
	h := openKn(t, t.TempDir())
	defer dispatch(req("kn_close", h))
	if _, err := dispatch(knSave(h, "c", 2, []string{"pump PX-1", "valve"}, f32bytes(1, 0, 0, 1))); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   []byte
		kind string // "" = success
		rows int
	}{
		{"vector", req("kn_search", h, s("c"), s("vector"), s(""), bin(f32bytes(1, 0)), i(5), s(""), f(0), i(0)), "", 2},
		{"keyword", req("kn_search", h, s("c"), s("keyword"), s("PX-1"), nilv(), i(5), s(""), f(0), i(0)), "", 1},
		{"hybrid", req("kn_search", h, s("c"), s("hybrid"), s("valve"), bin(f32bytes(1, 0)), i(1), s(""), f(0), i(60)), "", 1},
		{"threshold", req("kn_search", h, s("c"), s("vector"), s(""), bin(f32bytes(1, 0)), i(5), s(""), f(0.9), i(0)), "", 1},
		{"dimension", req("kn_search", h, s("c"), s("vector"), s(""), bin(f32bytes(1, 0, 0)), i(5), s(""), f(0), i(0)), "kn_dimension", 0},
		{"save-dimension", knSave(h, "c", 3, []string{"x"}, f32bytes(1, 0, 0)), "kn_dimension", 0},
		{"unknown-collection", req("kn_search", h, s("nope"), s("vector"), s(""), bin(f32bytes(1, 0)), i(5), s(""), f(0), i(0)), "kn_not_found", 0},
		{"bad-mode", req("kn_search", h, s("c"), s("fuzzy"), s(""), nilv(), i(5), s(""), f(0), i(0)), "invalid_argument", 0},
		{"nul", knSave(h, "c", 2, []string{"a\x00b"}, f32bytes(1, 0)), "kn_invalid_document", 0},
		{"short-vectors", knSave(h, "c", 2, []string{"y"}, f32bytes(1)), "bad_request", 0},
		{"closed-handle", req("kn_stats", 999999), "closed", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := dispatch(tc.in)
			if tc.kind != "" {
				be := kindOf(err)
				if err == nil || be.kind != tc.kind {
					t.Fatalf("want kind %q, got %v", tc.kind, err)
				}
				if tc.kind == "kn_dimension" && (be.stored != 2 || be.got != 3) {
					t.Fatalf("dimensions %d/%d", be.stored, be.got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n, _, err := msgp.ReadArrayHeaderBytes(out)
			if err != nil || int(n) != tc.rows {
				t.Fatalf("%d rows (%v), want %d", n, err, tc.rows)
			}
		})
	}
	out, err := dispatch(req("kn_reset", h, s("c")))
	if ok, _, _ := msgp.ReadBoolBytes(out); err != nil || !ok {
		t.Fatalf("reset: %v", err)
	}
}

// FuzzKnowledgeDispatch: no request to the kn_* ops of an open store panics
// or hangs (kn_open/kn_close are skipped: fuzzed paths could go anywhere).
func FuzzKnowledgeDispatch(fz *testing.F) {
	h := openKn(fz, fz.TempDir())
	fz.Add(knSave(h, "c", 2, []string{"a", "b"}, f32bytes(1, 0, 0, 1)))
	fz.Add(req("kn_search", h, s("c"), s("hybrid"), s("a b"), bin(f32bytes(1, 0)), i(5), s(`{"k":1}`), f(0.5), i(60)))
	fz.Add(req("kn_missing", h, s("c"), arr(s("id-a"), s("z"))))
	fz.Add(req("kn_stats", h))
	fz.Add(req("kn_reset", h, s("c")))
	fz.Fuzz(func(t *testing.T, in []byte) {
		n, rest, err := msgp.ReadArrayHeaderBytes(in)
		if err == nil && n >= 1 {
			if op, _, err := msgp.ReadStringBytes(rest); err == nil && (op == "kn_open" || op == "kn_close" || op == "open" || op == "close" || op == "panic" || op == "tool_fetch") {
				return
			}
		}
		dispatch(in) //nolint:errcheck // any error is fine, a panic is not
	})
}
