// Package flowstate stores CrewAI flow state in the file and schema of
// CrewAI's SQLiteFlowPersistence (flow_states.db: tables flow_states and
// pending_feedback), on crewcore's pooled SQLite layer (sqlitedb), so a flow
// saved by crewcore resumes under CrewAI's default persistence and the other
// way round.
package flowstate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/crewcore/crewcore/sqlitedb"
)

// FileName is the database file CrewAI uses under its storage directory.
const FileName = "flow_states.db"

// ErrInvalidArgument reports an empty flow id or method name.
var ErrInvalidArgument = errors.New("invalid flow state argument")

// Schema is CrewAI's, created the same way.
const Schema = `
CREATE TABLE IF NOT EXISTS flow_states (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_uuid TEXT NOT NULL,
    method_name TEXT NOT NULL,
    timestamp DATETIME NOT NULL,
    state_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_flow_states_uuid ON flow_states(flow_uuid);
CREATE TABLE IF NOT EXISTS pending_feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_uuid TEXT NOT NULL UNIQUE,
    context_json TEXT NOT NULL,
    state_json TEXT NOT NULL,
    created_at DATETIME NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_pending_feedback_uuid ON pending_feedback(flow_uuid);
`

const (
	sqlSave      = `INSERT INTO flow_states (flow_uuid, method_name, timestamp, state_json) VALUES (?, ?, ?, ?)`
	sqlLoad      = `SELECT state_json FROM flow_states WHERE flow_uuid = ? ORDER BY id DESC LIMIT 1`
	sqlPend      = `INSERT OR REPLACE INTO pending_feedback (flow_uuid, context_json, state_json, created_at) VALUES (?, ?, ?, ?)`
	sqlLoadPend  = `SELECT state_json, context_json FROM pending_feedback WHERE flow_uuid = ?`
	sqlClearPend = `DELETE FROM pending_feedback WHERE flow_uuid = ?`
)

// Store is an open flow state database.
type Store struct {
	db *sqlitedb.DB
}

// Open opens or creates the database at path with CrewAI's tables.
func Open(path string, opts *sqlitedb.Options) (*Store, error) {
	var o sqlitedb.Options
	if opts != nil {
		o = *opts
	}
	o.Init = func(tx *sqlitedb.Tx) error {
		_, err := tx.SQL().ExecContext(tx.Context(), Schema)
		return err
	}
	db, err := sqlitedb.Open(path, &o)
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Path returns the database file's absolute path.
func (s *Store) Path() string { return s.db.Path() }

// Now returns the timestamp format CrewAI writes: ISO 8601 UTC with offset.
func Now() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000000+00:00") }

func (s *Store) check(op, flowUUID, method string, needMethod bool) error {
	if flowUUID == "" {
		return fmt.Errorf("%s in %s: %w: empty flow_uuid", op, s.db.Path(), ErrInvalidArgument)
	}
	if needMethod && method == "" {
		return fmt.Errorf("%s in %s: %w: empty method_name", op, s.db.Path(), ErrInvalidArgument)
	}
	return nil
}

// Save appends a state snapshot (JSON text) of flowUUID after method.
func (s *Store) Save(ctx context.Context, flowUUID, method, stateJSON string) error {
	if err := s.check("save flow state", flowUUID, method, true); err != nil {
		return err
	}
	ts := Now()
	return s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		_, err := tx.Exec(sqlSave, flowUUID, method, ts, stateJSON)
		return err
	})
}

// Load returns the newest state of flowUUID; ok is false when there is none.
func (s *Store) Load(ctx context.Context, flowUUID string) (state string, ok bool, err error) {
	err = s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		err := r.QueryRow(sqlLoad, flowUUID).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			ok = false
			return nil
		}
		ok = err == nil
		return err
	})
	return state, ok, err
}

// SavePending appends the state and records the pending feedback context
// (JSON texts) of flowUUID, in one transaction.
func (s *Store) SavePending(ctx context.Context, flowUUID, method, contextJSON, stateJSON string) error {
	if err := s.check("save pending feedback", flowUUID, method, true); err != nil {
		return err
	}
	ts := Now()
	return s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		if _, err := tx.Exec(sqlSave, flowUUID, method, ts, stateJSON); err != nil {
			return err
		}
		_, err := tx.Exec(sqlPend, flowUUID, contextJSON, stateJSON, ts)
		return err
	})
}

// LoadPending returns the state and context JSON of flowUUID's pending
// feedback; ok is false when there is none.
func (s *Store) LoadPending(ctx context.Context, flowUUID string) (state, fbContext string, ok bool, err error) {
	err = s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		err := r.QueryRow(sqlLoadPend, flowUUID).Scan(&state, &fbContext)
		if errors.Is(err, sql.ErrNoRows) {
			ok = false
			return nil
		}
		ok = err == nil
		return err
	})
	return state, fbContext, ok, err
}

// ClearPending removes flowUUID's pending feedback marker.
func (s *Store) ClearPending(ctx context.Context, flowUUID string) error {
	return s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		_, err := tx.Exec(sqlClearPend, flowUUID)
		return err
	})
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }
