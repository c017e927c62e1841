package mockllm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// --- helpers -----------------------------------------------------------------

func newServer(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewHandler(cfg))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, srv *httptest.Server, path string, body any) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	resp, err := http.Post(srv.URL+path, "application/json", r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

type testCompletion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role      string  `json:"role"`
			Content   *string `json:"content"`
			ToolCalls []struct {
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

func chat(t *testing.T, srv *httptest.Server, req map[string]any) testCompletion {
	t.Helper()
	resp, body := post(t, srv, "/v1/chat/completions", req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var c testCompletion
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return c
}

func user(text string) []map[string]any {
	return []map[string]any{{"role": "user", "content": text}}
}

func content(t *testing.T, c testCompletion) string {
	t.Helper()
	if len(c.Choices) == 0 || c.Choices[0].Message.Content == nil {
		t.Fatalf("no content in %+v", c)
	}
	return *c.Choices[0].Message.Content
}

func stats(t *testing.T, srv *httptest.Server) Stats {
	t.Helper()
	_, body := get(t, srv, "/stats")
	var s Stats
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("stats %s: %v", body, err)
	}
	return s
}

func mustDecode(t *testing.T, s string) any {
	t.Helper()
	v, err := decodeValue([]byte(s))
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// --- chat completions ---------------------------------------------------------

func TestChatCompletionShape(t *testing.T) {
	srv := newServer(t, Config{})
	tests := []struct {
		name        string
		req         map[string]any
		wantPrefix  string   // content prefix
		wantWords   []string // substrings of the content
		wantNoReAct bool
		wantChoices int
	}{
		{
			name:       "plain user message",
			req:        map[string]any{"model": "gpt-4o-mini", "messages": user("What is the capital of France?")},
			wantPrefix: "Thought: I now know the final answer\nFinal Answer: ",
			wantWords:  []string{"capital", "france"},
		},
		{
			name: "crewai agent prompt",
			req: map[string]any{"model": "gpt-4o-mini", "messages": []map[string]any{
				{"role": "system", "content": "You are Researcher. A careful analyst.\nYour personal goal is: Find facts"},
				{"role": "user", "content": "\nCurrent Task: Research quantum annealing vendors.\n\nThis is the expected criteria for your final answer: A list.\nyou MUST return the actual complete content as the final answer, not a summary.\n\nProvide your complete response:"},
			}},
			wantPrefix: "Thought: I now know the final answer\nFinal Answer: Mock answer for: Research quantum annealing vendors.",
			wantWords:  []string{"quantum", "annealing", "vendors"},
		},
		{
			name: "content parts",
			req: map[string]any{"model": "gpt-4o", "messages": []map[string]any{
				{"role": "user", "content": []map[string]any{{"type": "text", "text": "Describe the lighthouse picture"}, {"type": "image_url", "image_url": map[string]string{"url": "data:,"}}}},
			}},
			wantPrefix: "Thought:",
			wantWords:  []string{"lighthouse"},
		},
		{
			name: "native tools: bare answer",
			req: map[string]any{"model": "gpt-4o-mini", "messages": user("Summarize the orbital mechanics notes"),
				"tools":       []map[string]any{{"type": "function", "function": map[string]any{"name": "search_memory", "parameters": map[string]any{"type": "object"}}}},
				"tool_choice": "auto"},
			wantPrefix:  "Mock answer for: Summarize the orbital mechanics notes.",
			wantNoReAct: true,
		},
		{
			name:        "n=3",
			req:         map[string]any{"model": "gpt-4o-mini", "messages": user("hello"), "n": 3},
			wantPrefix:  "Thought:",
			wantChoices: 3,
		},
		{
			name:       "stop sequence cuts",
			req:        map[string]any{"model": "gpt-4o-mini", "messages": user("hello world"), "stop": []string{"\nFinal Answer"}},
			wantPrefix: "Thought: I now know the final answer",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := chat(t, srv, tc.req)
			if !strings.HasPrefix(c.ID, "chatcmpl-") || c.Object != "chat.completion" || c.Created == 0 {
				t.Errorf("bad envelope: %+v", c)
			}
			if c.Model != tc.req["model"] {
				t.Errorf("model = %q, want %q", c.Model, tc.req["model"])
			}
			want := tc.wantChoices
			if want == 0 {
				want = 1
			}
			if len(c.Choices) != want {
				t.Fatalf("%d choices, want %d", len(c.Choices), want)
			}
			for i, ch := range c.Choices {
				if ch.Index != i || ch.Message.Role != "assistant" || ch.FinishReason != "stop" {
					t.Errorf("choice %d: %+v", i, ch)
				}
			}
			got := content(t, c)
			if !strings.HasPrefix(got, tc.wantPrefix) {
				t.Errorf("content %q lacks prefix %q", got, tc.wantPrefix)
			}
			for _, w := range tc.wantWords {
				if !strings.Contains(strings.ToLower(got), w) {
					t.Errorf("content %q lacks %q", got, w)
				}
			}
			if tc.wantNoReAct && strings.Contains(got, "Final Answer") {
				t.Errorf("native-tools answer has ReAct framing: %q", got)
			}
			if tc.name == "stop sequence cuts" && got != "Thought: I now know the final answer" {
				t.Errorf("stop not applied: %q", got)
			}
			u := c.Usage
			if u.PromptTokens <= 0 || u.CompletionTokens <= 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
				t.Errorf("usage %+v", u)
			}
		})
	}
}

func TestChatDeterministic(t *testing.T) {
	srv := newServer(t, Config{})
	req := map[string]any{"model": "gpt-4o-mini", "messages": user("Explain the Raft consensus algorithm")}
	a, b := content(t, chat(t, srv, req)), content(t, chat(t, srv, req))
	if a != b {
		t.Fatalf("answers differ:\n%q\n%q", a, b)
	}
	// And across servers.
	if c := content(t, chat(t, newServer(t, Config{}), req)); c != a {
		t.Fatalf("answer differs across servers: %q vs %q", c, a)
	}
}

func TestChatEchoesRecalledMemories(t *testing.T) {
	srv := newServer(t, Config{})
	prompt := "\nCurrent Task: Report the launch date of the Zephyr project.\n\n" +
		"This is the expected criteria for your final answer: The date.\n\n" +
		"# Memories from past conversations:\n" +
		"Relevant memories:\n" +
		"- (score=0.71) The Zephyr launch is on June 3.\n" +
		"  categories: zephyr, launch\n" +
		"  entities: ['zephyr']\n" +
		"- (score=0.52) Priya owns the Zephyr checklist.\n" +
		"\nIMPORTANT: The memories above are an automatic selection and may be INCOMPLETE.\n"
	got := content(t, chat(t, srv, map[string]any{"model": "gpt-4o-mini", "messages": user(prompt)}))
	for _, want := range []string{
		"Final Answer: Mock answer for: Report the launch date of the Zephyr project.",
		"Recalled memories:\n- The Zephyr launch is on June 3.\n- Priya owns the Zephyr checklist.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("answer %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "score=") || strings.Contains(got, "categories:") || strings.Contains(got, "IMPORTANT") {
		t.Errorf("answer leaks memory block formatting: %q", got)
	}
}

func TestRecalledMemories(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"none", "Current Task: do it\n- not a memory", nil},
		{"crewai block", "# Memories from past conversations:\nRelevant memories:\n- (score=0.50) A\n  categories: x\n- B\n\nIMPORTANT: ...", []string{"A", "B"}},
		{"markdown heading, bullets", "## Memory\n* first\n* second\nThen more text", []string{"first", "second"}},
		{"dedup", "Memories:\n- same\n- same", []string{"same"}},
		{"heading without items", "Relevant memory excerpts:\nplain text\n- later bullet", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := recalledMemories(tc.text)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("recalledMemories = %q, want %q", got, tc.want)
			}
		})
	}
}

