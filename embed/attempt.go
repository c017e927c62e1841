package embed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// attemptResult is the outcome of one HTTP attempt. kind is nil on success.
type attemptResult struct {
	resp       Response
	kind       error
	status     int
	msg        string
	retryable  bool
	retryAfter time.Duration
	dim        *DimensionError
}

// attempt sends one HTTP request for n texts and classifies the outcome.
func (c *Client) attempt(ctx context.Context, body []byte, n int) attemptResult {
	actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return attemptResult{kind: ErrInvalid, msg: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "crewcore-embed/1")
	for k, v := range c.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportFailure(ctx, actx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseBytes+1))
	if err != nil {
		return c.transportFailure(ctx, actx, err)
	}
	if int64(len(data)) > c.cfg.MaxResponseBytes {
		return attemptResult{kind: ErrBadResponse, status: resp.StatusCode,
			msg: fmt.Sprintf("response larger than %d bytes", c.cfg.MaxResponseBytes)}
	}
	if resp.StatusCode/100 != 2 {
		return c.statusFailure(resp, data)
	}
	r, err := DecodeResponse(data, n)
	if err != nil {
		return attemptResult{kind: ErrBadResponse, status: resp.StatusCode, msg: err.Error(), retryable: true}
	}
	got := len(r.Vectors[0])
	want := int(c.dim.Load())
	if want == 0 && c.cfg.Dimensions == 0 {
		if c.dim.CompareAndSwap(0, int64(got)) {
			want = got
		} else {
			want = int(c.dim.Load())
		}
	}
	if got != want {
		d := &DimensionError{Provider: c.cfg.Provider, Model: c.cfg.Model, Want: want, Got: got}
		return attemptResult{kind: ErrDimension, status: resp.StatusCode, msg: d.Error(), retryable: true, dim: d}
	}
	return attemptResult{resp: r}
}

// transportFailure classifies an error with no HTTP answer.
func (c *Client) transportFailure(ctx, actx context.Context, err error) attemptResult {
	switch {
	case c.base.Err() != nil:
		return attemptResult{kind: ErrClosed, msg: "client closed"}
	case ctx.Err() != nil:
		return attemptResult{kind: ErrTimeout, msg: fmt.Sprintf("no answer before the call's deadline: %v", err)}
	case actx.Err() != nil:
		return attemptResult{kind: ErrTimeout, retryable: true,
			msg: fmt.Sprintf("no answer within the attempt timeout (%s)", c.cfg.AttemptTimeout)}
	}
	return attemptResult{kind: ErrConnection, retryable: true, msg: err.Error()}
}

// statusFailure classifies an HTTP error answer.
func (c *Client) statusFailure(resp *http.Response, data []byte) attemptResult {
	r := attemptResult{status: resp.StatusCode, msg: errorMessage(data), retryAfter: retryAfter(resp.Header)}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		r.kind, r.retryable = ErrRateLimited, true
	case s == http.StatusRequestTimeout || s == http.StatusConflict || s >= 500:
		r.kind, r.retryable = ErrServer, true
	default:
		r.kind = ErrStatus
	}
	if v := resp.Header.Get("x-should-retry"); v == "true" {
		r.retryable = true
	} else if v == "false" {
		r.retryable = false
	}
	return r
}

// backoff is the wait before retry attempt+1: RetryBase doubled per
// attempt, capped at RetryMax, minus up to 25% jitter.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.RetryBase << min(attempt, 30)
	if d <= 0 || d > c.cfg.RetryMax {
		d = c.cfg.RetryMax
	}
	return time.Duration(float64(d) * (1 - 0.25*rand.Float64()))
}

// retryAfter reads retry-after-ms (milliseconds) or Retry-After (seconds
// or an HTTP date); 0 when absent or unreadable.
func retryAfter(h http.Header) time.Duration {
	if v := strings.TrimSpace(h.Get("retry-after-ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && ms < 1e9 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && s < 1e6 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// IsRetryable reports whether err is a failure worth trying again later
// (rate limits, server errors, timeouts, connection failures).
func IsRetryable(err error) bool {
	for _, k := range []error{ErrRateLimited, ErrServer, ErrTimeout, ErrConnection} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}
