package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

func openT(t *testing.T, path string, o *Options) *DB {
	t.Helper()
	if o == nil {
		o = &Options{}
	}
	if o.Init == nil {
		o.Init = func(tx *Tx) error {
			_, err := tx.SQL().Exec(`CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v INTEGER)`)
			return err
		}
	}
	d, err := Open(path, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func count(t *testing.T, d *DB) int {
	t.Helper()
	var n int
	if err := d.Read(context.Background(), func(r *Reader) error { return r.QueryRow(`SELECT count(*) FROM kv`).Scan(&n) }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestConcurrentWritesBatchAndIsolateFailures(t *testing.T) {
	d := openT(t, filepath.Join(t.TempDir(), "a.db"), nil)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				k := fmt.Sprintf("%d-%d", g, i)
				err := d.Write(context.Background(), func(tx *Tx) error {
					if _, err := tx.Exec(`INSERT INTO kv VALUES (?, ?)`, k, i); err != nil {
						return err
					}
					if i%10 == 3 { // fails after writing: only this job rolls back
						return errors.New("boom")
					}
					return nil
				})
				if (err != nil) != (i%10 == 3) {
					errs <- fmt.Errorf("job %s: %v", k, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := count(t, d); got != 8*45 {
		t.Fatalf("rows = %d, want %d", got, 8*45)
	}
}

func TestAfterHook(t *testing.T) {
	d := openT(t, filepath.Join(t.TempDir(), "a.db"), nil)
	for _, tc := range []struct {
		name string
		fail bool
	}{{"commit", false}, {"rollback", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var got *bool
			err := d.WriteAlone(context.Background(), func(tx *Tx) error {
				tx.After(func(c bool) { got = &c })
				if tc.fail {
					return errors.New("no")
				}
				return nil
			})
			if (err != nil) != tc.fail || got == nil || *got == tc.fail {
				t.Fatalf("err=%v committed=%v", err, got)
			}
		})
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte("this is not a database at all, not even close......"), 0o644)
	for _, tc := range []struct {
		name string
		path string
		want error
	}{
		{"not sqlite", garbage, ErrCorrupt},
		{"directory", dir, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.path, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	b, _ := os.ReadFile(garbage)
	if string(b) != "this is not a database at all, not even close......" {
		t.Fatal("a refused file was modified")
	}
}

func TestTimeoutNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	d := openT(t, path, &Options{Timeout: 300 * time.Millisecond})
	// A foreign connection (its own pool) holds the write lock.
	other, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	err = d.Write(context.Background(), func(tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO kv VALUES ('x', 1)`)
		return err
	})
	if !errors.Is(err, ErrTimeout) || !containsPath(err, path) {
		t.Fatalf("err = %v, want ErrTimeout naming %s", err, path)
	}
	tx.Rollback()
	if err := d.Write(context.Background(), func(tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO kv VALUES ('x', 1)`)
		return err
	}); err != nil {
		t.Fatalf("after the lock went away: %v", err)
	}
}

func containsPath(err error, p string) bool {
	abs, _ := filepath.Abs(p)
	return err != nil && (len(err.Error()) > 0) && (contains(err.Error(), abs))
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestClosed(t *testing.T) {
	d := openT(t, filepath.Join(t.TempDir(), "a.db"), nil)
	if err := CloseAll(); err != nil {
		t.Fatal(err)
	}
	if err := d.Write(context.Background(), func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if err := d.Read(context.Background(), func(*Reader) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestPanicInJobIsAnError(t *testing.T) {
	d := openT(t, filepath.Join(t.TempDir(), "a.db"), nil)
	err := d.Write(context.Background(), func(*Tx) error { panic("bad job") })
	if err == nil {
		t.Fatal("want an error")
	}
	if err := d.Write(context.Background(), func(tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO kv VALUES ('y', 1)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
