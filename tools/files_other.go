//go:build !unix

package tools

import "io/fs"

// openFlags: no non-blocking open on this platform; FileRoot refuses what is
// not a regular file or a directory from its Stat before opening it, and
// bounded still holds the deadline.
const openFlags = 0

// openDirFlag: none on this platform (the descriptor is checked after open).
const openDirFlag = 0

// linkCount: the link count is not available here; every file counts as one.
func linkCount(fs.FileInfo) uint64 { return 1 }
