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
	for name, fn := range ops {
		if name == "panic" {
			continue
		}
		registerOp("pg_"+name, func(ctx context.Context, h int64, r *reader) ([]byte, error) {
			s, err := pgStore(h)
			if err != nil {
				return nil, err
			}
			return fn(ctx, s, r)
		})
	}
}
