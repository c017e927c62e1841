package memory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenUnderAFile: a store path whose parent is a file is refused as
// "not a directory" naming the file (it was "store not writable"), and the
// error still matches ErrAccess.
func TestOpenUnderAFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path string }{
		{"parent", filepath.Join(file, "memory.db")},
		{"grandparent", filepath.Join(file, "sub", "memory.db")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.path, nil)
			if err == nil {
				s.Close()
				t.Fatal("opened a store under a file")
			}
			msg := err.Error()
			if !errors.Is(err, ErrAccess) || !strings.Contains(msg, "not a directory: "+file+" is a file") || strings.Contains(msg, "not writable") {
				t.Fatalf("error %q", msg)
			}
		})
	}
}
