package memory

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crewcore/crewcore/internal/vec"
)

// MaxContentBytes is the largest record content stored; larger content is
// refused with ErrInvalidRecord.
const MaxContentBytes = 64 << 20

// TimeLayout is the stored form of every timestamp: naive UTC with
// microseconds, which sorts lexicographically in time order and is what
// Python's datetime.isoformat() produces for naive values with microseconds.
const TimeLayout = "2006-01-02T15:04:05.000000"

// Record is one memory: the Go form of CrewAI's MemoryRecord.
type Record struct {
	ID           string          // unique id (CrewAI uses a uuid4 string)
	Content      string          // the remembered text
	Scope        string          // hierarchical path such as "/crew/research"; "" means "/"
	Categories   []string        // tags
	Metadata     json.RawMessage // a JSON object; nil means {}
	Importance   float64         // 0..1
	CreatedAt    time.Time       // stored as UTC
	LastAccessed time.Time       // stored as UTC
	Source       string          // provenance ("" means none)
	Private      bool            // visible only to the same source when privacy is applied
	Embedding    []float32       // nil: stored without a vector, never returned by Search
}

// Match is one search result.
type Match struct {
	Record Record
	Score  float64
}

// Query describes a vector search. Filters are applied before top-k
// selection, so a filtered search returns min(Limit, matching records).
type Query struct {
	Vector      []float32
	ScopePrefix string         // "" or "/": no scope filter; else whole-segment prefix
	Categories  []string       // any of these; empty: no filter
	Metadata    map[string]any // every key equal (JSON values); empty: no filter
	Limit       int            // <0 is an error, 0 returns nothing
	MinScore    float64        // results scoring below are dropped
	// Privacy, when non-nil, hides private records unless their source
	// equals *Privacy (a nil Privacy applies no privacy filter; a pointer to
	// "" hides every private record).
	Privacy *string
	// WithEmbeddings returns each match's vector.
	WithEmbeddings bool
}

// Filter selects records to delete. Every set field must hold (AND); the
// zero Filter selects everything.
type Filter struct {
	ScopePrefix string
	Categories  []string
	IDs         []string  // non-nil: only these ids (an empty non-nil slice selects nothing)
	OlderThan   time.Time // created before this instant
	Metadata    map[string]any
}

// ScopeInfo summarizes the records under a scope.
type ScopeInfo struct {
	Path       string
	Count      int
	Categories []string // sorted
	Oldest     time.Time
	Newest     time.Time
	Children   []string // immediate child scopes, sorted
}

// NormalizeScope returns the canonical form of a scope path: a leading "/",
// no repeated or trailing "/" (the root is "/"). It refuses "." and ".."
// segments and control characters with ErrInvalidScope.
func NormalizeScope(scope string) (string, error) {
	if scope == "" || scope == "/" {
		return "/", nil
	}
	if !utf8.ValidString(scope) {
		return "", fmt.Errorf("%w: scope %q is not valid UTF-8", ErrInvalidScope, scope)
	}
	for _, r := range scope {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: scope %q contains a control character", ErrInvalidScope, scope)
		}
	}
	var b strings.Builder
	b.Grow(len(scope) + 1)
	for seg := range strings.SplitSeq(scope, "/") {
		if seg == "" {
			continue
		}
		if seg == "." || seg == ".." {
			return "", fmt.Errorf("%w: scope %q contains a %q segment", ErrInvalidScope, scope, seg)
		}
		b.WriteByte('/')
		b.WriteString(seg)
	}
	if b.Len() == 0 {
		return "/", nil
	}
	return b.String(), nil
}

// normalizePrefix is NormalizeScope for filters: "" and "/" mean no filter
// and come back as "".
func normalizePrefix(prefix string) (string, error) {
	p, err := NormalizeScope(prefix)
	if err != nil || p == "/" {
		return "", err
	}
	return p, nil
}

// scopeMatches reports whether scope lies under prefix (whole segments only).
// An empty prefix matches everything.
func scopeMatches(prefix, scope string) bool {
	if prefix == "" || prefix == "/" {
		return true
	}
	if !strings.HasPrefix(scope, prefix) {
		return false
	}
	return len(scope) == len(prefix) || scope[len(prefix)] == '/'
}

// formatTime renders t in the stored form (UTC, microseconds).
func formatTime(t time.Time) string {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UTC().Format(TimeLayout)
}

// parseTime reads the stored form back.
func parseTime(s string) time.Time {
	t, err := time.Parse(TimeLayout, s)
	if err != nil {
		// Accept any ISO-8601 variant a foreign writer may have left.
		if t2, err2 := time.Parse(time.RFC3339Nano, s); err2 == nil {
			return t2.UTC()
		}
		if t2, err2 := time.Parse("2006-01-02T15:04:05", s); err2 == nil {
			return t2
		}
	}
	return t
}

// checkVector refuses NaN and Inf.
func checkVector(v []float32, what string) error {
	if len(v) == 0 {
		return nil
	}
	// Fast path: NaN and Inf propagate into the SIMD squared norm. A finite
	// norm proves every component finite; an infinite one may also come from
	// huge finite values, so look closer.
	if n := vec.SquaredNorm(v); !math.IsNaN(float64(n)) && !math.IsInf(float64(n), 0) {
		return nil
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("%w: %s has a non-finite value (%v) at index %d", ErrInvalidRecord, what, x, i)
		}
	}
	return nil
}

// prepared is a validated record in stored form.
type prepared struct {
	id, content, scope    string
	cats                  []string
	catsJSON, meta        string
	importance            float64
	created, accessed     string
	source                string
	private               bool
	vec                   []float32
	keepVector            bool // update with no embedding: keep the stored one
	createdT, lastAccessT time.Time
}

