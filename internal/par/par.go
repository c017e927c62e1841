// Package par runs the pieces of one scan on several goroutines.
package par

import "sync/atomic"

// Pieces calls fn(i) once for every i in [0, n), on the calling goroutine
// and on up to helpers more goroutines, which claim indexes from a shared
// counter. It returns when every call has returned, and never waits for a
// helper to start: one that a busy or slow-to-wake core starts late finds
// fewer pieces left, or none, and returns on its own. (A split into fixed
// parts waited for each part's goroutine; called from Python, that wait
// made about one search in ten run at one core's speed.)
func Pieces(n, helpers int, fn func(i int)) {
	if n <= 0 {
		return
	}
	helpers = min(helpers, n-1)
	var next, done atomic.Int64
	finished := make(chan struct{})
	run := func() {
		for {
			i := next.Add(1) - 1
			if i >= int64(n) {
				return
			}
			fn(int(i))
			if done.Add(1) == int64(n) {
				close(finished)
			}
		}
	}
	for range helpers {
		go run()
	}
	run()
	<-finished
}
