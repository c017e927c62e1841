package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for one writer and one reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDispatchUsage(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		code      int
		wantInErr string
	}{
		{"no args", nil, 2, "Usage: crewcore <command>"},
		{"help", []string{"help"}, 2, "mockllm"},
		{"--help", []string{"--help"}, 2, "Commands:"},
		{"help mockllm", []string{"help", "mockllm"}, 2, "--latency"},
		{"help unknown", []string{"help", "nope"}, 2, `unknown command "nope"`},
		{"unknown", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"mockllm -h", []string{"mockllm", "-h"}, 0, "OPENAI_BASE_URL"},
		{"mockllm bad flag", []string{"mockllm", "--nope"}, 2, "flag provided but not defined"},
		{"mockllm extra arg", []string{"mockllm", "extra"}, 2, `unexpected argument "extra"`},
		{"mockllm bad script", []string{"mockllm", "--script", "/nonexistent/script.json"}, 1, "no such file"},
		{"mockllm bad addr", []string{"mockllm", "--addr", "256.1.1.1:99999"}, 1, "crewcore mockllm:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantInErr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.wantInErr)
			}
			if stdout.Len() != 0 {
				t.Errorf("unexpected stdout %q", stdout.String())
			}
		})
	}
}

func TestMockLLMCommand(t *testing.T) {
	script := filepath.Join(t.TempDir(), "script.json")
	if err := os.WriteFile(script, []byte(`[{"match":"ping","reply":"pong"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"mockllm", "--addr", "127.0.0.1:0", "--latency", "1ms", "--script", script}, &stdout, &stderr)
	}()

	var base string
	deadline := time.Now().Add(10 * time.Second)
	for base == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line; stdout %q stderr %q", stdout.String(), stderr.String())
		}
		if line, ok := strings.CutPrefix(stdout.String(), "mockllm listening on "); ok && strings.HasSuffix(line, "\n") {
			base = strings.TrimSpace(line)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") || strings.HasSuffix(base, ":0/v1") || !strings.HasSuffix(base, "/v1") {
		t.Fatalf("listening line reports %q, want the real port", base)
	}

	resp, err := http.Post(base+"/chat/completions", "application/json",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"ping"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var c struct {
		Choices []struct {
			Message struct{ Content string }
		}
	}
	if err := json.Unmarshal(body, &c); err != nil || len(c.Choices) != 1 || c.Choices[0].Message.Content != "pong" {
		t.Fatalf("scripted reply: %s (%v)", body, err)
	}

	cancel() // what SIGINT/SIGTERM do via signal.NotifyContext
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mockllm did not stop")
	}
	if !strings.Contains(stderr.String(), "mockllm stopped") {
		t.Errorf("stderr %q", stderr.String())
	}
}
