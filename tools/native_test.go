package tools

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrivateAddr(t *testing.T) {
	cases := map[string]bool{
		"127.0.0.1": true, "10.1.2.3": true, "172.16.0.1": true, "192.168.1.1": true,
		"169.254.169.254": true, "100.64.0.1": true, "0.0.0.0": true, "::1": true,
		"fc00::1": true, "fe80::1": true, "::ffff:127.0.0.1": true, "::ffff:10.0.0.1": true,
		"224.0.0.1": true, "255.255.255.255": true,
		"8.8.8.8": false, "1.1.1.1": false, "2606:4700::1111": false, "100.128.0.1": false,
	}
	for s, want := range cases {
		if got := PrivateAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("PrivateAddr(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestFetch(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("hello world"))
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 5000)))
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/hello", http.StatusFound)
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
	})
	hang := make(chan struct{})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(hang)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	ctx := context.Background()
	allow := FetchOptions{AllowPrivate: true, Timeout: 5 * time.Second}

	cases := []struct {
		name    string
		url     string
		opt     FetchOptions
		wantErr error
		check   func(*testing.T, *FetchResult)
	}{
		{"loopback refused", srv.URL + "/hello", FetchOptions{}, ErrRefused, nil},
		{"name resolving to loopback refused after DNS", "http://localhost:" + port + "/hello", FetchOptions{}, ErrRefused, nil},
		{"allowed when private allowed", srv.URL + "/hello", allow, nil, func(t *testing.T, r *FetchResult) {
			if string(r.Body) != "hello world" || r.Status != 200 || r.ContentType != "text/plain" || r.Truncated {
				t.Fatalf("%+v", r)
			}
		}},
		{"redirect followed", srv.URL + "/hop", allow, nil, func(t *testing.T, r *FetchResult) {
			if string(r.Body) != "hello world" || !strings.HasSuffix(r.URL, "/hello") {
				t.Fatalf("%+v", r)
			}
		}},
		{"redirects bounded", srv.URL + "/loop", FetchOptions{AllowPrivate: true, MaxRedirects: 3}, ErrRefused, nil},
		{"no redirect allowed", srv.URL + "/hop", FetchOptions{AllowPrivate: true, MaxRedirects: -1}, ErrRefused, nil},
		{"redirect to file: refused", srv.URL + "/file", allow, ErrRefused, nil},
		{"size cap", srv.URL + "/big", FetchOptions{AllowPrivate: true, MaxBytes: 100}, nil, func(t *testing.T, r *FetchResult) {
			if len(r.Body) != 100 || !r.Truncated {
				t.Fatalf("len %d truncated %v", len(r.Body), r.Truncated)
			}
		}},
		{"timeout", srv.URL + "/hang", FetchOptions{AllowPrivate: true, Timeout: 50 * time.Millisecond}, ErrTimeout, nil},
		{"scheme", "file:///etc/passwd", allow, ErrRefused, nil},
		{"not a URL", "http://[::1", allow, ErrRefused, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Fetch(ctx, c.url, c.opt)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("got %v (%+v), want %v", err, r, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, r)
		})
	}
	// A cancelled context stops a fetch in flight.
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := Fetch(cctx, srv.URL+"/hang", allow); err == nil {
		t.Fatal("cancelled fetch returned no error")
	}
}

func TestFileRoot(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "a.txt"), []byte("alpha"), 0o644))
	must(os.WriteFile(filepath.Join(root, "sub", "b.txt"), []byte(strings.Repeat("b", 300)), 0o644))
	must(os.WriteFile(filepath.Join(base, "secret.txt"), []byte("secret"), 0o644))
	must(os.Symlink(filepath.Join(base, "secret.txt"), filepath.Join(root, "link-out")))
	must(os.Symlink(base, filepath.Join(root, "dir-out")))
	must(os.Symlink("a.txt", filepath.Join(root, "link-in")))

	fr, err := OpenFileRoot(root)
	must(err)
	defer fr.Close()
	ctx := context.Background()

	reads := []struct {
		path    string
		want    string
		trunc   bool
		wantErr error
	}{
		{"a.txt", "alpha", false, nil},
		{"sub/../a.txt", "alpha", false, nil},
		{"link-in", "alpha", false, nil},
		{"sub/b.txt", strings.Repeat("b", 100), true, nil},
		{"../secret.txt", "", false, ErrRefused},
		{"sub/../../secret.txt", "", false, ErrRefused},
		{"link-out", "", false, ErrRefused},
		{"dir-out/secret.txt", "", false, ErrRefused},
		{filepath.Join(base, "secret.txt"), "", false, ErrRefused},
		{"nope.txt", "", false, fs.ErrNotExist},
		{"sub", "", false, ErrRefused},
	}
	for _, c := range reads {
		t.Run("read "+c.path, func(t *testing.T) {
			b, _, trunc, err := fr.ReadFile(ctx, c.path, 100)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("got %q, %v; want %v", b, err, c.wantErr)
				}
				return
			}
			if err != nil || string(b) != c.want || trunc != c.trunc {
				t.Fatalf("got %q trunc=%v err=%v", b, trunc, err)
			}
		})
	}
	ents, more, err := fr.List(ctx, ".", 10)
	must(err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != "a.txt,dir-out,link-in,link-out,sub" || more {
		t.Fatalf("list: %v more=%v", names, more)
	}
	if ents, more, _ := fr.List(ctx, ".", 2); len(ents) != 2 || !more {
		t.Fatalf("list cap: %v %v", ents, more)
	}
	for _, p := range []string{"..", "dir-out", "sub/../..", "/etc"} {
		if _, _, err := fr.List(ctx, p, 10); !errors.Is(err, ErrRefused) {
			t.Errorf("list %q: %v, want ErrRefused", p, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, _, err := fr.ReadFile(cctx, "a.txt", 100); !errors.Is(err, ErrTimeout) {
		t.Fatalf("cancelled read: %v", err)
	}
}
