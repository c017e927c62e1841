package memory

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The header and row decoders accept what the encoders write and refuse
// any damage, never panicking.
func TestSegmentHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		elem uint32
		dim  int
	}{{segElemF32, 1}, {segElemF32, 3072}, {segElemBits, 1}, {segElemBits, 65}, {segElemBits, 1536}}
	for _, tc := range tests {
		center := make([]float32, tc.dim)
		for j := range center {
			center[j] = float32(j) / 7
		}
		b := encodeSegHeader(tc.elem, tc.dim, 42, center)
		h, err := decodeSegHeader(b)
		if err != nil || h.dim != tc.dim || h.id != 42 || h.elem != tc.elem || h.rowsAt != len(b) {
			t.Fatalf("elem %d dim %d: %+v, %v", tc.elem, tc.dim, h, err)
		}
		if tc.elem == segElemBits && h.center[tc.dim-1] != center[tc.dim-1] {
			t.Fatalf("center %v", h.center[tc.dim-1])
		}
		for _, i := range []int{0, 9, 13, 17, 21, 25, 33, 60, len(b) - 1} {
			d := append([]byte(nil), b...)
			d[i] ^= 0x10
			if _, err := decodeSegHeader(d); err == nil {
				t.Errorf("elem %d dim %d: byte %d flipped, header accepted", tc.elem, tc.dim, i)
			}
		}
		if _, err := decodeSegHeader(b[:len(b)-1]); err == nil {
			t.Errorf("short header accepted")
		}
	}
}

func FuzzSegmentHeader(f *testing.F) {
	f.Add(encodeSegHeader(segElemF32, 8, 1, nil))
	f.Add(encodeSegHeader(segElemBits, 8, 3, make([]float32, 8)))
	f.Add([]byte("CCSEGBIN"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeSegHeader(b)
		if err != nil {
			return
		}
		// Anything accepted re-encodes to the same bytes.
		if got := encodeSegHeader(h.elem, h.dim, h.id, h.center); string(got) != string(b[:h.rowsAt]) {
			t.Fatalf("accepted header does not re-encode to itself")
		}
	})
}

func FuzzSegmentBinRow(f *testing.F) {
	v := []float32{1, -2, 3, 0.5, -0.25, 8, 9, -1}
	f.Add(appendBinRow(nil, v, encodeVector(v), nil), 1)
	f.Add([]byte{1, 2, 3}, 2)
	f.Fuzz(func(t *testing.T, b []byte, words int) {
		if words > 1<<10 {
			return
		}
		vcrc, ok := decodeBinRow(b, words)
		if !ok {
			return
		}
		// An accepted row is a code followed by vcrc and its own CRC.
		if len(b) != words*8+8 || vcrc != leU32(b[words*8:]) {
			t.Fatalf("accepted a row of %d bytes for %d words", len(b), words)
		}
	})
}

func leU32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// Bytes past a segment's committed rows (a writer that died between its
// pwrite and its commit) are ignored, truncated at open, and overwritten.
func TestSegmentTailTruncatedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, []Record{rec("a", "/", 1, 2, 3, 4), rec("b", "/", 4, 3, 2, 1)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	vecPath, binPath := segPaths(path, 1)
	before, _ := os.Stat(vecPath)
	for _, p := range []string{vecPath, binPath} {
		f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		f.Write(make([]byte, 100)) // an uncommitted append
		f.Close()
	}
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if after, _ := os.Stat(vecPath); after.Size() != before.Size() {
		t.Fatalf("tail not truncated: %d bytes, committed %d", after.Size(), before.Size())
	}
	if err := s.Save(ctx, []Record{rec("c", "/", 0, 0, 1, 0)}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Search(ctx, Query{Vector: []float32{0, 0, 1, 0}, Limit: 1})
	if err != nil || len(m) != 1 || m[0].Record.ID != "c" {
		t.Fatalf("search %v, %v", m, err)
	}
}

// Faults in segment files give errors naming the file; the records whose
// vectors are intact stay readable once the damaged ones are repaired, and
// nothing is dropped silently.
func TestSegmentFaults(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		file   string
	}{
		{"missing", func(t *testing.T, p string) { os.Remove(p + "-seg-000001.bin") }, "-seg-000001.bin"},
		{"truncated", func(t *testing.T, p string) { os.Truncate(p+"-seg-000001.vec", segHeaderSize+4*4*3) }, "-seg-000001.vec"},
		{"header", func(t *testing.T, p string) { flipAt(t, p+"-seg-000001.vec", 17) }, "-seg-000001.vec"},
		{"code row", func(t *testing.T, p string) { flipAt(t, p+"-seg-000001.bin", 64+64+3) }, "-seg-000001.bin"},
		{"other dimension", func(t *testing.T, p string) {
			os.WriteFile(p+"-seg-000001.vec", encodeSegHeader(segElemF32, 5, 1, nil), 0o644)
		}, "-seg-000001.vec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "memory.db")
			s, err := Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			var recs []Record
			for i := range 6 {
				recs = append(recs, rec(fmt.Sprint("r", i), "/", float32(i), 1, 2, 3))
			}
			recs = append(recs, Record{ID: "novec", Content: "no vector"})
			if err := s.Save(ctx, recs); err != nil {
				t.Fatal(err)
			}
			s.Close()
			tt.damage(t, path)
			s, err = Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.Count(ctx, "")
			if !errors.Is(err, ErrRecordCorrupt) || !strings.Contains(err.Error(), path+tt.file) {
				t.Fatalf("count: %v, want ErrRecordCorrupt naming %s", err, path+tt.file)
			}
			rep, err := Check(ctx, path)
			if err != nil || rep.OK() {
				t.Fatalf("check: %+v, %v", rep, err)
			}
			n, err := s.DeleteDamaged(ctx)
			if err != nil || n == 0 {
				t.Fatalf("repair: %d, %v", n, err)
			}
			left, err := s.Count(ctx, "")
			if err != nil || left+n != 7 {
				t.Fatalf("after repair: %d + %d deleted, %v; want 7", left, n, err)
			}
			if r, ok, err := s.Get(ctx, "novec"); err != nil || !ok || r.Content != "no vector" {
				t.Fatalf("get novec: %v %v %v", r, ok, err)
			}
			// The store takes new vectors after the repair (a damaged
			// active segment is left for a new one).
			if err := s.Save(ctx, []Record{rec("after", "/", 9, 1, 2, 3)}); err != nil {
				t.Fatalf("save after repair: %v", err)
			}
			if r, ok, err := s.Get(ctx, "after"); err != nil || !ok || len(r.Embedding) != 4 || r.Embedding[0] != 9 {
				t.Fatalf("get after: %v %v %v", r, ok, err)
			}
			if rep, err := Check(ctx, path); err != nil || !rep.OK() {
				t.Fatalf("check after repair: %+v, %v", rep, err)
			}
		})
	}
}

