package memory

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The canonical encoding is shared with the Python engine: these values
// were computed with Python's zlib.crc32 and struct (tests/test_corruption.py
// asserts the same two numbers from crewcore.memory.integrity).
func TestRecordChecksumKnownValues(t *testing.T) {
	emb := encodeVector([]float32{1.0, -2.5, 0.125})
	tests := []struct {
		name       string
		importance float64
		source     string
		private    int64
		emb        []byte
		want       uint32
	}{
		{"every field", 0.75, "agent", 1, emb, 0xc930fd7f},
		{"no source, no vector, negative zero", negZero(), "", 0, nil, 0x61780b8d},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := recordChecksum("rec-1", "héllo wörld", "/crew/a", `["x","y"]`, `{"k":1}`, tt.importance,
				"2026-01-02T03:04:05.000006", "2026-01-02T03:04:05.000007", tt.source, tt.private, tt.emb)
			if got != tt.want {
				t.Errorf("checksum %08x, want %08x", got, tt.want)
			}
		})
	}
}

func negZero() float64 { return math.Copysign(0, -1) }

// The version 3 checksum (the vector's CRC in place of its bytes), the same
// two records: values from crewcore.memory.integrity.row_checksum (zlib).
func TestRecordChecksumV3KnownValues(t *testing.T) {
	emb := encodeVector([]float32{1.0, -2.5, 0.125})
	if got := recordChecksumV3("rec-1", "héllo wörld", "/crew/a", `["x","y"]`, `{"k":1}`, 0.75,
		"2026-01-02T03:04:05.000006", "2026-01-02T03:04:05.000007", "agent", 1, len(emb), crc32.ChecksumIEEE(emb)); got != 0x2ad6dbc5 {
		t.Errorf("checksum %08x", got)
	}
	if got := recordChecksumV3("rec-1", "héllo wörld", "/crew/a", `["x","y"]`, `{"k":1}`, negZero(),
		"2026-01-02T03:04:05.000006", "2026-01-02T03:04:05.000007", "", 0, 0, 0); got != 0x61780b8d {
		t.Errorf("checksum without a vector %08x, want the version 2 value", got)
	}
}

// corruptFixture is a closed store of 40 records; "target" holds the
// needles the corruption tests look for in the file.
type corruptFixture struct {
	path   string
	target Record
	vec    []float32
}

const (
	needleContent = "TARGET-CONTENT-needle-0123456789"
	needleMeta    = "TARGET-META-needle"
	needleScope   = "/target-scope-needle"
)

func newCorruptFixture(t *testing.T) *corruptFixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "memory.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for i := range 39 {
		v := make([]float32, 16)
		v[i%16] = 1
		recs = append(recs, rec(fmt.Sprintf("r%02d", i), "/other", v...))
	}
	tv := make([]float32, 16)
	for i := range tv {
		tv[i] = 1000 + 1.375*float32(i)
	}
	target := rec("target", needleScope, tv...)
	target.Content = needleContent
	target.Metadata = []byte(`{"tag":"` + needleMeta + `"}`)
	recs = append(recs, target)
	if err := s.Save(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		t.Fatal("the -wal file outlived the last connection: the needles may not be in the database file")
	}
	return &corruptFixture{path: path, target: target, vec: tv}
}

