package embed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Client calls one OpenAI-compatible embeddings endpoint with one model. It
// is safe for concurrent use; concurrent calls are batched (see the package
// documentation). Close it when done.
type Client struct {
	cfg     Config
	ns      string
	http    *http.Client
	limiter *rate.Limiter
	base    context.Context // cancelled by Close
	stop    context.CancelFunc

	mu      sync.Mutex
	queue   []*job
	running int // goroutines serving the queue (<= MaxInFlight)
	closed  bool

	dim   atomic.Int64 // expected dimension (configured or first seen)
	stats clientCounters
}

// ClientStats are a Client's counters since it was made.
type ClientStats struct {
	// Calls is the number of Embed calls; Texts the texts they asked for.
	Calls, Texts int64
	// Requests is the number of API calls that got a successful answer;
	// Attempts counts every HTTP attempt (failed ones and retries too).
	Requests, Attempts int64
	// Retries counts retried attempts; Failures Embed calls that failed.
	Retries, Failures int64
	// Batched counts Embed calls (or their parts) answered by an API call
	// shared with another call; Deduplicated counts texts not sent because
	// an equal text was in the same API call.
	Batched, Deduplicated int64
	// Sent is the number of texts sent; Tokens what the provider counted.
	Sent, Tokens int64
}

type clientCounters struct {
	calls, texts, requests, attempts, retries, failures, batched, dedup, sent, tokens atomic.Int64
}

// job is one part of an Embed call waiting for (or in) an API call.
type job struct {
	ctx      context.Context
	texts    []string
	bytes    int
	vecs     [][]float32
	tokens   []int
	err      error
	done     chan struct{}
	finished bool
}

// New returns a client for cfg (see Config for the defaults).
func New(cfg Config) (*Client, error) {
	o, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   max(4, 2*o.MaxInFlight),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	base, stop := context.WithCancel(context.Background())
	c := &Client{cfg: o, ns: Namespace(o.Provider, o.endpoint(), o.Model, o.Dimensions),
		http: &http.Client{Transport: tr}, base: base, stop: stop}
	if o.RateLimit > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(o.RateLimit), o.RateBurst)
	}
	c.dim.Store(int64(o.Dimensions))
	return c, nil
}

// Config returns the client's configuration with defaults applied.
func (c *Client) Config() Config { return c.cfg }

// Namespace is the cache namespace of this client's vectors.
func (c *Client) Namespace() string { return c.ns }

// Dimension is the expected vector length: the configured one, else the
// first one seen (0 before any answer).
func (c *Client) Dimension() int { return int(c.dim.Load()) }

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats {
	s := &c.stats
	return ClientStats{Calls: s.calls.Load(), Texts: s.texts.Load(), Requests: s.requests.Load(),
		Attempts: s.attempts.Load(), Retries: s.retries.Load(), Failures: s.failures.Load(),
		Batched: s.batched.Load(), Deduplicated: s.dedup.Load(), Sent: s.sent.Load(), Tokens: s.tokens.Load()}
}

// Close cancels calls in flight (they fail with ErrClosed) and releases the
// idle connections. Later calls fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	q := c.queue
	c.queue = nil
	c.mu.Unlock()
	c.stop()
	for _, j := range q {
		c.finish(j, fmt.Errorf("%w: %s embeddings client", ErrClosed, c.cfg.Provider))
	}
	c.http.CloseIdleConnections()
	return nil
}

// Embed returns one vector per text, in order, and the tokens the provider
// counted for them (its share of a batched call, by text length). Texts
// must not be empty. The call's deadline is Config.Timeout, or ctx's if
// sooner; it blocks until the vectors or the error are there.
func (c *Client) Embed(ctx context.Context, texts []string) (Response, error) {
	c.stats.calls.Add(1)
	c.stats.texts.Add(int64(len(texts)))
	if len(texts) == 0 {
		return Response{Vectors: [][]float32{}}, nil
	}
	for i, t := range texts {
		if t == "" {
			c.stats.failures.Add(1)
			return Response{}, fmt.Errorf("%w: text %d is empty (providers refuse empty inputs)", ErrInvalid, i)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	jobs := c.split(ctx, texts)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.stats.failures.Add(1)
		return Response{}, fmt.Errorf("%w: %s embeddings client", ErrClosed, c.cfg.Provider)
	}
	c.queue = append(c.queue, jobs...)
	for c.running < c.cfg.MaxInFlight && len(c.queue) > 0 {
		c.running++
		go c.serve()
	}
	c.mu.Unlock()

	start := time.Now()
	out := Response{Vectors: make([][]float32, 0, len(texts))}
	perText := make([]int, 0, len(texts))
	for _, j := range jobs {
		select {
		case <-j.done:
		case <-ctx.Done():
			c.stats.failures.Add(1)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return Response{}, &APIError{Provider: c.cfg.Provider, Model: c.cfg.Model, Kind: ErrTimeout,
					Elapsed: time.Since(start), Message: fmt.Sprintf("no answer within the call's deadline (%s)", c.cfg.Timeout)}
			}
			return Response{}, fmt.Errorf("embeddings %s: %w", c.cfg.Provider, ctx.Err())
		}
		if j.err != nil {
			c.stats.failures.Add(1)
			return Response{}, j.err
		}
		out.Vectors = append(out.Vectors, j.vecs...)
		perText = append(perText, j.tokens...)
	}
	for _, t := range perText {
		out.Tokens += t
	}
	out.PerText = perText
	return out, nil
}

