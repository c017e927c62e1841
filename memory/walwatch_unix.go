//go:build linux || darwin || freebsd

package memory

import (
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// The -shm file is mapped through a descriptor of our own, and that
// descriptor must stay open while any SQLite connection in this process has
// the file open: closing any descriptor of a file drops every POSIX lock the
// process holds on it, SQLite's included. Losing SQLite's DMS lock on -shm
// lets another process believe it is the first to open the store and
// truncate and rebuild the WAL index under our connections (they then read
// a zeroed index or die of SIGBUS). So one descriptor and one mapping per
// -shm file are shared by every Store of this process that has it open, and
// are released only when the last of them has closed its connections.
type shmKey struct{ dev, ino uint64 }

type shmMap struct {
	key   shmKey
	files []*os.File // every descriptor opened on the file, closed together
	mem   []byte
	refs  int
}

var shmMaps = struct {
	sync.Mutex
	m map[shmKey]*shmMap
}{m: map[shmKey]*shmMap{}}

func statKey(st os.FileInfo) (shmKey, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return shmKey{}, false
	}
	return shmKey{dev: uint64(sys.Dev), ino: uint64(sys.Ino)}, true //nolint:unconvert // widths differ by platform
}

// openWALWatch maps path's -shm file; nil when it cannot (then every read
// runs the SQL freshness query). The caller's SQLite connections must have
// the store open, and must be closed before the watch is.
func openWALWatch(dbPath string) *walWatch {
	const size = 4096
	name := dbPath + "-shm"
	shmMaps.Lock()
	defer shmMaps.Unlock()
	if st, err := os.Stat(name); err == nil {
		if k, ok := statKey(st); ok {
			if m := shmMaps.m[k]; m != nil {
				m.refs++
				return newWALWatch(m)
			}
		}
	}
	f, err := os.Open(name)
	if err != nil {
		return nil
	}
	st, err := f.Stat()
	k, ok := shmKey{}, false
	if err == nil {
		k, ok = statKey(st)
	}
	if m := shmMaps.m[k]; ok && m != nil {
		// Replaced between Stat and Open and already mapped: keep the
		// descriptor with the others, never close it early.
		m.files = append(m.files, f)
		m.refs++
		return newWALWatch(m)
	}
	if !ok || st.Size() < size {
		// Not closed: see the type comment. It joins no mapping, so it is
		// kept in a mapping of its own with nothing mapped.
		m := &shmMap{key: k, files: []*os.File{f}, refs: 1}
		if ok {
			shmMaps.m[k] = m
		}
		return &walWatch{m: m}
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		m := &shmMap{key: k, files: []*os.File{f}, refs: 1}
		shmMaps.m[k] = m
		return &walWatch{m: m}
	}
	m := &shmMap{key: k, files: []*os.File{f}, mem: mem, refs: 1}
	shmMaps.m[k] = m
	return newWALWatch(m)
}

func newWALWatch(m *shmMap) *walWatch {
	w := &walWatch{m: m}
	if m.mem != nil {
		w.mem = m.mem
		w.hdr = (*[2 * walIndexHdrWords]uint32)(unsafe.Pointer(&m.mem[0]))
	}
	return w
}

// close drops this store's use of the mapping; the last user unmaps it and
// closes the descriptors. Call it after the store's connections are closed.
func (w *walWatch) close() {
	if w == nil || w.m == nil {
		return
	}
	m := w.m
	w.m, w.mem, w.hdr = nil, nil, nil
	shmMaps.Lock()
	defer shmMaps.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	if shmMaps.m[m.key] == m {
		delete(shmMaps.m, m.key)
	}
	if m.mem != nil {
		syscall.Munmap(m.mem) //nolint:errcheck // nothing to do about it
	}
	for _, f := range m.files {
		f.Close()
	}
}
