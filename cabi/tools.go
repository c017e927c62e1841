package main

// Bridge ops of the tool executor (package tools). Op names start with
// "tool_". A policy engine is addressed by the handle "tool_policy_new"
// returns; the built-in tools take handle 0.

import (
	"context"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/crewcore/crewcore/tools"
	"github.com/tinylib/msgp/msgp"
)

var (
	toolMu      sync.RWMutex
	toolEngines = map[int64]*tools.Engine{}
	toolNext    int64
)

func toolEngine(h int64) (*tools.Engine, error) {
	toolMu.RLock()
	e := toolEngines[h]
	toolMu.RUnlock()
	if e == nil {
		return nil, fmt.Errorf("%w: no tool policy with handle %d (it was freed)", tools.ErrInvalidPolicy, h)
	}
	return e, nil
}

// rawValue returns the next MessagePack value of r unparsed.
func (r *reader) rawValue(what string) []byte {
	if r.err != nil {
		return nil
	}
	rest, err := msgp.Skip(r.b)
	if err != nil {
		r.fail(what, err)
		return nil
	}
	v := r.b[:len(r.b)-len(rest)]
	r.b = rest
	return v
}

func (r *reader) binOrNil(what string) []byte {
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

// toolCountOnly is the tool_begin flag for tools.Call.CountOnly.
const toolCountOnly = 1

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// readPolicy decodes a policy map {field: number}; unknown fields are errors.
func readPolicy(r *reader) (tools.Policy, error) {
	var p tools.Policy
	n, rest, err := msgp.ReadMapHeaderBytes(r.b)
	if err != nil {
		return p, badRequest("tool_policy_new: policy must be a map: %v", err)
	}
	r.b = rest
	for range n {
		k := r.str("policy field")
		v := r.float("policy value " + k)
		if r.err != nil {
			return p, r.err
		}
		if v != v {
			return p, fmt.Errorf("%w: %s is NaN", tools.ErrInvalidPolicy, k)
		}
		switch k {
		case "timeout_ms":
			p.Timeout = ms(v)
		case "max_calls_per_task":
			p.MaxCallsPerTask = int(v)
		case "max_calls_per_run":
			p.MaxCallsPerRun = int(v)
		case "max_depth":
			p.MaxDepth = int(v)
		case "loop_threshold":
			p.LoopThreshold = int(v)
		case "loop_window":
			p.LoopWindow = int(v)
		case "rate_per_sec":
			p.RatePerSec = v
		case "rate_burst":
			p.RateBurst = int(v)
		case "cache_ttl_ms":
			p.CacheTTL = ms(v)
		case "cache_max_bytes":
			p.CacheMaxBytes = int64(v)
		case "cache_max_entries":
			p.CacheMaxEntries = int(v)
		case "max_arg_bytes":
			p.MaxArgBytes = int(v)
		case "max_result_bytes":
			p.MaxResultBytes = int(v)
		default:
			return p, fmt.Errorf("%w: unknown field %q", tools.ErrInvalidPolicy, k)
		}
	}
	return p, nil
}

// readToolCall decodes the positional call arguments of tool_begin (and of
// crewcore_tool_begin): tool, args, task, run, depth, flags (optional).
func readToolCall(r *reader) (tools.Call, error) {
	c := tools.Call{Tool: r.str("tool"), Args: r.rawValue("args")}
	c.Task = r.str("task")
	c.Run = r.str("run")
	c.Depth = int(r.int("depth"))
	if len(r.b) > 0 {
		c.CountOnly = r.int("flags")&toolCountOnly != 0
	}
	return c, r.err
}

// toolDecision encodes a decision as the tool_begin response:
//
//	[0, start, deadline, key|nil]                 allowed
//	[1, start, deadline, cached]                  served from the cache
//	[2, start, deadline, limit, max, count, retry_after_ms, message, hint]  refused
func toolDecision(d tools.Decision) []byte {
	var b []byte
	switch d.Verdict {
	case tools.Allow:
		b = msgp.AppendArrayHeader(make([]byte, 0, 24+len(d.Key)), 4)
		b = msgp.AppendInt(b, 0)
		b = msgp.AppendInt64(b, d.Start)
		b = msgp.AppendInt64(b, d.Deadline)
		if d.Key == "" {
			b = msgp.AppendNil(b)
		} else {
			b = msgp.AppendBytes(b, []byte(d.Key))
		}
	case tools.Cached:
		b = msgp.AppendArrayHeader(make([]byte, 0, 24+len(d.Cached)), 4)
		b = msgp.AppendInt(b, 1)
		b = msgp.AppendInt64(b, d.Start)
		b = msgp.AppendInt64(b, d.Deadline)
		b = msgp.AppendBytes(b, d.Cached)
	default:
		f := d.Refusal
		b = msgp.AppendArrayHeader(nil, 9)
		b = msgp.AppendInt(b, 2)
		b = msgp.AppendInt64(b, d.Start)
		b = msgp.AppendInt64(b, d.Deadline)
		b = msgp.AppendString(b, f.Limit)
		b = msgp.AppendFloat64(b, f.Max)
		b = msgp.AppendFloat64(b, f.Count)
		b = msgp.AppendFloat64(b, float64(f.RetryAfter)/float64(time.Millisecond))
		b = msgp.AppendString(b, f.Message)
		b = msgp.AppendString(b, f.Hint)
	}
	return b
}

func init() {
	registerKind(tools.ErrInvalidPolicy, "tool_policy")
	registerKind(tools.ErrInvalidArgs, "tool_args")
	registerKind(tools.ErrRefused, "tool_refused")
	registerKind(tools.ErrTimeout, "tool_timeout")
	registerKind(tools.ErrTooLarge, "tool_too_large")
	registerKind(fs.ErrNotExist, "tool_not_found")

	// [tool_policy_new, 0, {field: number}] -> handle
	registerOp("tool_policy_new", func(_ context.Context, _ int64, r *reader) ([]byte, error) {
		p, err := readPolicy(r)
		if err != nil {
			return nil, err
		}
		e, err := tools.NewEngine(p, nil)
		if err != nil {
			return nil, err
		}
		toolMu.Lock()
		toolNext++
		h := toolNext
		toolEngines[h] = e
		toolMu.Unlock()
		return msgp.AppendInt64(nil, h), nil
	})
	// [tool_policy_free, h] -> nil
	registerOp("tool_policy_free", func(_ context.Context, h int64, _ *reader) ([]byte, error) {
		toolMu.Lock()
		delete(toolEngines, h)
		toolMu.Unlock()
		return msgp.AppendNil(nil), nil
	})
	// [tool_begin, h, tool, args, task, run, depth, flags?] ->
	//   [0, start, deadline, key|nil]                 allowed
	//   [1, start, deadline, cached]                  served from the cache
	//   [2, start, deadline, limit, max, count, retry_after_ms, message, hint]  refused
	registerOp("tool_begin", func(_ context.Context, h int64, r *reader) ([]byte, error) {
		e, err := toolEngine(h)
		if err != nil {
			return nil, err
		}
		c, err := readToolCall(r)
		if err != nil {
			return nil, err
		}
		d, err := e.Begin(c)
		if err != nil {
			return nil, err
		}
		return toolDecision(d), nil
	})
	// [tool_end, h, start, outcome(0 ok,1 failed,2 timeout), key|nil, result|nil] -> [elapsed_ns, stored]
	registerOp("tool_end", func(_ context.Context, h int64, r *reader) ([]byte, error) {
		e, err := toolEngine(h)
		if err != nil {
			return nil, err
		}
		start := r.int("start")
		outcome := tools.Outcome(r.int("outcome"))
		key := r.binOrNil("key")
		result := r.binOrNil("result")
		if r.err != nil {
			return nil, r.err
		}
		el, stored := e.End(start, outcome, string(key), result)
		b := msgp.AppendArrayHeader(nil, 2)
		b = msgp.AppendInt64(b, int64(el))
		return msgp.AppendBool(b, stored), nil
	})
	// [tool_forget, h, tool, args, task, run, depth] -> nil: take the call out
	// of its loop window (a call whose tool raised; see tools.Engine.Forget)
	registerOp("tool_forget", func(_ context.Context, h int64, r *reader) ([]byte, error) {
		e, err := toolEngine(h)
		if err != nil {
			return nil, err
		}
		c, err := readToolCall(r)
		if err != nil {
			return nil, err
		}
		if err := e.Forget(c); err != nil {
			return nil, err
		}
		return msgp.AppendNil(nil), nil
	})
	// [tool_clock, h] -> the engine's clock in ns
	registerOp("tool_clock", func(_ context.Context, h int64, _ *reader) ([]byte, error) {
		e, err := toolEngine(h)
		if err != nil {
			return nil, err
		}
		return msgp.AppendInt64(nil, e.Clock()), nil
	})
	// [tool_reset, h, key] -> nil ("t:<task>", "r:<run>", "" for all)
	registerOp("tool_reset", func(_ context.Context, h int64, r *reader) ([]byte, error) {
		e, err := toolEngine(h)
		if err != nil {
			return nil, err
		}
		k := r.str("key")
		if r.err != nil {
			return nil, r.err
		}
		e.Reset(k)
		return msgp.AppendNil(nil), nil
	})
	// [tool_stats, h] -> map
	registerOp("tool_stats", func(_ context.Context, h int64, _ *reader) ([]byte, error) {
		e, err := toolEngine(h)
		if err != nil {
			return nil, err
		}
		s := e.Stats()
		b := msgp.AppendMapHeader(nil, 11)
		for _, kv := range []struct {
			k string
			v int64
		}{{"calls", s.Calls}, {"allowed", s.Allowed}, {"cached", s.Cached}, {"refused", s.Refused},
			{"timeouts", s.Timeouts}, {"errors", s.Errors}, {"cache_entries", int64(s.Cache.Entries)},
			{"cache_bytes", s.Cache.Bytes}, {"cache_hits", s.Cache.Hits}, {"cache_evictions", s.Cache.Evictions}} {
			b = msgp.AppendString(b, kv.k)
			b = msgp.AppendInt64(b, kv.v)
		}
		b = msgp.AppendString(b, "refused_by")
		b = msgp.AppendMapHeader(b, uint32(len(s.RefusedBy)))
		for k, v := range s.RefusedBy {
			b = msgp.AppendString(b, k)
			b = msgp.AppendInt64(b, v)
		}
		return b, nil
	})
	// [tool_fetch, 0, url, timeout_ms, max_bytes, max_redirects, allow_private]
	//   -> [url, status, content_type, body, truncated]
	registerOp("tool_fetch", func(ctx context.Context, _ int64, r *reader) ([]byte, error) {
		u := r.str("url")
		opt := tools.FetchOptions{Timeout: ms(r.float("timeout_ms")), MaxBytes: r.int("max_bytes"),
			MaxRedirects: int(r.int("max_redirects")), AllowPrivate: r.bool("allow_private")}
		if r.err != nil {
			return nil, r.err
		}
		res, err := tools.Fetch(ctx, u, opt)
		if err != nil {
			return nil, err
		}
		b := msgp.AppendArrayHeader(make([]byte, 0, len(res.Body)+len(res.URL)+64), 5)
		b = msgp.AppendString(b, res.URL)
		b = msgp.AppendInt(b, res.Status)
		b = msgp.AppendString(b, res.ContentType)
		b = msgp.AppendBytes(b, res.Body)
		return msgp.AppendBool(b, res.Truncated), nil
	})
	// [tool_read_file, 0, root, path, max_bytes, timeout_ms, allow_hardlinks?] -> [content, size, truncated]
	registerOp("tool_read_file", toolReadFile) // cabi/tools_files.go
	// [tool_list_dir, 0, root, path, max_entries, timeout_ms] -> [[[name, is_dir, size, kind]...], truncated]
	registerOp("tool_list_dir", toolListDir)
}
