package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/crewcore/crewcore/internal/vec"
	"github.com/crewcore/crewcore/internal/version"
	"github.com/crewcore/crewcore/memory"
	"github.com/tinylib/msgp/msgp"
)

// Version is the engine version reported by the "version" op: the release
// stamped into internal/version by the build (pyproject.toml's version).
var Version = version.Version

// bridgeError is an error with the kind the Python side maps to an exception.
type bridgeError struct {
	kind   string
	msg    string
	stored int
	got    int
}

func (e *bridgeError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &bridgeError{kind: "bad_request", msg: fmt.Sprintf(format, args...)}
}

// kindOf maps engine errors to the kinds the Python package knows.
func kindOf(err error) *bridgeError {
	var be *bridgeError
	if errors.As(err, &be) {
		return be
	}
	var de *memory.DimensionError
	if errors.As(err, &de) {
		return &bridgeError{kind: "dimension", msg: err.Error(), stored: de.Stored, got: de.Got}
	}
	kinds := []struct {
		target error
		kind   string
	}{
		{memory.ErrInvalidRecord, "invalid_record"},
		{memory.ErrInvalidScope, "invalid_scope"},
		{memory.ErrInvalidArgument, "invalid_argument"},
		{memory.ErrNotFound, "not_found"},
		{memory.ErrCorrupt, "corrupt"},
		{memory.ErrAccess, "access"},
		{memory.ErrTimeout, "timeout"},
		{memory.ErrClosed, "closed"},
	}
	for _, k := range kinds {
		if errors.Is(err, k.target) {
			return &bridgeError{kind: k.kind, msg: err.Error()}
		}
	}
	if kind, ok := extKindOf(err); ok {
		return &bridgeError{kind: kind, msg: err.Error()}
	}
	return &bridgeError{kind: "io", msg: err.Error()}
}

func encodeError(err error) []byte {
	be := kindOf(err)
	b := msgp.AppendMapHeader(nil, 4)
	b = msgp.AppendString(b, "kind")
	b = msgp.AppendString(b, be.kind)
	b = msgp.AppendString(b, "message")
	b = msgp.AppendString(b, be.msg)
	b = msgp.AppendString(b, "stored_dim")
	b = msgp.AppendInt(b, be.stored)
	b = msgp.AppendString(b, "new_dim")
	b = msgp.AppendInt(b, be.got)
	return b
}

// Open stores, addressed by handle.
var (
	handlesMu  sync.RWMutex
	handles    = map[int64]*memory.Store{}
	nextHandle int64
)

func store(h int64) (*memory.Store, error) {
	handlesMu.RLock()
	s := handles[h]
	handlesMu.RUnlock()
	if s == nil {
		return nil, &bridgeError{kind: "closed", msg: fmt.Sprintf("memory store handle %d is not open", h)}
	}
	return s, nil
}

// reader walks the positional arguments of a request.
type reader struct {
	b   []byte
	err error
	// arena, when set, holds the vectors the reader decodes (see
	// floatArena): only for ops whose callee keeps no vector after it
	// returns.
	arena *floatArena
}

// floatArena hands out the float32 slices of one request's vectors from a
// few large pooled buffers. A batch of 100 records of 3072 dimensions is
// 1.2 MiB of vectors that the store writes to its segment and forgets: as
// fresh allocations they made the Go heap grow by that much per call, and
// the collector then ran about every twenty batches, marking the whole
// index (about a tenth of a save's CPU).
type floatArena struct {
	chunks [][]float32
	cur    []float32
}

var arenas = sync.Pool{New: func() any { return new(floatArena) }}

// arenaChunk is the smallest buffer an arena allocates (4 MiB).
const arenaChunk = 1 << 20

// take returns n float32s, valid until the arena is released.
func (a *floatArena) take(n int) []float32 {
	if cap(a.cur)-len(a.cur) < n {
		size := max(n, arenaChunk)
		if len(a.chunks) > 0 {
			size = max(n, 2*cap(a.chunks[len(a.chunks)-1]))
		}
		a.cur = make([]float32, 0, size)
		a.chunks = append(a.chunks, a.cur)
	}
	off := len(a.cur)
	a.cur = a.cur[:off+n]
	return a.cur[off : off+n : off+n]
}

// useArena makes the reader decode vectors into a pooled arena until the
// function it returns is called, which releases the arena.
func (r *reader) useArena() func() {
	r.arena = arenas.Get().(*floatArena)
	return func() {
		a := r.arena
		r.arena = nil
		a.release()
	}
}

// release returns the arena to the pool, keeping its largest buffer.
func (a *floatArena) release() {
	var big []float32
	for _, c := range a.chunks {
		if cap(c) > cap(big) {
			big = c
		}
	}
	a.chunks = a.chunks[:0]
	a.cur = nil
	if big != nil {
		a.cur = big[:0]
		a.chunks = append(a.chunks, a.cur)
	}
	arenas.Put(a)
}

