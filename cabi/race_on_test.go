//go:build race

package main

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// tests of pooled allocations only check their results under it.
const raceEnabled = true
