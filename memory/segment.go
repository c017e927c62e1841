package memory

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/crewcore/crewcore/internal/vec"
)

// Segment files (format version 3; docs/architecture.md, "On-disk format").
// The vectors of a store live beside its database in append-only segments,
// each a pair of files named after the database and the segment id:
//
//	memory.db-seg-000001.vec   float32 vectors, one row of dim*4 bytes per vector
//	memory.db-seg-000001.bin   the binary codes the search scans first, one row
//	                           of Words(dim) uint64 + vcrc + rcrc per vector
//
// Both start with a 64-byte header (little-endian):
//
//	0   magic      [8]byte  "CCSEGVEC" or "CCSEGBIN"
//	8   version    uint32   1
//	12  elem       uint32   element type: 1 float32 rows, 2 binary-code rows
//	16  dim        uint32   vector dimension
//	20  row size   uint32   bytes per row
//	24  segment    uint64   segment id (the file name's number)
//	32  rows at    uint32   offset of row 0 (64, or 64 + the center for .bin)
//	36  reserved   [24]byte zero
//	60  crc        uint32   CRC-32 (IEEE) of bytes [0,60) and [64, rows at)
//
// The .bin header is followed by the center (dim float32): bit j of a
// vector's code is set iff v[j] > center[j]. A segment's center is fixed
// when it is created: the mean of the vectors of the previous segment, or of
// the segment's first batch. In a .bin row, vcrc is the CRC-32 of the
// vector's .vec row (the record checksum covers it, see checksum.go) and
// rcrc the CRC-32 of the code and vcrc, so a damaged code is found too.
//
// Row i of a segment is valid once the transaction that wrote the records
// addressing it has committed (the segments table holds the committed row
// count); bytes past it are ignored and truncated at open (crash protocol,
// in segstore.go).

const (
	segHeaderSize = 64
	segVersion    = 1
	segElemF32    = 1
	segElemBits   = 2
	segMagicVec   = "CCSEGVEC"
	segMagicBin   = "CCSEGBIN"
	// segMinCap is the capacity, in rows, of a store's first segment; each
	// later one holds as many rows as all the segments before it.
	segMinCap = 1024
)

// ErrSegment reports a segment file that is missing, truncated, damaged,
// or of another store or dimension. It wraps ErrCorrupt; the message names
// the file.
var ErrSegment = fmt.Errorf("%w: damaged segment file", ErrCorrupt)

// segHeader is the decoded header of a segment file.
type segHeader struct {
	elem    uint32
	dim     int
	rowSize int
	id      int64
	rowsAt  int
	center  []float32 // .bin only
}

// segVecRow and segBinRow are the row sizes of a dimension.
func segVecRow(dim int) int { return dim * 4 }
func segBinRow(dim int) int { return vec.Words(dim)*8 + 8 }

// encodeSegHeader returns the header of a segment file.
func encodeSegHeader(elem uint32, dim int, id int64, center []float32) []byte {
	rowsAt := segHeaderSize
	magic, rowSize := segMagicVec, segVecRow(dim)
	if elem == segElemBits {
		magic, rowSize = segMagicBin, segBinRow(dim)
		rowsAt += (dim*4 + 63) / 64 * 64
	}
	b := make([]byte, rowsAt)
	copy(b, magic)
	binary.LittleEndian.PutUint32(b[8:], segVersion)
	binary.LittleEndian.PutUint32(b[12:], elem)
	binary.LittleEndian.PutUint32(b[16:], uint32(dim))
	binary.LittleEndian.PutUint32(b[20:], uint32(rowSize))
	binary.LittleEndian.PutUint64(b[24:], uint64(id))
	binary.LittleEndian.PutUint32(b[32:], uint32(rowsAt))
	if elem == segElemBits {
		for j, x := range center {
			binary.LittleEndian.PutUint32(b[segHeaderSize+4*j:], math.Float32bits(x))
		}
	}
	binary.LittleEndian.PutUint32(b[60:], segHeaderCRC(b))
	return b
}

func segHeaderCRC(b []byte) uint32 {
	c := crc32.ChecksumIEEE(b[:60])
	return crc32.Update(c, crc32.IEEETable, b[segHeaderSize:])
}

