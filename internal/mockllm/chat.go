package mockllm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

type chatRequest struct {
	Model          string          `json:"model"`
	Messages       []chatMessage   `json:"messages"`
	Stream         bool            `json:"stream"`
	StreamOptions  *streamOptions  `json:"stream_options"`
	ResponseFormat *responseFormat `json:"response_format"`
	Tools          []toolSpec      `json:"tools"`
	ToolChoice     json.RawMessage `json:"tool_choice"`
	Stop           json.RawMessage `json:"stop"`
	N              *int            `json:"n"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type responseFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
		Strict *bool           `json:"strict"`
	} `json:"json_schema"`
}

type toolSpec struct {
	Type     string `json:"type"`
	Function *struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	} `json:"function"`
}

type chatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCallID string          `json:"tool_call_id"`
}

// text returns the message's text: the content string, or the text parts of
// a content array joined by newlines.
func (m chatMessage) text() string {
	c := bytes.TrimSpace(m.Content)
	if len(c) == 0 || string(c) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(c, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(c, &parts) == nil {
		var texts []string
		for _, p := range parts {
			if p.Text != "" {
				texts = append(texts, p.Text)
			}
		}
		return strings.Join(texts, "\n")
	}
	return ""
}

// Response shapes (OpenAI ChatCompletion / ChatCompletionChunk).

type completion struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	Choices           []choice `json:"choices"`
	Usage             *usage   `json:"usage"`
	SystemFingerprint string   `json:"system_fingerprint"`
}

type choice struct {
	Index        int      `json:"index"`
	Message      *message `json:"message,omitempty"`
	Delta        *message `json:"delta,omitempty"`
	Logprobs     any      `json:"logprobs"`
	FinishReason *string  `json:"finish_reason"`
}

type message struct {
	Role        string         `json:"role,omitempty"`
	Content     *string        `json:"content,omitempty"`
	Refusal     *string        `json:"refusal,omitempty"`
	ToolCalls   []toolCallJSON `json:"tool_calls,omitempty"`
	Annotations []any          `json:"annotations,omitempty"`
}

type toolCallJSON struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function functionCall `json:"function"`
}

type functionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type usage struct {
	PromptTokens            int            `json:"prompt_tokens"`
	CompletionTokens        int            `json:"completion_tokens"`
	TotalTokens             int            `json:"total_tokens"`
	PromptTokensDetails     map[string]int `json:"prompt_tokens_details"`
	CompletionTokensDetails map[string]int `json:"completion_tokens_details"`
}

// answer is what the model "says" for one request.
type answer struct {
	content   *string // nil: JSON null (tool calls only)
	toolCalls []toolCallJSON
}

const fingerprint = "fp_mockllm"

func (h *handler) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if !h.decode(w, r, &req) {
		return
	}
	if status := h.faults.injectedStatus(&h.cfg); status != 0 {
		note(r, fmt.Sprintf("chat injected error %d", status))
		h.failInjected(w, status)
		return
	}
	if len(req.Messages) == 0 {
		h.fail(w, http.StatusBadRequest, "invalid_request_error",
			"Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
		return
	}
	n := 1
	if req.N != nil {
		n = *req.N
		if n < 1 || n > 128 {
			h.fail(w, http.StatusBadRequest, "invalid_request_error",
				fmt.Sprintf("Invalid 'n': %d (must be between 1 and 128)", n), "n", "invalid_value")
			return
		}
	}
	var schema any
	schemaName := ""
	if rf := req.ResponseFormat; rf != nil && rf.Type == "json_schema" {
		if rf.JSONSchema == nil || len(bytes.TrimSpace(rf.JSONSchema.Schema)) == 0 {
			h.fail(w, http.StatusBadRequest, "invalid_request_error",
				"Missing required parameter: 'response_format.json_schema.schema'.", "response_format.json_schema", "missing_required_parameter")
			return
		}
		s, err := decodeValue(rf.JSONSchema.Schema)
		if err != nil {
			h.fail(w, http.StatusBadRequest, "invalid_request_error",
				"Invalid 'response_format.json_schema.schema': "+err.Error(), "response_format.json_schema.schema", "invalid_value")
			return
		}
		schema, schemaName = s, rf.JSONSchema.Name
	}
	stops, err := parseStop(req.Stop)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "invalid_request_error", err.Error(), "stop", "invalid_value")
		return
	}

	ans, scripted := h.respond(&req, schema)
	if ans.content != nil && schema == nil {
		c := applyStop(*ans.content, stops)
		ans.content = &c
	}
	finish := "stop"
	if len(ans.toolCalls) > 0 {
		finish = "tool_calls"
	}

	h.stats.chat.Add(1)
	if schema != nil {
		h.stats.structured.Add(1)
	}
	if scripted {
		h.stats.scripted.Add(1)
	}
	if len(ans.toolCalls) > 0 {
		h.stats.toolCalls.Add(1)
	}
	if req.Stream {
		h.stats.streamed.Add(1)
	}
	note(r, fmt.Sprintf("chat model=%s stream=%t tools=%d schema=%q scripted=%t finish=%s",
		req.Model, req.Stream, len(req.Tools), schemaName, scripted, finish))

	model := req.Model
	if model == "" {
		model = "gpt-4o-mini"
	}
	id := fmt.Sprintf("chatcmpl-mock%06d", h.seq.Add(1))
	u := usageFor(req.Messages, ans, n)
	if req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		h.stream(w, r, id, model, ans, finish, n, u, includeUsage)
		return
	}
	choices := make([]choice, n)
	for i := range choices {
		f := finish
		choices[i] = choice{
			Index: i,
			Message: &message{
				Role:        "assistant",
				Content:     ans.content,
				ToolCalls:   ans.toolCalls,
				Annotations: []any{},
			},
			FinishReason: &f,
		}
	}
	writeJSON(w, http.StatusOK, completionJSON{completion{
		ID: id, Object: "chat.completion", Created: time.Now().Unix(), Model: model,
		Choices: choices, Usage: &u, SystemFingerprint: fingerprint,
	}})
}

// completionJSON encodes a non-streaming completion with "content" and
// "refusal" always present, as OpenAI sends them.
type completionJSON struct{ c completion }

func (cj completionJSON) MarshalJSON() ([]byte, error) {
	type fullMessage struct {
		Role        string         `json:"role"`
		Content     *string        `json:"content"`
		Refusal     *string        `json:"refusal"`
		ToolCalls   []toolCallJSON `json:"tool_calls,omitempty"`
		Annotations []any          `json:"annotations"`
	}
	type fullChoice struct {
		Index        int         `json:"index"`
		Message      fullMessage `json:"message"`
		Logprobs     any         `json:"logprobs"`
		FinishReason *string     `json:"finish_reason"`
	}
	choices := make([]fullChoice, len(cj.c.Choices))
	for i, ch := range cj.c.Choices {
		m := ch.Message
		choices[i] = fullChoice{
			Index:        ch.Index,
			Message:      fullMessage{Role: m.Role, Content: m.Content, ToolCalls: m.ToolCalls, Annotations: m.Annotations},
			FinishReason: ch.FinishReason,
		}
	}
	return json.Marshal(struct {
		ID                string       `json:"id"`
		Object            string       `json:"object"`
		Created           int64        `json:"created"`
		Model             string       `json:"model"`
		Choices           []fullChoice `json:"choices"`
		Usage             *usage       `json:"usage"`
		ServiceTier       string       `json:"service_tier"`
		SystemFingerprint string       `json:"system_fingerprint"`
	}{cj.c.ID, cj.c.Object, cj.c.Created, cj.c.Model, choices, cj.c.Usage, "default", cj.c.SystemFingerprint})
}

// respond decides the answer; scripted reports whether a script rule gave it.
func (h *handler) respond(req *chatRequest, schema any) (answer, bool) {
	if rule, ok := h.script.match(req.Messages); ok {
		var a answer
		if rule.Reply != "" || len(rule.ToolCalls) == 0 {
			c := rule.Reply
			a.content = &c
		}
		for i, tc := range rule.ToolCalls {
			a.toolCalls = append(a.toolCalls, h.toolCall(i, tc.ID, tc.Name, argumentsString(tc.Arguments)))
		}
		return a, true
	}
	lastUser, all := promptTexts(req.Messages)
	info := newPromptInfo(lastUser, all)
	if name, params, ok := forcedTool(req); ok {
		args := "{}"
		if len(bytes.TrimSpace(params)) > 0 {
			if ps, err := decodeValue(params); err == nil {
				if b, err := json.Marshal(synthesize(ps, info)); err == nil {
					args = string(b)
				}
			}
		}
		return answer{toolCalls: []toolCallJSON{h.toolCall(0, "", name, args)}}, false
	}
	var content string
	switch {
	case schema != nil:
		b, err := json.Marshal(synthesize(schema, info))
		if err != nil {
			b = []byte("{}")
		}
		content = string(b)
	case req.ResponseFormat != nil && req.ResponseFormat.Type == "json_object":
		b, _ := json.Marshal(map[string]string{"answer": answerText(req.Messages)})
		content = string(b)
	case len(req.Tools) > 0:
		// Native function calling: CrewAI takes plain content as the final
		// answer, so no ReAct framing.
		content = answerText(req.Messages)
	default:
		content = "Thought: I now know the final answer\nFinal Answer: " + answerText(req.Messages)
	}
	return answer{content: &content}, false
}

func (h *handler) toolCall(i int, id, name, args string) toolCallJSON {
	if id == "" {
		id = fmt.Sprintf("call_mock%06d", h.callSeq.Add(1))
	}
	return toolCallJSON{ID: id, Type: "function", Function: functionCall{Name: name, Arguments: args}}
}

// argumentsString renders scripted tool arguments: a JSON string is used as
// is, anything else (an object) compactly JSON-encoded, absent as "{}".
func argumentsString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "{}"
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return string(raw)
}

// forcedTool returns the tool a request forces ("required": the first tool;
// {"type":"function","function":{"name":...}}: that one).
func forcedTool(req *chatRequest) (string, json.RawMessage, bool) {
	tc := bytes.TrimSpace(req.ToolChoice)
	if len(tc) == 0 || len(req.Tools) == 0 {
		return "", nil, false
	}
	var mode string
	if json.Unmarshal(tc, &mode) == nil {
		if mode != "required" {
			return "", nil, false
		}
		for _, t := range req.Tools {
			if t.Function != nil {
				return t.Function.Name, t.Function.Parameters, true
			}
		}
		return "", nil, false
	}
	var named struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(tc, &named) != nil || named.Function.Name == "" {
		return "", nil, false
	}
	for _, t := range req.Tools {
		if t.Function != nil && t.Function.Name == named.Function.Name {
			return t.Function.Name, t.Function.Parameters, true
		}
	}
	return named.Function.Name, nil, true
}

// promptTexts returns the last user message's text and all messages' text.
func promptTexts(msgs []chatMessage) (lastUser, all string) {
	var b strings.Builder
	for i, m := range msgs {
		t := m.text()
		if m.Role == "user" {
			lastUser = t
		}
		if i > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString(t)
	}
	return lastUser, b.String()
}

// answerText is the deterministic default answer: what was asked, its key
// words, the latest tool result if the conversation ends with one, and the
// recalled memories found in the last user message.
func answerText(msgs []chatMessage) string {
	lastUser, all := promptTexts(msgs)
	subj := subject(lastUser)
	if subj == "" {
		subj = subject(all)
	}
	var b strings.Builder
	topic := strings.TrimRight(oneLine(subj, 200), ".!?:;, ")
	if topic == "" {
		topic = "the request"
	}
	fmt.Fprintf(&b, "Mock answer for: %s.", topic)
	if kws := keywords(subj, 6); len(kws) > 0 {
		fmt.Fprintf(&b, " Key points: %s.", strings.Join(kws, ", "))
	}
	if last := msgs[len(msgs)-1]; last.Role == "tool" {
		fmt.Fprintf(&b, "\nTool result: %s", oneLine(last.text(), 400))
	}
	if mems := recalledMemories(lastUser); len(mems) > 0 {
		b.WriteString("\nRecalled memories:")
		for _, m := range mems {
			b.WriteString("\n- " + oneLine(m, 400))
		}
	}
	return b.String()
}

func parseStop(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("Invalid 'stop': must be a string or a list of strings")
	}
	return many, nil
}

// applyStop cuts s at the earliest stop sequence, as the API does.
func applyStop(s string, stops []string) string {
	cut := len(s)
	for _, st := range stops {
		if st == "" {
			continue
		}
		if i := strings.Index(s, st); i >= 0 && i < cut {
			cut = i
		}
	}
	return s[:cut]
}

func usageFor(msgs []chatMessage, a answer, n int) usage {
	prompt := 0
	for _, m := range msgs {
		prompt += 4 + approxTokens(m.text())
	}
	completion := 0
	if a.content != nil {
		completion += approxTokens(*a.content)
	}
	for _, tc := range a.toolCalls {
		completion += approxTokens(tc.Function.Name) + approxTokens(tc.Function.Arguments)
	}
	completion *= n
	return usage{
		PromptTokens:            prompt,
		CompletionTokens:        completion,
		TotalTokens:             prompt + completion,
		PromptTokensDetails:     map[string]int{"cached_tokens": 0, "audio_tokens": 0},
		CompletionTokensDetails: map[string]int{"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
	}
}

// stream writes the answer as server-sent ChatCompletionChunk events ending
// with "data: [DONE]".
func (h *handler) stream(w http.ResponseWriter, r *http.Request, id, model string, a answer, finish string, n int, u usage, includeUsage bool) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	created := time.Now().Unix()
	send := func(choices []choice, withUsage *usage) bool {
		chunk := map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
			"system_fingerprint": fingerprint, "choices": choices,
		}
		if includeUsage {
			chunk["usage"] = withUsage // null except on the last chunk
		}
		b, err := json.Marshal(chunk)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		rc.Flush()
		return r.Context().Err() == nil
	}
	strp := func(s string) *string { return &s }
	for i := 0; i < n; i++ {
		first := &message{Role: "assistant", Content: strp(""), Refusal: nil}
		if a.content == nil {
			first.Content = nil
		}
		if !send([]choice{{Index: i, Delta: first}}, nil) {
			return
		}
		if a.content != nil {
			for _, piece := range splitChunks(*a.content) {
				if !send([]choice{{Index: i, Delta: &message{Content: strp(piece)}}}, nil) {
					return
				}
			}
		}
		for k, tc := range a.toolCalls {
			idx := k
			head := toolCallJSON{Index: &idx, ID: tc.ID, Type: "function", Function: functionCall{Name: tc.Function.Name, Arguments: ""}}
			if !send([]choice{{Index: i, Delta: &message{ToolCalls: []toolCallJSON{head}}}}, nil) {
				return
			}
			for _, piece := range splitChunks(tc.Function.Arguments) {
				part := toolCallJSON{Index: &idx, Function: functionCall{Arguments: piece}}
				if !send([]choice{{Index: i, Delta: &message{ToolCalls: []toolCallJSON{part}}}}, nil) {
					return
				}
			}
		}
		f := finish
		if !send([]choice{{Index: i, Delta: &message{}, FinishReason: &f}}, nil) {
			return
		}
	}
	if includeUsage {
		if !send([]choice{}, &u) {
			return
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	rc.Flush()
}

// splitChunks cuts s into stream pieces of a few words (at most ~32 bytes),
// always at rune boundaries; their concatenation is s.
func splitChunks(s string) []string {
	const soft, hard = 12, 32
	var out []string
	start := 0
	for i, r := range s {
		size := i - start
		if size >= hard || (size >= soft && (r == ' ' || r == '\n')) {
			out = append(out, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
