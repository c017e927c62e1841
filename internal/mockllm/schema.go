package mockllm

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// promptInfo is what the synthesizer derives from the chat request to fill
// strings with something related to the prompt.
type promptInfo struct {
	subject  string   // see subject()
	keywords []string // keywords(subject)
	ids      []string // "id=XYZ" tokens found in the messages (consolidation prompts)
}

var idToken = regexp.MustCompile(`\bid=([A-Za-z0-9_.:-]+)`)

func newPromptInfo(lastUser string, all string) promptInfo {
	subj := subject(lastUser)
	if subj == "" {
		subj = subject(all)
	}
	p := promptInfo{subject: subj, keywords: keywords(subj, 8)}
	if len(p.keywords) == 0 {
		p.keywords = keywords(all, 8)
	}
	for _, m := range idToken.FindAllStringSubmatch(all, -1) {
		p.ids = append(p.ids, m[1])
	}
	return p
}

// synthesizer builds a JSON value that validates against a JSON Schema.
type synthesizer struct {
	root   any
	prompt promptInfo
	steps  int // guards against pathological schemas
}

const (
	maxSynthDepth = 24
	maxSynthSteps = 20000
)

// synthesize returns a value for schema (decoded with decodeValue) whose
// strings are derived from the prompt. It never fails: unsatisfiable or
// unsupported constructs yield a best effort value.
func synthesize(schema any, prompt promptInfo) any {
	s := &synthesizer{root: schema, prompt: prompt}
	return s.value(schema, "", 0, 0)
}

// value synthesizes an instance of schema for a property called name; index
// is the element index when the value is an array item.
func (s *synthesizer) value(schema any, name string, index, depth int) any {
	s.steps++
	switch sc := schema.(type) {
	case bool:
		if !sc {
			return nil
		}
		return s.str(newObject(), name, index)
	case *object:
		return s.fromObject(sc, name, index, depth)
	default:
		return s.str(newObject(), name, index)
	}
}

func (s *synthesizer) fromObject(sc *object, name string, index, depth int) any {
	// An explicit default wins when it is valid for the whole schema
	// (Pydantic emits defaults such as importance=0.5, insert_new=true).
	if d, ok := sc.get("default"); ok && validate(s.root, sc, d) == nil {
		return d
	}
	if c, ok := sc.get("const"); ok {
		return c
	}
	if e, ok := sc.get("enum"); ok {
		if vals := asSlice(e); len(vals) > 0 {
			for _, v := range vals {
				if validate(s.root, sc, v) == nil {
					return v
				}
			}
			return vals[0]
		}
	}
	if ref, ok := sc.get("$ref"); ok {
		target, err := resolveRef(s.root, ref)
		if err == nil && depth < maxSynthDepth && s.steps < maxSynthSteps {
			merged := s.mergeSiblings(sc, target)
			return s.value(merged, name, index, depth+1)
		}
		return nil
	}
	if all, ok := sc.get("allOf"); ok {
		return s.value(s.mergeAllOf(sc, asSlice(all)), name, index, depth+1)
	}
	for _, key := range []string{"anyOf", "oneOf"} {
		if branches, ok := sc.get(key); ok {
			return s.fromBranches(sc, asSlice(branches), name, index, depth)
		}
	}
	switch s.pickType(sc) {
	case "object":
		return s.obj(sc, depth)
	case "array":
		return s.arr(sc, name, depth)
	case "integer":
		return s.number(sc, name, true)
	case "number":
		return s.number(sc, name, false)
	case "boolean":
		return false
	case "null":
		return nil
	default:
		return s.str(sc, name, index)
	}
}

// mergeSiblings combines a "$ref" with its sibling keywords (a default or a
// description next to the reference) into one schema.
func (s *synthesizer) mergeSiblings(refSite *object, target any) any {
	t, ok := target.(*object)
	if !ok || len(refSite.keys) == 1 {
		return target
	}
	merged := newObject()
	for _, k := range t.keys {
		merged.set(k, t.vals[k])
	}
	for _, k := range refSite.keys {
		if k != "$ref" && k != "default" {
			if _, exists := merged.get(k); !exists {
				merged.set(k, refSite.vals[k])
			}
		}
	}
	return merged
}

