package memory

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MarkerSuffix names the file beside a store's database that records that a
// store lives there (memory.db -> memory.db-crewcore). It is written when a
// store opens and never removed by crewcore. With it, a database file that
// became empty (0 bytes) or lost its tables is refused with ErrCorrupt
// instead of being initialized as a new, empty store (a truncated file
// opened silently as empty: 300 records gone, no error). A missing database
// file is a new store (deleting the file is how a store is thrown away), and
// so is an empty file without a marker (a file created for the store).
const MarkerSuffix = "-crewcore"

const markerText = "crewcore memory store marker: the database beside this file holds a crewcore memory store.\n" +
	"If that file becomes empty or loses its tables, crewcore refuses to open it instead of starting over.\n" +
	"Delete this file to start a new, empty store at that path.\n"

func hasMarker(dbPath string) bool {
	_, err := os.Stat(dbPath + MarkerSuffix)
	return err == nil
}

// writeMarker creates the marker of an open store if it is missing. A
// location where it cannot be written only loses the check.
func writeMarker(dbPath string) {
	if hasMarker(dbPath) {
		return
	}
	f, err := os.OpenFile(dbPath+MarkerSuffix, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return
	}
	f.WriteString(markerText) //nolint:errcheck // best effort: see above
	f.Close()
}

// lostStoreError reports a database file that held a store (it has a
// marker) and is now empty or without tables.
func lostStoreError(path, what string) error {
	return fmt.Errorf("open store %s: %w: the store's database %s (the marker %s says a store was here): "+
		"it was truncated or replaced, and its records are not in it; restore it from a backup, "+
		"or delete %s to start a new, empty store", path, ErrCorrupt, what, path+MarkerSuffix, path+MarkerSuffix)
}

// The marker also holds the store's space reserve: zeros after its text,
// as many bytes as the database, its WAL and its segment files (at least
// 256 KiB, at most 8 MiB). On a full disk nothing can be written, not even a delete (it
// appends to the WAL), and the WAL cannot be checkpointed (the database file
// must grow to take its pages). A delete or reset that fails for lack of
// space (or any delete or reset after a write failed for lack of space)
// releases the reserve, checkpoints the WAL into the database (in RESTART
// mode, which keeps the WAL file's blocks for the writes to come) and tries
// again; the reserve is rebuilt when space allows (right after, after a
// later checkpoint, or at the next open).
const (
	reserveMin = 256 << 10
	reserveMax = 8 << 20
)

// globEscape escapes the characters filepath.Glob treats as patterns.
func globEscape(p string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`).Replace(p)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// ensureReserve grows the marker of dbPath to its text plus the reserve
// (best effort: without space it stays as it is).
func ensureReserve(dbPath string) {
	size := fileSize(dbPath) + fileSize(dbPath+"-wal")
	if size < reserveMax { // a store whose vectors fill the disk needs the reserve as much
		segs, _ := filepath.Glob(globEscape(dbPath) + "-seg-*")
		for _, p := range segs {
			size += fileSize(p)
		}
	}
	want := int64(len(markerText)) + min(reserveMax, max(reserveMin, size))
	f, err := os.OpenFile(dbPath+MarkerSuffix, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() >= want {
		return
	}
	zeros := make([]byte, 64<<10)
	for off := st.Size(); off < want; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), want-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			f.Truncate(st.Size()) //nolint:errcheck // no space: leave it to the store
			return
		}
	}
}

// releaseReserve gives the reserve back to the file system; it reports
// whether there was one.
func releaseReserve(dbPath string) bool {
	if fileSize(dbPath+MarkerSuffix) <= int64(len(markerText)) {
		return false
	}
	return os.Truncate(dbPath+MarkerSuffix, int64(len(markerText))) == nil
}
