// Command cabi is the C ABI of crewcore, built with
//
//	go build -buildmode=c-shared -o libcrewcore.so ./cabi
//
// It is the only package that knows about C. It exports three functions:
//
//	int32_t crewcore_call(const uint8_t *req, int64_t req_len, uint8_t **resp, int64_t *resp_len);
//	void    crewcore_free(uint8_t *p);
//	int64_t crewcore_count(int64_t handle, const char *scope_prefix, int64_t len);
//
// The tool executor adds crewcore_tool_begin, its per-call policy check
// (tools_fast.go), and the Python package's vector conversion adds
// crewcore_f32_list and its batch form crewcore_f32_lists (floats.c: C only,
// no Go, called with the GIL held).
//
// crewcore_count is a fast path for the hottest scalar call (CrewAI asks
// for counts on every recall): no request encoding, no response buffer. It
// returns -1 on any error; the caller then repeats the call through
// crewcore_call to get the typed error.
//
// A request is a MessagePack array [op, handle, args...] (see ops.go); the
// response is a MessagePack value in C memory that the caller frees with
// crewcore_free. Status 0 is success; status 1 means the response is an
// error map {"kind", "message", ...}. Go panics are recovered here and
// returned as errors of kind "engine": they never cross into the caller.
package main

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
*/
import "C"

import (
	"context"
	"fmt"
	"runtime/debug"
	"unsafe"
)

func main() {}

// crewcore_call executes one request. See the package documentation.
//
//export crewcore_call
func crewcore_call(req *C.uint8_t, reqLen C.int64_t, resp **C.uint8_t, respLen *C.int64_t) (status C.int32_t) {
	var out []byte
	// A memory fault (a mapped store file cut short under a read) becomes
	// a panic the recover below turns into an error, not the end of the
	// process; the parallel scans' helpers do the same (internal/par).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			out = panicError(p)
			status = 1
		}
		writeOut(out, resp, respLen)
	}()
	if req == nil || reqLen < 0 {
		out = encodeError(&bridgeError{kind: "bad_request", msg: "empty request"})
		return 1
	}
	in := unsafe.Slice((*byte)(unsafe.Pointer(req)), int(reqLen))
	res, err := dispatch(in)
	if err != nil {
		out = encodeError(err)
		return 1
	}
	out = res
	return 0
}

// panicError is the error response of a recovered panic p, with the stack
// of the goroutine that panicked (call it from the deferred function).
func panicError(p any) []byte {
	return encodeError(&bridgeError{kind: "engine", msg: fmt.Sprintf("crewcore engine panic: %v\n%s", p, debug.Stack())})
}

func writeOut(out []byte, resp **C.uint8_t, respLen *C.int64_t) {
	if resp == nil || respLen == nil {
		return
	}
	if len(out) == 0 {
		*resp = nil
		*respLen = 0
		return
	}
	p := C.malloc(C.size_t(len(out)))
	C.memcpy(p, unsafe.Pointer(&out[0]), C.size_t(len(out)))
	*resp = (*C.uint8_t)(p)
	*respLen = C.int64_t(len(out))
}

// crewcore_count returns the number of records under scope_prefix (all
// records when len is 0) of the store with handle h, or -1 on any error.
//
//export crewcore_count
func crewcore_count(h C.int64_t, prefix *C.char, n C.int64_t) (out C.int64_t) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // see crewcore_call
	defer func() {
		if recover() != nil {
			out = -1
		}
	}()
	s, err := store(int64(h))
	if err != nil || n < 0 || n > 1<<30 || (n > 0 && prefix == nil) {
		return -1
	}
	p := ""
	if n > 0 {
		p = C.GoStringN(prefix, C.int(n))
	}
	c, err := s.Count(context.Background(), p)
	if err != nil {
		return -1
	}
	return C.int64_t(c)
}

// crewcore_free releases a response returned by crewcore_call.
//
//export crewcore_free
func crewcore_free(p *C.uint8_t) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}
