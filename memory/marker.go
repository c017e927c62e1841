package memory

import (
	"fmt"
	"os"
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
