package main

// Bridge ops of the embedding layer (package embed), for
// python/crewcore/embeddings/native.py. Clients and caches have their own
// handle tables; a cache is opened once per (target, schema) per process
// and reference-counted.
//
//	embed_client_new    0  config_json                      -> handle
//	embed_client_close  h                                   -> nil
//	embed_client_stats  h                                   -> map
//	embed_texts         h  cache_h ns texts timeout_s       -> [dim, n, vecs bin, hits, misses, tokens, warning]
//	embed_fill          h  cache_h ns texts timeout_s       -> the same, without a cache lookup (after embed_cache_get)
//	embed_cache_open    0  target schema max_bytes mem_bytes -> [handle, off_reason]
//	embed_cache_close   h                                   -> nil
//	embed_cache_get     h  ns texts                         -> [dim, mask bin, vecs bin, warning]
//	embed_cache_put     h  ns texts dim vecs_bin tokens     -> warning
//	embed_cache_stats   h                                   -> map
//	embed_cache_clear   h  ns                               -> deleted
//	embed_cache_flush   h                                   -> nil
//
// cache_h 0 means no cache; ns "" means the client's namespace. A cache
// whose store could not be opened (corrupt, foreign, read-only) still gets
// a handle: it is off, and off_reason says why. "warning" is the reason a
// cache went off, returned once, "" otherwise. Vectors travel as raw
// little-endian float32, n*dim of them.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/crewcore/crewcore/embed"
	"github.com/tinylib/msgp/msgp"
)

var (
	embMu      sync.RWMutex
	embClients = map[int64]*embed.Client{}
	embCaches  = map[int64]*embCacheRef{}
	embByKey   = map[string]int64{}
	embNext    int64
)

type embCacheRef struct {
	c    *embed.Cache
	key  string
	refs int
}

var errEmbedHandle = errors.New("embedding handle is not open")

func embClient(h int64) (*embed.Client, error) {
	embMu.RLock()
	c := embClients[h]
	embMu.RUnlock()
	if c == nil {
		return nil, fmt.Errorf("%w: client %d", errEmbedHandle, h)
	}
	return c, nil
}

func embCache(h int64) (*embed.Cache, error) {
	embMu.RLock()
	r := embCaches[h]
	embMu.RUnlock()
	if r == nil {
		return nil, fmt.Errorf("%w: cache %d", errEmbedHandle, h)
	}
	return r.c, nil
}

// embError gives a dimension error its two lengths.
func embError(err error) error {
	var de *embed.DimensionError
	if errors.As(err, &de) {
		return &bridgeError{kind: "embed_dimension", msg: err.Error(), stored: de.Want, got: de.Got}
	}
	return err
}

