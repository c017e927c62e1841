package flowstate

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestSaveLoadPending(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok, err := s.Load(ctx, "u"); ok || err != nil {
		t.Fatalf("empty: %v %v", ok, err)
	}
	for _, st := range []string{`{"n": 1}`, `{"n": 2}`} {
		if err := s.Save(ctx, "u", "step", st); err != nil {
			t.Fatal(err)
		}
	}
	if st, ok, err := s.Load(ctx, "u"); !ok || err != nil || st != `{"n": 2}` {
		t.Fatalf("load: %q %v %v", st, ok, err)
	}
	if err := s.SavePending(ctx, "u", "ask", `{"c": 1}`, `{"n": 3}`); err != nil {
		t.Fatal(err)
	}
	st, c, ok, err := s.LoadPending(ctx, "u")
	if !ok || err != nil || st != `{"n": 3}` || c != `{"c": 1}` {
		t.Fatalf("pending: %q %q %v %v", st, c, ok, err)
	}
	if err := s.ClearPending(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := s.LoadPending(ctx, "u"); ok {
		t.Fatal("pending after clear")
	}
	for _, tc := range []struct{ id, m string }{{"", "m"}, {"u", ""}} {
		if err := s.Save(ctx, tc.id, tc.m, "{}"); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("save %q %q: %v", tc.id, tc.m, err)
		}
	}
}
