package runq

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/crewcore/crewcore/internal/redact"
)

// DefaultSchema is the PostgreSQL schema River's tables go into when the DSN
// names none (a "schema" query parameter, which runq removes before
// connecting).
const DefaultSchema = "crewcore_runs"

// Spec says where a queue lives: a SQLite file (Path) or a PostgreSQL
// database (DSN and Schema).
type Spec struct {
	// Path is the SQLite file (absolute, cleaned); empty for PostgreSQL.
	Path string
	// DSN is the PostgreSQL connection string without runq's own "schema"
	// parameter; empty for SQLite.
	DSN string
	// Schema is the PostgreSQL schema of River's tables.
	Schema string
}

// IsPostgres reports whether the queue is on PostgreSQL.
func (s Spec) IsPostgres() bool { return s.DSN != "" }

// String names the queue for messages (a DSN without its password).
func (s Spec) String() string {
	if !s.IsPostgres() {
		return s.Path
	}
	return redact.DSN(s.DSN) + " (schema " + s.Schema + ")"
}

var schemaRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,39}$`)

// ParseSpec reads a queue spec: "postgres://..." or "postgresql://..." is a
// PostgreSQL DSN (an optional "schema" query parameter names the schema of
// River's tables, default DefaultSchema); "sqlite://PATH", "file:PATH" or any
// other string is the path of a SQLite file.
func ParseSpec(s string) (Spec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Spec{}, fmt.Errorf("%w: empty queue spec (a SQLite file path or a postgresql:// DSN)", ErrInvalid)
	}
	if strings.ContainsRune(s, 0) {
		return Spec{}, fmt.Errorf("%w: queue spec contains a NUL byte", ErrInvalid)
	}
	low := strings.ToLower(s)
	if strings.HasPrefix(low, "postgres://") || strings.HasPrefix(low, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return Spec{}, redact.Err(fmt.Errorf("%w: queue DSN does not parse: %v", ErrInvalid, err), s)
		}
		q := u.Query()
		schema := q.Get("schema")
		q.Del("schema")
		u.RawQuery = q.Encode()
		if schema == "" {
			schema = DefaultSchema
		}
		if !schemaRE.MatchString(schema) {
			return Spec{}, fmt.Errorf("%w: queue schema %q must be letters, digits and underscores (at most 40), not starting with a digit", ErrInvalid, schema)
		}
		return Spec{DSN: u.String(), Schema: schema}, nil
	}
	path := s
	switch {
	case strings.HasPrefix(low, "sqlite://"):
		path = s[len("sqlite://"):]
	case strings.HasPrefix(low, "file:"):
		path = s[len("file:"):]
	}
	if path == "" {
		return Spec{}, fmt.Errorf("%w: queue spec %q names no file", ErrInvalid, s)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: queue path %q: %v", ErrInvalid, path, err)
	}
	return Spec{Path: abs}, nil
}

// sqliteURI is the mattn/go-sqlite3 DSN of a queue file: a busy timeout,
// and BEGIN IMMEDIATE for every transaction (River's fetch is a
// write; a deferred transaction upgrading to a write can deadlock). WAL
// mode is set after the file is known to be a queue (it changes the file).
func sqliteURI(path string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return "file:" + r.Replace(path) +
		"?_busy_timeout=10000&_synchronous=NORMAL&_txlock=immediate&_foreign_keys=0&_stmt_cache_size=64"
}
