package memory

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// TestContractRecords: every record the data contract refuses is refused by
// Save and Update with the documented sentinel, and nothing is stored.
func TestContractRecords(t *testing.T) {
	s := openT(t, nil)
	if err := s.Save(ctx, []Record{rec("keep", "/", 1, 0)}); err != nil {
		t.Fatal(err)
	}
	base := func(mod func(r *Record)) Record {
		r := rec("new", "/a", 0, 1)
		mod(&r)
		return r
	}
	year := func(y int) time.Time { return time.Date(y, 6, 1, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		name string
		r    Record
		want error
	}{
		{"nul in id", base(func(r *Record) { r.ID = "a\x00b" }), ErrInvalidRecord},
		{"long id", base(func(r *Record) { r.ID = strings.Repeat("i", MaxKeyBytes+1) }), ErrInvalidRecord},
		{"nul in content", base(func(r *Record) { r.Content = "a\x00" }), ErrInvalidRecord},
		{"long scope", base(func(r *Record) { r.Scope = "/" + strings.Repeat("s", MaxKeyBytes) }), ErrInvalidScope},
		{"nul in category", base(func(r *Record) { r.Categories = []string{"ok", "c\x00"} }), ErrInvalidRecord},
		{"long category", base(func(r *Record) { r.Categories = []string{strings.Repeat("c", MaxKeyBytes+1)} }), ErrInvalidRecord},
		{"nul in source", base(func(r *Record) { r.Source = "u\x00" }), ErrInvalidRecord},
		{"importance over 1", base(func(r *Record) { r.Importance = 1.5 }), ErrInvalidRecord},
		{"importance below 0", base(func(r *Record) { r.Importance = -0.01 }), ErrInvalidRecord},
		{"importance NaN", base(func(r *Record) { r.Importance = math.NaN() }), ErrInvalidRecord},
		{"year 10000", base(func(r *Record) { r.CreatedAt = year(10000) }), ErrInvalidRecord},
		{"year 0", base(func(r *Record) { r.LastAccessed = year(0) }), ErrInvalidRecord},
		{"too many dimensions", base(func(r *Record) { r.Embedding = make([]float32, MaxDim+1) }), ErrInvalidRecord},
		{"metadata not an object", base(func(r *Record) { r.Metadata = json.RawMessage(`[1]`) }), ErrInvalidRecord},
		{"metadata NUL escape", base(func(r *Record) { r.Metadata = json.RawMessage(`{"k":"a\u0000"}`) }), ErrInvalidRecord},
		{"metadata NUL key", base(func(r *Record) { r.Metadata = json.RawMessage(`{"\u0000":1}`) }), ErrInvalidRecord},
		{"metadata int over 64 bits", base(func(r *Record) { r.Metadata = json.RawMessage(`{"k":18446744073709551616}`) }), ErrInvalidRecord},
		{"metadata float overflow", base(func(r *Record) { r.Metadata = json.RawMessage(`{"k":1e400}`) }), ErrInvalidRecord},
		{"metadata too deep", base(func(r *Record) {
			r.Metadata = json.RawMessage(`{"k":` + strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth) + `}`)
		}), ErrInvalidRecord},
		{"metadata invalid UTF-8", base(func(r *Record) { r.Metadata = json.RawMessage("{\"k\":\"\xff\"}") }), ErrInvalidRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Save(ctx, []Record{rec("other", "/"), tc.r}); !errors.Is(err, tc.want) {
				t.Fatalf("Save: got %v, want %v", err, tc.want)
			}
			upd := tc.r
			if upd.ID == "new" {
				upd.ID = "keep"
			}
			if err := s.Update(ctx, upd); !errors.Is(err, tc.want) {
				t.Fatalf("Update: got %v, want %v", err, tc.want)
			}
			if _, err := ValidateRecord(tc.r); !errors.Is(err, tc.want) {
				t.Fatalf("ValidateRecord: got %v, want %v", err, tc.want)
			}
			if n, _ := s.Count(ctx, ""); n != 1 {
				t.Fatalf("count %d after a refused write", n)
			}
		})
	}
}

