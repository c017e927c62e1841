package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestMockLLMFaultFlagsRejectBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad dist", []string{"--latency-dist", "gauss:5ms"}, "unknown distribution"},
		{"both latencies", []string{"--latency", "5ms", "--latency-dist", "exp:5ms"}, "not both"},
		{"rate above 1", []string{"--error-rate", "1.5"}, "between 0 and 1"},
		{"bad status", []string{"--error-status", "200"}, "between 400 and 599"},
		{"negative retry", []string{"--retry-after", "-1s"}, "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"mockllm"}, tc.args...), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// The flags reach the server: every chat request fails with the one status.
func TestMockLLMFaultFlagsServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"mockllm", "--addr", "127.0.0.1:0", "--latency-dist", "uniform:1ms,3ms",
			"--error-rate", "1", "--error-status", "503"}, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no address line: %v (stderr %q)", err, stderr.String())
	}
	go io.Copy(io.Discard, pr)
	base := strings.TrimSpace(strings.TrimPrefix(line, "mockllm listening on "))
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	resp, err := http.Post(base+"/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	resp, err = http.Get(strings.TrimSuffix(base, "/v1") + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]int
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st["injected_errors"] != 1 {
		t.Fatalf("stats %v", st)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop")
	}
}