// mergeAllOf flattens allOf into one object schema: properties and required
// lists are unioned, other keywords taken from the first schema having them.
func (s *synthesizer) mergeAllOf(sc *object, subs []any) any {
	merged := newObject()
	props := newObject()
	var required []any
	seenReq := map[string]bool{}
	var add func(o *object, depth int)
	add = func(o *object, depth int) {
		if depth > maxSynthDepth {
			return
		}
		if ref, ok := o.get("$ref"); ok {
			if t, err := resolveRef(s.root, ref); err == nil {
				if to, ok := t.(*object); ok {
					add(to, depth+1)
				}
			}
		}
		for _, k := range o.keys {
			v := o.vals[k]
			switch k {
			case "$ref":
			case "allOf":
				for _, sub := range asSlice(v) {
					if so, ok := sub.(*object); ok {
						add(so, depth+1)
					}
				}
			case "properties":
				if po, ok := v.(*object); ok {
					for _, pk := range po.keys {
						props.set(pk, po.vals[pk])
					}
				}
			case "required":
				for _, r := range asSlice(v) {
					if rs, ok := r.(string); ok && !seenReq[rs] {
						seenReq[rs] = true
						required = append(required, rs)
					}
				}
			default:
				if _, exists := merged.get(k); !exists {
					merged.set(k, v)
				}
			}
		}
	}
	add(sc, 0)
	if len(props.keys) > 0 {
		merged.set("properties", props)
		if _, ok := merged.get("type"); !ok {
			merged.set("type", "object")
		}
	}
	if len(required) > 0 {
		merged.set("required", required)
	}
	return merged
}

// fromBranches picks a branch of anyOf/oneOf: null when a branch allows
// null (a nullable field without a default is answered with null, as models
// do for "nothing applies", e.g. CrewAI's time_filter), else the first branch
// whose synthesized value validates against the whole schema, else the first
// branch's value.
func (s *synthesizer) fromBranches(sc *object, branches []any, name string, index, depth int) any {
	for _, b := range branches {
		if isNullSchema(s.root, b) && validate(s.root, sc, nil) == nil {
			return nil
		}
	}
	var fallback any
	haveFallback := false
	for _, b := range branches {
		v := s.value(b, name, index, depth+1)
		if validate(s.root, sc, v) == nil {
			return v
		}
		if !haveFallback {
			fallback, haveFallback = v, true
		}
	}
	return fallback
}

func isNullSchema(root, b any) bool {
	o, ok := b.(*object)
	if !ok {
		return false
	}
	if ref, ok := o.get("$ref"); ok {
		t, err := resolveRef(root, ref)
		if err != nil {
			return false
		}
		return isNullSchema(root, t)
	}
	t, _ := o.get("type")
	return t == "null"
}

// pickType returns the type to synthesize: "null" when the declared types
// include it (nullable), else the first declared type, else one inferred
// from the keywords present.
func (s *synthesizer) pickType(sc *object) string {
	switch t := mustGet(sc, "type").(type) {
	case string:
		return t
	case []any:
		first := ""
		for _, x := range t {
			if xs, ok := x.(string); ok {
				if xs == "null" {
					return xs
				}
				if first == "" {
					first = xs
				}
			}
		}
		if first != "" {
			return first
		}
	}
	for _, k := range []string{"properties", "required", "additionalProperties", "minProperties"} {
		if _, ok := sc.get(k); ok {
			return "object"
		}
	}
	for _, k := range []string{"items", "prefixItems", "minItems", "maxItems"} {
		if _, ok := sc.get(k); ok {
			return "array"
		}
	}
	for _, k := range []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"} {
		if _, ok := sc.get(k); ok {
			return "number"
		}
	}
	return "string"
}

func (s *synthesizer) obj(sc *object, depth int) any {
	out := newObject()
	props, _ := mustGet(sc, "properties").(*object)
	required := map[string]bool{}
	for _, r := range asSlice(mustGet(sc, "required")) {
		if rs, ok := r.(string); ok {
			required[rs] = true
		}
	}
	// Deep inside a schema (or a runaway recursive one) only the required
	// properties are filled.
	shallow := depth >= maxSynthDepth/2 || s.steps >= maxSynthSteps
	if props != nil {
		for _, k := range props.keys {
			if shallow && !required[k] {
				continue
			}
			out.set(k, s.value(props.vals[k], k, 0, depth+1))
		}
	}
	for _, r := range asSlice(mustGet(sc, "required")) {
		if rs, ok := r.(string); ok {
			if _, present := out.get(rs); !present {
				addl, hasAddl := sc.get("additionalProperties")
				if hasAddl {
					out.set(rs, s.value(addl, rs, 0, depth+1))
				} else {
					out.set(rs, s.str(newObject(), rs, 0))
				}
			}
		}
	}
	return out
}

