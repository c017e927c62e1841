package pgmemory

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/crewcore/crewcore/memory"
)

// TestContractSameAsEmbedded: the two divergences from the embedded store
// that the differential test (tests/test_memory_contract.py) found, each on
// both stores: a batch naming an id twice numbers it where it first
// appears (the tie-break "newer first" of List and Search), and an Update
// of an unknown id does not fix the dimension of a store that has none.
func TestContractSameAsEmbedded(t *testing.T) {
	emb, err := memory.Open(filepath.Join(t.TempDir(), "m.db"), nil)
	must(t, err)
	defer emb.Close()
	pg := openT(t, nil)
	for name, s := range map[string]memory.Backend{"embedded": emb, "postgres": pg} {
		// Same created_at: List orders by rid, newer first.
		must(t, s.Save(ctx, []memory.Record{rec("x", "/"), rec("g", "/"), rec("x", "/a")}))
		got, err := s.List(ctx, "", 10, 0)
		must(t, err)
		if ids := recIDs(got); !slices.Equal(ids, []string{"g", "x"}) || got[1].Scope != "/a" {
			t.Errorf("%s: list %v (x's scope %q), want [g x] with x the later record", name, ids, got[1].Scope)
		}
		must(t, s.Reset(ctx, ""))
		if err := s.Update(ctx, rec("missing", "/", 1, 2, 3)); !errors.Is(err, memory.ErrNotFound) {
			t.Fatalf("%s: update of an unknown id: %v", name, err)
		}
		if d := s.Dim(); d != 0 {
			t.Errorf("%s: a refused update fixed the dimension to %d", name, d)
		}
		must(t, s.Save(ctx, []memory.Record{rec("a", "/", 1, 2)})) // any dimension still goes
		if d := s.Dim(); d != 2 {
			t.Errorf("%s: dimension %d after saving a 2-d vector", name, d)
		}
	}
}
