package memory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/crewcore/crewcore/sqlitedb"
	sqlite3 "github.com/mattn/go-sqlite3"
)

// Read-only stores (docs/troubleshooting.md, "A read-only store").
//
// A store whose database file, or whose directory, this process cannot
// write (a read-only mount, a file shipped read-only, another user's
// directory) is opened read-only instead of being refused: Open finds out
// before it touches the file (access(2) on the file and on its directory),
// or when the writable open fails with an access error on an existing
// store. Options.ReadOnly asks for it on a writable store too.
//
// A read-only store opens its file with SQLite's mode=ro: no schema is
// created, nothing is truncated or upgraded, no checkpointer runs, the
// marker and the space reserve are left alone, and segment files are
// opened O_RDONLY and mapped PROT_READ (as always). Reads see other
// processes' writes as a writable store does. mode=ro needs the WAL's -shm
// file: when it does not exist and cannot be created (a read-only
// directory: SQLite deletes -wal and -shm when the last connection closes),
// the file is opened with immutable=1 instead: SQLite then reads the
// database file alone, takes no locks and assumes nobody changes it, so
// writes another process makes meanwhile are not seen (and a file changed
// under it reads as garbage or fails), and a -wal left beside it is not
// read: such a store is refused rather than served without its last
// commits. A store in format version 1 or 2 needs its upgrade (a write) and
// is refused: it must be opened writable once.
//
// Every write of a read-only store returns an error wrapping ErrAccess that
// names the file and says it was opened read-only.

// ReadOnly reports whether the store was opened read-only (writes return
// ErrAccess).
func (s *Store) ReadOnly() bool { return s.readOnly }

// readOnlyError is the error of a write to a read-only store.
func (s *Store) readOnlyError(op string) error {
	return fmt.Errorf("%s %s: %w: the store was opened read-only (%s)", op, s.path, ErrAccess, s.roWhy)
}

// unwritable says why the existing, non-empty store file at path cannot be
// opened for writing ("" when it can, or when there is no store there).
func unwritable(path string) string {
	st, err := os.Stat(path)
	if err != nil || st.IsDir() || st.Size() == 0 {
		return ""
	}
	const wOK = 2
	if err := syscall.Access(path, wOK); err != nil {
		return fmt.Sprintf("the file cannot be written: %v", err)
	}
	dir := filepath.Dir(path)
	if err := syscall.Access(dir, wOK|1); err != nil {
		return fmt.Sprintf("its directory %s cannot be written: %v", dir, err)
	}
	return ""
}

// openReadOnlyDB opens path read-only with SQLite's mode=ro, or, when that
// cannot read it (no -shm, which cannot be created), with immutable=1.
// params are more DSN parameters ("&k=v..."). It reports which it used.
func openReadOnlyDB(path, params string) (*sql.DB, bool, error) {
	var first error
	for _, immutable := range []bool{false, true} {
		dsn := "file:" + sqlitedb.EscapePath(path) + "?mode=ro" + params
		if immutable {
			dsn += "&immutable=1"
		}
		db, err := sql.Open("sqlite3", dsn)
		if err != nil {
			return nil, false, err
		}
		var n int
		err = db.QueryRow(`SELECT count(*) FROM sqlite_master`).Scan(&n)
		if err == nil {
			return db, immutable, nil
		}
		db.Close()
		var se sqlite3.Error
		if first == nil {
			first = err
		}
		if !errors.As(err, &se) || (se.Code != sqlite3.ErrCantOpen && se.Code != sqlite3.ErrReadonly &&
			se.Code != sqlite3.ErrPerm && se.Code != sqlite3.ErrIoErr) {
			return nil, false, err
		}
	}
	return nil, false, first
}

// openReadOnly is Open for a store that is not to be written (s.roWhy
// says why). s.path is absolute and its directory exists.
func (s *Store) openReadOnly() (*Store, error) {
	st, err := os.Stat(s.path)
	if err != nil || st.Size() == 0 {
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open store %s: %w: there is no store to open read-only (%s)", s.path, ErrAccess, s.roWhy)
		}
		return nil, fmt.Errorf("open store %s: %w: %v", s.path, ErrAccess, err)
	}
	if err := checkForeign(s.path); err != nil {
		return nil, err
	}
	db, immutable, err := openReadOnlyDB(s.path, fmt.Sprintf("&_busy_timeout=%d&_cache_size=-65536", storeBusyWait.Milliseconds()))
	if err != nil {
		return nil, s.fromDB("open store read-only", sqlitedb.Classify("open store read-only", s.path, err))
	}
	if immutable && walFileSize(s.path) > 0 {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w: it is opened read-only (%s) and its WAL %s holds writes "+
			"that cannot be read without creating %s; open it writable once (or make the directory writable)",
			s.path, ErrAccess, s.roWhy, s.path+"-wal", s.path+"-shm")
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	s.db, s.readOnly, s.immutable = db, true, immutable
	if err := s.initReadOnly(); err != nil {
		if s.stmtMaxSeq != nil {
			s.stmtMaxSeq.Close()
		}
		db.Close()
		s.wal.close() // after the connections (see shmMap)
		return nil, err
	}
	return s, nil
}

// initReadOnly is init without writes: the version must be this engine's.
func (s *Store) initReadOnly() error {
	ctx := context.Background()
	var version string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM crewcore_meta WHERE key='version'`).Scan(&version)
	if errors.Is(err, sql.ErrNoRows) || (err != nil && strings.Contains(err.Error(), "no such table")) {
		return fmt.Errorf("open store %s: %w: the file holds no initialized store, and it cannot be "+
			"initialized read-only (%s)", s.path, ErrAccess, s.roWhy)
	}
	if err != nil {
		return s.classify("open store", err)
	}
	switch version {
	case FormatVersion:
	case "1", "2":
		return fmt.Errorf("open store %s: %w: the store is in format version %s and must be upgraded to "+
			"version %s, which writes it, but it can only be opened read-only (%s): open it writable once "+
			"with this version of crewcore", s.path, ErrAccess, version, FormatVersion, s.roWhy)
	default:
		return fmt.Errorf("open store %s: %w: unsupported format version %s (this engine reads 1 to %s)", s.path, ErrCorrupt, version, FormatVersion)
	}
	if s.stmtMaxSeq, err = s.db.Prepare(`SELECT coalesce(max(seq), 0) FROM changes`); err != nil {
		return s.classify("open store", err)
	}
	if !s.immutable {
		s.wal = openWALWatch(s.path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reload(ctx, s.db)
}