// --- structured output ----------------------------------------------------------

// Schemas as the openai SDK sends them for CrewAI's memory models (strict).
const (
	memoryAnalysisSchema = `{"$defs": {"ExtractedMetadata": {"additionalProperties": false, "properties": {"entities": {"items": {"type": "string"}, "title": "Entities", "type": "array"}, "dates": {"items": {"type": "string"}, "type": "array"}, "topics": {"items": {"type": "string"}, "type": "array"}}, "type": "object", "required": ["entities", "dates", "topics"]}}, "properties": {"suggested_scope": {"description": "Best matching existing scope or new path (e.g. /company/decisions).", "type": "string"}, "categories": {"items": {"type": "string"}, "type": "array"}, "importance": {"default": 0.5, "maximum": 1.0, "minimum": 0.0, "type": "number"}, "extracted_metadata": {"$ref": "#/$defs/ExtractedMetadata"}}, "required": ["suggested_scope", "categories", "importance", "extracted_metadata"], "type": "object", "additionalProperties": false}`
	queryAnalysisSchema  = `{"properties": {"keywords": {"items": {"type": "string"}, "type": "array"}, "suggested_scopes": {"items": {"type": "string"}, "type": "array"}, "complexity": {"default": "simple", "description": "One of 'simple' (single fact) or 'complex' (aggregation/reasoning).", "type": "string"}, "recall_queries": {"items": {"type": "string"}, "type": "array"}, "time_filter": {"anyOf": [{"type": "string"}, {"type": "null"}]}}, "type": "object", "additionalProperties": false, "required": ["keywords", "suggested_scopes", "complexity", "recall_queries", "time_filter"]}`
	consolidationSchema  = `{"$defs": {"ConsolidationAction": {"additionalProperties": false, "properties": {"action": {"description": "One of 'keep', 'update', or 'delete'.", "type": "string"}, "record_id": {"type": "string"}, "new_content": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "reason": {"default": "", "type": "string"}}, "required": ["action", "record_id", "new_content", "reason"], "type": "object"}}, "additionalProperties": false, "properties": {"actions": {"items": {"$ref": "#/$defs/ConsolidationAction"}, "type": "array"}, "insert_new": {"default": true, "type": "boolean"}, "insert_reason": {"default": "", "type": "string"}}, "type": "object", "required": ["actions", "insert_new", "insert_reason"]}`
	extractedSchema      = `{"properties": {"memories": {"items": {"type": "string"}, "type": "array"}}, "type": "object", "additionalProperties": false, "required": ["memories"]}`
)