func appendVecs(b []byte, vecs [][]float32) []byte {
	n := 0
	for _, v := range vecs {
		n += len(v)
	}
	b = msgp.AppendBytesHeader(b, uint32(4*n))
	for _, v := range vecs {
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return b
}

func warning(c *embed.Cache) string {
	if c == nil {
		return ""
	}
	if w := c.TakeWarning(); w != nil {
		return w.Error()
	}
	return ""
}

func readBin(r *reader, what string) []byte {
	if r.isNil() {
		return nil
	}
	b, rest, err := msgp.ReadBytesZC(r.b)
	if err != nil {
		r.fail(what, err)
		return nil
	}
	r.b = rest
	return b
}

func init() {
	registerKind(embed.ErrInvalid, "invalid_argument")
	registerKind(embed.ErrRateLimited, "embed_rate_limited")
	registerKind(embed.ErrServer, "embed_server")
	registerKind(embed.ErrStatus, "embed_status")
	registerKind(embed.ErrTimeout, "embed_timeout")
	registerKind(embed.ErrConnection, "embed_connection")
	registerKind(embed.ErrDimension, "embed_dimension")
	registerKind(embed.ErrBadResponse, "embed_bad_response")
	registerKind(embed.ErrClosed, "embed_closed")
	registerKind(errEmbedHandle, "embed_closed")
	registerKind(embed.ErrCacheCorrupt, "corrupt")
	registerKind(embed.ErrCacheAccess, "access")
	registerKind(embed.ErrCacheUnavailable, "embed_cache_unavailable")

	registerOp("embed_client_new", func(_ context.Context, _ int64, r *reader) ([]byte, error) {
		cfgJSON := r.str("config")
		if r.err != nil {
			return nil, r.err
		}
		cfg, err := embed.ParseConfig([]byte(cfgJSON))
		if err != nil {
			return nil, err
		}
		c, err := embed.New(cfg)
		if err != nil {
			return nil, err
		}
		embMu.Lock()
		embNext++
		h := embNext
		embClients[h] = c
		embMu.Unlock()
		return msgp.AppendInt64(nil, h), nil
	})

	registerOp("embed_client_close", func(_ context.Context, h int64, _ *reader) ([]byte, error) {
		embMu.Lock()
		c := embClients[h]
		delete(embClients, h)
		embMu.Unlock()
		if c != nil {
			c.Close()
		}
		return msgp.AppendNil(nil), nil
	})

	registerOp("embed_client_stats", func(_ context.Context, h int64, _ *reader) ([]byte, error) {
		c, err := embClient(h)
		if err != nil {
			return nil, err
		}
		s := c.Stats()
		b := msgp.AppendMapHeader(nil, 12)
		for _, kv := range []struct {
			k string
			v int64
		}{{"calls", s.Calls}, {"texts", s.Texts}, {"requests", s.Requests}, {"attempts", s.Attempts},
			{"retries", s.Retries}, {"failures", s.Failures}, {"batched", s.Batched}, {"deduplicated", s.Deduplicated},
			{"sent", s.Sent}, {"tokens", s.Tokens}, {"dimension", int64(c.Dimension())}} {
			b = msgp.AppendString(b, kv.k)
			b = msgp.AppendInt64(b, kv.v)
		}
		b = msgp.AppendString(b, "namespace")
		return msgp.AppendString(b, c.Namespace()), nil
	})

	registerOp("embed_texts", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		return embedOp(ctx, h, r, false)
	})
	registerOp("embed_fill", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		return embedOp(ctx, h, r, true)
	})

	registerOp("embed_cache_open", func(ctx context.Context, _ int64, r *reader) ([]byte, error) {
		target := r.str("target")
		schema := r.str("schema")
		maxBytes := r.int("max_bytes")
		memBytes := r.int("mem_bytes")
		if r.err != nil {
			return nil, r.err
		}
		if target == "" {
			return nil, fmt.Errorf("%w: embedding cache: empty path", embed.ErrInvalid)
		}
		isDSN := strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://")
		key := target
		if isDSN {
			key += "#" + schema
		}
		embMu.Lock()
		defer embMu.Unlock()
		if h, ok := embByKey[key]; ok {
			ref := embCaches[h]
			ref.refs++
			off := ""
			if err := ref.c.Disabled(); err != nil {
				off = err.Error()
			}
			b := msgp.AppendArrayHeader(nil, 2)
			b = msgp.AppendInt64(b, h)
			return msgp.AppendString(b, off), nil
		}
		var store embed.Store
		var err error
		if isDSN {
			store, err = embed.OpenPG(ctx, target, schema, maxBytes)
		} else {
			store, err = embed.OpenSQLite(target, maxBytes)
		}
		if err != nil && errors.Is(err, embed.ErrInvalid) {
			return nil, err
		}
		var c *embed.Cache
		if err != nil {
			c = embed.NewCache(nil, err, &embed.CacheOptions{MemBytes: memBytes})
		} else {
			c = embed.NewCache(store, nil, &embed.CacheOptions{MemBytes: memBytes})
		}
		embNext++
		h := embNext
		embCaches[h] = &embCacheRef{c: c, key: key, refs: 1}
		embByKey[key] = h
		off := ""
		if err := c.Disabled(); err != nil {
			off = err.Error()
			c.TakeWarning() // reported here, not again by the first embed
		}
		b := msgp.AppendArrayHeader(nil, 2)
		b = msgp.AppendInt64(b, h)
		return msgp.AppendString(b, off), nil
	})

	registerOp("embed_cache_close", func(_ context.Context, h int64, _ *reader) ([]byte, error) {
		embMu.Lock()
		ref := embCaches[h]
		if ref != nil {
			ref.refs--
			if ref.refs > 0 {
				ref = nil
			} else {
				delete(embCaches, h)
				delete(embByKey, ref.key)
			}
		}
		embMu.Unlock()
		if ref != nil {
			ref.c.Close()
		}
		return msgp.AppendNil(nil), nil
	})

	registerOp("embed_cache_get", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		ns := r.str("ns")
		texts := r.strs("texts")
		if r.err != nil {
			return nil, r.err
		}
		c, err := embCache(h)
		if err != nil {
			return nil, err
		}
		keys := make([]embed.Key, len(texts))
		for i, t := range texts {
			keys[i] = embed.KeyOf(ns, t)
		}
		got := c.Get(ctx, keys)
		mask := make([]byte, len(texts))
		var hits [][]float32
		dim, tokens := 0, 0
		for i, e := range got {
			if e != nil && (dim == 0 || len(e.Vec) == dim) {
				mask[i] = 1
				dim = len(e.Vec)
				hits = append(hits, e.Vec)
				tokens += e.Tokens
			}
		}
		add := embed.Counters{Hits: int64(len(hits)), Misses: int64(len(texts) - len(hits)), TokensSaved: int64(tokens)}
		if len(hits) == len(texts) && len(texts) > 0 {
			add.CallsSaved = 1
		}
		c.Count(add)
		b := msgp.AppendArrayHeader(nil, 4)
		b = msgp.AppendInt(b, dim)
		b = msgp.AppendBytes(b, mask)
		b = appendVecs(b, hits)
		return msgp.AppendString(b, warning(c)), nil
	})

	registerOp("embed_cache_put", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		ns := r.str("ns")
		texts := r.strs("texts")
		dim := r.int("dim")
		raw := readBin(r, "vectors")
		n, _ := r.arrayLen("tokens")
		tokens := make([]int64, 0, n)
		for range n {
			tokens = append(tokens, r.int("tokens"))
		}
		if r.err != nil {
			return nil, r.err
		}
		c, err := embCache(h)
		if err != nil {
			return nil, err
		}
		if dim <= 0 || dim > 1<<16 || int64(len(raw)) != 4*dim*int64(len(texts)) || (len(tokens) != 0 && len(tokens) != len(texts)) {
			return nil, fmt.Errorf("%w: embed_cache_put: %d texts, dim %d, %d vector bytes, %d token counts do not agree",
				embed.ErrInvalid, len(texts), dim, len(raw), len(tokens))
		}
		entries := make([]*embed.Entry, len(texts))
		var total int64
		for i, t := range texts {
			v := make([]float32, dim)
			for j := range v {
				x := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*(int64(i)*dim+int64(j)):]))
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					return nil, fmt.Errorf("%w: embed_cache_put: vector %d has a NaN or Inf", embed.ErrInvalid, i)
				}
				v[j] = x
			}
			tok := 0
			if len(tokens) > 0 {
				tok = int(tokens[i])
				total += tokens[i]
			}
			entries[i] = &embed.Entry{Key: embed.KeyOf(ns, t), NS: ns, Vec: v, Tokens: tok}
		}
		c.Put(ctx, entries)
		c.Count(embed.Counters{APICalls: 1, APITokens: total})
		return msgp.AppendString(nil, warning(c)), nil
	})

	registerOp("embed_cache_stats", func(ctx context.Context, h int64, _ *reader) ([]byte, error) {
		c, err := embCache(h)
		if err != nil {
			return nil, err
		}
		st, err := c.Stats(ctx)
		if err != nil && st.Off == "" {
			st.Off = err.Error()
		}
		return appendCacheStats(nil, c.Where(), st), nil
	})

	registerOp("embed_cache_clear", func(ctx context.Context, h int64, r *reader) ([]byte, error) {
		ns := r.str("ns")
		if r.err != nil {
			return nil, r.err
		}
		c, err := embCache(h)
		if err != nil {
			return nil, err
		}
		n, err := c.Clear(ctx, ns)
		if err != nil {
			return nil, err
		}
		return msgp.AppendInt64(nil, n), nil
	})

	registerOp("embed_cache_flush", func(ctx context.Context, h int64, _ *reader) ([]byte, error) {
		c, err := embCache(h)
		if err != nil {
			return nil, err
		}
		_ = c.Flush(ctx)
		return msgp.AppendNil(nil), nil
	})
}

