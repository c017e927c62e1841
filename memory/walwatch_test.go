package memory

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// Reads skip the SQL freshness query while nothing commits, and still see
// every write of another store on the same file at once, across WAL
// checkpoints and restarts.
func TestWALWatchFreshness(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	a, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.wal == nil {
		t.Fatal("the WAL index of a fresh store was not mapped")
	}

	if _, err := a.Count(ctx, ""); err != nil {
		t.Fatal(err)
	}
	before := a.freshQueries.Load()
	for range 100 {
		if _, err := a.Count(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.freshQueries.Load() - before; n > 1 {
		t.Fatalf("100 reads with no write in between ran %d freshness queries, want at most 1", n)
	}

	for i := range 300 {
		if err := b.Save(ctx, []Record{rec(fmt.Sprint("r", i), "/s", 1, float32(i))}); err != nil {
			t.Fatal(err)
		}
		switch i % 100 {
		case 40:
			if err := b.Optimize(ctx); err != nil { // TRUNCATE checkpoint: the next write restarts the WAL
				t.Fatal(err)
			}
		case 70:
			if _, err := b.Delete(ctx, Filter{IDs: []string{fmt.Sprint("r", i)}}); err != nil {
				t.Fatal(err)
			}
			if n, _ := a.Count(ctx, "/s"); n != i {
				t.Fatalf("after a delete by the other store: count %d, want %d", n, i)
			}
			if err := b.Save(ctx, []Record{rec(fmt.Sprint("r", i), "/s", 1, float32(i))}); err != nil {
				t.Fatal(err)
			}
		}
		n, err := a.Count(ctx, "/s")
		if err != nil {
			t.Fatal(err)
		}
		if n != i+1 {
			t.Fatalf("write %d by the other store: count %d, want %d", i, n, i+1)
		}
	}
}

// A writer that is not a Store at all (plain SQL on the same file, as the
// Python fallback engine writes) is seen too.
func TestWALWatchSeesPlainSQLWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	a, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Save(ctx, []Record{rec("x", "/s", 1, 0)}); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.Count(ctx, ""); n != 1 {
		t.Fatalf("count %d, want 1", n)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 5 {
		if _, err := db.Exec(`DELETE FROM records WHERE id='x'`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO changes(record_id) VALUES ('x')`); err != nil {
			t.Fatal(err)
		}
		if n, _ := a.Count(ctx, ""); n != 0 {
			t.Fatalf("round %d: count %d after a plain-SQL delete, want 0", i, n)
		}
		if err := a.Save(ctx, []Record{rec("x", "/s", 1, 0)}); err != nil {
			t.Fatal(err)
		}
	}
}