// decodeSegHeader parses and checks the header at the start of b (the
// whole header: 64 bytes, plus the center of a .bin file). It never panics.
func decodeSegHeader(b []byte) (segHeader, error) {
	var h segHeader
	if len(b) < segHeaderSize {
		return h, fmt.Errorf("the file is %d bytes, shorter than a segment header", len(b))
	}
	magic := string(b[:8])
	if magic != segMagicVec && magic != segMagicBin {
		return h, errors.New("not a segment file (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != segVersion {
		return h, fmt.Errorf("unsupported segment version %d", v)
	}
	h.elem = binary.LittleEndian.Uint32(b[12:])
	dim := binary.LittleEndian.Uint32(b[16:])
	h.rowSize = int(binary.LittleEndian.Uint32(b[20:]))
	h.id = int64(binary.LittleEndian.Uint64(b[24:]))
	rowsAt := binary.LittleEndian.Uint32(b[32:])
	if dim == 0 || dim > MaxDim {
		return h, fmt.Errorf("bad dimension %d in the header", dim)
	}
	h.dim = int(dim)
	wantMagic, wantRow, wantAt := segMagicVec, segVecRow(h.dim), segHeaderSize
	switch h.elem {
	case segElemF32:
	case segElemBits:
		wantMagic, wantRow, wantAt = segMagicBin, segBinRow(h.dim), segHeaderSize+(h.dim*4+63)/64*64
	default:
		return h, fmt.Errorf("unknown element type %d", h.elem)
	}
	if magic != wantMagic || h.rowSize != wantRow || int(rowsAt) != wantAt {
		return h, fmt.Errorf("inconsistent header (element type %d, row size %d, rows at %d)", h.elem, h.rowSize, rowsAt)
	}
	h.rowsAt = wantAt
	if len(b) < h.rowsAt {
		return h, fmt.Errorf("the file is %d bytes, shorter than its %d-byte header", len(b), h.rowsAt)
	}
	if got, want := segHeaderCRC(b[:h.rowsAt]), binary.LittleEndian.Uint32(b[60:]); got != want {
		return h, fmt.Errorf("header checksum %08x, stored %08x", got, want)
	}
	if h.elem == segElemBits {
		h.center = make([]float32, h.dim)
		for j := range h.center {
			h.center[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[segHeaderSize+4*j:]))
		}
	}
	return h, nil
}

// appendBinRow appends the .bin row of vector bytes vb (little-endian
// float32) under center to dst: the code, then vcrc and rcrc.
func appendBinRow(dst []byte, v []float32, vb []byte, center []float32) []byte {
	words := vec.Words(len(v))
	codes := make([]uint64, words)
	binarize(v, center, codes)
	start := len(dst)
	for _, w := range codes {
		dst = binary.LittleEndian.AppendUint64(dst, w)
	}
	dst = binary.LittleEndian.AppendUint32(dst, crc32.ChecksumIEEE(vb))
	return binary.LittleEndian.AppendUint32(dst, crc32.ChecksumIEEE(dst[start:]))
}

// decodeBinRow checks one .bin row of a words-word code and returns the
// CRC of its vector row; ok is false when the row fails its own checksum.
func decodeBinRow(b []byte, words int) (vcrc uint32, ok bool) {
	n := words * 8
	if words <= 0 || len(b) != n+8 {
		return 0, false
	}
	vcrc = binary.LittleEndian.Uint32(b[n:])
	return vcrc, crc32.ChecksumIEEE(b[:n+4]) == binary.LittleEndian.Uint32(b[n+4:])
}

// segment is one mapped segment of a store.
type segment struct {
	id        int64
	dim       int
	words     int
	cap       int   // rows the files may hold (the mappings' length)
	base      int32 // slot of row 0 in the index
	used      int   // rows referenced so far (scans stop here)
	committed int   // committed rows, as last read from the segments table
	vecPath   string
	binPath   string
	vmem      []byte // mapping of the .vec file, hdr + cap rows
	bmem      []byte
	vecAt     int
	binAt     int
	vecs      []float32 // rows of the .vec file
	codes     []uint64  // rows of the .bin file, stride words+1
	center    []float32
	sizeOK    int      // rows known to lie inside both files
	verified  []uint64 // bit r: row r's vector matched its vcrc (atomic)
}

func segPaths(dbPath string, id int64) (string, string) {
	p := fmt.Sprintf("%s-seg-%06d", dbPath, id)
	return p + ".vec", p + ".bin"
}

