package runq

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Kind is the River job kind of a crew run.
const Kind = "crewcore_run"

// DefaultRiverQueue is the River queue runs go to unless told otherwise.
const DefaultRiverQueue = "crewcore"

// DefaultMaxAttempts is how many times a run is tried (its first attempt
// included) unless told otherwise. A worker killed mid-run costs its run
// one attempt, so it must be above 1 for runs to survive a crash.
const DefaultMaxAttempts = 3

// Limits on what one submit may carry.
const (
	MaxInputBytes = 8 << 20 // one input's JSON
	MaxKeyBytes   = 200     // a caller's unique key
	MaxInputs     = 100_000 // inputs per submit
)

// RunArgs are the arguments of one run job (River's args column).
type RunArgs struct {
	// Crew is the factory, "package.module:attr" (attr may be dotted).
	Crew string `json:"crew"`
	// Inputs is the JSON object handed to kickoff(inputs=...).
	Inputs json.RawMessage `json:"inputs"`
	// Index is the input's position in its submit call.
	Index int `json:"index"`
	// Batch is the submit call's batch id (also a tag of the job).
	Batch string `json:"batch,omitempty"`
	// Key is the caller's unique key for this input ("<key>#<index>"): a
	// second submit with the same key finds the first job instead of
	// adding one (River's unique jobs, by this field only).
	Key string `json:"key,omitempty" river:"unique"`
	// Timeout is the run's time limit in seconds (0: the worker's default).
	Timeout float64 `json:"timeout,omitempty"`
}

// Kind is River's job kind.
func (RunArgs) Kind() string { return Kind }

// SubmitRequest describes one submit call: one job per input.
type SubmitRequest struct {
	// Crew is the crew factory, "package.module:attr".
	Crew string
	// Inputs are JSON objects, one run each.
	Inputs [][]byte
	// RiverQueue is the River queue (default DefaultRiverQueue).
	RiverQueue string
	// Priority is River's priority, 1 (first, the default) to 4.
	Priority int
	// MaxAttempts is the number of tries per run (default DefaultMaxAttempts).
	MaxAttempts int
	// Timeout is the per-run time limit in seconds (0: the worker's).
	Timeout float64
	// ScheduledAt delays the runs until then (zero: now).
	ScheduledAt time.Time
	// Key makes the runs unique: input i gets the key "<Key>#<i>".
	Key string
	// Batch is the batch id (a River tag); generated when empty.
	Batch string
}

// Submitted is one job of a submit call.
type Submitted struct {
	ID        int64
	Index     int
	Batch     string
	State     string
	Duplicate bool // an earlier job with the same key was found instead
}

var (
	crewRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	batchRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_\-]{1,98}[A-Za-z0-9_]$`)
	queueRE = regexp.MustCompile(`^[a-z0-9_][a-z0-9_\-]{0,62}$`)
)

// CheckCrew validates a crew factory name ("package.module:attr").
func CheckCrew(crew string) error {
	if !crewRE.MatchString(crew) {
		return fmt.Errorf("%w: crew %q must name a factory as \"package.module:function\"", ErrInvalid, crew)
	}
	return nil
}

// NewBatchID returns a random batch id.
func NewBatchID() string {
	var b [8]byte
	rand.Read(b[:])
	return "b" + hex.EncodeToString(b[:])
}

func (r *SubmitRequest) check() error {
	if err := CheckCrew(r.Crew); err != nil {
		return err
	}
	if len(r.Inputs) > MaxInputs {
		return fmt.Errorf("%w: %d inputs in one submit (at most %d)", ErrInvalid, len(r.Inputs), MaxInputs)
	}
	for i, in := range r.Inputs {
		if len(in) > MaxInputBytes {
			return fmt.Errorf("%w: input %d is %d bytes of JSON (at most %d)", ErrInvalid, i, len(in), MaxInputBytes)
		}
		t := bytes.TrimSpace(in)
		if len(t) == 0 || t[0] != '{' || !json.Valid(t) {
			return fmt.Errorf("%w: input %d is not a JSON object", ErrInvalid, i)
		}
	}
	if r.RiverQueue == "" {
		r.RiverQueue = DefaultRiverQueue
	}
	if !queueRE.MatchString(r.RiverQueue) {
		return fmt.Errorf("%w: River queue name %q must be lower-case letters, digits, '_' or '-' (at most 63)", ErrInvalid, r.RiverQueue)
	}
	if r.Priority == 0 {
		r.Priority = 1
	}
	if r.Priority < 1 || r.Priority > 4 {
		return fmt.Errorf("%w: priority %d must be 1 (first) to 4 (last)", ErrInvalid, r.Priority)
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.MaxAttempts < 1 || r.MaxAttempts > 1000 {
		return fmt.Errorf("%w: attempts %d must be 1 to 1000", ErrInvalid, r.MaxAttempts)
	}
	if math.IsNaN(r.Timeout) || r.Timeout < 0 || r.Timeout > 1e7 {
		return fmt.Errorf("%w: timeout %v must be seconds >= 0 (0: the worker's default)", ErrInvalid, r.Timeout)
	}
	if len(r.Key) > MaxKeyBytes {
		return fmt.Errorf("%w: key is %d bytes (at most %d)", ErrInvalid, len(r.Key), MaxKeyBytes)
	}
	if r.Batch == "" {
		r.Batch = NewBatchID()
	}
	if !batchRE.MatchString(r.Batch) {
		return fmt.Errorf("%w: batch id %q must be 3-100 letters, digits, '_' or '-'", ErrInvalid, r.Batch)
	}
	return nil
}

// Submit adds one run job per input, in one transaction. With a Key, an
// input whose key already has a job (in any state but cancelled or
// discarded) gets that job back, marked Duplicate.
func (q *Queue) Submit(ctx context.Context, req SubmitRequest) ([]Submitted, error) {
	if err := q.live(); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	if len(req.Inputs) == 0 {
		return nil, nil
	}
	params := make([]river.InsertManyParams, len(req.Inputs))
	for i, in := range req.Inputs {
		args := RunArgs{Crew: req.Crew, Inputs: json.RawMessage(bytes.TrimSpace(in)), Index: i, Batch: req.Batch, Timeout: req.Timeout}
		opts := &river.InsertOpts{
			MaxAttempts: req.MaxAttempts,
			Priority:    req.Priority,
			Queue:       req.RiverQueue,
			ScheduledAt: req.ScheduledAt,
			Tags:        []string{req.Batch},
		}
		if req.Key != "" {
			args.Key = fmt.Sprintf("%s#%d", req.Key, i)
			opts.UniqueOpts = river.UniqueOpts{ByArgs: true}
		}
		params[i] = river.InsertManyParams{Args: args, InsertOpts: opts}
	}
	res, err := q.kit.insertMany(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("runq: submit %d runs to %s: %w", len(params), q.spec, classify(q.spec, err))
	}
	out := make([]Submitted, len(res))
	for i, r := range res {
		out[i] = Submitted{ID: r.Job.ID, Index: i, Batch: req.Batch, State: string(r.Job.State), Duplicate: r.UniqueSkippedAsDuplicate}
	}
	return out, nil
}

// finalStates are the states a run ends in.
var finalStates = []rivertype.JobState{rivertype.JobStateCompleted, rivertype.JobStateCancelled, rivertype.JobStateDiscarded}

// IsFinal reports whether a River state is final (completed, cancelled,
// discarded).
func IsFinal(state string) bool {
	for _, s := range finalStates {
		if string(s) == state {
			return true
		}
	}
	return false
}