func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	f.WriteAt(b, off)
}

// Stores written by the engine before format version 3 (memory/testdata/
// formats: version 2, and the same store in the version 1 schema) open,
// are upgraded once with a backup, and read back every record exactly.
func TestUpgradeTestdataStores(t *testing.T) {
	var want struct {
		Dim     int `json:"dim"`
		Records []struct {
			ID, Content, Scope string
			Categories         []string
			Metadata           json.RawMessage
			Importance         float64
			CreatedAt          string `json:"created_at"`
			LastAccessed       string `json:"last_accessed"`
			Source             *string
			Private            bool
			Embedding          []float32
		} `json:"records"`
	}
	b, err := os.ReadFile("testdata/formats/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "memory.db")
			copyFile(t, filepath.Join("testdata/formats", version, "memory.db"), path)
			s, err := Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path + "-" + version + BackupSuffix); err != nil {
				t.Fatalf("no backup: %v", err)
			}
			if s.Dim() != want.Dim {
				t.Fatalf("dim %d", s.Dim())
			}
			for _, w := range want.Records {
				r, ok, err := s.Get(ctx, w.ID)
				if err != nil || !ok {
					t.Fatalf("get %s: %v %v", w.ID, ok, err)
				}
				src := ""
				if w.Source != nil {
					src = *w.Source
				}
				wc, _ := time.Parse(TimeLayout, w.CreatedAt)
				if r.Content != w.Content || r.Scope != w.Scope || r.Importance != w.Importance || r.Source != src ||
					r.Private != w.Private || !r.CreatedAt.Equal(wc) || fmt.Sprint(r.Categories) != fmt.Sprint(w.Categories) ||
					fmt.Sprint(r.Embedding) != fmt.Sprint(w.Embedding) {
					t.Fatalf("record %s = %+v, want %+v", w.ID, r, w)
				}
			}
			if n, _ := s.Count(ctx, ""); n != len(want.Records) {
				t.Fatalf("count %d", n)
			}
			if m, err := s.Search(ctx, Query{Vector: want.Records[0].Embedding, Limit: 1}); err != nil || m[0].Score != 1 {
				t.Fatalf("search %v %v", m, err)
			}
			s.Close()
			rep, err := Check(ctx, path)
			if err != nil || !rep.OK() || rep.Version != FormatVersion || rep.Records != len(want.Records) {
				t.Fatalf("check after upgrade: %+v, %v", rep, err)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

// optimize() moves every vector into one segment, rewrites the addresses
// and removes the old files; another store on the file follows.
func TestOptimizeCompacts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory.db")
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
	for i := range 30 {
		batch := make([]Record, 100)
		for j := range batch {
			batch[j] = rec(fmt.Sprint(i*100+j), "/", float32(i), float32(j), 1, 1)
		}
		if err := a.Save(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Delete(ctx, Filter{ScopePrefix: "/", IDs: []string{"5", "2999", "1500"}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Optimize(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-seg-000001.vec"); !os.IsNotExist(err) {
		t.Fatalf("old segment still there: %v", err)
	}
	for _, s := range []*Store{a, b} {
		r, ok, err := s.Get(ctx, "2998")
		if err != nil || !ok || r.Embedding[0] != 29 || r.Embedding[1] != 98 {
			t.Fatalf("get after optimize: %v %v %v", r.Embedding, ok, err)
		}
		if n, _ := s.Count(ctx, ""); n != 2997 {
			t.Fatalf("count %d", n)
		}
	}
	rep, err := Check(ctx, path)
	if err != nil || !rep.OK() {
		t.Fatalf("check %+v %v", rep, err)
	}
}
