// Package tools is crewcore's tool executor engine: the policy state, clock
// and result cache behind every tool call an agent makes, plus built-in
// tools that run without Python (an HTTP fetcher and a file reader/lister
// confined to a root directory).
//
// An Engine holds one Policy. Every tool call is first submitted to
// Engine.Begin, which decides in one step (one lock, no I/O) whether the
// call may run: nesting depth, argument size, loop detection, per-task and
// per-run call budgets, the result cache and the per-tool rate limit are
// checked in that order. A refused call comes back as a Refusal naming the
// limit that was hit and what the model should do instead. The caller runs
// an allowed call itself (the Python side on a worker thread or in a
// subprocess with the deadline Begin returned) and, when the policy caches
// results, stores the result with Engine.Store.
//
// Arguments are identified by their canonical encoding (Canonical): a
// MessagePack value re-encoded with map keys sorted and integral floats
// written as integers, so {"a": 1, "b": 2.0} and {"b": 2, "a": 1} are the
// same call for the cache and for loop detection.
package tools