// prepare validates r and converts it to stored form.
func prepare(r *Record) (*prepared, error) {
	if r.ID == "" {
		return nil, fmt.Errorf("%w: record id is empty", ErrInvalidRecord)
	}
	if !utf8.ValidString(r.ID) {
		return nil, fmt.Errorf("%w: record id %q is not valid UTF-8", ErrInvalidRecord, r.ID)
	}
	if len(r.Content) > MaxContentBytes {
		return nil, fmt.Errorf("%w: record %s: content is %d bytes, over the %d byte limit", ErrInvalidRecord, r.ID, len(r.Content), MaxContentBytes)
	}
	if !utf8.ValidString(r.Content) {
		return nil, fmt.Errorf("%w: record %s: content is not valid UTF-8", ErrInvalidRecord, r.ID)
	}
	scope, err := NormalizeScope(r.Scope)
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", r.ID, err)
	}
	for _, c := range r.Categories {
		if !utf8.ValidString(c) {
			return nil, fmt.Errorf("%w: record %s: category %q is not valid UTF-8", ErrInvalidRecord, r.ID, c)
		}
	}
	meta := "{}"
	if len(r.Metadata) > 0 {
		if !json.Valid(r.Metadata) {
			return nil, fmt.Errorf("%w: record %s: metadata is not valid JSON", ErrInvalidRecord, r.ID)
		}
		trimmed := strings.TrimSpace(string(r.Metadata))
		if !strings.HasPrefix(trimmed, "{") {
			if trimmed != "null" {
				return nil, fmt.Errorf("%w: record %s: metadata must be a JSON object", ErrInvalidRecord, r.ID)
			}
		} else {
			meta = trimmed
		}
	}
	if !utf8.ValidString(r.Source) {
		return nil, fmt.Errorf("%w: record %s: source is not valid UTF-8", ErrInvalidRecord, r.ID)
	}
	if math.IsNaN(r.Importance) || math.IsInf(r.Importance, 0) {
		return nil, fmt.Errorf("%w: record %s: importance must be finite", ErrInvalidRecord, r.ID)
	}
	if err := checkVector(r.Embedding, "record "+r.ID+": embedding"); err != nil {
		return nil, err
	}
	if err := checkContract(r, scope); err != nil { // contract.go
		return nil, err
	}
	cats := r.Categories
	if cats == nil {
		cats = []string{}
	}
	return &prepared{
		id: r.ID, content: r.Content, scope: scope,
		cats: cats, catsJSON: encodeStrings(cats), meta: meta,
		importance: r.Importance,
		created:    formatTime(r.CreatedAt), accessed: formatTime(r.LastAccessed),
		source: r.Source, private: r.Private,
		vec: r.Embedding, keepVector: len(r.Embedding) == 0,
	}, nil
}

// encodeStrings renders a JSON array of strings.
func encodeStrings(ss []string) string {
	b, _ := json.Marshal(ss) // []string always marshals
	return string(b)
}

// decodeStrings parses a JSON array of strings; a malformed value yields nil.
func decodeStrings(s string) []string {
	if s == "" || s == "[]" {
		return []string{}
	}
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return []string{}
	}
	return out
}

// metaEqual reports whether every key of want is present in got with an equal
// JSON value.
func metaEqual(got map[string]any, want map[string]any) bool {
	for k, wv := range want {
		gv, ok := got[k]
		if !ok || !jsonEqual(gv, wv) {
			return false
		}
	}
	return true
}

// jsonEqual compares two decoded JSON values (numbers as float64).
func jsonEqual(a, b any) bool {
	switch av := a.(type) {
	case nil:
		return b == nil
	case bool:
		bv, ok := b.(bool)
		return ok && av == bv
	case json.Number:
		return numberEqual(av, b)
	case float64:
		bv, ok := toFloat(b)
		return ok && av == bv
	case string:
		bv, ok := b.(string)
		return ok && av == bv
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !jsonEqual(av[i], bv[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, x := range av {
			y, ok := bv[k]
			if !ok || !jsonEqual(x, y) {
				return false
			}
		}
		return true
	default:
		if f, ok := toFloat(a); ok {
			return jsonEqual(f, b)
		}
		return false
	}
}

// numberEqual compares a JSON number with another decoded value: integers
// exactly (2^60 and 2^60+1 differ), anything else by float64 value (1 == 1.0).
func numberEqual(a json.Number, b any) bool {
	bn, isNum := b.(json.Number)
	if !isNum {
		if _, ok := b.(bool); ok || b == nil {
			return false
		}
		switch x := b.(type) {
		case int64:
			bn, isNum = json.Number(strconv.FormatInt(x, 10)), true
		case int:
			bn, isNum = json.Number(strconv.Itoa(x)), true
		case uint64:
			bn, isNum = json.Number(strconv.FormatUint(x, 10)), true
		default:
			bf, ok := toFloat(b)
			af, err := a.Float64()
			return ok && err == nil && af == bf
		}
	}
	ai, aok := new(big.Int).SetString(string(a), 10)
	bi, bok := new(big.Int).SetString(string(bn), 10)
	if aok && bok {
		return ai.Cmp(bi) == 0
	}
	af, err1 := a.Float64()
	bf, err2 := bn.Float64()
	return err1 == nil && err2 == nil && af == bf
}

// DecodeJSONObject decodes a JSON object keeping numbers as json.Number, the
// form Query.Metadata and Filter.Metadata compare exactly.
func DecodeJSONObject(s string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uint32:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}
