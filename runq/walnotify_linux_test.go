//go:build linux

package runq

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

func TestWALNotifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	if n := newWALNotifier(path); n != nil {
		n.close()
		t.Fatal("a notifier on a database without a -wal file")
	}
	db, err := sql.Open("sqlite3", sqliteURI(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{"PRAGMA journal_mode=WAL", "CREATE TABLE t (x)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	n := newWALNotifier(path)
	if n == nil {
		t.Fatal("no notifier on a WAL database")
	}
	defer n.close()
	ctx := context.Background()

	if n.wait(ctx, 20*time.Millisecond) {
		t.Fatal("woke with no write")
	}
	other, err := sql.Open("sqlite3", sqliteURI(path))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		time.Sleep(20 * time.Millisecond)
		other.Exec("INSERT INTO t VALUES (1)")
	}()
	if !n.wait(ctx, 10*time.Second) {
		t.Fatal("a commit by another connection did not wake the wait")
	}
	for n.wait(ctx, 20*time.Millisecond) {
		// drain the events of that commit's writes
	}

	// A cancelled context ends the wait at once.
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	start := time.Now()
	if n.wait(cctx, 10*time.Second) {
		t.Fatal("woke with no write")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("cancel did not end the wait")
	}
}

// TestWaitWakesOnCommit: a Wait on a SQLite queue, sleeping on the -wal
// watch, returns a run that another connection finished meanwhile.
func TestWaitWakesOnCommit(t *testing.T) {
	ctx := context.Background()
	spec, err := ParseSpec(filepath.Join(t.TempDir(), "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := Open(ctx, spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	subs, err := q.Submit(ctx, SubmitRequest{Crew: "a.b:c", Inputs: [][]byte{[]byte(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Open(ctx, spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		time.Sleep(30 * time.Millisecond)
		other.Cancel(ctx, subs[0].ID)
	}()
	got, err := q.Wait(ctx, []int64{subs[0].ID}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != subs[0].ID || got[0].State != "cancelled" {
		t.Fatalf("Wait = %+v, want the cancelled run", got)
	}
}
