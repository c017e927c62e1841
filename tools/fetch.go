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
	// AllowPrivate permits loopback, private, link-local, CGNAT, unspecified
	// and multicast addresses. The check is made on the address actually
	// dialled, after DNS resolution, so a name resolving to a private
	// address (or a redirect to one) is refused too.
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
// CGNAT (100.64.0.0/10), unspecified, multicast, and IPv4-mapped forms of
// those.
func PrivateAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	if ip.Is4() {
		b := ip.As4()
		switch {
		case b[0] == 0: // "this network"
			return true
		case b[0] == 100 && b[1]&0xc0 == 64: // CGNAT 100.64.0.0/10
			return true
		case b[0] == 192 && b[1] == 0 && b[2] == 0: // IETF protocol assignments
			return true
		case b[0] == 198 && (b[1] == 18 || b[1] == 19): // benchmarking
			return true
		case b[0] >= 240: // reserved and broadcast
			return true
		}
	}
	return false
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
			if PrivateAddr(ap.Addr()) {
				return fmt.Errorf("%w: %s is a private, loopback or reserved address (allow_private is off)", ErrRefused, ap.Addr())
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
