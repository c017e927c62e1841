//go:build unix

package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// The file ops through the dispatcher: a FIFO is refused at once (kind
// "tool_refused"), as is a root that is a FIFO; a hard-linked file only with
// the allow_hardlinks flag; listings name entry kinds.
func TestToolFileOps(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(root, "pipe"), filepath.Join(base, "rootpipe")} {
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(base, "secret"), filepath.Join(root, "hard")); err != nil {
		t.Fatal(err)
	}
	call := func(op string, args ...[]byte) ([]byte, string) {
		t.Helper()
		done := make(chan struct{})
		var out []byte
		var err error
		go func() {
			defer close(done)
			out, err = dispatch(req(op, 0, args...))
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s blocked", op)
		}
		if err != nil {
			return nil, kindOf(err).kind
		}
		return out, ""
	}
	if _, kind := call("tool_read_file", s(root), s("pipe"), i(100), f(2000)); kind != "tool_refused" {
		t.Fatalf("read fifo: kind %q", kind)
	}
	if _, kind := call("tool_list_dir", s(root), s("pipe"), i(10), f(2000)); kind != "tool_refused" {
		t.Fatalf("list fifo: kind %q", kind)
	}
	if _, kind := call("tool_read_file", s(filepath.Join(base, "rootpipe")), s("x"), i(100), f(2000)); kind != "tool_refused" {
		t.Fatalf("fifo root: kind %q", kind)
	}
	if _, kind := call("tool_read_file", s(root), s("hard"), i(100), f(2000)); kind != "tool_refused" {
		t.Fatalf("hard link: kind %q", kind)
	}
	out, kind := call("tool_read_file", s(root), s("hard"), i(100), f(2000), msgp.AppendBool(nil, true))
	if kind != "" {
		t.Fatalf("hard link allowed: kind %q", kind)
	}
	if v, _, _ := msgp.ReadIntfBytes(out); string(v.([]any)[0].([]byte)) != "secret" {
		t.Fatalf("hard link allowed: %v", v)
	}
	out, kind = call("tool_list_dir", s(root), s("."), i(10), f(2000))
	if kind != "" {
		t.Fatalf("list: kind %q", kind)
	}
	v, _, _ := msgp.ReadIntfBytes(out)
	kinds := map[string]string{}
	for _, e := range v.([]any)[0].([]any) {
		e := e.([]any)
		kinds[e[0].(string)] = e[3].(string)
	}
	if kinds["pipe"] != "fifo" || kinds["hard"] != "" {
		t.Fatalf("list kinds: %v", kinds)
	}
}