// flip XORs one byte at off within the only occurrence of needle in the file.
func flip(t *testing.T, path string, needle []byte, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, needle); n != 1 {
		t.Fatalf("needle %q found %d times in the file, want 1", needle, n)
	}
	b[bytes.Index(b, needle)+off] ^= 0x04
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A flipped byte in a record's content, metadata, scope or vector is
// reported on read, naming the record, by every read; deleting the record
// (or saving it again) clears it, and the other records are intact.
func TestCorruptRecordDetected(t *testing.T) {
	tests := []struct {
		name   string
		needle func(f *corruptFixture) []byte
		off    int
		file   string // suffix of the file holding the needle
	}{
		{"content", func(*corruptFixture) []byte { return []byte(needleContent) }, 20, ""},
		{"metadata", func(*corruptFixture) []byte { return []byte(needleMeta) }, 3, ""},
		{"scope", func(*corruptFixture) []byte { return []byte(needleScope) }, 8, ""},
		// A vector lives in a segment file; it is checked against its CRC
		// when it is first read (here by the search), then every read
		// reports the record.
		{"vector", func(f *corruptFixture) []byte { return encodeVector(f.vec) }, 25, "-seg-000001.vec"},
	}
	for _, tt := range tests {
		for _, repair := range []string{"delete", "save", "repair"} {
			t.Run(tt.name+"/"+repair, func(t *testing.T) {
				f := newCorruptFixture(t)
				flip(t, f.path+tt.file, tt.needle(f), tt.off)

				rep, err := Check(ctx, f.path)
				if err != nil {
					t.Fatal(err)
				}
				if rep.OK() || len(rep.Damaged) != 1 || rep.Damaged[0].ID != "target" || rep.Records != 40 {
					t.Fatalf("Check = %+v, want one damaged record named target", rep)
				}

				s, err := Open(f.path, nil)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				defer s.Close()
				if tt.file != "" {
					if _, err := s.Search(ctx, Query{Vector: f.vec, Limit: 3}); !errors.Is(err, ErrRecordCorrupt) || !strings.Contains(err.Error(), f.path+tt.file) {
						t.Fatalf("search over the damaged vector: %v, want ErrRecordCorrupt naming the segment file", err)
					}
				}
				reads := map[string]func() error{
					"count":  func() error { _, err := s.Count(ctx, ""); return err },
					"get":    func() error { _, _, err := s.Get(ctx, "r01"); return err },
					"list":   func() error { _, err := s.List(ctx, "", 100, 0); return err },
					"search": func() error { _, err := s.Search(ctx, Query{Vector: f.vec, Limit: 3}); return err },
					"scope":  func() error { _, err := s.ScopeInfo(ctx, "/"); return err },
				}
				for name, read := range reads {
					err := read()
					if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrRecordCorrupt) || !strings.Contains(err.Error(), `"target"`) {
						t.Errorf("%s: %v, want ErrRecordCorrupt naming \"target\"", name, err)
					}
				}
				if err := s.Update(ctx, Record{ID: "target", Content: "x"}); !errors.Is(err, ErrRecordCorrupt) {
					t.Errorf("update of the damaged record: %v, want ErrRecordCorrupt", err)
				}
				switch repair {
				case "delete":
					if n, err := s.Delete(ctx, Filter{IDs: []string{"target"}}); err != nil || n != 1 {
						t.Fatalf("delete = %d, %v", n, err)
					}
				case "save":
					if err := s.Save(ctx, []Record{f.target}); err != nil {
						t.Fatal(err)
					}
				case "repair":
					if n, err := s.DeleteDamaged(ctx); err != nil || n != 1 {
						t.Fatalf("DeleteDamaged = %d, %v", n, err)
					}
				}
				n, err := s.Count(ctx, "")
				want := map[string]int{"delete": 39, "save": 40, "repair": 39}[repair]
				if err != nil || n != want {
					t.Fatalf("after %s: count %d, %v; want %d", repair, n, err, want)
				}
				if r, ok, err := s.Get(ctx, "r07"); err != nil || !ok || r.Content != "content r07" {
					t.Errorf("an intact record after the repair: %+v %v %v", r, ok, err)
				}
				s.Close()
				if rep, err := Check(ctx, f.path); err != nil || !rep.OK() {
					t.Errorf("Check after %s: %+v, %v", repair, rep, err)
				}
			})
		}
	}
}