func TestJSONSchemaSynthesis(t *testing.T) {
	srv := newServer(t, Config{})
	tests := []struct {
		name   string
		schema string
		prompt string
		check  func(t *testing.T, v *object)
	}{
		{
			name:   "MemoryAnalysis (nested $defs, default)",
			schema: memoryAnalysisSchema,
			prompt: "Content to store:\nThe Atlas project deadline is March 5.\n\nExisting scopes: ['/']\nExisting categories: []\n\nReturn the analysis as structured output.",
			check: func(t *testing.T, v *object) {
				if s, _ := v.get("suggested_scope"); s != "/atlas" {
					t.Errorf("suggested_scope = %v, want /atlas", s)
				}
				if imp, _ := v.get("importance"); imp != 0.5 {
					t.Errorf("importance = %v", imp)
				}
				cats, _ := v.get("categories")
				if c := asSlice(cats); len(c) == 0 || c[0] != "atlas" {
					t.Errorf("categories = %v", cats)
				}
				md, _ := v.get("extracted_metadata")
				if dates, _ := md.(*object).get("dates"); len(asSlice(dates)) != 0 {
					t.Errorf("dates = %v, want []", dates)
				}
			},
		},
		{
			name:   "QueryAnalysis (nullable anyOf, enum-like default)",
			schema: queryAnalysisSchema,
			prompt: "Query: When is the Atlas deadline?\n\nAvailable scopes: ['/atlas']\n\nReturn the analysis as structured output.",
			check: func(t *testing.T, v *object) {
				if tf, ok := v.get("time_filter"); !ok || tf != nil {
					t.Errorf("time_filter = %v, want null", tf)
				}
				if c, _ := v.get("complexity"); c != "simple" {
					t.Errorf("complexity = %v", c)
				}
				if s, _ := v.get("suggested_scopes"); len(asSlice(s)) != 0 {
					t.Errorf("suggested_scopes = %v, want [] (all scopes)", s)
				}
				q, _ := v.get("recall_queries")
				if qs := asSlice(q); len(qs) != 1 || qs[0] != "When is the Atlas deadline?" {
					t.Errorf("recall_queries = %v", q)
				}
			},
		},
		{
			name:   "ConsolidationPlan ($ref items, boolean default, description option)",
			schema: consolidationSchema,
			prompt: "New content to consider storing:\nAtlas moved to March 9.\n\nExisting similar memories:\n- id=rec-42 | scope=/atlas | importance=0.50\n  content: Atlas deadline is March 5.",
			check: func(t *testing.T, v *object) {
				if b, _ := v.get("insert_new"); b != true {
					t.Errorf("insert_new = %v, want true (schema default)", b)
				}
				acts, _ := v.get("actions")
				a := asSlice(acts)
				if len(a) != 1 {
					t.Fatalf("actions = %v", acts)
				}
				act := a[0].(*object)
				if x, _ := act.get("action"); x != "keep" {
					t.Errorf("action = %v, want keep", x)
				}
				if x, _ := act.get("record_id"); x != "rec-42" {
					t.Errorf("record_id = %v, want rec-42", x)
				}
			},
		},
		{
			name:   "ExtractedMemories",
			schema: extractedSchema,
			prompt: "Content:\nTask: Find the Zephyr owner.\nResult: Priya owns Zephyr.\n\nExtract memory statements as described.",
			check: func(t *testing.T, v *object) {
				m, _ := v.get("memories")
				ms := asSlice(m)
				if len(ms) != 1 || !strings.Contains(ms[0].(string), "Priya owns Zephyr") {
					t.Errorf("memories = %v", m)
				}
			},
		},
		{
			name: "enums, consts, integers, formats, bounds",
			schema: `{"type":"object","properties":{
				"color":{"enum":["red","green"]},
				"kind":{"const":"fixed"},
				"level":{"type":"string","enum":["low","high"]},
				"count":{"type":"integer","minimum":3,"maximum":9},
				"positive":{"type":"integer","exclusiveMinimum":0},
				"neg":{"type":"number","maximum":-5},
				"step":{"type":"number","minimum":0,"maximum":1,"multipleOf":0.25},
				"when":{"type":"string","format":"date-time"},
				"email":{"type":"string","format":"email"},
				"code":{"type":"string","minLength":20,"maxLength":25},
				"tiny":{"type":"string","maxLength":3},
				"flag":{"type":"boolean"},
				"nothing":{"type":"null"},
				"multi":{"type":["integer","null"]},
				"multi2":{"type":["integer","string"]}
			},"required":["color","kind","level","count","positive","neg","step","when","email","code","tiny","flag","nothing","multi","multi2"],"additionalProperties":false}`,
			prompt: "Make a record",
			check: func(t *testing.T, v *object) {
				want := map[string]any{"color": "red", "kind": "fixed", "level": "low", "count": 6.0, "positive": 1.0, "flag": false, "nothing": nil, "multi": nil, "multi2": 1.0}
				for k, w := range want {
					if g, _ := v.get(k); !jsonEqual(g, w) {
						t.Errorf("%s = %v, want %v", k, g, w)
					}
				}
			},
		},
		{
			name: "arrays: minItems, maxItems, uniqueItems, tuples, nested arrays",
			schema: `{"type":"object","properties":{
				"tags":{"type":"array","items":{"type":"string"},"minItems":4,"uniqueItems":true},
				"none":{"type":"array","items":{"type":"integer"},"maxItems":0},
				"pair":{"type":"array","prefixItems":[{"type":"integer"},{"type":"string"}],"items":false},
				"matrix":{"type":"array","items":{"type":"array","items":{"type":"number","minimum":2,"maximum":4}},"minItems":2}
			},"required":["tags","none","pair","matrix"]}`,
			prompt: "alpha beta",
			check: func(t *testing.T, v *object) {
				if tags, _ := v.get("tags"); len(asSlice(tags)) != 4 {
					t.Errorf("tags = %v", tags)
				}
				if p, _ := v.get("pair"); len(asSlice(p)) != 2 {
					t.Errorf("pair = %v", p)
				}
			},
		},
		{
			name: "allOf, oneOf, nullable $ref, recursion",
			schema: `{"$defs":{
				"Base":{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]},
				"Node":{"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/Node"}}},"required":["name","children"],"additionalProperties":false},
				"Addr":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}
			},
			"type":"object","properties":{
				"item":{"allOf":[{"$ref":"#/$defs/Base"},{"type":"object","properties":{"size":{"type":"integer","minimum":10}},"required":["size"]}]},
				"choice":{"oneOf":[{"type":"integer","minimum":5},{"type":"string","maxLength":0}]},
				"addr":{"anyOf":[{"$ref":"#/$defs/Addr"},{"type":"null"}]},
				"tree":{"$ref":"#/$defs/Node"}
			},"required":["item","choice","addr","tree"]}`,
			prompt: "Build the tree",
			check: func(t *testing.T, v *object) {
				if addr, ok := v.get("addr"); !ok || addr != nil {
					t.Errorf("addr = %v, want null (nullable)", addr)
				}
			},
		},
		{
			name:   "top-level non-object",
			schema: `{"type":"array","items":{"type":"string","enum":["a","b"]},"minItems":2}`,
			prompt: "x",
		},
		{
			name:   "empty schema",
			schema: `{}`,
			prompt: "anything goes",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := map[string]any{
				"model":    "gpt-4o-mini",
				"messages": []map[string]any{{"role": "system", "content": "You analyze."}, {"role": "user", "content": tc.prompt}},
				"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{
					"name": "T", "strict": true, "schema": json.RawMessage(tc.schema)}},
			}
			c := chat(t, srv, req)
			got := content(t, c)
			if c.Choices[0].FinishReason != "stop" {
				t.Errorf("finish_reason %q", c.Choices[0].FinishReason)
			}
			schema := mustDecode(t, tc.schema)
			v := mustDecode(t, got)
			if err := validate(schema, schema, v); err != nil {
				t.Fatalf("synthesized %s does not validate: %v", got, err)
			}
			if tc.check != nil {
				obj, ok := v.(*object)
				if !ok {
					t.Fatalf("not an object: %s", got)
				}
				tc.check(t, obj)
			}
			// Properties come out in schema order.
			if so, ok := schema.(*object); ok {
				if props, ok := so.get("properties"); ok {
					if vo, ok := v.(*object); ok && strings.Join(vo.keys, ",") != strings.Join(props.(*object).keys, ",") {
						t.Errorf("key order %v, want %v", vo.keys, props.(*object).keys)
					}
				}
			}
			// Deterministic.
			if again := content(t, chat(t, srv, req)); again != got {
				t.Errorf("not deterministic:\n%s\n%s", got, again)
			}
		})
	}
	if s := stats(t, srv); s.Structured != int64(2*len(tests)) {
		t.Errorf("stats.structured = %d, want %d", s.Structured, 2*len(tests))
	}
}

