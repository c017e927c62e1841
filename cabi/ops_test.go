package main

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

func f32bytes(v ...float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// req builds [op, handle, args...]; args are already-encoded msgpack values.
func req(op string, h int64, args ...[]byte) []byte {
	b := msgp.AppendArrayHeader(nil, uint32(2+len(args)))
	b = msgp.AppendString(b, op)
	b = msgp.AppendInt64(b, h)
	for _, a := range args {
		b = append(b, a...)
	}
	return b
}

func s(v string) []byte   { return msgp.AppendString(nil, v) }
func i(v int64) []byte    { return msgp.AppendInt64(nil, v) }
func f(v float64) []byte  { return msgp.AppendFloat64(nil, v) }
func bin(v []byte) []byte { return msgp.AppendBytes(nil, v) }
func nilv() []byte        { return msgp.AppendNil(nil) }
func boolv(v bool) []byte { return msgp.AppendBool(nil, v) }
func arr(xs ...[]byte) []byte {
	b := msgp.AppendArrayHeader(nil, uint32(len(xs)))
	for _, x := range xs {
		b = append(b, x...)
	}
	return b
}

func record(id, scope string, vec []byte) []byte {
	return arr(s(id), s("content "+id), s(scope), arr(s("cat")), s(`{"k": 1}`), f(0.5),
		s("2026-01-01T00:00:00.000000"), s("2026-01-01T00:00:00.000000"), nilv(), boolv(false), bin(vec))
}

func openStore(t *testing.T) int64 {
	t.Helper()
	out, err := dispatch(req("open", 0, s(filepath.Join(t.TempDir(), "m.db")), i(0), s("l2"), i(0)))
	if err != nil {
		t.Fatal(err)
	}
	n, rest, err := msgp.ReadArrayHeaderBytes(out)
	if err != nil || n != 2 {
		t.Fatalf("open response: %v", err)
	}
	h, _, err := msgp.ReadInt64Bytes(rest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dispatch(req("close", h)) })
	return h
}

func TestDispatchRoundTrip(t *testing.T) {
	h := openStore(t)
	if _, err := dispatch(req("save", h, arr(record("a", "/x", f32bytes(1, 0)), record("b", "/y", f32bytes(0, 1))))); err != nil {
		t.Fatal(err)
	}
	out, err := dispatch(req("search", h, bin(f32bytes(1, 0)), s("/x"), nilv(), nilv(), i(10), f(0), nilv(), boolv(false)))
	if err != nil {
		t.Fatal(err)
	}
	n, rest, _ := msgp.ReadArrayHeaderBytes(out)
	if n != 1 {
		t.Fatalf("search returned %d rows, want 1", n)
	}
	fields, rest, _ := msgp.ReadArrayHeaderBytes(rest)
	if fields != 12 {
		t.Fatalf("row has %d fields", fields)
	}
	id, _, _ := msgp.ReadStringBytes(rest)
	if id != "a" {
		t.Fatalf("id = %q", id)
	}
	out, err = dispatch(req("count", h, nilv()))
	if c, _, _ := msgp.ReadIntBytes(out); err != nil || c != 2 {
		t.Fatalf("count = %d, %v", c, err)
	}
}

func TestDispatchErrors(t *testing.T) {
	h := openStore(t)
	if _, err := dispatch(req("save", h, arr(record("a", "/x", f32bytes(1, 0))))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		kind string
	}{
		{"garbage", []byte{0xc1, 0x00}, "bad_request"},
		{"empty array", arr(), "bad_request"},
		{"unknown op", req("nope", h), "bad_request"},
		{"closed handle", req("count", 999999, nilv()), "closed"},
		{"wrong dim", req("search", h, bin(f32bytes(1, 0, 0)), nilv(), nilv(), nilv(), i(10), f(0), nilv(), boolv(false)), "dimension"},
		{"ragged vector", req("search", h, bin([]byte{1, 2, 3}), nilv(), nilv(), nilv(), i(10), f(0), nilv(), boolv(false)), "bad_request"},
		{"negative limit", req("search", h, bin(f32bytes(1, 0)), nilv(), nilv(), nilv(), i(-1), f(0), nilv(), boolv(false)), "invalid_argument"},
		{"bad scope", req("count", h, s("/a/../b")), "invalid_scope"},
		{"short record", req("save", h, arr(arr(s("x")))), "bad_request"},
		{"nan", req("save", h, arr(record("n", "/", f32bytes(float32(math.NaN()), 0)))), "invalid_record"},
		{"update unknown", req("update", h, record("zz", "/", f32bytes(1, 0))), "not_found"},
		{"panic", req("panic", h), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil && tt.kind == "" {
						err = &bridgeError{kind: "engine"}
					}
				}()
				_, err = dispatch(tt.in)
			}()
			want := tt.kind
			if want == "" {
				want = "engine"
			}
			if err == nil || kindOf(err).kind != want {
				t.Fatalf("got %v, want kind %s", err, want)
			}
		})
	}
	// Nothing stored was lost by the bad calls.
	out, _ := dispatch(req("count", h, nilv()))
	if c, _, _ := msgp.ReadIntBytes(out); c != 1 {
		t.Fatalf("count after bad calls = %d", c)
	}
}

// FuzzDispatch feeds arbitrary bytes to the request decoder: it must return
// an error or a response, never panic (panics would be recovered by the C
// entry point, but the decoder itself should not need that).
func FuzzDispatch(fz *testing.F) {
	dir := fz.TempDir()
	out, err := dispatch(req("open", 0, s(filepath.Join(dir, "m.db")), i(0), s("l2"), i(0)))
	if err != nil {
		fz.Fatal(err)
	}
	_, rest, _ := msgp.ReadArrayHeaderBytes(out)
	h, _, _ := msgp.ReadInt64Bytes(rest)
	fz.Add(req("save", h, arr(record("a", "/x", f32bytes(1, 0)))))
	fz.Add(req("search", h, bin(f32bytes(1, 0)), s("/x"), arr(s("cat")), s(`{"k":1}`), i(3), f(0.1), s("src"), boolv(true)))
	fz.Add(req("delete", h, s("/x"), nilv(), arr(s("a")), s("2026-01-01T00:00:00.000000"), nilv()))
	fz.Add(req("list", h, nilv(), i(10), i(0)))
	fz.Add(req("scope_info", h, s("/")))
	fz.Add([]byte{0x92, 0xa5, 's', 'a', 'v', 'e', 0x01, 0x91, 0x9b})
	fz.Fuzz(func(t *testing.T, in []byte) {
		// Only exercise ops on this store; "open" with fuzzed paths could
		// create files anywhere, and "tool_fetch" with a fuzzed URL could send
		// requests off this machine.
		n, rest, err := msgp.ReadArrayHeaderBytes(in)
		if err == nil && n >= 1 {
			if op, _, err := msgp.ReadStringBytes(rest); err == nil && (op == "open" || op == "close" || op == "panic" || op == "tool_fetch" || op == "kn_open") {
				return
			}
		}
		dispatch(in) //nolint:errcheck // any error is fine, a panic is not
	})
}