func (r *reader) fail(what string, err error) {
	if r.err == nil {
		r.err = badRequest("decode %s: %v", what, err)
	}
}

func (r *reader) isNil() bool {
	if r.err != nil || len(r.b) == 0 {
		return true
	}
	if msgp.IsNil(r.b) {
		r.b = r.b[1:]
		return true
	}
	return false
}

func (r *reader) str(what string) string {
	if r.isNil() {
		return ""
	}
	s, rest, err := msgp.ReadStringBytes(r.b)
	if err != nil {
		r.fail(what, err)
		return ""
	}
	r.b = rest
	return s
}

func (r *reader) int(what string) int64 {
	if r.isNil() {
		return 0
	}
	v, rest, err := msgp.ReadInt64Bytes(r.b)
	if err != nil {
		r.fail(what, err)
		return 0
	}
	r.b = rest
	return v
}

func (r *reader) float(what string) float64 {
	if r.isNil() {
		return 0
	}
	switch msgp.NextType(r.b) {
	case msgp.IntType, msgp.UintType:
		return float64(r.int(what))
	}
	v, rest, err := msgp.ReadFloat64Bytes(r.b)
	if err != nil {
		r.fail(what, err)
		return 0
	}
	r.b = rest
	return v
}

func (r *reader) bool(what string) bool {
	if r.isNil() {
		return false
	}
	v, rest, err := msgp.ReadBoolBytes(r.b)
	if err != nil {
		r.fail(what, err)
		return false
	}
	r.b = rest
	return v
}

func (r *reader) arrayLen(what string) (int, bool) {
	if r.isNil() {
		return 0, false
	}
	n, rest, err := msgp.ReadArrayHeaderBytes(r.b)
	if err != nil {
		r.fail(what, err)
		return 0, false
	}
	if int(n) > len(rest) {
		// Every element takes at least one byte: a larger count is a lie
		// that would otherwise allocate without bound.
		r.fail(what, fmt.Errorf("array of %d elements in %d bytes", n, len(rest)))
		return 0, false
	}
	r.b = rest
	return int(n), true
}

func (r *reader) strs(what string) []string {
	n, ok := r.arrayLen(what)
	if !ok {
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		out = append(out, r.str(what))
	}
	return out
}

// vector reads raw little-endian float32 bytes into a new slice.
func (r *reader) vector(what string) []float32 {
	if r.isNil() {
		return nil
	}
	b, rest, err := msgp.ReadBytesZC(r.b)
	if err != nil {
		r.fail(what, err)
		return nil
	}
	r.b = rest
	if len(b)%4 != 0 {
		r.fail(what, fmt.Errorf("%d bytes is not a whole number of float32", len(b)))
		return nil
	}
	var v []float32
	if r.arena != nil {
		v = r.arena.take(len(b) / 4)
	} else {
		v = make([]float32, len(b)/4)
	}
	vec.FromLittleEndian(v, b)
	return v
}

func (r *reader) jsonMap(what string) map[string]any {
	s := r.str(what)
	if s == "" {
		return nil
	}
	m, err := memory.DecodeJSONObject(s)
	if err != nil {
		r.fail(what, err)
	}
	return m
}

func (r *reader) time(what string) time.Time {
	s := r.str(what)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(memory.TimeLayout, s)
	if err != nil {
		r.fail(what, err)
	}
	return t
}

func (r *reader) record() memory.Record {
	n, ok := r.arrayLen("record")
	if !ok || n != 11 {
		if r.err == nil {
			r.err = badRequest("a record is an array of 11 fields, got %d", n)
		}
		return memory.Record{}
	}
	var rec memory.Record
	rec.ID = r.str("id")
	rec.Content = r.str("content")
	rec.Scope = r.str("scope")
	rec.Categories = r.strs("categories")
	if m := r.str("metadata"); m != "" {
		rec.Metadata = json.RawMessage(m)
	}
	rec.Importance = r.float("importance")
	rec.CreatedAt = r.time("created_at")
	rec.LastAccessed = r.time("last_accessed")
	rec.Source = r.str("source")
	rec.Private = r.bool("private")
	rec.Embedding = r.vector("embedding")
	return rec
}

