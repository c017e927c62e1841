package tools

// Issue 18, item 3: fetch refuses IPv6 addresses that embed a refused IPv4
// address (NAT64, 6to4, Teredo, IPv4-compatible, -mapped and -translated),
// at dial time.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// within runs fn and fails the test if it has not returned after limit: a
// call that blocks in the kernel must fail the test, not hang it.
func within(t *testing.T, limit time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s: still blocked after %s", what, limit)
	}
}

func TestPrivateAddrEmbeddedIPv4(t *testing.T) {
	cases := []struct {
		addr string
		want bool
	}{
		// NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): the IPv4 is the last 32 bits.
		{"64:ff9b::a9fe:a9fe", true}, // 169.254.169.254, cloud metadata
		{"64:ff9b::169.254.169.254", true},
		{"64:ff9b::7f00:1", true},   // 127.0.0.1
		{"64:ff9b::a00:1", true},    // 10.0.0.1
		{"64:ff9b::c0a8:101", true}, // 192.168.1.1
		{"64:ff9b::808:808", false}, // 8.8.8.8 through a NAT64 gateway
		// NAT64 local-use prefix 64:ff9b:1::/48 (RFC 8215): refused whole.
		{"64:ff9b:1::a9fe:a9fe", true},
		{"64:ff9b:1:0808:0800::", true},
		// 6to4 2002::/16 (RFC 3056): the IPv4 is bits 16..47.
		{"2002:a9fe:a9fe::", true},
		{"2002:7f00:1::1", true},
		{"2002:a00:1:1::1", true},
		{"2002:808:808::1", false},
		// Teredo 2001::/32 (RFC 4380): server IPv4 in bits 32..63, client
		// IPv4 in the last 32 bits, inverted.
		{"2001:0:a9fe:a9fe::", true},                  // server 169.254.169.254
		{"2001:0:808:808::5601:5601", true},           // client 169.254.169.254 (0xa9fea9fe inverted)
		{"2001:0:808:808::f5f7:f5f7", true},           // client 10.8.10.8
		{"2001:0:808:808:8000:ffff:56fe:56fe", false}, // client 169.1.169.1 (public)
		{"2001:0:808:808:8000:ffff:5601:5601", true},  // client 169.254.169.254
		{"2001:0:808:808:8000:ffff:80ff:fffe", true},  // client 127.0.0.1
		{"2001:0:808:808:8000:ffff:f7f7:f7f7", false}, // client 8.8.8.8
		// IPv4-compatible ::a.b.c.d (RFC 4291, deprecated): refused whole.
		{"::a9fe:a9fe", true},
		{"::169.254.169.254", true},
		{"::808:808", true},
		// IPv4-mapped ::ffff:a.b.c.d.
		{"::ffff:169.254.169.254", true},
		{"::ffff:a9fe:a9fe", true},
		{"::ffff:808:808", false},
		// IPv4-translated ::ffff:0:a.b.c.d (RFC 2765): refused whole.
		{"::ffff:0:a9fe:a9fe", true},
		{"::ffff:0:808:808", true},
		// Other special IPv6 ranges.
		{"fec0::1", true},     // site-local (deprecated)
		{"100::1", true},      // discard-only
		{"2001:db8::1", true}, // documentation
		{"2001:2::1", true},   // benchmarking
		{"2606:4700::1111", false},
		{"2a00:1450:4001::200e", false},
		// IPv4 documentation ranges.
		{"192.0.2.1", true}, {"198.51.100.1", true}, {"203.0.113.1", true},
	}
	for _, c := range cases {
		a := netip.MustParseAddr(c.addr)
		if got := PrivateAddr(a); got != c.want {
			t.Errorf("PrivateAddr(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
}

// Every form is refused at dial time, in the dialer's Control hook, before
// connect(2): no packet leaves. A listener on the loopback address counts
// connections that reach it; for forms that would reach it (IPv4-mapped
// loopback on a dual-stack socket) the count must stay 0.
func TestFetchRefusesEmbeddedIPv4AtDialTime(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("reached"))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	urls := []string{
		"http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
		"http://[64:ff9b::169.254.169.254]/",
		"http://[64:ff9b::7f00:1]:" + port + "/",
		"http://[64:ff9b:1::a9fe:a9fe]/",
		"http://[2002:a9fe:a9fe::1]/",
		"http://[2002:7f00:1::1]:" + port + "/",
		"http://[2001:0:a9fe:a9fe::1]/",
		"http://[2001:0:808:808:8000:ffff:5601:5601]/",
		"http://[2001:0:808:808:8000:ffff:80ff:fffe]:" + port + "/",
		"http://[::a9fe:a9fe]/",
		"http://[::7f00:1]:" + port + "/",
		"http://[::ffff:169.254.169.254]/",
		"http://[::ffff:127.0.0.1]:" + port + "/",
		"http://[::ffff:0:7f00:1]:" + port + "/",
	}
	for _, u := range urls {
		t.Run(u, func(t *testing.T) {
			var err error
			within(t, 30*time.Second, "fetch "+u, func() {
				_, err = Fetch(context.Background(), u, FetchOptions{Timeout: 5 * time.Second})
			})
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Fetch(%s) = %v, want ErrRefused from the dial-time check", u, err)
			}
			if !strings.Contains(err.Error(), "allow_private is off") {
				t.Fatalf("Fetch(%s): refused, but not by the dial-time address check: %v", u, err)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the loopback server", n)
	}
}

func TestFetchRefusalNamesTheEmbeddedIPv4(t *testing.T) {
	_, err := Fetch(context.Background(), "http://[64:ff9b::a9fe:a9fe]/", FetchOptions{Timeout: 5 * time.Second})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "embeds the IPv4 address 169.254.169.254") {
		t.Fatalf("refusal does not name the embedded address: %v", err)
	}
}
