package main

// Bridge ops of the built-in file tools (tools.FileRoot), registered from
// cabi/tools.go: "tool_read_file" and "tool_list_dir". The whole call, the
// opening of the root included, runs under the call's deadline.

import (
	"context"

	"github.com/crewcore/crewcore/tools"
	"github.com/tinylib/msgp/msgp"
)

// fileRootCtx opens root under a context bounded by timeoutMs (none when
// timeoutMs <= 0); the caller calls cancel and closes the root.
func fileRootCtx(ctx context.Context, root string, timeoutMs float64) (*tools.FileRoot, context.Context, context.CancelFunc, error) {
	cancel := context.CancelFunc(func() {})
	if timeoutMs > 0 {
		ctx, cancel = context.WithTimeout(ctx, ms(timeoutMs))
	}
	fr, err := tools.OpenFileRootContext(ctx, root)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return fr, ctx, cancel, nil
}

// toolReadFile serves
// [tool_read_file, 0, root, path, max_bytes, timeout_ms, allow_hardlinks?] -> [content, size, truncated].
func toolReadFile(ctx context.Context, _ int64, r *reader) ([]byte, error) {
	root, p, maxBytes, timeout := r.str("root"), r.str("path"), r.int("max_bytes"), r.float("timeout_ms")
	allowHard := false
	if len(r.b) > 0 {
		allowHard = r.bool("allow_hardlinks")
	}
	if r.err != nil {
		return nil, r.err
	}
	fr, ctx, cancel, err := fileRootCtx(ctx, root, timeout)
	if err != nil {
		return nil, err
	}
	defer cancel()
	defer fr.Close()
	fr.AllowHardLinks = allowHard
	data, size, trunc, err := fr.ReadFile(ctx, p, maxBytes)
	if err != nil {
		return nil, err
	}
	b := msgp.AppendArrayHeader(make([]byte, 0, len(data)+32), 3)
	b = msgp.AppendBytes(b, data)
	b = msgp.AppendInt64(b, size)
	return msgp.AppendBool(b, trunc), nil
}

// toolListDir serves
// [tool_list_dir, 0, root, path, max_entries, timeout_ms] -> [[[name, is_dir, size, kind]...], truncated]
// (kind: "" for a regular file or a directory, else "symlink", "fifo", "socket", "device", "irregular").
func toolListDir(ctx context.Context, _ int64, r *reader) ([]byte, error) {
	root, p, maxEntries, timeout := r.str("root"), r.str("path"), r.int("max_entries"), r.float("timeout_ms")
	if r.err != nil {
		return nil, r.err
	}
	fr, ctx, cancel, err := fileRootCtx(ctx, root, timeout)
	if err != nil {
		return nil, err
	}
	defer cancel()
	defer fr.Close()
	ents, more, err := fr.List(ctx, p, int(maxEntries))
	if err != nil {
		return nil, err
	}
	b := msgp.AppendArrayHeader(nil, 2)
	b = msgp.AppendArrayHeader(b, uint32(len(ents)))
	for _, e := range ents {
		b = msgp.AppendArrayHeader(b, 4)
		b = msgp.AppendString(b, e.Name)
		b = msgp.AppendBool(b, e.IsDir)
		b = msgp.AppendInt64(b, e.Size)
		b = msgp.AppendString(b, e.Kind)
	}
	return msgp.AppendBool(b, more), nil
}
