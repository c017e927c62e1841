package main

// Bridge ops of the storage layer (issue 3): named locks, CrewAI kickoff task
// outputs and flow state. Registered from init so the memory dispatch in
// ops.go stays as it is. Handles of this file are their own tables.

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"time"

	"github.com/crewcore/crewcore/flowstate"
	"github.com/crewcore/crewcore/lock"
	"github.com/crewcore/crewcore/sqlitedb"
	"github.com/crewcore/crewcore/taskoutputs"
	"github.com/tinylib/msgp/msgp"
)

var (
	stMu     sync.Mutex
	stNext   int64
	heldLks  = map[int64]*lock.Held{}
	toByH    = map[int64]*taskoutputs.Store{}
	toByPath = map[string]int64{}
	flByH    = map[int64]*flowstate.Store{}
	flByPath = map[string]int64{}
)

func init() {
	registerKind(sqlitedb.ErrCorrupt, "corrupt")
	registerKind(sqlitedb.ErrAccess, "access")
	registerKind(sqlitedb.ErrTimeout, "timeout")
	registerKind(sqlitedb.ErrFull, "full")
	registerKind(sqlitedb.ErrClosed, "closed")
	registerKind(lock.ErrTimeout, "lock_timeout")
	registerKind(lock.ErrInvalidArgument, "invalid_argument")
	registerKind(lock.ErrNotHeld, "invalid_argument")
	registerKind(lock.ErrAccess, "access")
	registerKind(taskoutputs.ErrInvalidArgument, "invalid_argument")
	registerKind(flowstate.ErrInvalidArgument, "invalid_argument")

	registerOp("lock_acquire", opLockAcquire)
	registerOp("lock_release", opLockRelease)
	registerOp("lock_dir", func(_ context.Context, _ int64, _ *reader) ([]byte, error) {
		return msgp.AppendString(nil, lock.Default().Dir()), nil
	})
	registerOp("to_open", opTOOpen)
	registerOp("to_add", opTOAdd)
	registerOp("to_update", opTOUpdate)
	registerOp("to_load", opTOLoad)
	registerOp("to_delete_all", opTODeleteAll)
	registerOp("flow_open", opFlowOpen)
	registerOp("flow_save", opFlowSave)
	registerOp("flow_load", opFlowLoad)
	registerOp("flow_save_pending", opFlowSavePending)
	registerOp("flow_load_pending", opFlowLoadPending)
	registerOp("flow_clear_pending", opFlowClearPending)
	registerOp("storage_close_all", opStorageCloseAll)
}

func newHandle() int64 { stNext++; return stNext }

// argSeconds turns a timeout in seconds into a duration; nil (absent) is def.
func argSeconds(r *reader, what string, def time.Duration) (time.Duration, bool) {
	if r.err == nil && len(r.b) > 0 && msgp.IsNil(r.b) {
		r.b = r.b[1:]
		return def, true
	}
	if r.err != nil || len(r.b) == 0 {
		return def, true
	}
	f := r.float(what)
	if r.err != nil {
		return 0, false
	}
	if math.IsNaN(f) {
		r.err = &bridgeError{kind: "invalid_argument", msg: what + " is NaN"}
		return 0, false
	}
	if f < 0 {
		return -1, true
	}
	if f >= float64(math.MaxInt64)/1e9 || math.IsInf(f, 1) {
		return lock.Forever, true
	}
	return time.Duration(f * 1e9), true
}

var lockMgrs = map[string]*lock.Manager{}

// lockManager returns the manager of dir ("" is lock.DefaultDir). The
// directory comes from the caller because a c-shared Go runtime sees the
// environment of process start, not later changes made by Python.
func lockManager(dir string) *lock.Manager {
	if dir == "" {
		return lock.Default()
	}
	stMu.Lock()
	defer stMu.Unlock()
	m := lockMgrs[dir]
	if m == nil {
		m = lock.New(dir)
		lockMgrs[dir] = m
	}
	return m
}

// lock_acquire [op, 0, name, timeout_seconds|nil(forever), dir] -> lock handle
func opLockAcquire(ctx context.Context, _ int64, r *reader) ([]byte, error) {
	name := r.str("name")
	timeout, _ := argSeconds(r, "timeout", lock.Forever)
	dir := r.str("dir")
	if r.err != nil {
		return nil, r.err
	}
	if timeout < 0 {
		return nil, fmt.Errorf("%w: lock %q: negative timeout (use 0 to try once, None to wait without limit)", lock.ErrInvalidArgument, name)
	}
	h, err := lockManager(dir).Acquire(ctx, name, timeout)
	if err != nil {
		return nil, err
	}
	stMu.Lock()
	id := newHandle()
	heldLks[id] = h
	stMu.Unlock()
	return msgp.AppendInt64(nil, id), nil
}