// mapSegment opens and maps the two files of segment id, checks their
// headers against the store's dimension, and returns the segment. Errors
// wrap ErrSegment and name the file (os.ErrNotExist too for a missing one).
func mapSegment(dbPath string, id int64, dim, capRows int) (*segment, error) {
	s := &segment{id: id, dim: dim, words: vec.Words(dim), cap: capRows}
	s.vecPath, s.binPath = segPaths(dbPath, id)
	var err error
	var vh, bh segHeader
	if s.vmem, vh, err = mapSegFile(s.vecPath, id, dim, segElemF32, capRows); err != nil {
		return nil, err
	}
	if s.bmem, bh, err = mapSegFile(s.binPath, id, dim, segElemBits, capRows); err != nil {
		syscall.Munmap(s.vmem) //nolint:errcheck
		return nil, err
	}
	s.vecAt, s.binAt, s.center = vh.rowsAt, bh.rowsAt, bh.center
	s.vecs = unsafe.Slice((*float32)(unsafe.Pointer(&s.vmem[s.vecAt])), capRows*dim)
	s.codes = unsafe.Slice((*uint64)(unsafe.Pointer(&s.bmem[s.binAt])), capRows*(s.words+1))
	s.verified = make([]uint64, (capRows+63)/64)
	return s, nil
}

func mapSegFile(path string, id int64, dim int, elem uint32, capRows int) ([]byte, segHeader, error) {
	var h segHeader
	f, err := os.Open(path)
	if err != nil {
		return nil, h, fmt.Errorf("segment file %s: %w: %w", path, ErrSegment, err)
	}
	defer f.Close() // the mapping outlives the descriptor
	hdr := make([]byte, segHeaderSize+(dim*4+63)/64*64)
	n, _ := f.ReadAt(hdr, 0)
	if h, err = decodeSegHeader(hdr[:n]); err != nil {
		return nil, h, fmt.Errorf("segment file %s: %w: %v", path, ErrSegment, err)
	}
	if h.elem != elem || h.id != id {
		return nil, h, fmt.Errorf("segment file %s: %w: it holds segment %d (element type %d), not segment %d", path, ErrSegment, h.id, h.elem, id)
	}
	if h.dim != dim {
		return nil, h, fmt.Errorf("segment file %s: %w: its vectors have %d dimensions, the store's %d", path, ErrSegment, h.dim, dim)
	}
	size := h.rowsAt + capRows*h.rowSize
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, h, fmt.Errorf("segment file %s: map %d bytes: %w", path, size, err)
	}
	return mem, h, nil
}

// unmap releases the mappings.
func (s *segment) unmap() {
	if s.vmem != nil {
		syscall.Munmap(s.vmem) //nolint:errcheck
	}
	if s.bmem != nil {
		syscall.Munmap(s.bmem) //nolint:errcheck
	}
	s.vmem, s.bmem, s.vecs, s.codes = nil, nil, nil, nil
}

// rowsInside reports whether rows [0, n) lie inside both files (a file cut
// short under a mapping would fault on access); it stats the files only
// when n grows past what was checked before, and then remembers every row
// the files hold (one pair of stats per segment at load, not per row).
func (s *segment) rowsInside(n int) bool {
	if n <= s.sizeOK {
		return true
	}
	if n > s.cap {
		return false
	}
	fit := s.cap
	for _, f := range [...]struct {
		path string
		at   int
		row  int
	}{{s.vecPath, s.vecAt, segVecRow(s.dim)}, {s.binPath, s.binAt, segBinRow(s.dim)}} {
		st, err := os.Stat(f.path)
		if err != nil || st.Size() < int64(f.at) {
			return false
		}
		fit = min(fit, int((st.Size()-int64(f.at))/int64(f.row)))
	}
	if fit > s.sizeOK {
		s.sizeOK = fit
	}
	return n <= s.sizeOK
}

// vector returns row r of the segment (a view of the mapping).
func (s *segment) vector(r int) []float32 {
	return s.vecs[r*s.dim : (r+1)*s.dim : (r+1)*s.dim]
}

// binRow returns the bytes of row r of the .bin file.
func (s *segment) binRow(r int) []byte {
	n := segBinRow(s.dim)
	return s.bmem[s.binAt+r*n : s.binAt+(r+1)*n]
}

// vecBytes returns the bytes of row r of the .vec file.
func (s *segment) vecBytes(r int) []byte {
	n := segVecRow(s.dim)
	return s.vmem[s.vecAt+r*n : s.vecAt+(r+1)*n]
}

// verifyVector checks row r's vector against its vcrc once per process;
// it reports whether the row is intact.
func (s *segment) verifyVector(r int, vcrc uint32) bool {
	w, bit := r/64, uint64(1)<<(r%64)
	if atomic.LoadUint64(&s.verified[w])&bit != 0 {
		return true
	}
	if crc32.ChecksumIEEE(s.vecBytes(r)) != vcrc {
		return false
	}
	for {
		old := atomic.LoadUint64(&s.verified[w])
		if atomic.CompareAndSwapUint64(&s.verified[w], old, old|bit) {
			return true
		}
	}
}
