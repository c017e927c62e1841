package taskoutputs

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

func sp(s string) *string { return &s }
func ip(i int64) *int64   { return &i }

func TestRoundTripAndUpdate(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, id := range []string{"b", "a", "c"} {
		if err := s.Add(ctx, Row{TaskID: id, TaskKey: sp("k" + id), ExpectedOutput: sp("e"), Output: sp(`{"raw": "x"}`), TaskIndex: ip(int64(2 - i)), Inputs: sp(`{}`), WasReplayed: ip(0)}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Update(ctx, 1, []string{"output", "was_replayed"}, []any{`{"raw": "y"}`, true})
	if err != nil || n != 1 {
		t.Fatalf("update: %d %v", n, err)
	}
	rows, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].TaskID != "c" || rows[1].TaskID != "a" || *rows[1].Output != `{"raw": "y"}` || *rows[1].WasReplayed != 1 {
		t.Fatalf("rows: %+v", rows)
	}
	if ts := rows[0].Timestamp; ts == nil || len(*ts) != 19 {
		t.Fatalf("timestamp %v, want CrewAI's 'YYYY-MM-DD HH:MM:SS'", ts)
	}
	for _, tc := range []struct {
		cols []string
		vals []any
	}{
		{[]string{"evil; DROP TABLE x"}, []any{1}},
		{[]string{"output"}, []any{}},
	} {
		if _, err := s.Update(ctx, 1, tc.cols, tc.vals); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("update %v: %v", tc.cols, err)
		}
	}
	if err := s.DeleteAll(ctx); err != nil {
		t.Fatal(err)
	}
	if rows, _ := s.Load(ctx); len(rows) != 0 {
		t.Fatal("rows left after DeleteAll")
	}
}

// A file written the way CrewAI writes it (old schema without task_key) is
// read, migrated like CrewAI migrates it, and keeps its rows.
func TestReadsCrewAIFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`CREATE TABLE latest_kickoff_task_outputs (task_id TEXT PRIMARY KEY, expected_output TEXT, output JSON,
		task_index INTEGER, inputs JSON, was_replayed BOOLEAN, timestamp DATETIME DEFAULT CURRENT_TIMESTAMP);
		INSERT INTO latest_kickoff_task_outputs (task_id, expected_output, output, task_index, inputs, was_replayed)
		VALUES ('t', 'e', '{"raw": "r"}', 0, '{"x": 1}', 0), ('n', 'e', '5', 1, '{}', 1)`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.Load(context.Background())
	if err != nil || len(rows) != 2 || rows[0].TaskKey != nil || *rows[0].Inputs != `{"x": 1}` || *rows[1].Output != "5" {
		t.Fatalf("%+v %v", rows, err)
	}
}
