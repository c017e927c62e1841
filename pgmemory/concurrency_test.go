package pgmemory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crewcore/crewcore/memory"
)

// TestConcurrentStores: several Stores (pools) on one schema, each used by
// several goroutines saving and searching: no errors, exact counts.
func TestConcurrentStores(t *testing.T) {
	schema := newSchema(t)
	const stores, workers, batches, per = 4, 4, 10, 5
	var wg sync.WaitGroup
	errs := make(chan error, stores*workers)
	for si := range stores {
		s := openT(t, &Options{Schema: schema, MaxConns: 4})
		for wi := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range batches {
					var recs []memory.Record
					for i := range per {
						r := rec(fmt.Sprintf("s%d-w%d-b%d-%d", si, wi, b, i), fmt.Sprintf("/s%d/w%d", si, wi), float32(si), float32(wi), float32(b), float32(i))
						recs = append(recs, r)
					}
					if err := s.Save(ctx, recs); err != nil {
						errs <- err
						return
					}
					ms, err := s.Search(ctx, memory.Query{Vector: []float32{float32(si), float32(wi), float32(b), 0}, ScopePrefix: fmt.Sprintf("/s%d/w%d", si, wi), Limit: 3})
					if err != nil {
						errs <- err
						return
					}
					if len(ms) != 3 || ms[0].Record.ID != fmt.Sprintf("s%d-w%d-b%d-0", si, wi, b) {
						errs <- fmt.Errorf("search after batch %d: %v", b, ids(ms))
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := openT(t, &Options{Schema: schema})
	if n, _ := s.Count(ctx, ""); n != stores*workers*batches*per {
		t.Fatalf("count %d, want %d", n, stores*workers*batches*per)
	}
	for si := range stores {
		if n, _ := s.Count(ctx, fmt.Sprintf("/s%d", si)); n != workers*batches*per {
			t.Fatalf("scope count %d", n)
		}
	}
}

// TestServerRestartMidRun restarts a private server under running writers:
// every call either succeeds or fails with a clear error, the pool recovers,
// and every acknowledged save is in the store afterwards.
func TestServerRestartMidRun(t *testing.T) {
	dsn, env := privateServer(t)
	s, err := Open(ctx, dsn, &Options{Schema: "restart", RetryFor: 30 * time.Second, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var (
		acked    sync.Map
		nAcked   atomic.Int64
		failures atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				err := s.Save(ctx, []memory.Record{rec(id, "/r", float32(w), float32(i), 1)})
				if err == nil {
					acked.Store(id, true)
					nAcked.Add(1)
				} else if errors.Is(err, ErrUnavailable) || errors.Is(err, memory.ErrTimeout) {
					failures.Add(1) // a clear error; the record may or may not be stored
				} else {
					t.Errorf("unclear error: %v", err)
					return
				}
				if _, err := s.Search(ctx, memory.Query{Vector: []float32{1, 2, 3}, Limit: 3}); err != nil &&
					!errors.Is(err, ErrUnavailable) && !errors.Is(err, memory.ErrTimeout) {
					t.Errorf("unclear search error: %v", err)
					return
				}
			}
		}()
	}
	waitFor(t, 30*time.Second, func() bool { return nAcked.Load() >= 40 })
	before := nAcked.Load()
	if _, err := pgctl(env, "down"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := pgctl(env, "up"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, func() bool { return nAcked.Load() >= before+40 })
	stop.Store(true)
	wg.Wait()
	n := 0
	acked.Range(func(k, _ any) bool {
		n++
		if _, ok, err := s.Get(ctx, k.(string)); err != nil || !ok {
			t.Errorf("acknowledged %s lost (err %v)", k, err)
		}
		return true
	})
	c, err := s.Count(ctx, "/r")
	if err != nil {
		t.Fatal(err)
	}
	if c < n {
		t.Fatalf("count %d < %d acknowledged", c, n)
	}
	t.Logf("%d saves acknowledged (%d before the restart), %d failed with a clear error, %d stored", n, before, failures.Load(), c)
}

// TestServerWithoutPgvector: a server lacking the extension is refused with
// ErrNoVector and a message that says what to install.
func TestServerWithoutPgvector(t *testing.T) {
	needPG(t)
	dir, err := os.MkdirTemp("", "crewcore-pg-novec-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	env := []string{"CREWCORE_PGDATA=" + filepath.Join(dir, "data"), "CREWCORE_PG_WITHOUT_VECTOR=1"}
	dsn, err := pgctl(env, "up")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pgctl(env, "down")
		os.RemoveAll(dir)
	})
	_, err = Open(ctx, dsn, nil)
	if !errors.Is(err, ErrNoVector) || !strings.Contains(err.Error(), "install pgvector") {
		t.Fatalf("want ErrNoVector with advice, got %v", err)
	}
}