// split cuts texts into jobs of at most MaxBatch texts and MaxBatchBytes.
func (c *Client) split(ctx context.Context, texts []string) []*job {
	var jobs []*job
	cur := &job{ctx: ctx, done: make(chan struct{})}
	for _, t := range texts {
		if len(cur.texts) > 0 && (len(cur.texts) >= c.cfg.MaxBatch || cur.bytes+len(t) > c.cfg.MaxBatchBytes) {
			jobs = append(jobs, cur)
			cur = &job{ctx: ctx, done: make(chan struct{})}
		}
		cur.texts = append(cur.texts, t)
		cur.bytes += len(t)
	}
	return append(jobs, cur)
}

// serve runs API calls for queued jobs until the queue is empty.
func (c *Client) serve() {
	for {
		c.mu.Lock()
		batch := c.take()
		if len(batch) == 0 {
			c.running--
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.send(batch)
	}
}

// take pops the oldest queued jobs that fit in one API call; jobs whose
// caller has gone are dropped. c.mu is held.
func (c *Client) take() []*job {
	var batch []*job
	n, size, i := 0, 0, 0
	for ; i < len(c.queue); i++ {
		j := c.queue[i]
		if j.ctx.Err() != nil {
			continue // the caller has returned; nobody waits for it
		}
		if len(batch) > 0 && (n+len(j.texts) > c.cfg.MaxBatch || size+j.bytes > c.cfg.MaxBatchBytes) {
			break
		}
		batch = append(batch, j)
		n += len(j.texts)
		size += j.bytes
	}
	c.queue = c.queue[i:]
	if len(c.queue) == 0 {
		c.queue = nil
	}
	return batch
}

// send makes one API call (with retries) for a batch of jobs and hands each
// job its vectors or the error.
func (c *Client) send(batch []*job) {
	index := make(map[string]int)
	var texts []string
	deadline := time.Time{}
	for _, j := range batch {
		for _, t := range j.texts {
			if _, ok := index[t]; !ok {
				index[t] = len(texts)
				texts = append(texts, t)
			} else {
				c.stats.dedup.Add(1)
			}
		}
		if dl, ok := j.ctx.Deadline(); ok && dl.After(deadline) {
			deadline = dl
		}
	}
	if len(batch) > 1 {
		c.stats.batched.Add(int64(len(batch)))
	}
	ctx, cancel := context.WithDeadline(c.base, deadline)
	defer cancel()
	resp, err := c.call(ctx, texts)
	if err != nil {
		for _, j := range batch {
			c.finish(j, err)
		}
		return
	}
	total := 0
	for _, t := range texts {
		total += len(t)
	}
	for _, j := range batch {
		j.vecs = make([][]float32, len(j.texts))
		j.tokens = make([]int, len(j.texts))
		for k, t := range j.texts {
			j.vecs[k] = resp.Vectors[index[t]]
			j.tokens[k] = share(resp.Tokens, len(t), total)
		}
		c.finish(j, nil)
	}
}

// share is a text's part of a call's tokens, by its length (at least 1
// when the call counted any).
func share(tokens, n, total int) int {
	if tokens <= 0 || total <= 0 {
		return 0
	}
	return max(1, int(float64(tokens)*float64(n)/float64(total)+0.5))
}

func (c *Client) finish(j *job, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j.finished {
		return
	}
	j.finished = true
	j.err = err
	close(j.done)
}

type apiRequest struct {
	Model          string   `json:"model"`
	Input          []string `json:"input"`
	EncodingFormat string   `json:"encoding_format"`
	Dimensions     int      `json:"dimensions,omitempty"`
}

// call makes one API call for texts, retrying within ctx's deadline.
func (c *Client) call(ctx context.Context, texts []string) (Response, error) {
	body, err := json.Marshal(apiRequest{Model: c.cfg.Model, Input: texts, EncodingFormat: "base64", Dimensions: c.cfg.Dimensions})
	if err != nil {
		return Response{}, fmt.Errorf("%w: encode request: %v", ErrInvalid, err)
	}
	start := time.Now()
	for attempt := 0; ; attempt++ {
		if c.limiter != nil {
			if err := c.limiter.Wait(ctx); err != nil {
				return Response{}, c.apiError(attemptResult{kind: ErrTimeout,
					msg: "the client-side rate limit leaves no slot before the call's deadline"}, attempt, start)
			}
		}
		c.stats.attempts.Add(1)
		res := c.attempt(ctx, body, len(texts))
		if res.kind == nil {
			c.stats.requests.Add(1)
			c.stats.sent.Add(int64(len(texts)))
			c.stats.tokens.Add(int64(res.resp.Tokens))
			return res.resp, nil
		}
		if !res.retryable || attempt >= c.cfg.MaxRetries {
			return Response{}, c.apiError(res, attempt+1, start)
		}
		wait := c.backoff(attempt)
		if res.retryAfter > 0 {
			wait = res.retryAfter
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			res.msg += fmt.Sprintf(" (next retry in %s would pass the call's deadline)", wait.Round(time.Millisecond))
			return Response{}, c.apiError(res, attempt+1, start)
		}
		c.stats.retries.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Response{}, c.apiError(res, attempt+1, start)
		}
	}
}

func (c *Client) apiError(res attemptResult, attempts int, start time.Time) error {
	if res.dim != nil {
		return res.dim
	}
	if c.base.Err() != nil {
		return fmt.Errorf("%w: %s embeddings client closed during the call", ErrClosed, c.cfg.Provider)
	}
	return &APIError{Provider: c.cfg.Provider, Model: c.cfg.Model, Status: res.status, Attempts: attempts,
		Elapsed: time.Since(start), Message: res.msg, Kind: res.kind}
}
