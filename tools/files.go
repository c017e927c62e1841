package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// FileRoot confines file reads and listings to one directory. Paths are
// relative to the root; absolute paths, ".." that leaves the root and
// symlinks that resolve outside it are refused with ErrRefused (the checks
// are os.Root's, made on every path component at open time, so a symlink
// swapped in after a check cannot escape either).
//
// Only regular files are read and only directories listed: FIFOs, sockets
// and devices are refused with ErrRefused without being opened in a way that
// can block (see open). Every call runs under its context's deadline whatever
// the file system does (see bounded). Regular files with more than one hard
// link are refused unless AllowHardLinks is set: a hard link made inside the
// root to a file outside it is that same file, and nothing about an inode
// says where its other names live.
type FileRoot struct {
	dir  string
	root *os.Root
	// AllowHardLinks permits reading regular files whose link count is above
	// one (set it before the root is used). Off by default; see FileRoot.
	AllowHardLinks bool
}

// OpenFileRoot opens dir as a root.
func OpenFileRoot(dir string) (*FileRoot, error) {
	return OpenFileRootContext(context.Background(), dir)
}

// OpenFileRootContext opens dir as a root under ctx's deadline: a root that
// is not a directory is refused with ErrRefused before it is opened (opening
// a FIFO blocks until a writer comes), and an open still blocked in the file
// system at the deadline fails with ErrTimeout.
func OpenFileRootContext(ctx context.Context, dir string) (*FileRoot, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open file root %q: %w", dir, err)
	}
	var r *os.Root
	err = bounded(ctx, fmt.Sprintf("opening the file root %q", abs), func() error {
		st, err := os.Stat(abs)
		if err != nil {
			return fmt.Errorf("open file root: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("%w: the file root %q is %s, not a directory", ErrRefused, abs, kindName(st.Mode()))
		}
		root, err := os.OpenRoot(abs)
		if err != nil {
			return fmt.Errorf("open file root: %w", err)
		}
		r = root // read by the caller only when bounded returned in time; an abandoned root is closed by its finalizer
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &FileRoot{dir: abs, root: r}, nil
}

// Dir is the root's absolute path.
func (f *FileRoot) Dir() string { return f.dir }

// Close releases the root.
func (f *FileRoot) Close() error { return f.root.Close() }

func (f *FileRoot) clean(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: path %q contains a NUL byte", ErrRefused, p)
	}
	if p == "" {
		p = "."
	}
	if filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: path %q is absolute; give a path relative to the root %s", ErrRefused, p, f.dir)
	}
	return p, nil
}

func (f *FileRoot) wrap(p string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes") {
		return fmt.Errorf("%w: path %q leaves the root %s", ErrRefused, p, f.dir)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: no file %q under the root", fs.ErrNotExist, p)
	}
	return fmt.Errorf("%q: %w", p, err)
}

// kindName names the kind of file m describes, for messages.
func kindName(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "an irregular file"
}

