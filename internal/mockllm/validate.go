package mockllm

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"unicode/utf8"
)

// validate checks v (a decoded JSON value, see decodeValue) against schema,
// resolving "$ref" against root. It covers the JSON Schema subset that
// OpenAI structured outputs and Pydantic emit: $ref/$defs, allOf, anyOf,
// oneOf, not, type, enum, const, properties, required,
// additionalProperties, items, prefixItems, min/maxItems, uniqueItems,
// min/maxLength, pattern, minimum/maximum (inclusive and exclusive) and
// multipleOf. Unknown keywords are ignored. The synthesizer uses it to
// decide whether a schema's "default" can be returned as is.
func validate(root, schema, v any) error {
	return validateAt(root, schema, v, "$", 0)
}

const maxValidateDepth = 64

func validateAt(root, schema, v any, path string, depth int) error {
	if depth > maxValidateDepth {
		return fmt.Errorf("%s: schema nesting too deep", path)
	}
	switch s := schema.(type) {
	case bool:
		if !s {
			return fmt.Errorf("%s: schema false accepts nothing", path)
		}
		return nil
	case *object:
		return validateObjectSchema(root, s, v, path, depth)
	case nil:
		return nil
	default:
		return fmt.Errorf("%s: schema is %T, not an object", path, schema)
	}
}

func validateObjectSchema(root any, s *object, v any, path string, depth int) error {
	if ref, ok := s.get("$ref"); ok {
		target, err := resolveRef(root, ref)
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		if err := validateAt(root, target, v, path, depth+1); err != nil {
			return err
		}
	}
	if c, ok := s.get("const"); ok && !jsonEqual(c, v) {
		return fmt.Errorf("%s: %s is not the const value", path, short(v))
	}
	if e, ok := s.get("enum"); ok {
		vals, _ := e.([]any)
		found := false
		for _, x := range vals {
			if jsonEqual(x, v) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%s: %s is not in enum", path, short(v))
		}
	}
	if all, ok := s.get("allOf"); ok {
		for i, sub := range asSlice(all) {
			if err := validateAt(root, sub, v, path, depth+1); err != nil {
				return fmt.Errorf("allOf[%d]: %w", i, err)
			}
		}
	}
	if anyOf, ok := s.get("anyOf"); ok {
		var errs []string
		okAny := false
		for _, sub := range asSlice(anyOf) {
			err := validateAt(root, sub, v, path, depth+1)
			if err == nil {
				okAny = true
				break
			}
			errs = append(errs, err.Error())
		}
		if !okAny {
			return fmt.Errorf("%s: no anyOf branch matches (%s)", path, strings.Join(errs, "; "))
		}
	}
	if oneOf, ok := s.get("oneOf"); ok {
		n := 0
		for _, sub := range asSlice(oneOf) {
			if validateAt(root, sub, v, path, depth+1) == nil {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%s: %d oneOf branches match, want exactly 1", path, n)
		}
	}
	if not, ok := s.get("not"); ok && validateAt(root, not, v, path, depth+1) == nil {
		return fmt.Errorf("%s: value matches a \"not\" schema", path)
	}
	if t, ok := s.get("type"); ok {
		types := []string{}
		switch tt := t.(type) {
		case string:
			types = append(types, tt)
		case []any:
			for _, x := range tt {
				if xs, ok := x.(string); ok {
					types = append(types, xs)
				}
			}
		}
		if len(types) > 0 {
			match := false
			for _, ty := range types {
				if hasType(v, ty) {
					match = true
					break
				}
			}
			if !match {
				return fmt.Errorf("%s: %s is not of type %s", path, short(v), strings.Join(types, "|"))
			}
		}
	}
	switch x := v.(type) {
	case *object:
		return validateObjectValue(root, s, x, path, depth)
	case []any:
		return validateArrayValue(root, s, x, path, depth)
	case string:
		n := utf8.RuneCountInString(x)
		if m, ok := num(s, "minLength"); ok && float64(n) < m {
			return fmt.Errorf("%s: string shorter than minLength %v", path, m)
		}
		if m, ok := num(s, "maxLength"); ok && float64(n) > m {
			return fmt.Errorf("%s: string longer than maxLength %v", path, m)
		}
		if p, ok := s.get("pattern"); ok {
			if ps, ok := p.(string); ok {
				if re, err := regexp.Compile(ps); err == nil && !re.MatchString(x) {
					return fmt.Errorf("%s: %q does not match pattern %q", path, x, ps)
				}
			}
		}
	case float64:
		if m, ok := num(s, "minimum"); ok && x < m {
			return fmt.Errorf("%s: %v < minimum %v", path, x, m)
		}
		if m, ok := num(s, "maximum"); ok && x > m {
			return fmt.Errorf("%s: %v > maximum %v", path, x, m)
		}
		if m, ok := num(s, "exclusiveMinimum"); ok && x <= m {
			return fmt.Errorf("%s: %v <= exclusiveMinimum %v", path, x, m)
		}
		if m, ok := num(s, "exclusiveMaximum"); ok && x >= m {
			return fmt.Errorf("%s: %v >= exclusiveMaximum %v", path, x, m)
		}
		if b, ok := s.get("exclusiveMinimum"); ok && b == true {
			if m, ok := num(s, "minimum"); ok && x <= m {
				return fmt.Errorf("%s: %v <= exclusive minimum %v", path, x, m)
			}
		}
		if b, ok := s.get("exclusiveMaximum"); ok && b == true {
			if m, ok := num(s, "maximum"); ok && x >= m {
				return fmt.Errorf("%s: %v >= exclusive maximum %v", path, x, m)
			}
		}
		if m, ok := num(s, "multipleOf"); ok && m > 0 {
			q := x / m
			if math.Abs(q-math.Round(q)) > 1e-9 {
				return fmt.Errorf("%s: %v is not a multiple of %v", path, x, m)
			}
		}
	}
	return nil
}

func validateObjectValue(root any, s *object, x *object, path string, depth int) error {
	props, _ := s.get("properties")
	propObj, _ := props.(*object)
	if req, ok := s.get("required"); ok {
		for _, r := range asSlice(req) {
			if name, ok := r.(string); ok {
				if _, present := x.get(name); !present {
					return fmt.Errorf("%s: missing required property %q", path, name)
				}
			}
		}
	}
	addl, hasAddl := s.get("additionalProperties")
	for _, k := range x.keys {
		val := x.vals[k]
		if ps, ok := propObj.get(k); ok {
			if err := validateAt(root, ps, val, path+"."+k, depth+1); err != nil {
				return err
			}
			continue
		}
		if hasAddl {
			if err := validateAt(root, addl, val, path+"."+k, depth+1); err != nil {
				return fmt.Errorf("%s: additional property %q not allowed: %w", path, k, err)
			}
		}
	}
	if m, ok := num(s, "minProperties"); ok && float64(len(x.keys)) < m {
		return fmt.Errorf("%s: fewer than minProperties %v", path, m)
	}
	if m, ok := num(s, "maxProperties"); ok && float64(len(x.keys)) > m {
		return fmt.Errorf("%s: more than maxProperties %v", path, m)
	}
	return nil
}

func validateArrayValue(root any, s *object, x []any, path string, depth int) error {
	if m, ok := num(s, "minItems"); ok && float64(len(x)) < m {
		return fmt.Errorf("%s: %d items < minItems %v", path, len(x), m)
	}
	if m, ok := num(s, "maxItems"); ok && float64(len(x)) > m {
		return fmt.Errorf("%s: %d items > maxItems %v", path, len(x), m)
	}
	prefix := asSlice(mustGet(s, "prefixItems"))
	items, hasItems := s.get("items")
	if tuple, ok := items.([]any); ok { // draft-04 tuple form
		prefix, hasItems = tuple, false
	}
	for i, el := range x {
		p := fmt.Sprintf("%s[%d]", path, i)
		if i < len(prefix) {
			if err := validateAt(root, prefix[i], el, p, depth+1); err != nil {
				return err
			}
			continue
		}
		if hasItems {
			if err := validateAt(root, items, el, p, depth+1); err != nil {
				return err
			}
		}
	}
	if u, ok := s.get("uniqueItems"); ok && u == true {
		for i := range x {
			for j := i + 1; j < len(x); j++ {
				if jsonEqual(x[i], x[j]) {
					return fmt.Errorf("%s: items %d and %d are equal but uniqueItems", path, i, j)
				}
			}
		}
	}
	return nil
}

// hasType reports whether v is an instance of the JSON Schema type ty.
func hasType(v any, ty string) bool {
	switch ty {
	case "object":
		_, ok := v.(*object)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f) && !math.IsInf(f, 0)
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	}
	return true // unknown type names are not enforced
}