// Array sizing policy by property name (before minItems/maxItems
// clamping). Names are matched by word parts (see nameParts) and prefixes.
var (
	// Empty means "all" or "none" for these, which is the safe answer:
	// suggested_scopes=[] searches every scope, dates=[] and time filters
	// restrict nothing.
	noItemNames      = []string{"scope", "date", "time", "filter", "exclude"}
	keywordItemNames = []string{"keyword", "categor", "tag", "topic", "entit", "label", "skill"}
)

// nameParts splits a property name into lowercase words at underscores,
// dashes, spaces and camelCase boundaries: "suggestedScopes" and
// "suggested_scopes" both give [suggested scopes].
func nameParts(name string) []string {
	var parts []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			parts = append(parts, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	prevLower := false
	for _, r := range name {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
			prevLower = false
		case unicode.IsUpper(r) && prevLower:
			flush()
			cur = append(cur, r)
			prevLower = false
		default:
			cur = append(cur, r)
			prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
		}
	}
	flush()
	return parts
}

// namePart reports whether a word of name starts with one of prefixes.
func namePart(name string, prefixes ...string) bool {
	for _, p := range nameParts(name) {
		for _, pre := range prefixes {
			if strings.HasPrefix(p, pre) {
				return true
			}
		}
	}
	return false
}

// isIDName reports whether name is "id", "ids" or ends with an id word
// ("record_id", "recordIds").
func isIDName(name string) bool {
	parts := nameParts(name)
	if len(parts) == 0 {
		return false
	}
	last := parts[len(parts)-1]
	return last == "id" || last == "ids"
}

func (s *synthesizer) arr(sc *object, name string, depth int) any {
	prefix := asSlice(mustGet(sc, "prefixItems"))
	items, hasItems := sc.get("items")
	if tuple, ok := items.([]any); ok {
		prefix, items, hasItems = tuple, nil, false
	}
	n := 1
	switch {
	case depth >= maxSynthDepth/2 || s.steps >= maxSynthSteps:
		n = 0
	case namePart(name, noItemNames...):
		n = 0
	case namePart(name, keywordItemNames...):
		n = min(len(s.prompt.keywords), 3)
		if namePart(name, "categor", "tag") {
			n = min(n, 2)
		}
	}
	if len(prefix) > n {
		n = len(prefix)
	}
	if m, ok := num(sc, "minItems"); ok && float64(n) < m {
		n = int(math.Min(m, 64))
	}
	if m, ok := num(sc, "maxItems"); ok && float64(n) > m {
		n = int(math.Max(m, 0))
	}
	if !hasItems && len(prefix) == 0 {
		items = newObject() // any value; we produce strings
	}
	if b, ok := mustGet(sc, "items").(bool); ok && !b && n > len(prefix) {
		n = len(prefix)
	}
	out := make([]any, 0, n)
	for i := 0; i < n; i++ {
		var v any
		if i < len(prefix) {
			v = s.value(prefix[i], name, i, depth+1)
		} else {
			v = s.value(items, name, i, depth+1)
		}
		out = append(out, v)
	}
	if u, ok := sc.get("uniqueItems"); ok && u == true {
		out = s.makeUnique(out)
	}
	return out
}

func (s *synthesizer) makeUnique(vals []any) []any {
	for i := range vals {
		for j := 0; j < i; j++ {
			if jsonEqual(vals[i], vals[j]) {
				switch x := vals[i].(type) {
				case string:
					vals[i] = fmt.Sprintf("%s %d", x, i+1)
				case float64:
					vals[i] = x + float64(i)
				}
			}
		}
	}
	return vals
}

var importanceNames = []string{"importance", "score", "confidence", "probability", "weight", "relevance", "priority", "ratio", "similarity"}