// lock_release [op, handle]
func opLockRelease(_ context.Context, h int64, _ *reader) ([]byte, error) {
	stMu.Lock()
	l := heldLks[h]
	delete(heldLks, h)
	stMu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("%w: lock handle %d is not held (released twice?)", lock.ErrNotHeld, h)
	}
	return msgp.AppendNil(nil), l.Release()
}

func dbOptions(r *reader) (*sqlitedb.Options, string, error) {
	path := r.str("path")
	timeout, _ := argSeconds(r, "timeout", 0)
	if r.err != nil {
		return nil, "", r.err
	}
	if path == "" {
		return nil, "", badRequest("empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", err
	}
	if timeout < 0 || timeout == lock.Forever {
		timeout = 0
	}
	return &sqlitedb.Options{Timeout: timeout}, abs, nil
}

// to_open [op, 0, path, timeout_seconds|nil] -> handle (one per path per process)
func opTOOpen(_ context.Context, _ int64, r *reader) ([]byte, error) {
	o, abs, err := dbOptions(r)
	if err != nil {
		return nil, err
	}
	stMu.Lock()
	defer stMu.Unlock()
	if id, ok := toByPath[abs]; ok {
		return msgp.AppendInt64(nil, id), nil
	}
	s, err := taskoutputs.Open(abs, o)
	if err != nil {
		return nil, err
	}
	id := newHandle()
	toByH[id] = s
	toByPath[abs] = id
	return msgp.AppendInt64(nil, id), nil
}

func toStore(h int64) (*taskoutputs.Store, error) {
	stMu.Lock()
	defer stMu.Unlock()
	if s := toByH[h]; s != nil {
		return s, nil
	}
	return nil, &bridgeError{kind: "closed", msg: fmt.Sprintf("task outputs handle %d is not open", h)}
}

func (r *reader) optStr(what string) *string {
	if r.isNil() {
		return nil
	}
	s := r.str(what)
	return &s
}

func (r *reader) optInt(what string) *int64 {
	if r.isNil() {
		return nil
	}
	v := r.int(what)
	return &v
}

// to_add [op, h, task_id, task_key, expected_output, output_json, task_index, inputs_json, was_replayed]
func opTOAdd(ctx context.Context, h int64, r *reader) ([]byte, error) {
	s, err := toStore(h)
	if err != nil {
		return nil, err
	}
	var row taskoutputs.Row
	row.TaskID = r.str("task_id")
	row.TaskKey = r.optStr("task_key")
	row.ExpectedOutput = r.optStr("expected_output")
	row.Output = r.optStr("output")
	row.TaskIndex = r.optInt("task_index")
	row.Inputs = r.optStr("inputs")
	rep := int64(0)
	if r.bool("was_replayed") {
		rep = 1
	}
	row.WasReplayed = &rep
	if r.err != nil {
		return nil, r.err
	}
	return msgp.AppendNil(nil), s.Add(ctx, row)
}

// to_update [op, h, task_index, [cols], [vals]] -> rows changed
func opTOUpdate(ctx context.Context, h int64, r *reader) ([]byte, error) {
	s, err := toStore(h)
	if err != nil {
		return nil, err
	}
	idx := r.int("task_index")
	cols := r.strs("columns")
	n, ok := r.arrayLen("values")
	if r.err != nil {
		return nil, r.err
	}
	vals := make([]any, 0, n)
	for i := 0; ok && i < n; i++ {
		v, rest, err := msgp.ReadIntfBytes(r.b)
		if err != nil {
			return nil, badRequest("decode values: %v", err)
		}
		r.b = rest
		switch x := v.(type) {
		case nil, string, int64, uint64, float64, bool:
			vals = append(vals, x)
		default:
			return nil, fmt.Errorf("%w: value %d of type %T (want str, int, float, bool or None; JSON-encode dicts)", taskoutputs.ErrInvalidArgument, i, v)
		}
	}
	changed, err := s.Update(ctx, idx, cols, vals)
	if err != nil {
		return nil, err
	}
	return msgp.AppendInt64(nil, changed), nil
}

func appendOptStr(b []byte, s *string) []byte {
	if s == nil {
		return msgp.AppendNil(b)
	}
	return msgp.AppendString(b, *s)
}

func appendOptInt(b []byte, v *int64) []byte {
	if v == nil {
		return msgp.AppendNil(b)
	}
	return msgp.AppendInt64(b, *v)
}

// to_load [op, h] -> [[task_id, task_key, expected_output, output, task_index, inputs, was_replayed, timestamp]...]
func opTOLoad(ctx context.Context, h int64, _ *reader) ([]byte, error) {
	s, err := toStore(h)
	if err != nil {
		return nil, err
	}
	rows, err := s.Load(ctx)
	if err != nil {
		return nil, err
	}
	b := msgp.AppendArrayHeader(nil, uint32(len(rows)))
	for i := range rows {
		x := &rows[i]
		b = msgp.AppendArrayHeader(b, 8)
		b = msgp.AppendString(b, x.TaskID)
		b = appendOptStr(b, x.TaskKey)
		b = appendOptStr(b, x.ExpectedOutput)
		b = appendOptStr(b, x.Output)
		b = appendOptInt(b, x.TaskIndex)
		b = appendOptStr(b, x.Inputs)
		b = appendOptInt(b, x.WasReplayed)
		b = appendOptStr(b, x.Timestamp)
	}
	return b, nil
}

// to_delete_all [op, h]
func opTODeleteAll(ctx context.Context, h int64, _ *reader) ([]byte, error) {
	s, err := toStore(h)
	if err != nil {
		return nil, err
	}
	return msgp.AppendNil(nil), s.DeleteAll(ctx)
}

// flow_open [op, 0, path, timeout_seconds|nil] -> handle (one per path per process)
func opFlowOpen(_ context.Context, _ int64, r *reader) ([]byte, error) {
	o, abs, err := dbOptions(r)
	if err != nil {
		return nil, err
	}
	stMu.Lock()
	defer stMu.Unlock()
	if id, ok := flByPath[abs]; ok {
		return msgp.AppendInt64(nil, id), nil
	}
	s, err := flowstate.Open(abs, o)
	if err != nil {
		return nil, err
	}
	id := newHandle()
	flByH[id] = s
	flByPath[abs] = id
	return msgp.AppendInt64(nil, id), nil
}

func flStore(h int64) (*flowstate.Store, error) {
	stMu.Lock()
	defer stMu.Unlock()
	if s := flByH[h]; s != nil {
		return s, nil
	}
	return nil, &bridgeError{kind: "closed", msg: fmt.Sprintf("flow state handle %d is not open", h)}
}

// flow_save [op, h, flow_uuid, method, state_json]
func opFlowSave(ctx context.Context, h int64, r *reader) ([]byte, error) {
	s, err := flStore(h)
	if err != nil {
		return nil, err
	}
	id, method, state := r.str("flow_uuid"), r.str("method_name"), r.str("state_json")
	if r.err != nil {
		return nil, r.err
	}
	return msgp.AppendNil(nil), s.Save(ctx, id, method, state)
}

// flow_load [op, h, flow_uuid] -> state_json | nil
func opFlowLoad(ctx context.Context, h int64, r *reader) ([]byte, error) {
	s, err := flStore(h)
	if err != nil {
		return nil, err
	}
	id := r.str("flow_uuid")
	if r.err != nil {
		return nil, r.err
	}
	state, ok, err := s.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return msgp.AppendNil(nil), nil
	}
	return msgp.AppendString(nil, state), nil
}

