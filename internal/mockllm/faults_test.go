package mockllm

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseLatencyDist(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want LatencyDist
		err  string
	}{
		{"50ms", LatencyDist{Kind: "fixed", A: 50 * time.Millisecond}, ""},
		{"fixed:1s", LatencyDist{Kind: "fixed", A: time.Second}, ""},
		{"normal:50ms,10ms", LatencyDist{Kind: "normal", A: 50 * time.Millisecond, B: 10 * time.Millisecond}, ""},
		{"uniform:20ms, 80ms", LatencyDist{Kind: "uniform", A: 20 * time.Millisecond, B: 80 * time.Millisecond}, ""},
		{"exp:50ms", LatencyDist{Kind: "exp", A: 50 * time.Millisecond}, ""},
		{"lognormal:50ms,0.5", LatencyDist{Kind: "lognormal", A: 50 * time.Millisecond, Sigma: 0.5}, ""},
		{"gauss:50ms", LatencyDist{}, "unknown distribution"},
		{"normal:50ms", LatencyDist{}, "takes 2 parameter"},
		{"uniform:80ms,20ms", LatencyDist{}, "upper bound"},
		{"exp:-5ms", LatencyDist{}, "negative"},
		{"fixed:soon", LatencyDist{}, "invalid duration"},
		{"lognormal:50ms,-1", LatencyDist{}, "sigma"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLatencyDist(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseLatencyDist(%q) error = %v, want %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseLatencyDist(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if back, err := ParseLatencyDist(got.String()); err != nil || back != got {
				t.Fatalf("round trip of %q: %+v, %v", got.String(), back, err)
			}
		})
	}
}

func TestLatencyDistSamples(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		dist             string
		wantMean, tol    time.Duration
		wantMin, wantMax time.Duration
	}{
		{"fixed:30ms", 30 * ms, 0, 30 * ms, 30 * ms},
		{"normal:50ms,10ms", 50 * ms, 2 * ms, 0, 150 * ms},
		{"uniform:20ms,80ms", 50 * ms, 3 * ms, 20 * ms, 80 * ms},
		{"exp:50ms", 50 * ms, 5 * ms, 0, 500 * ms},
		{"lognormal:50ms,0.5", 57 * ms, 5 * ms, 0, 500 * ms}, // mean = median * e^(sigma^2/2)
	} {
		t.Run(tc.dist, func(t *testing.T) {
			d, err := ParseLatencyDist(tc.dist)
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{LatencyDist: d}
			f := newFaults(7)
			const n = 4000
			var sum time.Duration
			for range n {
				v := f.latency(&cfg)
				if v < tc.wantMin || v > tc.wantMax {
					t.Fatalf("sample %v outside [%v, %v]", v, tc.wantMin, tc.wantMax)
				}
				sum += v
			}
			mean := sum / n
			if diff := mean - tc.wantMean; diff < -tc.tol || diff > tc.tol {
				t.Fatalf("mean %v, want %v ± %v", mean, tc.wantMean, tc.tol)
			}
		})
	}
	// Without a distribution the fixed Latency is used.
	if got := newFaults(1).latency(&Config{Latency: 7 * ms}); got != 7*ms {
		t.Fatalf("latency without distribution = %v", got)
	}
}

func TestParseStatuses(t *testing.T) {
	if got, err := ParseStatuses("500, 429,503"); err != nil || len(got) != 3 || got[1] != 429 {
		t.Fatalf("ParseStatuses = %v, %v", got, err)
	}
	for _, bad := range []string{"", "200", "abc", "600"} {
		if _, err := ParseStatuses(bad); err == nil {
			t.Errorf("ParseStatuses(%q) accepted", bad)
		}
	}
}

func TestInjectedErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		minFrac  float64
		maxFrac  float64
		statuses map[int]bool
	}{
		{"none", Config{}, 0, 0, nil},
		{"all 503", Config{ErrorRate: 1, ErrorStatuses: []int{503}}, 1, 1, map[int]bool{503: true}},
		{"30% default", Config{ErrorRate: 0.3, Seed: 42, RetryAfter: 20 * time.Millisecond}, 0.2, 0.4, map[int]bool{500: true, 429: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.cfg)
			const n = 200
			failed := 0
			seen := map[int]bool{}
			for range n {
				resp, body := post(t, srv, "/v1/chat/completions", map[string]any{"model": "gpt-4o-mini", "messages": user("hi")})
				if resp.StatusCode == http.StatusOK {
					continue
				}
				failed++
				seen[resp.StatusCode] = true
				if !tc.statuses[resp.StatusCode] {
					t.Fatalf("status %d not in %v", resp.StatusCode, tc.statuses)
				}
				if !strings.Contains(string(body), `"error"`) || !strings.Contains(string(body), "injected") {
					t.Fatalf("error body %s", body)
				}
				if resp.StatusCode == 429 && resp.Header.Get("retry-after-ms") != "20" {
					t.Fatalf("429 retry-after-ms = %q", resp.Header.Get("retry-after-ms"))
				}
			}
			frac := float64(failed) / n
			if frac < tc.minFrac || frac > tc.maxFrac {
				t.Fatalf("injected %d of %d, want fraction in [%v, %v]", failed, n, tc.minFrac, tc.maxFrac)
			}
			if tc.statuses != nil && len(seen) != len(tc.statuses) {
				t.Errorf("statuses seen %v, want all of %v", seen, tc.statuses)
			}
			st := stats(t, srv)
			if st.Injected != int64(failed) || st.Chat != int64(n-failed) || math.Abs(float64(st.Errors-st.Injected)) > 0 {
				t.Errorf("stats %+v, injected %d", st, failed)
			}
			// Embeddings are never failed.
			if resp, _ := post(t, srv, "/v1/embeddings", map[string]any{"input": "x"}); resp.StatusCode != 200 {
				t.Errorf("embeddings status %d", resp.StatusCode)
			}
		})
	}
}
