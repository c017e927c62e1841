package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// walReaderEnv names the database a re-executed test binary reads in a
// loop (TestWALReaderProcess) until the file <db>.stop appears.
const walReaderEnv = "CREWCORE_TEST_SQLITEDB_WAL_READER"

// TestWALReaderProcess is not a test of its own: TestWALBoundedWithReaders
// runs the test binary again with walReaderEnv set, and this function is
// then a reader process holding short read transactions back to back.
func TestWALReaderProcess(t *testing.T) {
	path := os.Getenv(walReaderEnv)
	if path == "" {
		t.Skip("helper process for TestWALBoundedWithReaders")
	}
	raw, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for {
		if _, err := os.Stat(path + ".stop"); err == nil {
			return
		}
		tx, err := raw.Begin()
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM kv`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // a reader holding its snapshot a while
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// The -wal file of a database written without pause while other processes
// read it stays near Options.WALLimit (issue 18, item 1: taskoutputs and
// flowstate sit on this layer). With SQLite's default passive checkpoint
// in the commit it reached 43 MiB here (and 493 MiB in 8 s with four
// readers): the checkpoint copied the frames but a reader was always in
// the WAL, so it was never started over.
func TestWALBoundedWithReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	d := openT(t, path, &Options{Init: func(tx *Tx) error {
		_, err := tx.SQL().Exec(`CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)`)
		return err
	}})
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWALReaderProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), walReaderEnv+"="+path)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			os.WriteFile(path+".stop", nil, 0o644)
			if err := cmd.Wait(); err != nil {
				t.Errorf("reader process: %v\n%s", err, out.String())
			}
		})
	}
	// About 50 MiB through the WAL, over 200 keys (a 3 MiB database).
	val := strings.Repeat("y", 16000)
	var peak int64
	for i := range 3000 {
		err := d.Write(context.Background(), func(tx *Tx) error {
			_, err := tx.Exec(`INSERT OR REPLACE INTO kv VALUES (?, ?)`, fmt.Sprint(i%200), val)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(path + "-wal"); err == nil {
			peak = max(peak, st.Size())
		}
	}
	t.Logf("WAL peak %.1f MiB", float64(peak)/(1<<20))
	if peak > 16<<20 {
		t.Errorf("WAL reached %.1f MiB, want at most 16 MiB (WALLimit 4 MiB)", float64(peak)/(1<<20))
	}
}
