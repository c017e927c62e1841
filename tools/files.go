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
type FileRoot struct {
	dir  string
	root *os.Root
}

// OpenFileRoot opens dir as a root.
func OpenFileRoot(dir string) (*FileRoot, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("open file root: %w", err)
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

// ReadFile reads up to maxBytes of the file at p (relative to the root).
// It returns the content, the file's size and whether it was cut.
func (f *FileRoot) ReadFile(ctx context.Context, p string, maxBytes int64) ([]byte, int64, bool, error) {
	p, err := f.clean(p)
	if err != nil {
		return nil, 0, false, err
	}
	fh, err := f.root.Open(p)
	if err != nil {
		return nil, 0, false, f.wrap(p, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, 0, false, f.wrap(p, err)
	}
	if st.IsDir() {
		return nil, 0, false, fmt.Errorf("%w: %q is a directory; list it instead", ErrRefused, p)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, false, fmt.Errorf("%w: %q is not a regular file", ErrRefused, p)
	}
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
	Size  int64
}

// List returns up to maxEntries entries of the directory p, sorted by name,
// and whether more were left out.
func (f *FileRoot) List(ctx context.Context, p string, maxEntries int) ([]Entry, bool, error) {
	p, err := f.clean(p)
	if err != nil {
		return nil, false, err
	}
	fh, err := f.root.Open(p)
	if err != nil {
		return nil, false, f.wrap(p, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, false, f.wrap(p, err)
	}
	if !st.IsDir() {
		return nil, false, fmt.Errorf("%w: %q is not a directory; read it instead", ErrRefused, p)
	}
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
			e := Entry{Name: de.Name(), IsDir: de.IsDir()}
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
