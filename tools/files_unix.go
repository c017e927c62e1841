//go:build unix

package tools

import (
	"io/fs"
	"syscall"
)

// openFlags are added to every open of FileRoot: O_NONBLOCK so that opening
// a FIFO never waits for a writer (regular files ignore it), O_NOCTTY so that
// a terminal never becomes the process's controlling terminal.
const openFlags = syscall.O_NONBLOCK | syscall.O_NOCTTY

// openDirFlag is added when FileRoot opens a directory to list it: anything
// else fails the open itself.
const openDirFlag = syscall.O_DIRECTORY

// linkCount is st's number of hard links (1 when the platform does not say).
func linkCount(st fs.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Nlink)
	}
	return 1
}
