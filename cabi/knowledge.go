package main

// Bridge ops of the knowledge store (issue 16), package knowledge. Registered
// from init; handles are this file's own table, one store per file per
// process.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/crewcore/crewcore/internal/vec"
	"github.com/crewcore/crewcore/knowledge"
	"github.com/crewcore/crewcore/pgknowledge"
	"github.com/tinylib/msgp/msgp"
)

// knBackend is a knowledge store: the embedded one (package knowledge) or
// the PostgreSQL one (package pgknowledge), with the same semantics.
type knBackend interface {
	Missing(ctx context.Context, collection string, ids []string) ([]string, error)
	Save(ctx context.Context, collection string, chunks []knowledge.Chunk) (int, error)
	Search(ctx context.Context, collection string, q knowledge.Query) ([]knowledge.Hit, error)
	Reset(ctx context.Context, collection string) (bool, error)
	ResetAll(ctx context.Context) error
	Collections(ctx context.Context) ([]knowledge.CollectionInfo, error)
	FTS() bool
	Path() string
	Close() error
}

var (
	knMu     sync.Mutex
	knNext   int64
	knByH    = map[int64]knBackend{}
	knByPath = map[string]int64{}
	knKey    = map[int64]string{}
)

func init() {
	registerKind(knowledge.ErrInvalidDocument, "kn_invalid_document")
	registerKind(knowledge.ErrInvalidArgument, "invalid_argument")
	registerKind(knowledge.ErrNotFound, "kn_not_found")
	registerKind(knowledge.ErrNoFTS, "kn_no_fts")
	registerKind(knowledge.ErrCorrupt, "corrupt")
	registerKind(knowledge.ErrClosed, "closed")
	registerKind(pgknowledge.ErrUnavailable, "pg_unavailable")

	registerOp("kn_open", opKnOpen)
	registerOp("kn_close", opKnClose)
	registerOp("kn_missing", opKnMissing)
	registerOp("kn_save", opKnSave)
	registerOp("kn_search", opKnSearch)
	registerOp("kn_reset", opKnReset)
	registerOp("kn_reset_all", opKnResetAll)
	registerOp("kn_stats", opKnStats)
}

// knErr turns a dimension mismatch into the bridge's kn_dimension kind
// (with both dimensions); other errors map through registerKind.
func knErr(err error) error {
	var de *knowledge.DimensionError
	if errors.As(err, &de) {
		return &bridgeError{kind: "kn_dimension", msg: err.Error(), stored: de.Stored, got: de.Got}
	}
	return err
}

func knStore(h int64) (knBackend, error) {
	knMu.Lock()
	defer knMu.Unlock()
	if s := knByH[h]; s != nil {
		return s, nil
	}
	return nil, &bridgeError{kind: "closed", msg: fmt.Sprintf("knowledge store handle %d is not open", h)}
}

// kn_open [op, 0, path or postgresql:// DSN (#schema), timeout_seconds|nil,
// no_fts] -> [handle, fts]
func opKnOpen(ctx context.Context, _ int64, r *reader) ([]byte, error) {
	path := r.str("path")
	timeout, _ := argSeconds(r, "timeout", 0)
	noFTS := r.bool("no_fts")
	if r.err != nil {
		return nil, r.err
	}
	if path == "" {
		return nil, badRequest("empty knowledge store path")
	}
	if timeout < 0 || timeout > 24*time.Hour {
		timeout = 0
	}
	key := path
	pg := strings.HasPrefix(path, "postgres://") || strings.HasPrefix(path, "postgresql://")
	if !pg {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		key = abs
	}
	knMu.Lock()
	defer knMu.Unlock()
	if id, ok := knByPath[key]; ok {
		return appendOpen(id, knByH[id]), nil
	}
	var s knBackend
	var err error
	if pg {
		dsn, schema, _ := strings.Cut(path, "#")
		s, err = pgknowledge.Open(ctx, dsn, &pgknowledge.Options{Schema: schema})
	} else {
		s, err = knowledge.Open(key, &knowledge.Options{Timeout: timeout, NoFTS: noFTS})
	}
	if err != nil {
		return nil, err
	}
	knNext++
	id := knNext
	knByH[id] = s
	knByPath[key] = id
	knKey[id] = key
	return appendOpen(id, s), nil
}

func appendOpen(id int64, s knBackend) []byte {
	b := msgp.AppendArrayHeader(nil, 2)
	b = msgp.AppendInt64(b, id)
	return msgp.AppendBool(b, s.FTS())
}

// kn_close [op, handle]
func opKnClose(_ context.Context, h int64, _ *reader) ([]byte, error) {
	knMu.Lock()
	s := knByH[h]
	delete(knByH, h)
	delete(knByPath, knKey[h])
	delete(knKey, h)
	knMu.Unlock()
	if s != nil {
		if err := s.Close(); err != nil {
			return nil, err
		}
	}
	return msgp.AppendNil(nil), nil
}

// kn_missing [op, handle, collection, [ids]] -> [ids not stored]
func opKnMissing(ctx context.Context, h int64, r *reader) ([]byte, error) {
	coll := r.str("collection")
	ids := r.strs("ids")
	if r.err != nil {
		return nil, r.err
	}
	s, err := knStore(h)
	if err != nil {
		return nil, err
	}
	miss, err := s.Missing(ctx, coll, ids)
	if err != nil {
		return nil, knErr(err)
	}
	return appendStrings(nil, miss), nil
}

