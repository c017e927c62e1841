package main

// Fast entry points of the tool executor: plain C calls without the
// [op, handle, ...] envelope, for the call made on every tool call.

/*
#include <stdint.h>
*/
import "C"

import (
	"runtime/debug"
	"unsafe"

	"github.com/crewcore/crewcore/tools"
	"github.com/tinylib/msgp/msgp"
)

// crewcore_tool_begin is tool_begin without the envelope: req is the
// MessagePack array [tool, args, task, run, depth, flags] for the policy
// engine with handle h. It returns the engine's clock reading at the start
// (>= 0) when the call is allowed and no cache key is needed (the common
// case: no response at all). Otherwise the response goes into buf when it
// fits in bufCap bytes (*resp is then NULL), else into C memory at *resp
// (freed with crewcore_free); *respLen is its length, and the return value
// says what it is: -1 the full tool_begin response (refused, or allowed with
// a cache key), -2 an error map, -3 the cached result itself (the value the
// cache holds, without the tool_begin envelope).
//
//export crewcore_tool_begin
func crewcore_tool_begin(h C.int64_t, req *C.uint8_t, reqLen C.int64_t, buf *C.uint8_t, bufCap C.int64_t,
	resp **C.uint8_t, respLen *C.int64_t) (out C.int64_t) {
	var b []byte
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // see crewcore_call
	defer func() {
		if p := recover(); p != nil {
			b = panicError(p)
			out = -2
		}
		if out < 0 {
			if buf != nil && len(b) > 0 && int64(len(b)) <= int64(bufCap) && resp != nil && respLen != nil {
				copy(unsafe.Slice((*byte)(unsafe.Pointer(buf)), len(b)), b)
				*resp = nil
				*respLen = C.int64_t(len(b))
				return
			}
			writeOut(b, resp, respLen)
		}
	}()
	e, err := toolEngine(int64(h))
	if err != nil {
		b = encodeError(err)
		return -2
	}
	if req == nil || reqLen <= 0 {
		b = encodeError(badRequest("crewcore_tool_begin: empty request"))
		return -2
	}
	r := &reader{b: unsafe.Slice((*byte)(unsafe.Pointer(req)), int(reqLen))}
	n, rest, err := msgp.ReadArrayHeaderBytes(r.b)
	if err != nil || n < 5 || n > 6 {
		b = encodeError(badRequest("crewcore_tool_begin: want [tool, args, task, run, depth, flags?], got %d elements (%v)", n, err))
		return -2
	}
	r.b = rest
	c, err := readToolCall(r)
	if err != nil {
		b = encodeError(err)
		return -2
	}
	d, err := e.Begin(c)
	if err != nil {
		b = encodeError(err)
		return -2
	}
	if d.Verdict == tools.Allow && d.Key == "" {
		return C.int64_t(d.Start)
	}
	if d.Verdict == tools.Cached && !c.CountOnly {
		b = d.Cached
		return -3
	}
	b = toolDecision(d)
	return -1
}