// resolveRef resolves a local JSON pointer reference ("#", "#/$defs/X",
// "#/definitions/X", any "#/a/b" path with ~0/~1 escapes) against root.
func resolveRef(root, ref any) (any, error) {
	r, ok := ref.(string)
	if !ok {
		return nil, fmt.Errorf("$ref is %T, not a string", ref)
	}
	if r == "#" {
		return root, nil
	}
	if !strings.HasPrefix(r, "#/") {
		return nil, fmt.Errorf("unsupported $ref %q (only local references)", r)
	}
	cur := root
	for _, part := range strings.Split(r[2:], "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case *object:
			next, ok := c.get(part)
			if !ok {
				return nil, fmt.Errorf("$ref %q: %q not found", r, part)
			}
			cur = next
		case []any:
			var i int
			if _, err := fmt.Sscanf(part, "%d", &i); err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("$ref %q: bad index %q", r, part)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("$ref %q: cannot descend into %T", r, cur)
		}
	}
	return cur, nil
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func mustGet(o *object, key string) any {
	v, _ := o.get(key)
	return v
}

// num returns the numeric keyword key of schema s.
func num(s *object, key string) (float64, bool) {
	v, ok := s.get(key)
	if !ok {
		return 0, false
	}
	f, ok := v.(float64)
	return f, ok
}

func short(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%q", oneLine(x, 40))
	case *object:
		return "object"
	case []any:
		return "array"
	case nil:
		return "null"
	}
	return fmt.Sprint(v)
}
