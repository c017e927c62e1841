package runq

// The supervisor of Python worker processes and the protocol between them.
//
// Each worker process is "python -m crewcore._worker" with two pipes: fd 3
// carries requests from the supervisor, fd 4 carries replies. stdout and
// stderr are the supervisor's stderr (CrewAI's console output goes there).
// Every message is a frame: a 4-byte big-endian length, then that many
// bytes of one JSON object.
//
//	supervisor -> process
//	  {"op":"run","id":N,"attempt":A,"crew":"mod:attr","inputs":{...},"timeout":S}
//	  {"op":"stop","id":N,"reason":"timeout"|"cancelled"|"shutdown"}
//	  {"op":"exit"}
//	process -> supervisor
//	  {"op":"ready","pid":P,"info":"..."}
//	  {"op":"done","id":N,"ok":true|false,"permanent":bool,"stopped":"",
//	   "error":"Type: message","record":{...}}
//
// "record" is what the queue keeps as the run's output (River's recorded
// output): on success the crew's result, on failure the error. A process
// reads requests on one thread and runs each run on a thread of its own, up
// to its concurrency. It exits when fd 3 reaches EOF (the supervisor is
// gone), and the kernel kills it when the supervisor dies (PR_SET_PDEATHSIG).

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxFrame bounds one protocol frame (a run's inputs or result).
const maxFrame = 64 << 20

// ErrProcess is wrapped by failures of a Python worker process (it died,
// did not start, or broke the protocol).
var ErrProcess = errors.New("worker process failed")

// SupervisorConfig configures the Python worker processes.
type SupervisorConfig struct {
	// Processes is the number of Python processes (>= 1).
	Processes int
	// Concurrency is the number of runs at once in each process (>= 1).
	Concurrency int
	// Python is the interpreter (default $CREWCORE_PYTHON, else python3).
	Python string
	// CrewPath directories are put first on the processes' sys.path.
	CrewPath []string
	// Env is added to the processes' environment.
	Env []string
	// StopGrace is how long a run told to stop may take before its thread
	// is interrupted, and again before its process is killed.
	StopGrace time.Duration
	// StartTimeout bounds a process's start (importing CrewAI).
	StartTimeout time.Duration
	// Stderr receives the processes' stdout and stderr (default os.Stderr).
	Stderr io.Writer
	// CPUs, when set, pins the process of slot i (and every thread it
	// starts) to CPU CPUs[i % len(CPUs)] (see [PinCPUs]); Linux only.
	CPUs []int
}

// Supervisor runs crews in Python worker processes and replaces processes
// that die.
type Supervisor struct {
	cfg SupervisorConfig

	mu      sync.Mutex
	procs   []*proc
	changed chan struct{} // closed and replaced when a slot frees or a process starts
	closed  bool
	wg      sync.WaitGroup
	done    chan struct{}

	// Counters, for the worker's summary.
	Started, Died int
}

// Outcome is how a run ended in its process.
type Outcome struct {
	OK        bool
	Record    json.RawMessage // the output to keep (result or error)
	Error     string          // "Type: message" when not OK
	Permanent bool            // retrying cannot help (bad crew, bad inputs)
	Stopped   string          // "timeout", "cancelled", "shutdown" if stopped
	// Requeue: the run did nothing wrong; its process was killed to stop
	// another run (or at shutdown): run it again without counting an attempt.
	Requeue bool
	PID     int
}

type call struct {
	id   int64
	done chan Outcome
}

type proc struct {
	slot  int
	cmd   *exec.Cmd
	pid   int
	w     *os.File
	wmu   sync.Mutex
	ready chan struct{}
	dead  chan struct{}

	// guarded by Supervisor.mu
	inflight  map[int64]*call
	isReady   bool
	isDead    bool
	killedFor int64 // the run whose stop made us kill this process
	deadMsg   string
}

// NewSupervisor checks cfg; Start spawns the processes.
func NewSupervisor(cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Processes < 1 || cfg.Processes > 1024 {
		return nil, fmt.Errorf("%w: processes %d must be 1 to 1024", ErrInvalid, cfg.Processes)
	}
	if cfg.Concurrency < 1 || cfg.Concurrency > 1024 {
		return nil, fmt.Errorf("%w: concurrency %d must be 1 to 1024", ErrInvalid, cfg.Concurrency)
	}
	if cfg.Python == "" {
		cfg.Python = os.Getenv("CREWCORE_PYTHON")
	}
	if cfg.Python == "" {
		cfg.Python = "python3"
	}
	py, err := exec.LookPath(cfg.Python)
	if err != nil {
		return nil, fmt.Errorf("%w: python interpreter %q: %v (give --python or CREWCORE_PYTHON)", ErrInvalid, cfg.Python, err)
	}
	cfg.Python = py
	for _, d := range cfg.CrewPath {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%w: crew path %q is not a directory", ErrInvalid, d)
		}
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 2 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 3 * time.Minute
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	return &Supervisor{cfg: cfg, changed: make(chan struct{}), done: make(chan struct{}), procs: make([]*proc, cfg.Processes)}, nil
}

// StopWait is the longest a stopped run takes to end: two grace periods
// (hook, then interrupt) and a second for the process to be killed.
func (s *Supervisor) StopWait() time.Duration { return 2*s.cfg.StopGrace + time.Second }

// Start spawns every process and waits until each has imported CrewAI and
// said it is ready, or fails with the first that could not start.
func (s *Supervisor) Start(ctx context.Context) error {
	for i := range s.procs {
		if err := s.spawn(i); err != nil {
			s.Close(0)
			return err
		}
	}
	deadline := time.NewTimer(s.cfg.StartTimeout)
	defer deadline.Stop()
	for _, p := range s.snapshot() {
		select {
		case <-p.ready:
		case <-p.dead:
			s.mu.Lock()
			msg := p.deadMsg
			s.mu.Unlock()
			s.Close(0)
			return fmt.Errorf("%w: python worker process did not start: %s", ErrProcess, msg)
		case <-deadline.C:
			s.Close(0)
			return fmt.Errorf("%w: python worker process not ready after %s", ErrProcess, s.cfg.StartTimeout)
		case <-ctx.Done():
			s.Close(0)
			return ctx.Err()
		}
	}
	return nil
}

func (s *Supervisor) snapshot() []*proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*proc(nil), s.procs...)
}

