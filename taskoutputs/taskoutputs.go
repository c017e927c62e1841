// Package taskoutputs stores CrewAI's kickoff task outputs in the file and
// schema CrewAI itself uses (latest_kickoff_task_outputs.db, table
// latest_kickoff_task_outputs), so CrewAI's `crewai log-tasks-outputs`,
// `crewai replay` and Crew.replay read what this package writes, and the
// other way round. It runs on crewcore's pooled SQLite layer (sqlitedb):
// one open database per store, no reconnect per call and no full reload
// before each add.
package taskoutputs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/crewcore/crewcore/sqlitedb"
)

// FileName is the database file CrewAI uses under its storage directory.
const FileName = "latest_kickoff_task_outputs.db"

// ErrInvalidArgument reports an update of an unknown column or a bad value.
var ErrInvalidArgument = errors.New("invalid task output argument")

// Schema is CrewAI's table, created the same way CrewAI creates it.
const Schema = `CREATE TABLE IF NOT EXISTS latest_kickoff_task_outputs (
    task_id TEXT PRIMARY KEY,
    task_key TEXT,
    expected_output TEXT,
    output JSON,
    task_index INTEGER,
    inputs JSON,
    was_replayed BOOLEAN,
    timestamp DATETIME DEFAULT CURRENT_TIMESTAMP
)`

const sqlAdd = `INSERT OR REPLACE INTO latest_kickoff_task_outputs
    (task_id, task_key, expected_output, output, task_index, inputs, was_replayed)
    VALUES (?, ?, ?, ?, ?, ?, ?)`

// The casts keep the stored text as it is: the driver would turn DATETIME
// text into time values and BOOLEAN integers into bools.
const sqlLoad = `SELECT task_id, task_key, expected_output, CAST(output AS TEXT), task_index,
    CAST(inputs AS TEXT), CAST(was_replayed AS INTEGER), CAST(timestamp AS TEXT)
    FROM latest_kickoff_task_outputs ORDER BY task_index`

// Row is one stored task output. JSON columns hold JSON text; a NULL column
// is a nil pointer.
type Row struct {
	TaskID         string
	TaskKey        *string
	ExpectedOutput *string
	Output         *string // JSON text
	TaskIndex      *int64
	Inputs         *string // JSON text
	WasReplayed    *int64  // 0/1, as CrewAI's sqlite3 reads it
	Timestamp      *string // 'YYYY-MM-DD HH:MM:SS' (UTC)
}

// Store is an open task outputs database.
type Store struct {
	db *sqlitedb.DB
}

// Open opens or creates the database at path with CrewAI's table. A file that
// is not SQLite is refused (sqlitedb.ErrCorrupt) and left as it is.
func Open(path string, opts *sqlitedb.Options) (*Store, error) {
	var o sqlitedb.Options
	if opts != nil {
		o = *opts
	}
	o.Init = func(tx *sqlitedb.Tx) error {
		if _, err := tx.SQL().ExecContext(tx.Context(), Schema); err != nil {
			return err
		}
		rows, err := tx.SQL().QueryContext(tx.Context(), `PRAGMA table_info(latest_kickoff_task_outputs)`)
		if err != nil {
			return err
		}
		hasKey := false
		for rows.Next() {
			var (
				cid        int
				name, typ  string
				notnull    int
				dflt       sql.NullString
				primaryKey int
			)
			if err := rows.Scan(&cid, &name, &typ, &notnull, &dflt, &primaryKey); err != nil {
				rows.Close()
				return err
			}
			if name == "task_key" {
				hasKey = true
			}
		}
		rows.Close()
		if !hasKey {
			_, err = tx.SQL().ExecContext(tx.Context(), `ALTER TABLE latest_kickoff_task_outputs ADD COLUMN task_key TEXT`)
		}
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

// Add inserts or replaces the output of one task (keyed by task id).
func (s *Store) Add(ctx context.Context, r Row) error {
	if r.TaskID == "" {
		return fmt.Errorf("add task output to %s: %w: empty task_id", s.db.Path(), ErrInvalidArgument)
	}
	return s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		_, err := tx.Exec(sqlAdd, r.TaskID, r.TaskKey, r.ExpectedOutput, r.Output, r.TaskIndex, r.Inputs, r.WasReplayed)
		return err
	})
}

// Columns that Update may set.
var updatable = map[string]bool{
	"task_id": true, "task_key": true, "expected_output": true, "output": true,
	"task_index": true, "inputs": true, "was_replayed": true, "timestamp": true,
}

// Update sets the given columns of the row(s) with taskIndex and returns the
// number of rows changed. Values are strings (JSON text for output/inputs),
// integers, bools or nil. An unknown column is ErrInvalidArgument.
func (s *Store) Update(ctx context.Context, taskIndex int64, cols []string, vals []any) (int64, error) {
	if len(cols) != len(vals) {
		return 0, fmt.Errorf("update task output in %s: %w: %d columns, %d values", s.db.Path(), ErrInvalidArgument, len(cols), len(vals))
	}
	if len(cols) == 0 {
		return 0, nil
	}
	set := make([]string, len(cols))
	for i, c := range cols {
		if !updatable[c] {
			return 0, fmt.Errorf("update task output in %s: %w: unknown column %q", s.db.Path(), ErrInvalidArgument, c)
		}
		set[i] = c + " = ?"
	}
	q := `UPDATE latest_kickoff_task_outputs SET ` + strings.Join(set, ", ") + ` WHERE task_index = ?`
	args := append(append([]any{}, vals...), taskIndex)
	var n int64
	err := s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		res, err := tx.Exec(q, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// Load returns every row ordered by task_index.
func (s *Store) Load(ctx context.Context) ([]Row, error) {
	var out []Row
	err := s.db.Read(ctx, func(r *sqlitedb.Reader) error {
		out = out[:0]
		rows, err := r.Query(sqlLoad)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				row                         Row
				id, key, exp, outp, inp, ts sql.NullString
				idx, replayed               sql.NullInt64
			)
			if err := rows.Scan(&id, &key, &exp, &outp, &idx, &inp, &replayed, &ts); err != nil {
				return err
			}
			row.TaskID = id.String
			row.TaskKey = strPtr(key)
			row.ExpectedOutput = strPtr(exp)
			row.Output = strPtr(outp)
			row.TaskIndex = intPtr(idx)
			row.Inputs = strPtr(inp)
			row.WasReplayed = intPtr(replayed)
			row.Timestamp = strPtr(ts)
			out = append(out, row)
		}
		return rows.Err()
	})
	return out, err
}

// DeleteAll removes every row.
func (s *Store) DeleteAll(ctx context.Context) error {
	return s.db.Write(ctx, func(tx *sqlitedb.Tx) error {
		_, err := tx.Exec(`DELETE FROM latest_kickoff_task_outputs`)
		return err
	})
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func strPtr(v sql.NullString) *string {
	if !v.Valid {
		return nil
	}
	s := v.String
	return &s
}

func intPtr(v sql.NullInt64) *int64 {
	if !v.Valid {
		return nil
	}
	i := v.Int64
	return &i
}
