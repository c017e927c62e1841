package lock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestExclusionAndReleaseFromAnotherGoroutine(t *testing.T) {
	m := New(t.TempDir())
	ctx := context.Background()
	h, err := m.Acquire(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	// A second descriptor of the same process is excluded too (flock).
	if _, err := m.lockFile(ctx, "a", m.FileFor("a"), 0, time.Time{}); !errors.Is(err, ErrTimeout) {
		t.Fatalf("flock from a second descriptor: %v", err)
	}
	if _, err := m.Acquire(ctx, "a", 0); !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), m.FileFor("a")) {
		t.Fatalf("second acquire: %v", err)
	}
	done := make(chan error)
	go func() { done <- h.Release() }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := h.Release(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("double release: %v", err)
	}
	h2, err := m.Acquire(ctx, "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h2.Release()
}

func TestArguments(t *testing.T) {
	m := New(t.TempDir())
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		want    error
	}{
		{"", time.Second, ErrInvalidArgument},
		{"x", -time.Second, ErrInvalidArgument},
		{"x", 0, nil},
		{"x", Forever, nil},
	} {
		h, err := m.Acquire(context.Background(), tc.name, tc.timeout)
		if !errors.Is(err, tc.want) {
			t.Fatalf("%q %v: err %v want %v", tc.name, tc.timeout, err, tc.want)
		}
		if h != nil {
			h.Release()
		}
	}
}

func TestMutualExclusion(t *testing.T) {
	m := New(t.TempDir())
	var wg sync.WaitGroup
	inside := 0
	var mu sync.Mutex
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				h, err := m.Acquire(context.Background(), "shared", Forever)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				if inside != 1 {
					t.Error("two holders")
				}
				mu.Unlock()
				mu.Lock()
				inside--
				mu.Unlock()
				h.Release()
			}
		}()
	}
	wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.names) != 0 {
		t.Fatalf("%d entries left", len(m.names))
	}
}

// TestHolderKilled: a child process takes the lock and is killed; the lock
// is free again.
func TestHolderKilled(t *testing.T) {
	if os.Getenv("LOCK_CHILD_DIR") != "" {
		m := New(os.Getenv("LOCK_CHILD_DIR"))
		if _, err := m.Acquire(context.Background(), "k", 0); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("held\n")
		time.Sleep(time.Minute)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHolderKilled$")
	cmd.Env = append(os.Environ(), "LOCK_CHILD_DIR="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf[:4]) != "held" {
		t.Fatalf("child: %q %v", buf, err)
	}
	m := New(dir)
	if _, err := m.Acquire(context.Background(), "k", 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("while the child holds it: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	h, err := m.Acquire(context.Background(), "k", 5*time.Second)
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	h.Release()
	if _, err := os.Stat(filepath.Join(dir, filepath.Base(m.FileFor("k")))); err != nil {
		t.Fatal(err)
	}
}
