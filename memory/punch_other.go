//go:build !linux

package memory

import "errors"

// punchHole is not available here: the rows keep their blocks until the
// segment is compacted (optimize).
func punchHole(path string, off, n int64) error {
	return errors.New("hole punching is not supported on this system")
}
