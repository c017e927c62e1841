package main

import (
	"context"

	"github.com/tinylib/msgp/msgp"
)

// memory_read_only [h] -> bool: whether the embedded memory store of handle
// h was opened read-only (memory.Store.ReadOnly; its writes fail with the
// "access" kind).
func init() {
	registerOp("memory_read_only", func(_ context.Context, h int64, _ *reader) ([]byte, error) {
		s, err := store(h)
		if err != nil {
			return nil, err
		}
		return msgp.AppendBool(nil, s.ReadOnly()), nil
	})
}