// notify wakes everyone waiting for a slot (call with s.mu held).
func (s *Supervisor) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Supervisor) spawn(slot int) error {
	toChildR, toChildW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("%w: pipe: %v", ErrProcess, err)
	}
	fromChildR, fromChildW, err := os.Pipe()
	if err != nil {
		toChildR.Close()
		toChildW.Close()
		return fmt.Errorf("%w: pipe: %v", ErrProcess, err)
	}
	cmd := exec.Command(s.cfg.Python, "-m", "crewcore._worker")
	cmd.Stdout = s.cfg.Stderr
	cmd.Stderr = s.cfg.Stderr
	cmd.ExtraFiles = []*os.File{toChildR, fromChildW} // fd 3, fd 4
	env := append(os.Environ(), s.cfg.Env...)
	env = append(env,
		"CREWCORE_RUNQ_FDS=3,4",
		fmt.Sprintf("CREWCORE_RUNQ_CONCURRENCY=%d", s.cfg.Concurrency),
		fmt.Sprintf("CREWCORE_RUNQ_STOP_GRACE=%g", s.cfg.StopGrace.Seconds()),
		"PYTHONUNBUFFERED=1",
	)
	if len(s.cfg.CPUs) > 0 {
		env = append(env, fmt.Sprintf("CREWCORE_RUNQ_CPU=%d", s.cfg.CPUs[slot%len(s.cfg.CPUs)]))
	}
	if len(s.cfg.CrewPath) > 0 {
		env = append(env, "CREWCORE_RUNQ_CREW_PATH="+strings.Join(s.cfg.CrewPath, string(os.PathListSeparator)))
	}
	cmd.Env = env
	// The kernel kills the process when this one dies (SIGKILL included).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		toChildR.Close()
		toChildW.Close()
		fromChildR.Close()
		fromChildW.Close()
		return fmt.Errorf("%w: start %s: %v", ErrProcess, s.cfg.Python, err)
	}
	toChildR.Close()
	fromChildW.Close()
	p := &proc{
		slot: slot, cmd: cmd, pid: cmd.Process.Pid, w: toChildW,
		ready: make(chan struct{}), dead: make(chan struct{}), inflight: map[int64]*call{},
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cmd.Process.Kill()
		cmd.Wait()
		toChildW.Close()
		fromChildR.Close()
		return ErrClosed
	}
	s.procs[slot] = p
	s.Started++
	s.wg.Add(1)
	s.mu.Unlock()
	go s.read(p, fromChildR)
	return nil
}

