//go:build !linux

package runq

// AllowedCPUs is unknown outside Linux: nothing is pinned unless a list of
// CPUs is given (and the processes then ignore it: they cannot pin).
func AllowedCPUs() []int { return nil }