// embedOp serves embed_texts and embed_fill (fill: no cache lookup).
func embedOp(ctx context.Context, h int64, r *reader, fill bool) ([]byte, error) {
	ch := r.int("cache")
	ns := r.str("ns")
	texts := r.strs("texts")
	timeout := r.float("timeout")
	if r.err != nil {
		return nil, r.err
	}
	c, err := embClient(h)
	if err != nil {
		return nil, err
	}
	e := &embed.Embedder{Client: c, NS: ns}
	if ch != 0 {
		if e.Cache, err = embCache(ch); err != nil {
			return nil, err
		}
	}
	if timeout < 0 || timeout != timeout || timeout > 1e6 {
		return nil, fmt.Errorf("%w: timeout must be a number of seconds >= 0, got %v", embed.ErrInvalid, timeout)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeout*float64(time.Second)))
		defer cancel()
	}
	embedFn := e.Embed
	if fill {
		embedFn = e.Fill
	}
	res, err := embedFn(ctx, texts)
	if err != nil {
		return nil, embError(err)
	}
	b := msgp.AppendArrayHeader(nil, 7)
	b = msgp.AppendInt(b, res.Dim)
	b = msgp.AppendInt(b, len(res.Vectors))
	b = appendVecs(b, res.Vectors)
	b = msgp.AppendInt(b, res.Hits)
	b = msgp.AppendInt(b, res.Misses)
	b = msgp.AppendInt(b, res.Tokens)
	return msgp.AppendString(b, warning(e.Cache)), nil
}

