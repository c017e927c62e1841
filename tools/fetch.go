package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// FetchOptions configure Fetch. Zero fields take the defaults noted.
type FetchOptions struct {
	// Timeout bounds the whole fetch, redirects and body included (default 10 s).
	Timeout time.Duration
	// MaxBytes caps the body read; a longer body is cut and Truncated is set
	// (default 1 MiB).
	MaxBytes int64
	// MaxRedirects bounds the redirects followed (default 5; negative: none).
	MaxRedirects int
	// AllowPrivate permits the addresses PrivateAddr reports (loopback,
	// private, link-local, CGNAT, unspecified, multicast, reserved, and IPv6
	// addresses embedding one of those). The check is made on the address
	// actually dialled, after DNS resolution and before connect(2), so a name
	// resolving to a private address (or a redirect to one) is refused too
	// and no packet is sent to it.
	AllowPrivate bool
	// UserAgent is sent as the User-Agent header (default "crewcore-fetch/1").
	UserAgent string
}

// FetchResult is a fetched page.
type FetchResult struct {
	// URL is the final URL after redirects.
	URL         string
	Status      int
	ContentType string
	Body        []byte
	// Truncated reports a body longer than MaxBytes, cut at MaxBytes.
	Truncated bool
}

// PrivateAddr reports whether ip is an address Fetch refuses unless
// AllowPrivate is set: loopback, RFC 1918 / RFC 4193 private, link-local,
// CGNAT (100.64.0.0/10), unspecified, multicast, reserved, benchmarking and
// documentation ranges, IPv6 site-local and discard-only; IPv6 addresses
// whose embedded IPv4 address is one of those (IPv4-mapped ::ffff:a.b.c.d,
// NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32: its server and its
// client address); and IPv6 ranges that embed an IPv4 address in a way the
// dialler cannot check or that nothing legitimate uses (IPv4-compatible
// ::/96, IPv4-translated ::ffff:0:0:0/96, NAT64 local-use 64:ff9b:1::/48).
// A NAT64 or 6to4 gateway turns such an address back into IPv4 on the way
// out, so 64:ff9b::a9fe:a9fe reaches 169.254.169.254 (the cloud metadata
// service) wherever a gateway exists.
func PrivateAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is4() {
		return private4(ip)
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range refused6 {
		if p.Contains(ip) {
			return true
		}
	}
	for _, v4 := range Embedded4(ip) {
		if private4(v4) {
			return true
		}
	}
	return false
}

// private4 is PrivateAddr for an IPv4 address.
func private4(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	b := ip.As4()
	switch {
	case b[0] == 0: // "this network"
		return true
	case b[0] == 100 && b[1]&0xc0 == 64: // CGNAT 100.64.0.0/10
		return true
	case b[0] == 192 && b[1] == 0 && (b[2] == 0 || b[2] == 2): // IETF protocol assignments, TEST-NET-1
		return true
	case b[0] == 198 && (b[1] == 18 || b[1] == 19): // benchmarking
		return true
	case b[0] == 198 && b[1] == 51 && b[2] == 100, b[0] == 203 && b[1] == 0 && b[2] == 113: // TEST-NET-2, -3
		return true
	case b[0] >= 240: // reserved and broadcast
		return true
	}
	return false
}

// refused6 are IPv6 ranges refused whole.
var refused6 = []netip.Prefix{
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated by RFC 4291); :: and ::1 too
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (RFC 2765)
	netip.MustParsePrefix("64:ff9b:1::/48"),  // NAT64 local-use (RFC 8215): the IPv4 position depends on the site's prefix length
	netip.MustParsePrefix("100::/64"),        // discard-only (RFC 6666)
	netip.MustParsePrefix("2001:2::/48"),     // benchmarking (RFC 5180)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation (RFC 3849)
	netip.MustParsePrefix("3fff::/20"),       // documentation (RFC 9637)
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated by RFC 3879)
}

var (
	nat64WKP  = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052 well-known prefix
	sixToFour = netip.MustParsePrefix("2002::/16")    // RFC 3056
	teredo    = netip.MustParsePrefix("2001::/32")    // RFC 4380
)

