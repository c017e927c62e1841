//go:build linux

package memory

import (
	"os"
	"syscall"
)

// punchHole gives the file system back the blocks inside [off, off+n) of
// path (fallocate PUNCH_HOLE | KEEP_SIZE: the file keeps its size, the range
// reads as zeros). Best effort: a file system without hole punching keeps
// its blocks.
func punchHole(path string, off, n int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	const keepSize, punch = 0x01, 0x02 // FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE
	return syscall.Fallocate(int(f.Fd()), keepSize|punch, off, n)
}
