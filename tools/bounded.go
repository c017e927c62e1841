package tools

import (
	"context"
	"fmt"
	"sync/atomic"
)

// MaxStuck bounds the file tool calls that may be left blocked in the file
// system past their deadline at once (a hung network mount, a FUSE server
// that never answers). Past it, new calls are refused with ErrRefused rather
// than leaving more goroutines and threads behind.
const MaxStuck = 64

var stuck atomic.Int64

// Stuck reports how many file tool calls passed their deadline while blocked
// in a file system call and have not returned yet.
func Stuck() int64 { return stuck.Load() }

// bounded runs fn, which may block in the kernel, so that the caller gets an
// answer by ctx's deadline whatever fn does: without a deadline fn runs on
// the caller's goroutine; with one it runs on its own goroutine and, if it has
// not returned at the deadline, the call fails with ErrTimeout while fn is
// left to finish in the background (counted by Stuck; a blocked system call
// cannot be interrupted, only abandoned). fn must clean up after itself (close
// what it opened) and publish results only through variables the caller reads
// after bounded returned nil. A panic in fn comes back as an error.
func bounded(ctx context.Context, what string, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrTimeout, what, context.Cause(ctx))
	}
	if ctx.Done() == nil {
		return protect(what, fn)
	}
	if n := stuck.Load(); n >= MaxStuck {
		return fmt.Errorf("%w: %s: %d earlier file calls are still blocked in the file system past their deadline; no new one is started until they return", ErrRefused, what, n)
	}
	const running, finished, abandoned = 0, 1, 2
	var state atomic.Int32
	done := make(chan error, 1)
	go func() {
		err := protect(what, fn)
		if !state.CompareAndSwap(running, finished) {
			stuck.Add(-1) // abandoned by its caller: no longer stuck
			return
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	stuck.Add(1)
	if !state.CompareAndSwap(running, abandoned) {
		stuck.Add(-1) // finished in the same instant: its answer counts
		return <-done
	}
	return fmt.Errorf("%w: %s did not finish within its deadline (%v); the file system call is still blocked and is left to return in the background", ErrTimeout, what, context.Cause(ctx))
}

// protect runs fn, turning a panic into an error: fn runs on a goroutine of
// its own, where an unrecovered panic would end the whole process.
func protect(what string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: internal error (recovered panic): %v", what, r)
		}
	}()
	return fn()
}