// entryKind is Entry.Kind for a directory entry of type m.
func entryKind(m fs.FileMode) string {
	switch {
	case m.IsRegular(), m.IsDir():
		return ""
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "irregular"
}

// check accepts st for reading (dir false) or listing (dir true).
func (f *FileRoot) check(p string, st fs.FileInfo, dir bool) error {
	m := st.Mode()
	switch {
	case m.IsDir() && !dir:
		return fmt.Errorf("%w: %q is a directory; list it instead", ErrRefused, p)
	case m.IsRegular() && dir:
		return fmt.Errorf("%w: %q is not a directory; read it instead", ErrRefused, p)
	case m.IsRegular():
		if n := linkCount(st); n > 1 && !f.AllowHardLinks {
			return fmt.Errorf("%w: %q has %d hard links; a hard link can make a file outside the root readable, so files with more than one link are refused unless hard links are allowed", ErrRefused, p, n)
		}
		return nil
	case m.IsDir():
		return nil
	}
	return fmt.Errorf("%w: %q is %s, not a regular file or a directory; only regular files are read and directories listed", ErrRefused, p, kindName(m))
}

// open opens p for reading (dir false) or listing (dir true) without ever
// blocking on what p names. The entry is looked at first (os.Root's Stat:
// symlinks followed inside the root, nothing opened) and anything but a
// regular file or a directory is refused there; the open itself is
// non-blocking (openFlags: a FIFO swapped in after the look opens at once
// instead of waiting for a writer, a terminal never becomes the controlling
// one, a listing opens directories only), and the open descriptor is checked
// again with fstat, whose answer is the one that counts.
func (f *FileRoot) open(p string, dir bool) (*os.File, fs.FileInfo, error) {
	st, err := f.root.Stat(p)
	if err != nil {
		return nil, nil, f.wrap(p, err)
	}
	if err := f.check(p, st, dir); err != nil {
		return nil, nil, err
	}
	flag := os.O_RDONLY | openFlags
	if dir {
		flag |= openDirFlag
	}
	fh, err := f.root.OpenFile(p, flag, 0)
	if err != nil {
		return nil, nil, f.wrap(p, err)
	}
	st, err = fh.Stat()
	if err == nil {
		err = f.check(p, st, dir)
	} else {
		err = f.wrap(p, err)
	}
	if err != nil {
		fh.Close()
		return nil, nil, err
	}
	return fh, st, nil
}

// ReadFile reads up to maxBytes of the regular file at p (relative to the
// root) under ctx's deadline. It returns the content, the file's size and
// whether it was cut. What is not a regular file, and a regular file with
// more than one hard link unless AllowHardLinks, is refused with ErrRefused.
func (f *FileRoot) ReadFile(ctx context.Context, p string, maxBytes int64) ([]byte, int64, bool, error) {
	p, err := f.clean(p)
	if err != nil {
		return nil, 0, false, err
	}
	var (
		data  []byte
		size  int64
		trunc bool
	)
	err = bounded(ctx, fmt.Sprintf("reading %q", p), func() error {
		var err error
		data, size, trunc, err = f.readFile(ctx, p, maxBytes)
		return err
	})
	if err != nil {
		return nil, 0, false, err
	}
	return data, size, trunc, nil
}

func (f *FileRoot) readFile(ctx context.Context, p string, maxBytes int64) ([]byte, int64, bool, error) {
	fh, st, err := f.open(p, false)
	if err != nil {
		return nil, 0, false, err
	}
	defer fh.Close()
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	buf := make([]byte, 0, min(maxBytes+1, st.Size()+1))
	chunk := make([]byte, 64<<10)
	for int64(len(buf)) <= maxBytes {
		if err := ctx.Err(); err != nil {
			return nil, 0, false, fmt.Errorf("%w: reading %q: %v", ErrTimeout, p, err)
		}
		n, err := fh.Read(chunk[:min(int64(len(chunk)), maxBytes+1-int64(len(buf)))])
		buf = append(buf, chunk[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, false, f.wrap(p, err)
		}
	}
	if int64(len(buf)) > maxBytes {
		return buf[:maxBytes], st.Size(), true, nil
	}
	return buf, st.Size(), false, nil
}

// Entry is one directory entry returned by List.
type Entry struct {
	Name  string
	IsDir bool
	// Size is the size of a regular file (lstat's: a symlink's own size).
	Size int64
	// Kind is "" for a regular file or a directory, else "symlink", "fifo",
	// "socket", "device" or "irregular" (named, never opened).
	Kind string
}

// List returns up to maxEntries entries of the directory p, sorted by name,
// and whether more were left out, under ctx's deadline. Entries are named
// with their kind and never opened.
func (f *FileRoot) List(ctx context.Context, p string, maxEntries int) ([]Entry, bool, error) {
	p, err := f.clean(p)
	if err != nil {
		return nil, false, err
	}
	var (
		ents []Entry
		more bool
	)
	err = bounded(ctx, fmt.Sprintf("listing %q", p), func() error {
		var err error
		ents, more, err = f.list(ctx, p, maxEntries)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return ents, more, nil
}

func (f *FileRoot) list(ctx context.Context, p string, maxEntries int) ([]Entry, bool, error) {
	fh, _, err := f.open(p, true)
	if err != nil {
		return nil, false, err
	}
	defer fh.Close()
	if maxEntries <= 0 {
		maxEntries = 1000
	}
	var out []Entry
	for {
		if err := ctx.Err(); err != nil {
			return nil, false, fmt.Errorf("%w: listing %q: %v", ErrTimeout, p, err)
		}
		des, err := fh.ReadDir(256)
		for _, de := range des {
			e := Entry{Name: de.Name(), IsDir: de.IsDir(), Kind: entryKind(de.Type())}
			if info, err := de.Info(); err == nil && !de.IsDir() {
				e.Size = info.Size()
			}
			out = append(out, e)
		}
		if err == io.EOF || len(des) == 0 {
			break
		}
		if err != nil {
			return nil, false, f.wrap(p, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(out) > maxEntries {
		return out[:maxEntries], true, nil
	}
	return out, false, nil
}
