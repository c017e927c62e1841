package embed

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/crewcore/crewcore/internal/vec"
)

// Response is a decoded embeddings answer: one vector per input, in input
// order, all of one length, and the tokens the provider counted.
type Response struct {
	Vectors [][]float32
	Tokens  int
	// PerText is each text's share of Tokens (Client.Embed only).
	PerText []int
}

type apiResponse struct {
	Data []struct {
		Index     *int            `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// DecodeResponse decodes the body of a successful embeddings answer for n
// inputs. An embedding is either a base64 string of little-endian float32
// (encoding_format "base64", which OpenAI's SDKs request) or a JSON array
// of numbers, converted to float32 as the SDKs do. Every error wraps
// ErrBadResponse.
func DecodeResponse(body []byte, n int) (Response, error) {
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Response{}, fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	if len(r.Data) != n {
		return Response{}, fmt.Errorf("%w: %d embeddings for %d inputs", ErrBadResponse, len(r.Data), n)
	}
	out := make([][]float32, n)
	dim := -1
	for i, d := range r.Data {
		idx := i
		if d.Index != nil {
			idx = *d.Index
		}
		if idx < 0 || idx >= n {
			return Response{}, fmt.Errorf("%w: index %d out of range [0, %d)", ErrBadResponse, idx, n)
		}
		if out[idx] != nil {
			return Response{}, fmt.Errorf("%w: index %d appears twice", ErrBadResponse, idx)
		}
		v, err := decodeVector(d.Embedding)
		if err != nil {
			return Response{}, fmt.Errorf("%w: embedding %d: %v", ErrBadResponse, idx, err)
		}
		if dim == -1 {
			dim = len(v)
		} else if len(v) != dim {
			return Response{}, fmt.Errorf("%w: embedding %d has %d dimensions, embedding 0 has %d", ErrBadResponse, idx, len(v), dim)
		}
		out[idx] = v
	}
	tokens := r.Usage.TotalTokens
	if tokens == 0 {
		tokens = r.Usage.PromptTokens
	}
	return Response{Vectors: out, Tokens: tokens}, nil
}

func decodeVector(raw json.RawMessage) ([]float32, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, fmt.Errorf("missing")
	}
	var v []float32
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("base64: %v", err)
		}
		if len(b)%4 != 0 {
			return nil, fmt.Errorf("%d bytes is not a whole number of float32", len(b))
		}
		v = make([]float32, len(b)/4)
		vec.FromLittleEndian(v, b)
	} else {
		var f []float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return nil, err
		}
		v = make([]float32, len(f))
		for i, x := range f {
			v[i] = float32(x)
		}
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("empty vector")
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("value %d is %v", i, x)
		}
	}
	return v, nil
}

// errorMessage extracts the message of an OpenAI-style error body
// ({"error": {"message": ...}}), else a short prefix of the body.
func errorMessage(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
			return obj.Message
		}
		var s string
		if json.Unmarshal(e.Error, &s) == nil && s != "" {
			return s
		}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	if msg == "" {
		return "(empty body)"
	}
	return msg
}