// number picks 0.5 for importance-like numbers, the midpoint of a closed
// range, a value just inside a half-open one, else 1 (integers) or 0.5.
func (s *synthesizer) number(sc *object, name string, integer bool) any {
	lo, hasLo := num(sc, "minimum")
	hi, hasHi := num(sc, "maximum")
	loExcl := mustGet(sc, "exclusiveMinimum") == true // draft-04 boolean form
	hiExcl := mustGet(sc, "exclusiveMaximum") == true
	if x, ok := num(sc, "exclusiveMinimum"); ok && (!hasLo || x >= lo) {
		lo, hasLo, loExcl = x, true, true
	}
	if x, ok := num(sc, "exclusiveMaximum"); ok && (!hasHi || x <= hi) {
		hi, hasHi, hiExcl = x, true, true
	}
	below := func(v float64) bool { return hasLo && (v < lo || (loExcl && v <= lo)) }
	above := func(v float64) bool { return hasHi && (v > hi || (hiExcl && v >= hi)) }

	v := 1.0
	if !integer {
		v = 0.5
	}
	if hasLo && hasHi && (below(v) || above(v) || !namePart(name, importanceNames...)) {
		v = lo + (hi-lo)/2
	} else if below(v) {
		v = lo + 1
	} else if above(v) {
		v = hi - 1
	}
	if integer {
		v = math.Floor(v)
		if below(v) {
			v = math.Floor(lo) + 1
		}
	}
	if m, ok := num(sc, "multipleOf"); ok && m > 0 {
		v = math.Ceil(v/m) * m
		if above(v) {
			v -= m
		}
		v = math.Round(v/m) * m
	}
	return v + 0 // normalizes -0
}

var quotedOption = regexp.MustCompile(`(?i)\bone of[:\s]*['"\x60]([^'"\x60]+)['"\x60]`)

func (s *synthesizer) str(sc *object, name string, index int) any {
	var v string
	if f, ok := mustGet(sc, "format").(string); ok {
		switch f {
		case "date-time":
			v = "2025-01-01T00:00:00Z"
		case "date":
			v = "2025-01-01"
		case "time":
			v = "00:00:00"
		case "duration":
			v = "P1D"
		case "email":
			v = "user@example.com"
		case "uri", "url", "iri", "uri-reference":
			v = "https://example.com/"
		case "uuid":
			v = "00000000-0000-4000-8000-000000000000"
		case "ipv4":
			v = "127.0.0.1"
		case "ipv6":
			v = "::1"
		case "hostname":
			v = "localhost"
		}
	}
	if v == "" {
		desc, _ := mustGet(sc, "description").(string)
		if m := quotedOption.FindStringSubmatch(desc); m != nil {
			v = m[1]
		}
	}
	if v == "" {
		switch {
		case namePart(name, "scope", "path"):
			v = "/general"
			if len(s.prompt.keywords) > 0 {
				v = "/" + slug(s.prompt.keywords[0])
			}
		case isIDName(name):
			if index < len(s.prompt.ids) {
				v = s.prompt.ids[index]
			} else {
				v = fmt.Sprintf("id-%d", index+1)
			}
		case namePart(name, "date", "time"):
			v = "2025-01-01"
		case namePart(name, keywordItemNames...) || namePart(name, "name", "title"):
			v = "general"
			if index < len(s.prompt.keywords) {
				v = s.prompt.keywords[index]
			} else if len(s.prompt.keywords) > 0 {
				v = fmt.Sprintf("%s %d", s.prompt.keywords[0], index+1)
			}
		case namePart(name, "reason", "rationale", "explanation", "justification"):
			v = "Deterministic mock analysis of: " + oneLine(s.prompt.subject, 120)
		default:
			v = oneLine(s.prompt.subject, 240)
			if v == "" {
				v = "mock value"
			}
			if index > 0 {
				v = fmt.Sprintf("%s (%d)", v, index+1)
			}
		}
	}
	if m, ok := num(sc, "maxLength"); ok && float64(utf8.RuneCountInString(v)) > m {
		v = string([]rune(v)[:int(math.Max(m, 0))])
	}
	if m, ok := num(sc, "minLength"); ok {
		for float64(utf8.RuneCountInString(v)) < m {
			v += "x"
		}
	}
	return v
}