// kn_save [op, handle, collection, [ids], [contents], [metadata json], dim,
// vectors (bin: n*dim little-endian float32)] -> added
func opKnSave(ctx context.Context, h int64, r *reader) ([]byte, error) {
	coll := r.str("collection")
	ids := r.strs("ids")
	contents := r.strs("contents")
	metas := r.strs("metadata")
	dim := r.int("dim")
	raw := r.rawBytes("vectors")
	if r.err != nil {
		return nil, r.err
	}
	n := len(ids)
	if len(contents) != n || len(metas) != n {
		return nil, badRequest("kn_save: %d ids, %d contents, %d metadata", n, len(contents), len(metas))
	}
	if dim < 0 || dim > 1<<20 || (n > 0 && dim == 0) || int64(len(raw)) != int64(n)*dim*4 {
		return nil, badRequest("kn_save: %d vector bytes for %d chunks of dimension %d", len(raw), n, dim)
	}
	s, err := knStore(h)
	if err != nil {
		return nil, err
	}
	chunks := make([]knowledge.Chunk, n)
	arena := make([]float32, int64(n)*dim)
	vec.FromLittleEndian(arena, raw)
	for i := range chunks {
		chunks[i] = knowledge.Chunk{ID: ids[i], Content: contents[i], Metadata: metas[i],
			Embedding: arena[int64(i)*dim : int64(i+1)*dim]}
	}
	added, err := s.Save(ctx, coll, chunks)
	if err != nil {
		return nil, knErr(err)
	}
	return msgp.AppendInt(nil, added), nil
}

// kn_search [op, handle, collection, mode, text, vector (bin)|nil, limit,
// filter json, threshold, rrf_k] -> [[id, content, metadata, score,
// vector_score, keyword_score], ...]
func opKnSearch(ctx context.Context, h int64, r *reader) ([]byte, error) {
	coll := r.str("collection")
	mode := r.str("mode")
	text := r.str("text")
	v := r.vector("vector")
	limit := r.int("limit")
	filter := r.str("filter")
	threshold := r.float("threshold")
	rrfk := r.int("rrf_k")
	if r.err != nil {
		return nil, r.err
	}
	m, err := knowledge.ParseMode(mode)
	if err != nil {
		return nil, err
	}
	if limit > math.MaxInt32 {
		limit = math.MaxInt32
	}
	if rrfk < 0 || rrfk > 1<<20 {
		return nil, fmt.Errorf("%w: rrf_k %d out of range", knowledge.ErrInvalidArgument, rrfk)
	}
	s, err := knStore(h)
	if err != nil {
		return nil, err
	}
	hits, err := s.Search(ctx, coll, knowledge.Query{Mode: m, Text: text, Vector: v, Limit: int(limit),
		Filter: filter, Threshold: threshold, RRFK: int(rrfk)})
	if err != nil {
		return nil, knErr(err)
	}
	b := msgp.AppendArrayHeader(nil, uint32(len(hits)))
	for i := range hits {
		x := &hits[i]
		b = msgp.AppendArrayHeader(b, 6)
		b = msgp.AppendString(b, x.ID)
		b = msgp.AppendString(b, x.Content)
		b = msgp.AppendString(b, x.Metadata)
		b = msgp.AppendFloat64(b, x.Score)
		b = msgp.AppendFloat64(b, x.VectorScore)
		b = msgp.AppendFloat64(b, x.KeywordScore)
	}
	return b, nil
}

// kn_reset [op, handle, collection] -> existed
func opKnReset(ctx context.Context, h int64, r *reader) ([]byte, error) {
	coll := r.str("collection")
	if r.err != nil {
		return nil, r.err
	}
	s, err := knStore(h)
	if err != nil {
		return nil, err
	}
	ok, err := s.Reset(ctx, coll)
	if err != nil {
		return nil, knErr(err)
	}
	return msgp.AppendBool(nil, ok), nil
}

// kn_reset_all [op, handle]
func opKnResetAll(ctx context.Context, h int64, _ *reader) ([]byte, error) {
	s, err := knStore(h)
	if err != nil {
		return nil, err
	}
	return msgp.AppendNil(nil), s.ResetAll(ctx)
}

// kn_stats [op, handle] -> [[name, dim, chunks, indexed, created_at], ...]
func opKnStats(ctx context.Context, h int64, _ *reader) ([]byte, error) {
	s, err := knStore(h)
	if err != nil {
		return nil, err
	}
	infos, err := s.Collections(ctx)
	if err != nil {
		return nil, err
	}
	b := msgp.AppendArrayHeader(nil, uint32(len(infos)))
	for _, ci := range infos {
		b = msgp.AppendArrayHeader(b, 5)
		b = msgp.AppendString(b, ci.Name)
		b = msgp.AppendInt(b, ci.Dim)
		b = msgp.AppendInt(b, ci.Chunks)
		b = msgp.AppendBool(b, ci.Indexed)
		b = msgp.AppendString(b, ci.Created)
	}
	return b, nil
}

// rawBytes reads a bin argument without copying (nil: empty).
func (r *reader) rawBytes(what string) []byte {
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