// The validator must reject what it should, or the synthesis test proves
// nothing.
func TestValidateRejects(t *testing.T) {
	tests := []struct {
		schema, value string
	}{
		{memoryAnalysisSchema, `{"suggested_scope":"/","categories":[],"importance":1.5,"extracted_metadata":{"entities":[],"dates":[],"topics":[]}}`},
		{memoryAnalysisSchema, `{"suggested_scope":"/","categories":[],"importance":0.5,"extracted_metadata":{"entities":[],"dates":[]}}`},
		{memoryAnalysisSchema, `{"suggested_scope":"/","categories":[],"importance":0.5,"extra":1,"extracted_metadata":{"entities":[],"dates":[],"topics":[]}}`},
		{queryAnalysisSchema, `{"keywords":[],"suggested_scopes":[],"complexity":"simple","recall_queries":[],"time_filter":3}`},
		{`{"enum":["a"]}`, `"b"`},
		{`{"type":"integer"}`, `1.5`},
		{`{"type":"array","minItems":1}`, `[]`},
		{`{"type":"array","items":{"type":"string"},"uniqueItems":true}`, `["a","a"]`},
		{`{"oneOf":[{"type":"number"},{"type":"integer"}]}`, `1`},
		{`{"type":"number","exclusiveMinimum":0}`, `0`},
		{`{"type":"string","maxLength":2}`, `"abc"`},
		{`{"$defs":{"X":{"type":"string"}},"$ref":"#/$defs/X"}`, `1`},
	}
	for _, tc := range tests {
		schema := mustDecode(t, tc.schema)
		if err := validate(schema, schema, mustDecode(t, tc.value)); err == nil {
			t.Errorf("validate(%s, %s) = nil, want an error", tc.schema, tc.value)
		}
	}
}

func TestJSONObjectFormat(t *testing.T) {
	srv := newServer(t, Config{})
	got := content(t, chat(t, srv, map[string]any{"model": "m", "messages": user("List planets"),
		"response_format": map[string]any{"type": "json_object"}}))
	var v map[string]any
	if err := json.Unmarshal([]byte(got), &v); err != nil || v["answer"] == nil {
		t.Fatalf("json_object content %q: %v", got, err)
	}
}

// --- streaming ---------------------------------------------------------------------

type streamResult struct {
	content   string
	toolName  string
	toolArgs  string
	toolID    string
	finish    string
	usage     map[string]any
	chunks    int
	done      bool
	afterDone bool
}