// Saves, updates that keep the vector, and touches all leave rows that pass
// their checksum when read again from the file (by a new Store and Check).
func TestChecksumsFollowEveryWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b := rec("a", "/s", 1, 0), rec("b", "/s", 0, 1)
	b.Source, b.Private, b.Importance = "agent", true, negZero()
	if err := s.Save(ctx, []Record{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, Record{ID: "a", Content: "changed", Scope: "/t", Metadata: []byte(`{"k":[1,2]}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, Record{ID: "b", Content: "new vector", Embedding: []float32{0.5, 0.5}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if err := s.Touch(ctx, []string{"a", "b", "missing"}); err != nil {
		t.Fatal(err)
	}
	rep, err := Check(ctx, path)
	if err != nil || !rep.OK() || rep.Records != 2 || rep.Version != FormatVersion {
		t.Fatalf("Check = %+v, %v", rep, err)
	}
	s2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	r, ok, err := s2.Get(ctx, "a")
	if err != nil || !ok || r.Content != "changed" || len(r.Embedding) != 2 || r.Embedding[0] != 1 {
		t.Fatalf("a = %+v, %v, %v", r, ok, err)
	}
}

// A file truncated to 0 bytes, or one whose tables are gone, where a store
// was (its marker is there) is refused, never initialized as a new empty
// store; a deleted file is a new store, and so is an empty file without a
// marker.
func TestLostStoreRefused(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, path string)
		wantErr bool
	}{
		{"truncated to 0 bytes", func(t *testing.T, p string) {
			if err := os.Truncate(p, 0); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"tables dropped", func(t *testing.T, p string) {
			db, err := sql.Open("sqlite3", p)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, q := range []string{`DROP TABLE records`, `DROP TABLE changes`, `DROP TABLE crewcore_meta`} {
				if _, err := db.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
		}, true},
		{"records table dropped", func(t *testing.T, p string) {
			db, err := sql.Open("sqlite3", p)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(`DROP TABLE records`); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"file deleted", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"truncated, marker deleted", func(t *testing.T, p string) {
			if err := os.Truncate(p, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p + MarkerSuffix); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newCorruptFixture(t)
			if _, err := os.Stat(f.path + MarkerSuffix); err != nil {
				t.Fatalf("no marker beside the store: %v", err)
			}
			tt.damage(t, f.path)
			s, err := Open(f.path, nil)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				if n, err := s.Count(ctx, ""); err != nil || n != 0 {
					t.Errorf("new store: count %d, %v", n, err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("the damaged store opened as a new, empty one")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), f.path) {
				t.Fatalf("open: %v, want ErrCorrupt naming the file", err)
			}
			if _, err := Check(ctx, f.path); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Check: %v, want ErrCorrupt", err)
			}
		})
	}
}

// A store of format version 1 (no checksum column) opens: the column is
// added, every row gets its checksum, the version becomes 2, and a damaged
// row is detected from then on.
func TestUpgradeFromVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory.db")
	db, err := sql.Open("sqlite3", path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	v1 := legacySchemaV1
	if _, err := db.Exec(v1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO crewcore_meta VALUES ('dim', '2')`); err != nil {
		t.Fatal(err)
	}
	for i := range 600 { // more than two fill batches
		_, err := db.Exec(`INSERT INTO records(id, content, scope, categories, metadata, importance, created_at, last_accessed, source, private, embedding)
			VALUES (?, ?, '/v1', '[]', '{}', 0.5, '2025-01-01T00:00:00.000000', '2025-01-01T00:00:00.000000', NULL, 0, ?)`,
			fmt.Sprint("old", i), fmt.Sprint("old content ", i), encodeVector([]float32{1, float32(i)}))
		if err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	if rep, err := Check(ctx, path); err != nil || rep.Unchecked != 600 || !rep.OK() || rep.Version != "1" {
		t.Fatalf("Check of the version 1 store = %+v, %v", rep, err)
	}
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx, ""); err != nil || n != 600 {
		t.Fatalf("count %d, %v", n, err)
	}
	s.Close()
	rep, err := Check(ctx, path)
	if err != nil || rep.Version != FormatVersion || rep.Unchecked != 0 || !rep.OK() || rep.Records != 600 {
		t.Fatalf("Check after the upgrade = %+v, %v", rep, err)
	}
	flip(t, path, []byte("old content 417"), 4)
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Count(ctx, ""); !errors.Is(err, ErrRecordCorrupt) || !strings.Contains(err.Error(), `"old417"`) {
		t.Fatalf("count after a flip: %v", err)
	}
}

// The marker holds the store's space reserve: as large as the database and
// its WAL, between 256 KiB and 8 MiB, released (back to the marker's text)
// for a delete on a full disk.
func TestReserveSizes(t *testing.T) {
	tests := []struct {
		name string
		db   int64
		want int64
	}{
		{"new store", 0, reserveMin},
		{"3 MiB store", 3 << 20, 3 << 20},
		{"large store", 100 << 20, reserveMax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "memory.db")
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, tt.db); err != nil {
				t.Fatal(err)
			}
			writeMarker(path)
			ensureReserve(path)
			if got := fileSize(path + MarkerSuffix); got != int64(len(markerText))+tt.want {
				t.Errorf("marker %d bytes, want %d", got, int64(len(markerText))+tt.want)
			}
			if !releaseReserve(path) || fileSize(path+MarkerSuffix) != int64(len(markerText)) {
				t.Errorf("release left %d bytes", fileSize(path+MarkerSuffix))
			}
			if releaseReserve(path) {
				t.Error("a second release reported a reserve")
			}
			if b, _ := os.ReadFile(path + MarkerSuffix); string(b) != markerText {
				t.Errorf("marker text %q", b)
			}
		})
	}
}