// read serves one process's replies until its pipe closes, then buries it.
func (s *Supervisor) read(p *proc, r *os.File) {
	defer s.wg.Done()
	br := bufio.NewReaderSize(r, 64<<10)
	var why error
	for {
		msg, err := readFrame(br)
		if err != nil {
			why = err
			break
		}
		var m struct {
			Op        string          `json:"op"`
			ID        int64           `json:"id"`
			PID       int             `json:"pid"`
			OK        bool            `json:"ok"`
			Permanent bool            `json:"permanent"`
			Stopped   string          `json:"stopped"`
			Error     string          `json:"error"`
			Record    json.RawMessage `json:"record"`
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			why = fmt.Errorf("bad message from process %d: %v", p.pid, err)
			break
		}
		switch m.Op {
		case "ready":
			s.mu.Lock()
			p.isReady = true
			s.notify()
			s.mu.Unlock()
			close(p.ready)
		case "done":
			s.mu.Lock()
			c := p.inflight[m.ID]
			delete(p.inflight, m.ID)
			s.notify()
			s.mu.Unlock()
			if c != nil {
				c.done <- Outcome{OK: m.OK, Record: m.Record, Error: m.Error, Permanent: m.Permanent, Stopped: m.Stopped, PID: p.pid}
			}
		default:
			why = fmt.Errorf("unknown message %q from process %d", m.Op, p.pid)
		}
		if why != nil {
			break
		}
	}
	r.Close()
	p.cmd.Process.Kill()
	werr := p.cmd.Wait()
	p.w.Close()
	msg := fmt.Sprintf("python worker process %d exited (%v)", p.pid, exitText(werr))
	if why != nil && !errors.Is(why, io.EOF) {
		msg += ": " + why.Error()
	}
	s.mu.Lock()
	p.isDead = true
	p.deadMsg = msg
	calls := p.inflight
	p.inflight = map[int64]*call{}
	killedFor := p.killedFor
	closed := s.closed
	s.Died++
	s.notify()
	s.mu.Unlock()
	close(p.dead)
	for id, c := range calls {
		o := Outcome{Error: "WorkerProcessError: " + msg, PID: p.pid}
		if killedFor != 0 && id != killedFor {
			o.Requeue = true // it was killed to stop another run
		}
		c.done <- o
	}
	if !closed {
		s.respawn(p)
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// respawn replaces a dead process, backing off while replacements die
// before they are ready.
func (s *Supervisor) respawn(old *proc) {
	delay := time.Duration(0)
	if !old.isReady {
		delay = time.Second
	}
	go func() {
		for {
			if delay > 0 {
				select {
				case <-s.done:
					return
				case <-time.After(delay):
				}
			}
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			err := s.spawn(old.slot)
			if err == nil || errors.Is(err, ErrClosed) {
				return
			}
			fmt.Fprintf(s.cfg.Stderr, "crewcore worker: %v (retrying)\n", err)
			delay = min(max(2*delay, time.Second), 30*time.Second)
		}
	}()
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes (at most %d)", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (p *proc) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("%w: message of %d bytes (at most %d)", ErrInvalid, len(b), maxFrame)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err = p.w.Write(buf)
	return err
}

// acquire picks the ready process with the fewest runs that has a free
// slot, waiting for one.
func (s *Supervisor) acquire(ctx context.Context, c *call) (*proc, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		var best *proc
		for _, p := range s.procs {
			if p == nil || !p.isReady || p.isDead || len(p.inflight) >= s.cfg.Concurrency {
				continue
			}
			if best == nil || len(p.inflight) < len(best.inflight) {
				best = p
			}
		}
		if best != nil {
			best.inflight[c.id] = c
			s.mu.Unlock()
			return best, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// RunRequest is one run for a process.
type RunRequest struct {
	ID      int64
	Attempt int
	Args    RunArgs
	Timeout time.Duration // 0: none
	// Reason says why ctx ended, when it ends ("cancelled" or "shutdown").
	Reason func() string
}

// Run runs one crew in a process and waits for its outcome. When the run
// passes req.Timeout or ctx ends, the process is told to stop it; a run
// that does not end within StopWait gets its process killed (the other
// runs of that process come back with Requeue set).
func (s *Supervisor) Run(ctx context.Context, req RunRequest) Outcome {
	c := &call{id: req.ID, done: make(chan Outcome, 1)}
	p, err := s.acquire(ctx, c)
	if err != nil {
		return Outcome{Error: "WorkerShutdown: no worker process took the run: " + err.Error(), Stopped: req.Reason(), Requeue: true}
	}
	msg := map[string]any{
		"op": "run", "id": req.ID, "attempt": req.Attempt, "crew": req.Args.Crew,
		"inputs": req.Args.Inputs, "timeout": req.Timeout.Seconds(),
	}
	if err := p.send(msg); err != nil {
		// The process is dying: its reader delivers the outcome.
		return <-c.done
	}
	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var reason string
	select {
	case o := <-c.done:
		return o
	case <-timeout:
		reason = "timeout"
	case <-ctx.Done():
		reason = req.Reason()
	}
	_ = p.send(map[string]any{"op": "stop", "id": req.ID, "reason": reason})
	wait := time.NewTimer(s.StopWait())
	defer wait.Stop()
	select {
	case o := <-c.done:
		if !o.OK {
			o.Stopped = reason // ours, whatever the process made of it
		}
		return o
	case <-wait.C:
	}
	s.mu.Lock()
	if !p.isDead && p.killedFor == 0 {
		p.killedFor = req.ID
	}
	s.mu.Unlock()
	fmt.Fprintf(s.cfg.Stderr, "crewcore worker: run %d did not stop within %s (%s): killing its process %d\n", req.ID, s.StopWait(), reason, p.pid)
	p.cmd.Process.Kill()
	o := <-c.done
	o.Requeue = false
	o.Stopped = reason
	return o
}

// Busy is the number of runs in the processes now.
func (s *Supervisor) Busy() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.procs {
		if p != nil {
			n += len(p.inflight)
		}
	}
	return n
}

// PIDs are the live processes' ids.
func (s *Supervisor) PIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, p := range s.procs {
		if p != nil && !p.isDead {
			out = append(out, p.pid)
		}
	}
	return out
}

// Close asks every process to exit, waits up to grace, then kills the
// rest and waits for them. It is idempotent.
func (s *Supervisor) Close(grace time.Duration) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return
	}
	s.closed = true
	close(s.done)
	s.notify()
	procs := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	for _, p := range procs {
		if p != nil {
			_ = p.send(map[string]any{"op": "exit"})
		}
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	for _, p := range procs {
		if p == nil {
			continue
		}
		select {
		case <-p.dead:
		case <-t.C:
		}
	}
	for _, p := range procs {
		if p != nil {
			p.cmd.Process.Kill()
		}
	}
	s.wg.Wait()
}