// flow_save_pending [op, h, flow_uuid, method, context_json, state_json]
func opFlowSavePending(ctx context.Context, h int64, r *reader) ([]byte, error) {
	s, err := flStore(h)
	if err != nil {
		return nil, err
	}
	id, method, fctx, state := r.str("flow_uuid"), r.str("method_name"), r.str("context_json"), r.str("state_json")
	if r.err != nil {
		return nil, r.err
	}
	return msgp.AppendNil(nil), s.SavePending(ctx, id, method, fctx, state)
}

// flow_load_pending [op, h, flow_uuid] -> [state_json, context_json] | nil
func opFlowLoadPending(ctx context.Context, h int64, r *reader) ([]byte, error) {
	s, err := flStore(h)
	if err != nil {
		return nil, err
	}
	id := r.str("flow_uuid")
	if r.err != nil {
		return nil, r.err
	}
	state, fctx, ok, err := s.LoadPending(ctx, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return msgp.AppendNil(nil), nil
	}
	b := msgp.AppendArrayHeader(nil, 2)
	b = msgp.AppendString(b, state)
	return msgp.AppendString(b, fctx), nil
}

// flow_clear_pending [op, h, flow_uuid]
func opFlowClearPending(ctx context.Context, h int64, r *reader) ([]byte, error) {
	s, err := flStore(h)
	if err != nil {
		return nil, err
	}
	id := r.str("flow_uuid")
	if r.err != nil {
		return nil, r.err
	}
	return msgp.AppendNil(nil), s.ClearPending(ctx, id)
}

// storage_close_all [op, 0]: closes every task output and flow database and
// releases every held lock (the Python package calls it at exit).
func opStorageCloseAll(_ context.Context, _ int64, _ *reader) ([]byte, error) {
	stMu.Lock()
	tos, fls, lks := toByH, flByH, heldLks
	toByH, toByPath = map[int64]*taskoutputs.Store{}, map[string]int64{}
	flByH, flByPath = map[int64]*flowstate.Store{}, map[string]int64{}
	heldLks = map[int64]*lock.Held{}
	stMu.Unlock()
	for _, s := range tos {
		s.Close()
	}
	for _, s := range fls {
		s.Close()
	}
	for _, l := range lks {
		l.Release()
	}
	return msgp.AppendNil(nil), nil
}
