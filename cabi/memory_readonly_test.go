package main

import (
	"path/filepath"
	"testing"

	"github.com/crewcore/crewcore/memory"
	"github.com/tinylib/msgp/msgp"
)

func TestMemoryReadOnlyOp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	out, err := dispatch(req("open", 0, s(path), i(0), s("l2"), i(0)))
	if err != nil {
		t.Fatal(err)
	}
	n, rest, _ := msgp.ReadArrayHeaderBytes(out)
	h, _, err := msgp.ReadInt64Bytes(rest)
	if err != nil || n != 2 {
		t.Fatalf("open: %v", err)
	}
	defer dispatch(req("close", h)) //nolint:errcheck
	ro, err := memory.Open(path, &memory.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	handlesMu.Lock()
	nextHandle++
	rh := nextHandle
	handles[rh] = ro
	handlesMu.Unlock()
	defer dispatch(req("close", rh)) //nolint:errcheck
	for _, tc := range []struct {
		h    int64
		want bool
	}{{h, false}, {rh, true}} {
		out, err := dispatch(req("memory_read_only", tc.h))
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := msgp.ReadBoolBytes(out)
		if err != nil || got != tc.want {
			t.Errorf("handle %d: read only %v (%v), want %v", tc.h, got, err, tc.want)
		}
	}
	if _, err := dispatch(req("memory_read_only", 999999)); err == nil {
		t.Error("an unknown handle: no error")
	}
}