// Any one changed byte, in any field, changes the checksum (CRC-32 detects
// every error burst up to 32 bits), and moving bytes from one field to the
// next does too (the lengths are part of the encoding). Seeds:
// f.Add below and testdata/fuzz/FuzzRecordChecksum.
func FuzzRecordChecksum(f *testing.F) {
	f.Add("rec-1", "héllo wörld", []byte{0, 0, 128, 63, 0, 0, 32, 192}, 0.75, uint16(3), byte(1))
	f.Add("", "", []byte{}, 0.0, uint16(0), byte(0x80))
	f.Fuzz(func(t *testing.T, id, content string, emb []byte, importance float64, pos uint16, x byte) {
		if x == 0 {
			return
		}
		sum := func(id, content string, emb []byte) uint32 {
			return recordChecksum(id, content, "/s", `["c"]`, `{}`, importance, "2026-01-01T00:00:00.000000",
				"2026-01-01T00:00:00.000000", "src", 1, emb)
		}
		base := sum(id, content, emb)
		all := []byte(id + content + string(emb))
		if len(all) == 0 {
			return
		}
		i := int(pos) % len(all)
		all[i] ^= x
		nid, ncontent, nemb := string(all[:len(id)]), string(all[len(id):len(id)+len(content)]), all[len(id)+len(content):]
		if got := sum(nid, ncontent, nemb); got == base {
			t.Fatalf("byte %d changed (xor %#x), checksum %08x unchanged", i, x, got)
		}
		if len(content) > 0 {
			if got := sum(id+content[:1], content[1:], emb); got == base {
				t.Fatalf("a byte moved from content to id, checksum %08x unchanged", got)
			}
		}
	})
}

// legacySchemaV1 is the schema of a format version 1 store (vectors in the
// records table, no checksums).
const legacySchemaV1 = `
CREATE TABLE crewcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
  rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, content TEXT NOT NULL, scope TEXT NOT NULL,
  categories TEXT NOT NULL, metadata TEXT NOT NULL, importance REAL NOT NULL, created_at TEXT NOT NULL,
  last_accessed TEXT NOT NULL, source TEXT, private INTEGER NOT NULL, embedding BLOB);
CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL);
INSERT INTO crewcore_meta(key, value) VALUES ('format', 'crewcore-memory'), ('version', '1');
`
