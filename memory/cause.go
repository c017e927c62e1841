package memory

import (
	"fmt"
	"os"
	"path/filepath"
)

// causeError is an error matching a sentinel (errors.Is) whose message names
// the real cause instead of the sentinel's own text: a store path under a
// file is not "not writable", and neither is a refused login.
type causeError struct {
	msg      string
	sentinel error
}

func (e *causeError) Error() string { return e.msg }
func (e *causeError) Unwrap() error { return e.sentinel }

// NewAccessError returns an error that matches ErrAccess (so every caller and
// the Python bridge treat it as a store that cannot be used) with msg as its
// whole message. Use it where "store not writable" would name the wrong
// cause: a refused login, a path whose parent is a file.
func NewAccessError(format string, args ...any) error {
	return &causeError{msg: fmt.Sprintf(format, args...), sentinel: ErrAccess}
}

// fileInPath returns the first existing ancestor of dir (dir included) that
// is not a directory, or "" when there is none: the path a store cannot be
// created under ("not a directory", not "not writable").
func fileInPath(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil {
			if !st.IsDir() {
				return d
			}
			return ""
		}
		if p := filepath.Dir(d); p == d {
			return ""
		}
	}
}