// TestContractAccepts: the edges the contract allows are stored and read back.
func TestContractAccepts(t *testing.T) {
	s := openT(t, nil)
	early := time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC)
	late := time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	ok := []Record{
		{ID: strings.Repeat("i", MaxKeyBytes), Content: "x", Importance: 0, CreatedAt: early, LastAccessed: late},
		{ID: "lit", Content: `a\u0000b`, Metadata: json.RawMessage(`{"k":"\\u0000","n":-9223372036854775808,"f":1e300}`), Importance: 1},
		{ID: "deep", Metadata: json.RawMessage(`{"k":` + strings.Repeat("[", MaxJSONDepth-1) + strings.Repeat("]", MaxJSONDepth-1) + `}`)},
		{ID: "scope", Scope: "/" + strings.Repeat("s", MaxKeyBytes-1), Categories: []string{strings.Repeat("c", MaxKeyBytes)}},
	}
	if err := s.Save(ctx, ok); err != nil {
		t.Fatal(err)
	}
	got, found, err := s.Get(ctx, ok[0].ID)
	if err != nil || !found || !got.CreatedAt.Equal(early) || !got.LastAccessed.Equal(late) {
		t.Fatalf("year-1/9999 record: %v %v %v %v", found, err, got.CreatedAt, got.LastAccessed)
	}
	if n, _ := s.Count(ctx, ""); n != len(ok) {
		t.Fatalf("count %d", n)
	}
}

// TestContractArguments: filter arguments no store can match alike are
// refused with ErrInvalidArgument, and never delete anything.
func TestContractArguments(t *testing.T) {
	s := openT(t, nil)
	if err := s.Save(ctx, []Record{rec("a", "/", 1, 0), rec("b", "/", 0, 1)}); err != nil {
		t.Fatal(err)
	}
	nul := "x\x00"
	calls := map[string]func() error{
		"search categories": func() error {
			_, err := s.Search(ctx, Query{Vector: []float32{1, 0}, Categories: []string{nul}})
			return err
		},
		"search privacy": func() error { _, err := s.Search(ctx, Query{Vector: []float32{1, 0}, Privacy: &nul}); return err },
		"search metadata": func() error {
			_, err := s.Search(ctx, Query{Vector: []float32{1, 0}, Metadata: map[string]any{"k": nul}})
			return err
		},
		"delete ids":        func() error { _, err := s.Delete(ctx, Filter{IDs: []string{"a", nul}}); return err },
		"delete categories": func() error { _, err := s.Delete(ctx, Filter{Categories: []string{nul}}); return err },
		"delete metadata":   func() error { _, err := s.Delete(ctx, Filter{Metadata: map[string]any{nul: 1}}); return err },
		"delete older_than": func() error {
			_, err := s.Delete(ctx, Filter{OlderThan: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
			return err
		},
		"get":   func() error { _, _, err := s.Get(ctx, nul); return err },
		"touch": func() error { return s.Touch(ctx, []string{"a", nul}) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: got %v, want ErrInvalidArgument", name, err)
		}
	}
	if n, _ := s.Count(ctx, ""); n != 2 {
		t.Fatalf("count %d after refused calls", n)
	}
}

// FuzzCheckJSON: CheckJSON never panics, and accepts exactly the valid JSON
// it finds no fault in (a document json.Valid refuses is refused).
func FuzzCheckJSON(f *testing.F) {
	for _, seed := range []string{`{}`, `{"k":1}`, `{"k":"\u0000"}`, `{"k":"\\u0000"}`, `{"k":[[[1]]]}`,
		`{"k":1e400}`, `{"k":-9223372036854775809}`, "{\"k\":\"\xff\"}", `{"a":`, `[1,2]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		err := CheckJSON(doc)
		if err == nil && !json.Valid(doc) {
			t.Fatalf("accepted invalid JSON %q", doc)
		}
	})
}
