package pgmemory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/crewcore/crewcore/memory"
	"github.com/jackc/pgx/v5/pgconn"
)

type retryOpt int

// noDeadline runs attempts under the caller's context only (index builds).
const noDeadline retryOpt = 1

// retry runs fn until it succeeds, fails with a permanent error, or
// transient errors have lasted Options.RetryFor. Each attempt runs under
// Options.QueryTimeout.
func (s *Store) retry(ctx context.Context, op string, fn func(ctx context.Context) error, opts ...retryOpt) error {
	timeout := s.opts.QueryTimeout
	for _, o := range opts {
		if o == noDeadline {
			timeout = 0
		}
	}
	return s.retryT(ctx, op, timeout, fn)
}

// retryT is retry with an explicit deadline per attempt (0: none).
func (s *Store) retryT(ctx context.Context, op string, timeout time.Duration, fn func(ctx context.Context) error) error {
	deadline := timeout > 0
	start := time.Now()
	backoff := 25 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if s.closed.Load() {
			return fmt.Errorf("%s: %w", op, memory.ErrClosed)
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if deadline {
			actx, cancel = context.WithTimeout(ctx, timeout)
		}
		err := fn(actx)
		timedOut := actx.Err() == context.DeadlineExceeded && ctx.Err() == nil
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", op, ctx.Err())
		}
		if timedOut {
			return fmt.Errorf("%s: %w: no answer from %s within %s", op, memory.ErrTimeout, s.dsnShown, timeout)
		}
		if !transient(err) {
			return classify(op, err)
		}
		if s.closed.Load() {
			return fmt.Errorf("%s: %w", op, memory.ErrClosed)
		}
		if time.Since(start)+backoff > s.opts.RetryFor {
			return fmt.Errorf("%s: %w: %s still failing after %d attempts over %s: %v",
				op, ErrUnavailable, s.dsnShown, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w", op, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

// transient reports errors worth retrying: lost or refused connections, a
// server shutting down or starting, serialization failures, deadlocks, and a
// cached plan invalidated by a concurrent ALTER TABLE.
func transient(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "40001", pe.Code == "40P01", // serialization failure, deadlock
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // shutdown, crash, starting
			pe.Code == "53300", // too many connections
			pe.Code == "0A000" && strings.Contains(pe.Message, "cached plan"),         // plan invalidated by DDL
			pe.Code == "XX000" && strings.Contains(pe.Message, "cache lookup failed"): // type changed under us
			return true
		}
		return false
	}
	var de *memory.DimensionError
	if errors.As(err, &de) {
		return false
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true // refused, reset or timed out while connecting (auth errors are PgErrors)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	msg := err.Error()
	if strings.Contains(msg, "closed pool") {
		return false // our own Close
	}
	for _, m := range []string{"conn closed", "connection reset", "broken pipe", "unexpected EOF"} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// classify wraps a permanent error with the memory sentinel that fits it.
func classify(op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "22021", pe.Code == "22P05", pe.Code == "22P02" && strings.Contains(pe.Message, "json"):
			return fmt.Errorf("%s: %w: PostgreSQL refused a value: %s", op, memory.ErrInvalidRecord, pe.Message)
		case pe.Code == "42501":
			return fmt.Errorf("%s: %w: %s", op, memory.ErrAccess, pe.Message)
		case strings.HasPrefix(pe.Code, "28"):
			// Not "store not writable": the server refused the login.
			return memory.NewAccessError("%s: PostgreSQL refused the login: %s (SQLSTATE %s)", op, pe.Message, pe.Code)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}
