package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/crewcore/crewcore/memory"
	"github.com/crewcore/crewcore/pgmemory"
	"github.com/tinylib/msgp/msgp"
)

// Bridge ops of the PostgreSQL memory store (package pgmemory), for
// python/crewcore/_postgres.py. They mirror the memory ops of ops.go with a
// "pg_" prefix and their own handle table:
//
//	["pg_open", 0, dsn, schema, dim, metric, exact_below, ef_search, retry_ms?] -> [handle, dim]
//	["pg_close", h]
//	["pg_save", h, [record...]] -> dim      (and the other memory ops alike)
var (
	pgMu      sync.RWMutex
	pgHandles = map[int64]*pgmemory.Store{}
	pgNext    int64
)

func pgStore(h int64) (*pgmemory.Store, error) {
	pgMu.RLock()
	s := pgHandles[h]
	pgMu.RUnlock()
	if s == nil {
		return nil, &bridgeError{kind: "closed", msg: fmt.Sprintf("postgres memory store handle %d is not open", h)}
	}
	return s, nil
}

// backendOp is a memory op written against memory.Backend.
type backendOp func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error)

func init() {
	registerKind(pgmemory.ErrNoVector, "pg_no_vector")
	registerKind(pgmemory.ErrUnavailable, "pg_unavailable")
	registerKind(pgmemory.ErrSchema, "corrupt")

	registerOp("pg_open", func(ctx context.Context, _ int64, r *reader) ([]byte, error) {
		dsn := r.str("dsn")
		schema := r.str("schema")
		dim := r.int("dim")
		metric := r.str("metric")
		exactBelow := r.int("exact_below")
		ef := r.int("ef_search")
		retryMS := r.int("retry_ms") // optional: 0 (absent) is the default
		if r.err != nil {
			return nil, r.err
		}
		m, err := memory.ParseMetric(metric)
		if err != nil {
			return nil, err
		}
		if dim < 0 || dim > math.MaxInt32 || ef < 0 || ef > math.MaxInt32 || exactBelow > math.MaxInt32 || exactBelow < math.MinInt32 {
			return nil, &bridgeError{kind: "invalid_argument", msg: "pg_open: dim, exact_below or ef_search out of range"}
		}
		s, err := pgmemory.Open(ctx, dsn, &pgmemory.Options{Schema: schema, Dim: int(dim), Metric: m,
			ExactBelow: int(exactBelow), EfSearch: int(ef), RetryFor: time.Duration(max(retryMS, 0)) * time.Millisecond})
		if err != nil {
			return nil, err
		}
		pgMu.Lock()
		pgNext++
		id := pgNext
		pgHandles[id] = s
		pgMu.Unlock()
		b := msgp.AppendArrayHeader(nil, 2)
		b = msgp.AppendInt64(b, id)
		return msgp.AppendInt(b, s.Dim()), nil
	})
	registerOp("pg_close", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		pgMu.Lock()
		s := pgHandles[h]
		delete(pgHandles, h)
		pgMu.Unlock()
		if s != nil {
			if err := s.Close(); err != nil {
				return nil, err
			}
		}
		return msgp.AppendNil(nil), nil
	})
	registerOp("pg_drop_schema", func(ctx context.Context, _ int64, r *reader) ([]byte, error) {
		dsn, schema := r.str("dsn"), r.str("schema")
		if r.err != nil {
			return nil, r.err
		}
		return msgp.AppendNil(nil), pgmemory.DropSchema(ctx, dsn, schema)
	})
	registerOp("pg_build_index", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		s, err := pgStore(h)
		if err != nil {
			return nil, err
		}
		return msgp.AppendNil(nil), s.BuildIndex(ctx)
	})
	for name, fn := range backendOps {
		registerOp("pg_"+name, func(ctx context.Context, h int64, r *reader) ([]byte, error) {
			s, err := pgStore(h)
			if err != nil {
				return nil, err
			}
			return fn(ctx, s, r)
		})
	}
}

// backendOps are the memory ops of ops.go over any memory.Backend.
var backendOps = map[string]backendOp{
	"save": func(ctx context.Context, s memory.Backend, r *reader) ([]byte, error) {
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
}
