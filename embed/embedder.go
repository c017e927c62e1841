package embed

import (
	"context"
	"fmt"
)

// Embedder answers embedding calls from a Cache when it can and from a
// Client otherwise, storing what the Client returns. Cache may be nil (no
// cache). Safe for concurrent use.
type Embedder struct {
	Client *Client
	Cache  *Cache
	// NS is the cache namespace ("": Client.Namespace()).
	NS string
}

// Result is the answer of Embedder.Embed.
type Result struct {
	// Vectors holds one vector per text, in order; all have length Dim.
	Vectors [][]float32
	Dim     int
	// Hits and Misses count the texts answered by the cache and by the API
	// (equal texts in one call count once as a miss).
	Hits, Misses int
	// Tokens is what the provider counted for the misses.
	Tokens int
}

// Embed returns one vector per text. On an API failure nothing is stored.
func (e *Embedder) Embed(ctx context.Context, texts []string) (Result, error) {
	if e.Client == nil {
		return Result{}, fmt.Errorf("%w: embedder without a client", ErrInvalid)
	}
	if e.Cache == nil || e.Cache.isOff() {
		resp, err := e.Client.Embed(ctx, texts)
		if err != nil {
			return Result{}, err
		}
		return Result{Vectors: resp.Vectors, Dim: dimOf(resp.Vectors), Misses: len(texts), Tokens: resp.Tokens}, nil
	}
	ns := e.NS
	if ns == "" {
		ns = e.Client.Namespace()
	}
	keys := make([]Key, len(texts))
	for i, t := range texts {
		keys[i] = KeyOf(ns, t)
	}
	hits := e.Cache.Get(ctx, keys)
	res := Result{Vectors: make([][]float32, len(texts))}
	var missing []string
	seen := map[Key]int{}
	hitTokens := 0
	for i, h := range hits {
		if h != nil && (res.Dim == 0 || len(h.Vec) == res.Dim) {
			res.Vectors[i] = h.Vec
			res.Dim = len(h.Vec)
			res.Hits++
			hitTokens += h.Tokens
			continue
		}
		if _, ok := seen[keys[i]]; !ok {
			seen[keys[i]] = len(missing)
			missing = append(missing, texts[i])
		}
	}
	if len(missing) == 0 {
		e.Cache.Count(Counters{Hits: int64(res.Hits), CallsSaved: 1, TokensSaved: int64(hitTokens)})
		return res, nil
	}
	if res.Dim > 0 {
		e.Client.expectDimension(res.Dim)
	}
	resp, err := e.Client.Embed(ctx, missing)
	if err != nil {
		e.Cache.Count(Counters{Hits: int64(res.Hits), Misses: int64(len(missing))})
		return Result{}, err
	}
	fresh := dimOf(resp.Vectors)
	if res.Dim != 0 && fresh != res.Dim {
		// The cache holds another length for this namespace than the API
		// returns now: trust the API for the whole call.
		all, err := e.Client.Embed(ctx, texts)
		if err != nil {
			return Result{}, err
		}
		return Result{Vectors: all.Vectors, Dim: dimOf(all.Vectors), Misses: len(texts), Tokens: resp.Tokens + all.Tokens}, nil
	}
	res.Dim = fresh
	entries := make([]*Entry, len(missing))
	for j, t := range missing {
		tok := 0
		if j < len(resp.PerText) {
			tok = resp.PerText[j]
		}
		entries[j] = &Entry{Key: KeyOf(ns, t), NS: ns, Vec: resp.Vectors[j], Tokens: tok}
	}
	for i := range texts {
		if res.Vectors[i] == nil {
			res.Vectors[i] = resp.Vectors[seen[keys[i]]]
		}
	}
	res.Misses = len(missing)
	res.Tokens = resp.Tokens
	e.Cache.Put(ctx, entries)
	e.Cache.Count(Counters{Hits: int64(res.Hits), Misses: int64(len(missing)), TokensSaved: int64(hitTokens),
		APICalls: 1, APITokens: int64(resp.Tokens)})
	return res, nil
}

func dimOf(v [][]float32) int {
	if len(v) == 0 {
		return 0
	}
	return len(v[0])
}

// expectDimension sets the expected length when none is known yet.
func (c *Client) expectDimension(d int) {
	if d > 0 {
		c.dim.CompareAndSwap(0, int64(d))
	}
}

// Fill embeds texts through the Client and stores them, without looking
// them up first: for callers that have looked them up already (their
// hits and misses are counted then). Equal texts are sent once.
func (e *Embedder) Fill(ctx context.Context, texts []string) (Result, error) {
	if e.Client == nil {
		return Result{}, fmt.Errorf("%w: embedder without a client", ErrInvalid)
	}
	resp, err := e.Client.Embed(ctx, texts)
	if err != nil {
		return Result{}, err
	}
	res := Result{Vectors: resp.Vectors, Dim: dimOf(resp.Vectors), Misses: len(texts), Tokens: resp.Tokens}
	if e.Cache == nil || e.Cache.isOff() {
		return res, nil
	}
	ns := e.NS
	if ns == "" {
		ns = e.Client.Namespace()
	}
	entries := make([]*Entry, 0, len(texts))
	seen := make(map[string]bool, len(texts))
	for j, t := range texts {
		if seen[t] {
			continue
		}
		seen[t] = true
		tok := 0
		if j < len(resp.PerText) {
			tok = resp.PerText[j]
		}
		entries = append(entries, &Entry{Key: KeyOf(ns, t), NS: ns, Vec: resp.Vectors[j], Tokens: tok})
	}
	e.Cache.Put(ctx, entries)
	e.Cache.Count(Counters{APICalls: 1, APITokens: int64(resp.Tokens)})
	return res, nil
}
