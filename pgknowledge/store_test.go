package pgknowledge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/crewcore/crewcore/knowledge"
)

var (
	testDSN string
	seq     atomic.Int64
)

// TestMain finds a server: CREWCORE_PG_DSN, else tools/pgctl.py up. Without
// one the tests skip loudly (fail under CI).
func TestMain(m *testing.M) {
	testDSN = os.Getenv("CREWCORE_PG_DSN")
	if testDSN == "" {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		py := filepath.Join(root, ".venv", "bin", "python")
		out, err := exec.Command(py, filepath.Join(root, "tools", "pgctl.py"), "up").Output()
		if err == nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			testDSN = strings.TrimSpace(lines[len(lines)-1])
		}
	}
	os.Exit(m.Run())
}

func openPG(t *testing.T) *Store {
	t.Helper()
	if testDSN == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no PostgreSQL server (CREWCORE_PG_DSN, tools/pgctl.py)")
		}
		t.Skip("SKIPPED LOUDLY: no PostgreSQL server (set CREWCORE_PG_DSN or make pg-up)")
	}
	schema := fmt.Sprintf("kn_test_%d_%d", os.Getpid(), seq.Add(1))
	s, err := Open(context.Background(), testDSN, &Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.pool.Exec(context.Background(), `DROP SCHEMA `+schema+` CASCADE`) //nolint:errcheck
		s.Close()
	})
	return s
}

func chunk(text string, v []float32) knowledge.Chunk {
	h := sha256.Sum256([]byte(text))
	return knowledge.Chunk{ID: hex.EncodeToString(h[:]), Content: text, Embedding: v}
}

// TestSameAnswersAsEmbedded stores one corpus in PostgreSQL and in the
// embedded store: vector answers are the same chunks in the same order with
// the same scores; keyword and hybrid find the exact code first.
func TestSameAnswersAsEmbedded(t *testing.T) {
	ctx := context.Background()
	pg := openPG(t)
	emb, err := knowledge.Open(filepath.Join(t.TempDir(), "k.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	r := rand.New(rand.NewPCG(5, 6))
	const dim = 24
	var chunks []knowledge.Chunk
	for i := 0; i < 400; i++ {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		c := chunk(fmt.Sprintf("note %d about the pump model PX-%d and its warranty", i, 1000+i), v)
		c.Metadata = fmt.Sprintf(`{"part": %d}`, i%4)
		chunks = append(chunks, c)
	}
	for _, st := range []interface {
		Save(context.Context, string, []knowledge.Chunk) (int, error)
	}{pg, emb} {
		if n, err := st.Save(ctx, "c", chunks); err != nil || n != len(chunks) {
			t.Fatalf("save: %d %v", n, err)
		}
	}
	for qi := 0; qi < 20; qi++ {
		q := chunks[r.IntN(len(chunks))].Embedding
		for _, flt := range []string{"", `{"part": 2}`} {
			a, err := pg.Search(ctx, "c", knowledge.Query{Vector: q, Limit: 5, Filter: flt})
			if err != nil {
				t.Fatal(err)
			}
			b, err := emb.Search(ctx, "c", knowledge.Query{Vector: q, Limit: 5, Filter: flt})
			if err != nil {
				t.Fatal(err)
			}
			if len(a) != len(b) {
				t.Fatalf("%d vs %d hits", len(a), len(b))
			}
			for i := range a {
				if a[i].ID != b[i].ID || a[i].Score-b[i].Score > 1e-5 || b[i].Score-a[i].Score > 1e-5 {
					t.Fatalf("query %d rank %d: postgres %s %.6f, embedded %s %.6f", qi, i, a[i].Content, a[i].Score, b[i].Content, b[i].Score)
				}
			}
		}
	}
	for _, mode := range []knowledge.Mode{knowledge.Keyword, knowledge.Hybrid} {
		hits, err := pg.Search(ctx, "c", knowledge.Query{Mode: mode, Text: "warranty of PX-1234", Vector: chunks[0].Embedding, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, h := range hits {
			found = found || strings.Contains(h.Content, "PX-1234 ")
		}
		if !found || (mode == knowledge.Keyword && !strings.Contains(hits[0].Content, "PX-1234 ")) {
			t.Fatalf("%s: %+v", mode, hits)
		}
	}
}

func TestSaveResetAndErrors(t *testing.T) {
	ctx := context.Background()
	s := openPG(t)
	a, b := chunk("alpha", []float32{1, 0}), chunk("beta", []float32{0, 1})
	if n, err := s.Save(ctx, "c", []knowledge.Chunk{a, b}); err != nil || n != 2 {
		t.Fatalf("save: %d %v", n, err)
	}
	if n, err := s.Save(ctx, "c", []knowledge.Chunk{a, chunk("gamma", []float32{1, 1})}); err != nil || n != 1 {
		t.Fatalf("dedup: %d %v", n, err)
	}
	if miss, err := s.Missing(ctx, "c", []string{a.ID, "x", "x"}); err != nil || len(miss) != 1 {
		t.Fatalf("missing: %v %v", miss, err)
	}
	var de *knowledge.DimensionError
	if _, err := s.Save(ctx, "c", []knowledge.Chunk{chunk("d", []float32{1, 2, 3})}); !errors.As(err, &de) || de.Stored != 2 {
		t.Fatalf("dimension: %v", err)
	}
	if _, err := s.Search(ctx, "c", knowledge.Query{Vector: []float32{1}, Limit: 1}); !errors.As(err, &de) {
		t.Fatalf("search dimension: %v", err)
	}
	for _, bad := range []knowledge.Chunk{chunk("", []float32{1, 0}), chunk("a\x00b", []float32{1, 0})} {
		if _, err := s.Save(ctx, "c", []knowledge.Chunk{bad}); !errors.Is(err, knowledge.ErrInvalidDocument) {
			t.Fatalf("bad chunk: %v", err)
		}
	}
	if _, err := s.Search(ctx, "nope", knowledge.Query{Vector: []float32{1, 0}, Limit: 1}); !errors.Is(err, knowledge.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	infos, err := s.Collections(ctx)
	if err != nil || len(infos) != 1 || infos[0].Chunks != 3 {
		t.Fatalf("collections: %+v %v", infos, err)
	}
	if ok, err := s.Reset(ctx, "c"); err != nil || !ok {
		t.Fatalf("reset: %v", err)
	}
	if infos, _ := s.Collections(ctx); len(infos) != 0 {
		t.Fatalf("after reset: %+v", infos)
	}
}

func TestConcurrentOpenAndSave(t *testing.T) {
	s := openPG(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			o, err := Open(context.Background(), testDSN, &Options{Schema: s.schema})
			if err != nil {
				errs <- err
				return
			}
			defer o.Close()
			for i := 0; i < 10; i++ {
				// overlapping chunks: each stored once
				if _, err := o.Save(context.Background(), "c", []knowledge.Chunk{chunk(fmt.Sprintf("doc %d", (w+i)%12), []float32{1, float32(i)})}); err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if infos, _ := s.Collections(context.Background()); len(infos) != 1 || infos[0].Chunks != 12 {
		t.Fatalf("%+v", infos)
	}
}