func appendCounters(b []byte, c embed.Counters) []byte {
	b = msgp.AppendMapHeader(b, 8)
	for _, kv := range []struct {
		k string
		v int64
	}{{"hits", c.Hits}, {"misses", c.Misses}, {"calls_saved", c.CallsSaved}, {"tokens_saved", c.TokensSaved},
		{"api_calls", c.APICalls}, {"api_tokens", c.APITokens}, {"stored", c.Stored}, {"evictions", c.Evictions}} {
		b = msgp.AppendString(b, kv.k)
		b = msgp.AppendInt64(b, kv.v)
	}
	return b
}

// appendCacheStats encodes CacheStats as a map (see crewcore.embeddings.cache_stats).
func appendCacheStats(b []byte, where string, st embed.CacheStats) []byte {
	b = msgp.AppendMapHeader(b, 10)
	b = msgp.AppendString(b, "where")
	b = msgp.AppendString(b, where)
	b = msgp.AppendString(b, "off")
	b = msgp.AppendString(b, st.Off)
	b = msgp.AppendString(b, "entries")
	b = msgp.AppendInt64(b, st.Store.Entries)
	b = msgp.AppendString(b, "bytes")
	b = msgp.AppendInt64(b, st.Store.Bytes)
	b = msgp.AppendString(b, "max_bytes")
	b = msgp.AppendInt64(b, st.Store.MaxBytes)
	b = msgp.AppendString(b, "all_processes")
	b = appendCounters(b, st.Store.Counters)
	b = msgp.AppendString(b, "this_process")
	b = appendCounters(b, st.Process)
	b = msgp.AppendString(b, "memory_entries")
	b = msgp.AppendInt(b, st.MemoryEntries)
	b = msgp.AppendString(b, "memory_bytes")
	b = msgp.AppendInt64(b, st.MemoryBytes)
	b = msgp.AppendString(b, "namespaces")
	b = msgp.AppendArrayHeader(b, uint32(len(st.Store.Namespaces)))
	for _, n := range st.Store.Namespaces {
		b = msgp.AppendArrayHeader(b, 3)
		b = msgp.AppendString(b, n.NS)
		b = msgp.AppendInt64(b, n.Entries)
		b = msgp.AppendInt64(b, n.Bytes)
	}
	return b
}
