//go:build linux || darwin || freebsd

package memory

import (
	"os"
	"syscall"
	"unsafe"
)

// openWALWatch maps path's -shm file; nil when it cannot (then every read
// runs the SQL freshness query).
func openWALWatch(dbPath string) *walWatch {
	f, err := os.Open(dbPath + "-shm")
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	const size = 4096
	if err != nil || st.Size() < size {
		return nil
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil
	}
	return &walWatch{mem: mem, hdr: (*[2 * walIndexHdrWords]uint32)(unsafe.Pointer(&mem[0]))}
}

func (w *walWatch) close() {
	if w != nil && w.mem != nil {
		syscall.Munmap(w.mem) //nolint:errcheck // nothing to do about it
		w.mem, w.hdr = nil, nil
	}
}
