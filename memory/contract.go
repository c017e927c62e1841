package memory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The data contract every crewcore memory store keeps (docs/architecture.md,
// "Semantics" and "Limits"): the embedded Store, the PostgreSQL store and
// the pure-Python engine accept the same records and arguments and refuse
// the rest with the same sentinel. python/crewcore/memory/validate.py is the
// Python side; this file mirrors it for Go callers.
const (
	// MaxKeyBytes bounds a record id, a normalized scope and each category
	// (UTF-8 bytes): PostgreSQL indexes them, and an index entry must fit a
	// third of an 8 KiB page.
	MaxKeyBytes = 1024
	// MaxDim is the largest vector dimension (pgvector's limit).
	MaxDim = 16000
	// MaxJSONDepth bounds the nesting of lists and objects in metadata and
	// metadata filters.
	MaxJSONDepth = 64
)

// minTime and maxTime bound stored timestamps: years 1 to 9999 in UTC, the
// range of the stored form (and of Python's datetime). The zero time.Time
// itself means "now" in a Record.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// checkContract applies the checks of the data contract that prepare does
// not already make to a record whose scope normalized to scope. Errors wrap
// ErrInvalidRecord (ErrInvalidScope for the scope).
func checkContract(r *Record, scope string) error {
	if strings.IndexByte(r.ID, 0) >= 0 {
		return fmt.Errorf("%w: record id %q contains a NUL character (U+0000)", ErrInvalidRecord, r.ID)
	}
	if len(r.ID) > MaxKeyBytes {
		return fmt.Errorf("%w: record id is %d bytes, over the %d byte limit", ErrInvalidRecord, len(r.ID), MaxKeyBytes)
	}
	if strings.IndexByte(r.Content, 0) >= 0 {
		return fmt.Errorf("%w: record %s: content contains a NUL character (U+0000)", ErrInvalidRecord, r.ID)
	}
	if len(scope) > MaxKeyBytes {
		return fmt.Errorf("%w: record %s: scope is %d bytes, over the %d byte limit", ErrInvalidScope, r.ID, len(scope), MaxKeyBytes)
	}
	for _, c := range r.Categories {
		if strings.IndexByte(c, 0) >= 0 {
			return fmt.Errorf("%w: record %s: category %q contains a NUL character (U+0000)", ErrInvalidRecord, r.ID, c)
		}
		if len(c) > MaxKeyBytes {
			return fmt.Errorf("%w: record %s: category is %d bytes, over the %d byte limit", ErrInvalidRecord, r.ID, len(c), MaxKeyBytes)
		}
	}
	if strings.IndexByte(r.Source, 0) >= 0 {
		return fmt.Errorf("%w: record %s: source contains a NUL character (U+0000)", ErrInvalidRecord, r.ID)
	}
	if !(r.Importance >= 0 && r.Importance <= 1) {
		return fmt.Errorf("%w: record %s: importance must be in [0, 1], got %v", ErrInvalidRecord, r.ID, r.Importance)
	}
	for _, t := range [...]struct {
		name string
		t    time.Time
	}{{"created_at", r.CreatedAt}, {"last_accessed", r.LastAccessed}} {
		if err := checkTime(t.t); err != nil {
			return fmt.Errorf("%w: record %s: %s %v", ErrInvalidRecord, r.ID, t.name, err)
		}
	}
	if len(r.Embedding) > MaxDim {
		return fmt.Errorf("%w: record %s: embedding has %d dimensions, over the limit of %d", ErrInvalidRecord, r.ID, len(r.Embedding), MaxDim)
	}
	if len(r.Metadata) > 0 {
		if err := CheckJSON(r.Metadata); err != nil {
			return fmt.Errorf("%w: record %s: metadata %v", ErrInvalidRecord, r.ID, err)
		}
	}
	return nil
}

// checkTime refuses a non-zero time outside years 1 to 9999 in UTC (the zero
// time means "now").
func checkTime(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	if u.Before(minTime) || u.After(maxTime) {
		return fmt.Errorf("%s is out of range (years 1 to 9999 in UTC, after 0001-01-01T00:00:00)", t.Format(time.RFC3339Nano))
	}
	return nil
}

// CheckJSON reports what in the JSON text doc the stores cannot hold alike:
// invalid JSON, nesting deeper than MaxJSONDepth, a NUL character in a
// string or key, an integer outside the signed 64-bit range, or a number
// that overflows float64. The error does not wrap a sentinel.
func CheckJSON(doc []byte) error {
	if !utf8.Valid(doc) {
		return errors.New("is not valid UTF-8")
	}
	if !json.Valid(doc) {
		return errors.New("is not valid JSON")
	}
	// Fast path: without an escape (a NUL can only be written \u0000) or a
	// digit, only the nesting can be wrong, and only with that many brackets.
	if !bytes.ContainsAny(doc, "\\0123456789") && bytes.Count(doc, []byte("{"))+bytes.Count(doc, []byte("[")) <= MaxJSONDepth {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	depth := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("is not valid JSON: %v", err)
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				depth++
				if depth > MaxJSONDepth {
					return fmt.Errorf("is nested deeper than %d levels", MaxJSONDepth)
				}
			} else {
				depth--
			}
		case string:
			if strings.IndexByte(v, 0) >= 0 {
				return errors.New("has a string or key with a NUL character (U+0000)")
			}
		case json.Number:
			if err := checkNumber(v); err != nil {
				return err
			}
		}
	}
}

// checkNumber refuses integers outside int64 and numbers outside float64.
func checkNumber(n json.Number) error {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return fmt.Errorf("has the integer %s, outside the signed 64-bit range", s)
		}
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return fmt.Errorf("has the number %s, outside the float64 range", s)
	}
	return nil
}

// CheckQuery refuses search arguments no store could match alike (a NUL
// character in a category, the privacy source or the metadata filter, a
// metadata filter too deep or with out-of-range numbers) with
// ErrInvalidArgument.
func CheckQuery(q *Query) error {
	if err := checkArgStrings("categories", q.Categories); err != nil {
		return err
	}
	if q.Privacy != nil && strings.IndexByte(*q.Privacy, 0) >= 0 {
		return fmt.Errorf("%w: source contains a NUL character (U+0000)", ErrInvalidArgument)
	}
	return checkMetaFilter(q.Metadata)
}

// CheckFilter is CheckQuery for a Delete filter (categories, ids, metadata).
func CheckFilter(f *Filter) error {
	if err := checkArgStrings("categories", f.Categories); err != nil {
		return err
	}
	if err := checkArgStrings("record ids", f.IDs); err != nil {
		return err
	}
	if err := checkTime(f.OlderThan); err != nil {
		return fmt.Errorf("%w: older_than %v", ErrInvalidArgument, err)
	}
	return checkMetaFilter(f.Metadata)
}

// CheckIDs refuses record id arguments (Get, Touch) holding a NUL character
// with ErrInvalidArgument.
func CheckIDs(ids ...string) error { return checkArgStrings("record ids", ids) }

func checkArgStrings(what string, ss []string) error {
	for _, s := range ss {
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%w: %s: %q contains a NUL character (U+0000)", ErrInvalidArgument, what, s)
		}
	}
	return nil
}

func checkMetaFilter(m map[string]any) error {
	if len(m) == 0 {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("%w: metadata filter: %v", ErrInvalidArgument, err)
	}
	if err := CheckJSON(b); err != nil {
		return fmt.Errorf("%w: metadata filter %v", ErrInvalidArgument, err)
	}
	return nil
}