func readStream(t *testing.T, srv *httptest.Server, req map[string]any) streamResult {
	t.Helper()
	req["stream"] = true
	body, _ := json.Marshal(req)
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var r streamResult
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if r.done {
			r.afterDone = true
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("unexpected SSE line %q", line)
		}
		if data == "[DONE]" {
			r.done = true
			continue
		}
		var chunk struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Content   *string `json:"content"`
					ToolCalls []struct {
						Index    int    `json:"index"`
						ID       string `json:"id"`
						Function struct {
							Name      string `json:"name"`
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage map[string]any `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		if chunk.Object != "chat.completion.chunk" {
			t.Errorf("object %q", chunk.Object)
		}
		r.chunks++
		if chunk.Usage != nil {
			r.usage = chunk.Usage
		}
		for _, ch := range chunk.Choices {
			if ch.Delta.Content != nil {
				r.content += *ch.Delta.Content
			}
			for _, tc := range ch.Delta.ToolCalls {
				if tc.ID != "" {
					r.toolID = tc.ID
				}
				if tc.Function.Name != "" {
					r.toolName = tc.Function.Name
				}
				r.toolArgs += tc.Function.Arguments
			}
			if ch.FinishReason != nil {
				r.finish = *ch.FinishReason
			}
		}
	}
	return r
}

func TestStreaming(t *testing.T) {
	srv := newServer(t, Config{Script: []Reply{
		{Match: "weather in Oslo", ToolCalls: []ToolCall{{Name: "get_weather", Arguments: json.RawMessage(`{"city": "Oslo", "days": 3}`)}}},
	}})
	tests := []struct {
		name  string
		req   map[string]any
		usage bool
	}{
		{"text", map[string]any{"model": "gpt-4o-mini", "messages": user("Write a long poem about the sea, waves, sailors and lighthouses. Non-ASCII: café über 東京")}, false},
		{"text with usage", map[string]any{"model": "gpt-4o-mini", "messages": user("hi"), "stream_options": map[string]any{"include_usage": true}}, true},
		{"json schema", map[string]any{"model": "gpt-4o-mini", "messages": user("Content to store:\nDeadline is Friday"),
			"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "MemoryAnalysis", "schema": json.RawMessage(memoryAnalysisSchema)}}}, false},
		{"tool call", map[string]any{"model": "gpt-4o-mini", "messages": user("What is the weather in Oslo?")}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.usage {
				tc.req["stream_options"] = map[string]any{"include_usage": true}
			}
			// The non-streamed answer to the same request, for comparison.
			plain := map[string]any{}
			for k, v := range tc.req {
				plain[k] = v
			}
			want := chat(t, srv, plain)
			r := readStream(t, srv, tc.req)
			if !r.done || r.afterDone {
				t.Errorf("stream must end with exactly one final data: [DONE] (done=%t, after=%t)", r.done, r.afterDone)
			}
			if r.finish != want.Choices[0].FinishReason {
				t.Errorf("finish %q, want %q", r.finish, want.Choices[0].FinishReason)
			}
			if wc := want.Choices[0].Message.Content; wc != nil && r.content != *wc {
				t.Errorf("streamed content %q, want %q", r.content, *wc)
			}
			if tcs := want.Choices[0].Message.ToolCalls; len(tcs) > 0 {
				if r.toolName != tcs[0].Function.Name || r.toolArgs != tcs[0].Function.Arguments || !strings.HasPrefix(r.toolID, "call_") {
					t.Errorf("streamed tool call %q(%s) id %q, want %q(%s)", r.toolName, r.toolArgs, r.toolID, tcs[0].Function.Name, tcs[0].Function.Arguments)
				}
			}
			if tc.usage != (r.usage != nil) {
				t.Errorf("usage chunk present = %t, want %t", r.usage != nil, tc.usage)
			}
			if r.chunks < 3 {
				t.Errorf("only %d chunks", r.chunks)
			}
		})
	}
	if s := stats(t, srv); s.Streamed != int64(len(tests)) {
		t.Errorf("stats.streamed = %d, want %d", s.Streamed, len(tests))
	}
}

func TestSplitChunks(t *testing.T) {
	for _, s := range []string{"", "a", "hello world this is a fairly long sentence", strings.Repeat("東京", 40), `{"a":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}`} {
		parts := splitChunks(s)
		if strings.Join(parts, "") != s {
			t.Errorf("splitChunks(%q) loses text: %q", s, parts)
		}
		for _, p := range parts {
			if !json.Valid([]byte(`"` + strings.ReplaceAll(p, `"`, `\"`) + `"`)) {
				t.Errorf("piece %q is not valid UTF-8 text", p)
			}
		}
	}
}

// --- scripts -------------------------------------------------------------------------

func TestScriptedReplies(t *testing.T) {
	rules, err := ParseScript([]byte(`[
		{"match": "weather", "in": "last_user", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Berlin"}}, {"name": "get_time", "arguments": "{\"tz\":\"CET\"}"}]},
		{"match": "Forecast:", "in": "last", "reply": "chained", "tool_calls": [{"id": "call_fixed", "name": "summarize"}]},
		{"match": "joke", "reply": "Thought: I now know the final answer\nFinal Answer: a scripted joke", "times": 1},
		{"match": "You are Pirate", "in": "system", "reply": "Arr"}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, Config{Script: rules})
	tools := []map[string]any{{"type": "function", "function": map[string]any{"name": "get_weather", "parameters": map[string]any{"type": "object"}}}}

	t.Run("tool calls", func(t *testing.T) {
		c := chat(t, srv, map[string]any{"model": "gpt-4o-mini", "messages": user("What's the weather in Berlin?"), "tools": tools})
		ch := c.Choices[0]
		if ch.FinishReason != "tool_calls" || ch.Message.Content != nil || len(ch.Message.ToolCalls) != 2 {
			t.Fatalf("choice %+v", ch)
		}
		tc := ch.Message.ToolCalls[0]
		if tc.Type != "function" || tc.Function.Name != "get_weather" || tc.Function.Arguments != `{"city":"Berlin"}` || !strings.HasPrefix(tc.ID, "call_") {
			t.Errorf("tool call %+v", tc)
		}
		if a := ch.Message.ToolCalls[1].Function.Arguments; a != `{"tz":"CET"}` {
			t.Errorf("string arguments passed as %q", a)
		}
		if ch.Message.ToolCalls[0].ID == ch.Message.ToolCalls[1].ID {
			t.Errorf("tool call ids not unique")
		}
	})
	t.Run("after the tool result the model answers", func(t *testing.T) {
		msgs := []map[string]any{
			{"role": "user", "content": "What's the weather in Berlin?"},
			{"role": "assistant", "content": nil, "tool_calls": []map[string]any{{"id": "call_1", "type": "function", "function": map[string]any{"name": "get_weather", "arguments": "{}"}}}},
			{"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21C"},
		}
		c := chat(t, srv, map[string]any{"model": "gpt-4o-mini", "messages": msgs, "tools": tools})
		got := content(t, c)
		if c.Choices[0].FinishReason != "stop" || !strings.Contains(got, "Tool result: Sunny, 21C") || strings.Contains(got, "Final Answer") {
			t.Errorf("answer after tool result: %q (%s)", got, c.Choices[0].FinishReason)
		}
	})
	t.Run("in=last chains on tool output", func(t *testing.T) {
		msgs := []map[string]any{
			{"role": "user", "content": "plan my trip"},
			{"role": "tool", "tool_call_id": "call_1", "content": "Forecast: rain"},
		}
		c := chat(t, srv, map[string]any{"model": "m", "messages": msgs})
		ch := c.Choices[0]
		if ch.FinishReason != "tool_calls" || content(t, c) != "chained" || ch.Message.ToolCalls[0].ID != "call_fixed" || ch.Message.ToolCalls[0].Function.Arguments != "{}" {
			t.Errorf("choice %+v", ch)
		}
	})
	t.Run("times limits uses", func(t *testing.T) {
		first := content(t, chat(t, srv, map[string]any{"model": "m", "messages": user("tell me a joke")}))
		second := content(t, chat(t, srv, map[string]any{"model": "m", "messages": user("tell me a joke")}))
		if first != "Thought: I now know the final answer\nFinal Answer: a scripted joke" || !strings.Contains(second, "Mock answer for") {
			t.Errorf("first %q, second %q", first, second)
		}
	})
	t.Run("system match", func(t *testing.T) {
		msgs := []map[string]any{{"role": "system", "content": "You are Pirate."}, {"role": "user", "content": "hi"}}
		if got := content(t, chat(t, srv, map[string]any{"model": "m", "messages": msgs})); got != "Arr" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("no match falls through", func(t *testing.T) {
		if got := content(t, chat(t, srv, map[string]any{"model": "m", "messages": user("unrelated")})); !strings.Contains(got, "Mock answer for: unrelated") {
			t.Errorf("got %q", got)
		}
	})
	s := stats(t, srv)
	if s.Scripted != 4 || s.ToolCalls != 2 {
		t.Errorf("stats %+v, want scripted=4 tool_calls=2", s)
	}
}

func TestParseScript(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    int
		wantErr bool
	}{
		{"list", `[{"match":"a","reply":"b"}]`, 1, false},
		{"wrapped", `{"rules":[{"match":"a","reply":"b"},{"reply":"c"}]}`, 2, false},
		{"empty", `[]`, 0, false},
		{"unknown field", `[{"match":"a","replay":"b"}]`, 0, true},
		{"bad in", `[{"match":"a","in":"everywhere"}]`, 0, true},
		{"nameless tool", `[{"tool_calls":[{"arguments":{}}]}]`, 0, true},
		{"not json", `nope`, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := ParseScript([]byte(tc.data))
			if (err != nil) != tc.wantErr || len(rules) != tc.want {
				t.Errorf("ParseScript = %d rules, %v", len(rules), err)
			}
		})
	}
}

func TestForcedToolChoice(t *testing.T) {
	srv := newServer(t, Config{})
	tools := []map[string]any{
		{"type": "function", "function": map[string]any{"name": "noop"}},
		{"type": "function", "function": map[string]any{"name": "search", "parameters": map[string]any{
			"type": "object", "properties": map[string]any{"queries": map[string]any{"type": "array", "items": map[string]any{"type": "string"}}},
			"required": []string{"queries"}, "additionalProperties": false}}},
	}
	c := chat(t, srv, map[string]any{"model": "m", "messages": user("Find the Zephyr owner"), "tools": tools,
		"tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "search"}}})
	ch := c.Choices[0]
	if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Name != "search" {
		t.Fatalf("choice %+v", ch)
	}
	var args struct{ Queries []string }
	if err := json.Unmarshal([]byte(ch.Message.ToolCalls[0].Function.Arguments), &args); err != nil || len(args.Queries) != 1 || args.Queries[0] != "Find the Zephyr owner" {
		t.Errorf("arguments %q: %v", ch.Message.ToolCalls[0].Function.Arguments, err)
	}
	c = chat(t, srv, map[string]any{"model": "m", "messages": user("x"), "tools": tools, "tool_choice": "required"})
	if tc := c.Choices[0].Message.ToolCalls; len(tc) != 1 || tc[0].Function.Name != "noop" || tc[0].Function.Arguments != "{}" {
		t.Errorf("required tool_choice: %+v", c.Choices[0])
	}
}

// --- embeddings ----------------------------------------------------------------------

type testEmbeddings struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func embed(t *testing.T, srv *httptest.Server, req map[string]any) [][]float32 {
	t.Helper()
	resp, body := post(t, srv, "/v1/embeddings", req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var e testEmbeddings
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	if e.Object != "list" || e.Model == "" || e.Usage.TotalTokens != e.Usage.PromptTokens {
		t.Errorf("envelope %+v", e)
	}
	out := make([][]float32, len(e.Data))
	for i, d := range e.Data {
		if d.Object != "embedding" || d.Index != i {
			t.Errorf("data[%d] = %+v", i, d)
		}
		if req["encoding_format"] == "base64" {
			var s string
			if err := json.Unmarshal(d.Embedding, &s); err != nil {
				t.Fatalf("base64 embedding is not a string: %s", d.Embedding)
			}
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(raw)%4 != 0 {
				t.Fatalf("bad base64: %v", err)
			}
			v := make([]float32, len(raw)/4)
			for j := range v {
				v[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
			}
			out[i] = v
		} else if err := json.Unmarshal(d.Embedding, &out[i]); err != nil {
			t.Fatalf("float embedding: %v", err)
		}
	}
	return out
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func TestEmbeddings(t *testing.T) {
	srv := newServer(t, Config{})
	tests := []struct {
		name    string
		req     map[string]any
		n, dim  int
		compare bool // input[0] and input[1] share words, input[2] does not
	}{
		{"string input, default dim", map[string]any{"model": "text-embedding-3-small", "input": "hello world"}, 1, 1536, false},
		{"large model default dim", map[string]any{"model": "text-embedding-3-large", "input": "hello"}, 1, 3072, false},
		{"dimensions 8", map[string]any{"model": "text-embedding-3-small", "input": []string{"a b", "c"}, "dimensions": 8}, 2, 8, false},
		{"dimensions 3072 base64", map[string]any{"model": "text-embedding-3-small", "input": "x", "dimensions": 3072, "encoding_format": "base64"}, 1, 3072, false},
		{"similarity float", map[string]any{"model": "text-embedding-3-small", "encoding_format": "float", "input": []string{
			"The Atlas project deadline is March 5", "When is the Atlas deadline?", "Team lunch is on Fridays at the Italian place"}}, 3, 1536, true},
		{"similarity base64", map[string]any{"model": "text-embedding-3-small", "encoding_format": "base64", "input": []string{
			"Priya owns the launch checklist", "who owns the launch checklist", "quarterly revenue grew strongly"}}, 3, 1536, true},
		{"token arrays", map[string]any{"model": "text-embedding-3-small", "input": [][]int{{1, 2, 3}, {1, 2, 3}}}, 2, 1536, false},
		{"single token array", map[string]any{"model": "text-embedding-3-small", "input": []int{15339, 1917}}, 1, 1536, false},
		{"empty and punctuation strings", map[string]any{"model": "text-embedding-3-small", "input": []string{"", "?!"}, "dimensions": 16}, 2, 16, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := embed(t, srv, tc.req)
			if len(vs) != tc.n {
				t.Fatalf("%d embeddings, want %d", len(vs), tc.n)
			}
			for i, v := range vs {
				if len(v) != tc.dim {
					t.Errorf("embedding %d has %d dims, want %d", i, len(v), tc.dim)
				}
				if math.Abs(norm(v)-1) > 1e-5 {
					t.Errorf("embedding %d norm %v", i, norm(v))
				}
			}
			again := embed(t, srv, tc.req)
			for i := range vs {
				if cosine(vs[i], again[i]) < 1-1e-9 {
					t.Errorf("embedding %d not deterministic", i)
				}
			}
			if tc.compare {
				related, unrelated := cosine(vs[0], vs[1]), cosine(vs[0], vs[2])
				if related < 0.3 || related <= unrelated+0.2 {
					t.Errorf("cos(related) = %.3f, cos(unrelated) = %.3f", related, unrelated)
				}
			}
		})
	}
	// base64 and float agree, and match the exported Embed.
	f := embed(t, srv, map[string]any{"model": "m", "input": "same text", "encoding_format": "float"})[0]
	b := embed(t, srv, map[string]any{"model": "m", "input": "same text", "encoding_format": "base64"})[0]
	e := Embed("same text", DefaultEmbeddingDimensions)
	for i := range f {
		if f[i] != b[i] || f[i] != e[i] {
			t.Fatalf("dim %d: float %v, base64 %v, Embed %v", i, f[i], b[i], e[i])
		}
	}
	if s := stats(t, srv); s.Embeddings != int64(2*len(tests)+2) {
		t.Errorf("stats.embeddings = %d", s.Embeddings)
	}
}

func TestEmbeddingsConfigDefaultDim(t *testing.T) {
	srv := newServer(t, Config{EmbeddingDimensions: 64})
	if v := embed(t, srv, map[string]any{"model": "text-embedding-3-large", "input": "x"})[0]; len(v) != 64 {
		t.Errorf("dim %d, want 64", len(v))
	}
}

// --- errors, models, stats -------------------------------------------------------------

func TestErrors(t *testing.T) {
	srv := newServer(t, Config{})
	tests := []struct {
		name, method, path, body string
		status                   int
		param                    string
	}{
		{"bad JSON chat", "POST", "/v1/chat/completions", `{"model": "gpt-4o-mini", "messages": [`, 400, ""},
		{"bad JSON embeddings", "POST", "/v1/embeddings", `not json`, 400, ""},
		{"wrong type", "POST", "/v1/chat/completions", `{"messages": "hi"}`, 400, ""},
		{"missing messages", "POST", "/v1/chat/completions", `{"model": "gpt-4o-mini"}`, 400, "messages"},
		{"bad n", "POST", "/chat/completions", `{"messages": [{"role":"user","content":"x"}], "n": 0}`, 400, "n"},
		{"bad stop", "POST", "/v1/chat/completions", `{"messages": [{"role":"user","content":"x"}], "stop": 5}`, 400, "stop"},
		{"schema missing", "POST", "/v1/chat/completions", `{"messages": [{"role":"user","content":"x"}], "response_format": {"type": "json_schema"}}`, 400, "response_format.json_schema"},
		{"missing input", "POST", "/v1/embeddings", `{"model": "m"}`, 400, "input"},
		{"empty input list", "POST", "/v1/embeddings", `{"model": "m", "input": []}`, 400, "input"},
		{"bad input", "POST", "/v1/embeddings", `{"model": "m", "input": [{"a": 1}]}`, 400, "input"},
		{"bad dimensions", "POST", "/v1/embeddings", `{"model": "m", "input": "x", "dimensions": 0}`, 400, "dimensions"},
		{"bad encoding", "POST", "/v1/embeddings", `{"model": "m", "input": "x", "encoding_format": "int8"}`, 400, "encoding_format"},
		{"unknown path", "GET", "/v1/nope", ``, 404, ""},
		{"responses api", "POST", "/v1/responses", `{}`, 404, ""},
		{"unknown model", "GET", "/v1/models/gpt-9", ``, 404, "model"},
		{"wrong method", "GET", "/v1/chat/completions", ``, 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			var e struct {
				Error *struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("not an OpenAI error: %s", body)
			}
			if !strings.Contains(string(body), `"param":`) || !strings.Contains(string(body), `"code":`) {
				t.Errorf("param/code keys missing: %s", body)
			}
			if tc.param != "" && (e.Error.Param == nil || *e.Error.Param != tc.param) {
				t.Errorf("param %v, want %q", e.Error.Param, tc.param)
			}
		})
	}
	if s := stats(t, srv); s.Errors != int64(len(tests)) || s.Chat != 0 || s.Embeddings != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestModelsAndStats(t *testing.T) {
	srv := newServer(t, Config{Models: []string{"gpt-4o-mini", "my-embedder"}})
	for _, path := range []string{"/v1/models", "/models"} {
		resp, body := get(t, srv, path)
		var list struct {
			Object string `json:"object"`
			Data   []struct{ ID, Object string }
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &list) != nil || list.Object != "list" || len(list.Data) != 2 || list.Data[1].ID != "my-embedder" || list.Data[0].Object != "model" {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, body := get(t, srv, "/v1/models/my-embedder"); resp.StatusCode != 200 || !strings.Contains(string(body), `"id":"my-embedder"`) {
		t.Errorf("model lookup: %d %s", resp.StatusCode, body)
	}
	chat(t, srv, map[string]any{"model": "x", "messages": user("a")})
	chat(t, srv, map[string]any{"model": "x", "messages": user("b")})
	embed(t, srv, map[string]any{"model": "x", "input": []string{"a", "b", "c"}})
	s := stats(t, srv)
	want := Stats{Chat: 2, Embeddings: 1, EmbeddedTexts: 3, Models: 3}
	if s != want {
		t.Errorf("stats %+v, want %+v", s, want)
	}
	if resp, _ := get(t, srv, "/v1/stats"); resp.StatusCode != 200 {
		t.Errorf("/v1/stats: %d", resp.StatusCode)
	}
	if resp, _ := get(t, srv, "/healthz"); resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
}

func TestConcurrentRequests(t *testing.T) {
	srv := newServer(t, Config{Script: []Reply{{Match: "once", Reply: "scripted", Times: 5}}})
	const workers, each = 8, 10
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			for i := 0; i < each; i++ {
				body := `{"model":"m","messages":[{"role":"user","content":"once more"}]}`
				path := "/v1/chat/completions"
				if i%2 == 1 {
					body, path = `{"model":"m","input":["a b","c d"],"encoding_format":"base64"}`, "/v1/embeddings"
				}
				resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
				if err != nil {
					errc <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errc <- errors.New(resp.Status)
					return
				}
			}
			errc <- nil
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	s := stats(t, srv)
	if s.Chat != workers*each/2 || s.Embeddings != workers*each/2 || s.Scripted != 5 || s.EmbeddedTexts != workers*each {
		t.Errorf("stats %+v", s)
	}
}

// --- latency and serving ------------------------------------------------------------------

func TestLatency(t *testing.T) {
	const latency = 300 * time.Millisecond
	srv := newServer(t, Config{Latency: latency})

	t.Run("applied", func(t *testing.T) {
		for _, path := range []string{"/v1/chat/completions", "/v1/embeddings"} {
			start := time.Now()
			body := `{"model":"m","messages":[{"role":"user","content":"x"}],"input":"x"}`
			resp, _ := post(t, srv, path, body)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: status %d", path, resp.StatusCode)
			}
			if d := time.Since(start); d < latency {
				t.Errorf("%s answered after %v, want >= %v", path, d, latency)
			}
		}
		start := time.Now()
		get(t, srv, "/stats")
		if d := time.Since(start); d >= latency {
			t.Errorf("/stats took %v; it should not be delayed", d)
		}
	})

	t.Run("cancellation", func(t *testing.T) {
		before := stats(t, srv).Cancelled
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
		start := time.Now()
		_, err := http.DefaultClient.Do(req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
		// The handler notices the cancellation well before the latency ends.
		deadline := time.Now().Add(latency - 50*time.Millisecond)
		for stats(t, srv).Cancelled == before {
			if time.Now().After(deadline) {
				t.Fatalf("handler did not observe cancellation within %v", time.Since(start))
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func TestServeGracefulShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, Config{Latency: 200 * time.Millisecond}) }()
	url := "http://" + ln.Addr().String()

	// A request in flight when shutdown starts still completes.
	inflight := make(chan int, 1)
	go func() {
		resp, err := http.Post(url+"/v1/embeddings", "application/json", strings.NewReader(`{"input":"x"}`))
		if err != nil {
			inflight <- -1
			return
		}
		resp.Body.Close()
		inflight <- resp.StatusCode
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if code := <-inflight; code != 200 {
		t.Errorf("in-flight request got %d", code)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get(url + "/stats"); err == nil {
		t.Error("server still answering after shutdown")
	}
}

func TestListenAndServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ListenAndServe(ctx, "127.0.0.1:0", Config{}); err != nil {
		t.Errorf("ListenAndServe with cancelled ctx: %v", err)
	}
	if err := ListenAndServe(context.Background(), "256.0.0.1:bad", Config{}); err == nil {
		t.Error("bad address accepted")
	}
}

// --- text heuristics --------------------------------------------------------------------------

func TestSubject(t *testing.T) {
	tests := []struct{ in, want string }{
		{"\nCurrent Task: Do X.\nmore of X\n\nThis is the expected criteria: y", "Do X.\nmore of X"},
		{"Content to store:\nfact one\nfact two\n\nExisting scopes: ['/']", "fact one\nfact two"},
		{"Query: what now?\n\nAvailable scopes: ['/']", "what now?"},
		{"just a question?", "just a question?"},
		{"\n\nfirst para\nline\n\nsecond", "first para\nline"},
		{"Summary: short", "short"},
	}
	for _, tc := range tests {
		if got := subject(tc.in); got != tc.want {
			t.Errorf("subject(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
