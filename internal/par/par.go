// Package par runs the pieces of one scan on several goroutines.
package par

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// Pieces calls fn(i) once for every i in [0, n), on the calling goroutine
// and on up to helpers more goroutines, which claim indexes from a shared
// counter. It returns when every call has returned, and never waits for a
// helper to start: one that a busy or slow-to-wake core starts late finds
// fewer pieces left, or none, and returns on its own. (A split into fixed
// parts waited for each part's goroutine; called from Python, that wait
// made about one search in ten run at one core's speed.)
//
// A panic in fn, on any goroutine, does not end the process: the piece
// counts as done, the other pieces still run, and once all have returned
// Pieces panics on the calling goroutine with the first panic's value, where
// the caller's recover (the library's boundary with Python) can catch it.
// Helpers turn memory faults into panics (debug.SetPanicOnFault), so a
// mapped file cut short under a scan reaches the caller as one too.
func Pieces(n, helpers int, fn func(i int)) {
	if n <= 0 {
		return
	}
	helpers = min(helpers, n-1)
	var next, done atomic.Int64
	var first struct {
		sync.Once
		v any
	}
	finished := make(chan struct{})
	piece := func(i int) {
		defer func() {
			if p := recover(); p != nil {
				first.Do(func() { first.v = p })
			}
			if done.Add(1) == int64(n) {
				close(finished)
			}
		}()
		fn(i)
	}
	run := func() {
		for {
			i := next.Add(1) - 1
			if i >= int64(n) {
				return
			}
			piece(int(i))
		}
	}
	for range helpers {
		go func() {
			debug.SetPanicOnFault(true) // this goroutine's own setting
			run()
		}()
	}
	run()
	<-finished
	if first.v != nil {
		panic(first.v)
	}
}
