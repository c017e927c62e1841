package mockllm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
)

// Reply is one rule of a chat script. The first rule that matches a chat
// completion request answers it; requests no rule matches get the default
// synthesized answer.
//
// In a script file (JSON) a rule looks like:
//
//	{"match": "weather", "reply": "Thought: I now know the final answer\nFinal Answer: sunny"}
//	{"match": "Berlin", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Berlin"}}], "times": 1}
type Reply struct {
	// Match is a case-sensitive substring looked for in the message text
	// selected by In. An empty Match matches every request.
	Match string `json:"match"`
	// In selects the messages Match is looked for in: "any" (default: any
	// message, whatever its role), "last_user" (the last user message),
	// "last" (the last message, e.g. a tool result) or "system".
	In string `json:"in,omitempty"`
	// Reply is the assistant message content, returned verbatim (also for
	// requests asking for structured output).
	Reply string `json:"reply,omitempty"`
	// ToolCalls, when non-empty, are returned as the message's tool_calls
	// with finish_reason "tool_calls" (Reply, if set, is the content
	// alongside them).
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// Times limits how many requests the rule answers (0: unlimited).
	//
	// Independently of Times, a rule with ToolCalls whose In is not "last"
	// does not match a request whose last message is a tool result (role
	// "tool"): having just received a tool's output the model answers
	// instead of calling the tool again. Use In "last" to chain a call on a
	// tool's output.
	Times int `json:"times,omitempty"`
}

// ToolCall is a function call returned by a scripted Reply.
type ToolCall struct {
	// ID is the tool call id; empty means "call_<n>" with n counting the
	// server's tool calls.
	ID string `json:"id,omitempty"`
	// Name is the function name.
	Name string `json:"name"`
	// Arguments are the function arguments: a JSON object (sent JSON-encoded,
	// as OpenAI does) or a string sent as is.
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// ParseScript parses a chat script: either a JSON list of Reply rules or an
// object {"rules": [...]}.
func ParseScript(data []byte) ([]Reply, error) {
	data = bytes.TrimSpace(data)
	var rules []Reply
	if len(data) > 0 && data[0] == '{' {
		var wrapped struct {
			Rules []Reply `json:"rules"`
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&wrapped); err != nil {
			return nil, fmt.Errorf("parse script: %w", err)
		}
		rules = wrapped.Rules
	} else {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rules); err != nil {
			return nil, fmt.Errorf("parse script: %w", err)
		}
	}
	for i, r := range rules {
		switch r.In {
		case "", "any", "last_user", "last", "system":
		default:
			return nil, fmt.Errorf("script rule %d: unknown \"in\" %q (want any, last_user, last or system)", i, r.In)
		}
		if r.Times < 0 {
			return nil, fmt.Errorf("script rule %d: negative \"times\"", i)
		}
		for j, tc := range r.ToolCalls {
			if tc.Name == "" {
				return nil, fmt.Errorf("script rule %d: tool call %d has no name", i, j)
			}
		}
	}
	return rules, nil
}

// LoadScript reads and parses a chat script file (see ParseScript).
func LoadScript(path string) ([]Reply, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rules, err := ParseScript(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rules, nil
}

// script is the run-time state of Config.Script: rule use counts.
type script struct {
	mu    sync.Mutex
	rules []Reply
	used  []int
}

func newScript(rules []Reply) *script {
	return &script{rules: rules, used: make([]int, len(rules))}
}

// match returns the first rule matching msgs and consumes one of its uses.
func (s *script) match(msgs []chatMessage) (Reply, bool) {
	if s == nil || len(s.rules) == 0 {
		return Reply{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.rules {
		if r.Times > 0 && s.used[i] >= r.Times {
			continue
		}
		if len(r.ToolCalls) > 0 && r.In != "last" && len(msgs) > 0 && msgs[len(msgs)-1].Role == "tool" {
			continue
		}
		if !ruleMatches(r, msgs) {
			continue
		}
		s.used[i]++
		return r, true
	}
	return Reply{}, false
}

func ruleMatches(r Reply, msgs []chatMessage) bool {
	switch r.In {
	case "last_user":
		for i := len(msgs) - 1; i >= 0; i-- {
			if msgs[i].Role == "user" {
				return strings.Contains(msgs[i].text(), r.Match)
			}
		}
		return r.Match == ""
	case "last":
		if len(msgs) == 0 {
			return r.Match == ""
		}
		return strings.Contains(msgs[len(msgs)-1].text(), r.Match)
	case "system":
		for _, m := range msgs {
			if (m.Role == "system" || m.Role == "developer") && strings.Contains(m.text(), r.Match) {
				return true
			}
		}
		return r.Match == ""
	default:
		if r.Match == "" {
			return true
		}
		for _, m := range msgs {
			if strings.Contains(m.text(), r.Match) {
				return true
			}
		}
		return false
	}
}