// Embedded4 returns the IPv4 addresses an IPv6 address carries in a form a
// gateway on the way may turn back into IPv4: the IPv4 of an IPv4-mapped
// address or of the NAT64 well-known prefix 64:ff9b::/96 (last 32 bits), of
// 6to4 2002::/16 (bits 16 to 47), and both addresses of Teredo 2001::/32 (the
// server in bits 32 to 63, the client in the last 32 bits, inverted). Other
// addresses carry none.
func Embedded4(ip netip.Addr) []netip.Addr {
	if ip.Is4In6() {
		return []netip.Addr{ip.Unmap()}
	}
	if !ip.Is6() {
		return nil
	}
	b := ip.As16()
	switch {
	case nat64WKP.Contains(ip):
		return []netip.Addr{netip.AddrFrom4([4]byte(b[12:16]))}
	case sixToFour.Contains(ip):
		return []netip.Addr{netip.AddrFrom4([4]byte(b[2:6]))}
	case teredo.Contains(ip):
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return []netip.Addr{netip.AddrFrom4([4]byte(b[4:8])), netip.AddrFrom4(client)}
	}
	return nil
}

// Fetch GETs rawURL (http or https only) under opt and ctx. Refusals wrap
// ErrRefused, a passed deadline wraps ErrTimeout.
func Fetch(ctx context.Context, rawURL string, opt FetchOptions) (*FetchResult, error) {
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = 1 << 20
	}
	if opt.MaxRedirects == 0 {
		opt.MaxRedirects = 5
	}
	if opt.UserAgent == "" {
		opt.UserAgent = "crewcore-fetch/1"
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: fetch %q: not a URL: %v", ErrRefused, rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: fetch %q: only http and https URLs are fetched", ErrRefused, rawURL)
	}
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()

	dialer := &net.Dialer{Timeout: opt.Timeout}
	if !opt.AllowPrivate {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: cannot check address %q: %v", ErrRefused, address, err)
			}
			if a := ap.Addr(); PrivateAddr(a) {
				embeds := ""
				for _, v4 := range Embedded4(a) {
					if private4(v4) {
						embeds = fmt.Sprintf(" (it embeds the IPv4 address %s)", v4)
						break
					}
				}
				return fmt.Errorf("%w: %s is a private, loopback or reserved address%s (allow_private is off)", ErrRefused, a, embeds)
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would dial for us and bypass the address check
		DialContext:            dialer.DialContext,
		TLSHandshakeTimeout:    opt.Timeout,
		ResponseHeaderTimeout:  opt.Timeout,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	defer tr.CloseIdleConnections()
	redirects := 0
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			redirects++
			if opt.MaxRedirects < 0 || redirects > opt.MaxRedirects {
				return fmt.Errorf("%w: more than %d redirects", ErrRefused, max(opt.MaxRedirects, 0))
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("%w: redirect to a %s URL", ErrRefused, req.URL.Scheme)
			}
			return nil
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: fetch %q: %v", ErrRefused, rawURL, err)
	}
	req.Header.Set("User-Agent", opt.UserAgent)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fetchErr(ctx, rawURL, opt.Timeout, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, opt.MaxBytes+1))
	if err != nil {
		return nil, fetchErr(ctx, rawURL, opt.Timeout, err)
	}
	res := &FetchResult{URL: resp.Request.URL.String(), Status: resp.StatusCode,
		ContentType: resp.Header.Get("Content-Type"), Body: body}
	if int64(len(body)) > opt.MaxBytes {
		res.Body, res.Truncated = body[:opt.MaxBytes], true
	}
	return res, nil
}

func fetchErr(ctx context.Context, rawURL string, timeout time.Duration, err error) error {
	if errors.Is(err, ErrRefused) {
		return fmt.Errorf("fetch %q: %w", rawURL, unwrapRefusal(err))
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: fetch %q did not finish within %s", ErrTimeout, rawURL, timeout)
	}
	return fmt.Errorf("fetch %q: %v", rawURL, err)
}

// unwrapRefusal digs the refusal out of url.Error/net.OpError wrappers so
// the message names the reason, not the transport layers.
func unwrapRefusal(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil || u == ErrRefused || !errors.Is(u, ErrRefused) {
			return err
		}
		err = u
	}
}
