package main

import (
	"context"
	"errors"
	"sync"
)

// An extOp serves one op of a subsystem other than the memory store (locks,
// task outputs, flow state, tools, scheduler...). h is the request's handle
// argument; the op's own handle table, if it needs one, is its business.
type extOp func(ctx context.Context, h int64, r *reader) ([]byte, error)

var (
	extMu    sync.RWMutex
	extOps   = map[string]extOp{}
	extKinds []errKind
)

type errKind struct {
	target error
	kind   string
}

// registerOp adds op to the dispatch table; it is called from init functions
// of the subsystem's file in this package. Names must not collide.
func registerOp(op string, fn extOp) {
	extMu.Lock()
	defer extMu.Unlock()
	if _, dup := extOps[op]; dup {
		panic("cabi: op registered twice: " + op)
	}
	if _, dup := ops[op]; dup || op == "open" || op == "close" || op == "version" {
		panic("cabi: op collides with a memory op: " + op)
	}
	extOps[op] = fn
}

// registerKind maps a sentinel error of a subsystem to the error kind the
// Python package turns into an exception (python/crewcore/_native.py).
func registerKind(target error, kind string) {
	extMu.Lock()
	defer extMu.Unlock()
	extKinds = append(extKinds, errKind{target, kind})
}

func lookupExt(op string) (extOp, bool) {
	extMu.RLock()
	defer extMu.RUnlock()
	fn, ok := extOps[op]
	return fn, ok
}

func extKindOf(err error) (string, bool) {
	extMu.RLock()
	defer extMu.RUnlock()
	for _, k := range extKinds {
		if errors.Is(err, k.target) {
			return k.kind, true
		}
	}
	return "", false
}
