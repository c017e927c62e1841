//go:build unix

package tools

// Issue 18, item 2: file tools refuse what is not a regular file or a
// directory without blocking, honour their deadline whatever the file system
// does, and refuse hard-linked files unless allowed.

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// specialRoot makes a root holding a FIFO, a listening Unix socket, a
// character device (when the process may create one), symlinks to them, a
// regular file and a file hard-linked from outside the root.
func specialRoot(t *testing.T) (base, root string, special []string) {
	t.Helper()
	base = t.TempDir()
	root = filepath.Join(base, "root")
	if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "sub", "pipe2"), 0o644); err != nil {
		t.Fatal(err)
	}
	special = []string{"pipe", "sub/pipe2", "pipe-link", "sub/../pipe"}
	// Unix socket paths are limited to 108 bytes: listen from inside root.
	wd, _ := os.Getwd()
	if err := os.Chdir(root); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", "sock")
	os.Chdir(wd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	special = append(special, "sock")
	if err := syscall.Mknod(filepath.Join(root, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err == nil {
		special = append(special, "null")
	} else {
		t.Logf("no character device in the test root (mknod: %v); FIFOs and sockets still tested", err)
	}
	if err := os.Symlink("pipe", filepath.Join(root, "pipe-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a.txt"), []byte("alpha"), 0o644); err != nil {
		t.Fatal(err)
	}
	return base, root, special
}

func TestFileRootRefusesSpecialFilesWithoutBlocking(t *testing.T) {
	_, root, special := specialRoot(t)
	fr, err := OpenFileRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	for _, p := range special {
		t.Run("read "+p, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var err error
			within(t, 10*time.Second, "ReadFile "+p, func() { _, _, _, err = fr.ReadFile(ctx, p, 100) })
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not a regular file") {
				t.Fatalf("ReadFile(%q) = %v, want ErrRefused naming the file kind", p, err)
			}
		})
		t.Run("list "+p, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var err error
			within(t, 10*time.Second, "List "+p, func() { _, _, err = fr.List(ctx, p, 10) })
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("List(%q) = %v, want ErrRefused", p, err)
			}
		})
	}
	// Without a deadline too: the refusal never depended on one.
	within(t, 10*time.Second, "ReadFile pipe without deadline", func() {
		if _, _, _, err := fr.ReadFile(context.Background(), "pipe", 100); !errors.Is(err, ErrRefused) {
			t.Errorf("ReadFile(pipe) without deadline = %v", err)
		}
	})
	// Listing a directory holding special files names them without opening them.
	ents, _, err := fr.List(context.Background(), ".", 100)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, e := range ents {
		kinds[e.Name] = e.Kind
	}
	if kinds["pipe"] != "fifo" || kinds["sock"] != "socket" || kinds["a.txt"] != "" || kinds["sub"] != "" {
		t.Fatalf("entry kinds: %v", kinds)
	}
	// Regular files still read.
	if b, _, _, err := fr.ReadFile(context.Background(), "a.txt", 100); err != nil || string(b) != "alpha" {
		t.Fatalf("a.txt: %q %v", b, err)
	}
}

func TestFileRootHardLinks(t *testing.T) {
	base, root, _ := specialRoot(t)
	outside := filepath.Join(base, "secret.txt")
	if err := os.WriteFile(outside, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, filepath.Join(root, "hard")); err != nil {
		t.Fatal(err)
	}
	fr, err := OpenFileRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	ctx := context.Background()
	b, _, _, err := fr.ReadFile(ctx, "hard", 100)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "hard link") || len(b) != 0 {
		t.Fatalf("hard link to a file outside the root: %q, %v; want ErrRefused", b, err)
	}
	fr.AllowHardLinks = true
	if b, _, _, err := fr.ReadFile(ctx, "hard", 100); err != nil || string(b) != "secret" {
		t.Fatalf("AllowHardLinks: %q, %v", b, err)
	}
}

// A file system call that blocks in the kernel (a FIFO opened for reading
// with no writer, standing in for a hung mount) must not hold a bounded call
// past its deadline; the call goroutine ends once the kernel lets go.
func TestBoundedFileCallHonoursDeadline(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	var finished atomic.Bool
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var err error
	within(t, 10*time.Second, "bounded blocking open", func() {
		err = bounded(ctx, "test open", func() error {
			f, err := os.Open(fifo) // blocks until a writer opens it
			if err == nil {
				f.Close()
			}
			finished.Store(true)
			return err
		})
	})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("bounded = %v, want ErrTimeout", err)
	}
	if n := Stuck(); n != 1 {
		t.Fatalf("Stuck() = %d, want 1", n)
	}
	w, werr := os.OpenFile(fifo, os.O_WRONLY, 0) // release the blocked reader
	if werr != nil {
		t.Fatal(werr)
	}
	w.Close()
	deadline := time.Now().Add(10 * time.Second)
	for Stuck() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !finished.Load() || Stuck() != 0 {
		t.Fatalf("the blocked call did not finish once released (stuck %d)", Stuck())
	}
	// A panic in the bounded call comes back as an error, not a crash, on
	// its own goroutine (with a deadline) and inline (without one).
	pctx, pcancel := context.WithTimeout(context.Background(), time.Minute)
	defer pcancel()
	for _, c := range []context.Context{pctx, context.Background()} {
		if err := bounded(c, "panic", func() error { panic("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("panic: %v", err)
		}
	}
}

// A root that is a FIFO is refused before it is opened (opening it would wait
// for a writer).
func TestFileRootOfAFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var err error
	within(t, 10*time.Second, "OpenFileRootContext(fifo)", func() { _, err = OpenFileRootContext(ctx, fifo) })
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("OpenFileRootContext(fifo) = %v, want ErrRefused", err)
	}
}