func appendRecord(b []byte, rec *memory.Record, extra int) []byte {
	b = msgp.AppendArrayHeader(b, uint32(11+extra))
	b = msgp.AppendString(b, rec.ID)
	b = msgp.AppendString(b, rec.Content)
	b = msgp.AppendString(b, rec.Scope)
	b = msgp.AppendArrayHeader(b, uint32(len(rec.Categories)))
	for _, c := range rec.Categories {
		b = msgp.AppendString(b, c)
	}
	if len(rec.Metadata) == 0 {
		b = msgp.AppendString(b, "{}")
	} else {
		b = msgp.AppendStringFromBytes(b, rec.Metadata)
	}
	b = msgp.AppendFloat64(b, rec.Importance)
	b = msgp.AppendString(b, rec.CreatedAt.UTC().Format(memory.TimeLayout))
	b = msgp.AppendString(b, rec.LastAccessed.UTC().Format(memory.TimeLayout))
	if rec.Source == "" {
		b = msgp.AppendNil(b)
	} else {
		b = msgp.AppendString(b, rec.Source)
	}
	b = msgp.AppendBool(b, rec.Private)
	if rec.Embedding == nil {
		b = msgp.AppendNil(b)
	} else {
		b = msgp.AppendBytesHeader(b, uint32(4*len(rec.Embedding)))
		for _, x := range rec.Embedding {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return b
}

// dispatch decodes one request, runs it and encodes the response.
func dispatch(in []byte) ([]byte, error) {
	n, rest, err := msgp.ReadArrayHeaderBytes(in)
	if err != nil || n < 2 {
		return nil, badRequest("a request is an array [op, handle, args...]")
	}
	r := &reader{b: rest}
	op := r.str("op")
	h := r.int("handle")
	if r.err != nil {
		return nil, r.err
	}
	ctx := context.Background()
	if op == "version" {
		b := msgp.AppendArrayHeader(nil, 2)
		b = msgp.AppendString(b, Version)
		return msgp.AppendString(b, vec.Kernel()), nil
	}
	if op == "open" {
		path := r.str("path")
		dim := r.int("dim")
		metric := r.str("metric")
		exactBelow := r.int("exact_below")
		if r.err != nil {
			return nil, r.err
		}
		m, err := memory.ParseMetric(metric)
		if err != nil {
			return nil, err
		}
		s, err := memory.Open(path, &memory.Options{Dim: int(dim), Metric: m, ExactBelow: int(exactBelow)})
		if err != nil {
			return nil, err
		}
		handlesMu.Lock()
		nextHandle++
		id := nextHandle
		handles[id] = s
		handlesMu.Unlock()
		b := msgp.AppendArrayHeader(nil, 2)
		b = msgp.AppendInt64(b, id)
		return msgp.AppendInt(b, s.Dim()), nil
	}
	if op == "close" {
		handlesMu.Lock()
		s := handles[h]
		delete(handles, h)
		handlesMu.Unlock()
		if s != nil {
			if err := s.Close(); err != nil {
				return nil, err
			}
		}
		return msgp.AppendNil(nil), nil
	}
	if op == "memory_save_index_all" {
		// [op, 0]: every open store writes its index snapshot if stale (the
		// Python package calls it at exit: stores are seldom closed).
		handlesMu.Lock()
		open := make([]*memory.Store, 0, len(handles))
		for _, s := range handles {
			open = append(open, s)
		}
		handlesMu.Unlock()
		for _, s := range open {
			s.SaveIndex(ctx)
		}
		return msgp.AppendNil(nil), nil
	}
	if fn, ok := lookupExt(op); ok {
		return fn(ctx, h, r)
	}
	fn, ok := ops[op]
	if !ok {
		return nil, badRequest("unknown op %q", op)
	}
	s, err := store(h)
	if err != nil {
		return nil, err
	}
	return fn(ctx, s, r)
}

// opFunc is a memory op. It is written against memory.Backend so the same
// table serves the embedded store here and the PostgreSQL store (postgres.go).
type opFunc func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error)

var ops = map[string]opFunc{
	"save": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		// Both backends are done with the vectors when Save returns (the
		// embedded store has written them to its segment, PostgreSQL has
		// sent them), and the writer answers every queued job before it
		// returns (sqlitedb.DB.submit).
		defer r.useArena()()
		n, _ := r.arrayLen("records")
		recs := make([]memory.Record, 0, n)
		for range n {
			recs = append(recs, r.record())
		}
		if r.err != nil {
			return nil, r.err
		}
		if err := s.Save(ctx, recs); err != nil {
			return nil, err
		}
		return msgp.AppendInt(nil, s.Dim()), nil
	},
	"update": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		defer r.useArena()() // as in "save"
		rec := r.record()
		if r.err != nil {
			return nil, r.err
		}
		return msgp.AppendNil(nil), s.Update(ctx, rec)
	},
	"search": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		q := memory.Query{Vector: r.vector("query")}
		q.ScopePrefix = r.str("scope_prefix")
		q.Categories = r.strs("categories")
		q.Metadata = r.jsonMap("metadata_filter")
		q.Limit = int(min(r.int("limit"), math.MaxInt32))
		q.MinScore = r.float("min_score")
		if !r.isNil() {
			p := r.str("privacy")
			q.Privacy = &p
		}
		q.WithEmbeddings = r.bool("with_embeddings")
		if r.err != nil {
			return nil, r.err
		}
		if q.Vector == nil {
			return nil, &bridgeError{kind: "invalid_argument", msg: "search needs a non-empty query vector"}
		}
		ms, err := s.Search(ctx, q)
		if err != nil {
			return nil, err
		}
		b := msgp.AppendArrayHeader(make([]byte, 0, 256*len(ms)+16), uint32(len(ms)))
		for i := range ms {
			b = appendRecord(b, &ms[i].Record, 1)
			b = msgp.AppendFloat64(b, ms[i].Score)
		}
		return b, nil
	},
	"delete": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		var f memory.Filter
		f.ScopePrefix = r.str("scope_prefix")
		f.Categories = r.strs("categories")
		f.IDs = r.strs("record_ids")
		f.OlderThan = r.time("older_than")
		f.Metadata = r.jsonMap("metadata_filter")
		if r.err != nil {
			return nil, r.err
		}
		n, err := s.Delete(ctx, f)
		if err != nil {
			return nil, err
		}
		return msgp.AppendInt(nil, n), nil
	},
	"get": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		id := r.str("id")
		if r.err != nil {
			return nil, r.err
		}
		rec, ok, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			return msgp.AppendNil(nil), nil
		}
		return appendRecord(nil, &rec, 0), nil
	},
	"list": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		prefix := r.str("scope_prefix")
		limit := int(min(r.int("limit"), math.MaxInt32))
		offset := int(min(r.int("offset"), math.MaxInt32))
		withVectors := r.bool("with_embeddings")
		if r.err != nil {
			return nil, r.err
		}
		list := s.List
		if withVectors {
			list = s.ListWithVectors
		}
		recs, err := list(ctx, prefix, limit, offset)
		if err != nil {
			return nil, err
		}
		b := msgp.AppendArrayHeader(nil, uint32(len(recs)))
		for i := range recs {
			b = appendRecord(b, &recs[i], 0)
		}
		return b, nil
	},
	"scope_info": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		scope := r.str("scope")
		if r.err != nil {
			return nil, r.err
		}
		info, err := s.ScopeInfo(ctx, scope)
		if err != nil {
			return nil, err
		}
		b := msgp.AppendArrayHeader(nil, 6)
		b = msgp.AppendString(b, info.Path)
		b = msgp.AppendInt(b, info.Count)
		b = appendStrings(b, info.Categories)
		if info.Count == 0 {
			b = msgp.AppendNil(msgp.AppendNil(b))
		} else {
			b = msgp.AppendString(b, info.Oldest.UTC().Format(memory.TimeLayout))
			b = msgp.AppendString(b, info.Newest.UTC().Format(memory.TimeLayout))
		}
		return appendStrings(b, info.Children), nil
	},
	"list_scopes": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		parent := r.str("parent")
		if r.err != nil {
			return nil, r.err
		}
		sc, err := s.ListScopes(ctx, parent)
		if err != nil {
			return nil, err
		}
		return appendStrings(nil, sc), nil
	},
	"list_categories": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		prefix := r.str("scope_prefix")
		if r.err != nil {
			return nil, r.err
		}
		cats, err := s.ListCategories(ctx, prefix)
		if err != nil {
			return nil, err
		}
		b := msgp.AppendMapHeader(nil, uint32(len(cats)))
		for c, n := range cats {
			b = msgp.AppendString(b, c)
			b = msgp.AppendInt(b, n)
		}
		return b, nil
	},
	"count": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		prefix := r.str("scope_prefix")
		if r.err != nil {
			return nil, r.err
		}
		n, err := s.Count(ctx, prefix)
		if err != nil {
			return nil, err
		}
		return msgp.AppendInt(nil, n), nil
	},
	"reset": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		prefix := r.str("scope_prefix")
		if r.err != nil {
			return nil, r.err
		}
		return msgp.AppendNil(nil), s.Reset(ctx, prefix)
	},
	"touch": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		ids := r.strs("record_ids")
		if r.err != nil {
			return nil, r.err
		}
		return msgp.AppendNil(nil), s.Touch(ctx, ids)
	},
	"optimize": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		return msgp.AppendNil(nil), s.Optimize(ctx)
	},
	"dim": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		return msgp.AppendInt(nil, s.Dim()), nil
	},
	"panic": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
		// Exists so tests can prove a Go panic never crosses the boundary.
		var m map[string]int
		m["boom"]++
		return nil, nil
	},
}

func appendStrings(b []byte, ss []string) []byte {
	b = msgp.AppendArrayHeader(b, uint32(len(ss)))
	for _, s := range ss {
		b = msgp.AppendString(b, s)
	}
	return b
}
