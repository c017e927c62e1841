package mockllm

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
)

// DefaultEmbeddingDimensions is the embedding length used when neither the
// request ("dimensions") nor Config.EmbeddingDimensions sets one and the
// model is not a "*-3-large" model (3072).
const DefaultEmbeddingDimensions = 1536

// MaxEmbeddingDimensions bounds the "dimensions" a request may ask for.
const MaxEmbeddingDimensions = 65536

// hashesPerFeature is how many (index, sign) pairs every feature adds.
const hashesPerFeature = 3

// Embed returns the deterministic unit-length embedding the server produces
// for text with dim dimensions (dim < 1 is treated as 1).
//
// It is feature hashing: every lowercase word (stopwords dropped unless the
// text has nothing else, a plural "s" stripped) adds weight 1 and every pair
// of adjacent words adds 0.5, each at three pseudo-random positions with
// pseudo-random signs; the sum is L2-normalized. Texts sharing words
// therefore have a high cosine similarity, the same text always yields the
// same vector, and a text without words still gets a unit vector derived
// from its bytes.
func Embed(text string, dim int) []float32 {
	if dim < 1 {
		dim = 1
	}
	acc := make([]float64, dim)
	toks := embedTokens(text)
	for i, t := range toks {
		addFeature(acc, t, 1)
		if i > 0 {
			addFeature(acc, toks[i-1]+" "+t, 0.5)
		}
	}
	if len(toks) == 0 {
		addFeature(acc, "\x00raw:"+text, 1)
	}
	var norm float64
	for _, x := range acc {
		norm += x * x
	}
	if norm == 0 { // every feature cancelled out (possible for tiny dim)
		addFeature(acc, "\x00fallback:"+text, 1)
		for _, x := range acc {
			norm += x * x
		}
	}
	norm = math.Sqrt(norm)
	out := make([]float32, dim)
	for i, x := range acc {
		out[i] = float32(x / norm)
	}
	return out
}

// embedTokens returns the words of text used as embedding features.
func embedTokens(text string) []string {
	all := words(text)
	var kept []string
	for _, w := range all {
		if !stopwords[w] {
			kept = append(kept, stem(w))
		}
	}
	if len(kept) == 0 {
		for _, w := range all {
			kept = append(kept, stem(w))
		}
	}
	return kept
}

// stem strips a plural "s" ("deadlines" -> "deadline", but not "class").
func stem(w string) string {
	if len(w) > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss") {
		return w[:len(w)-1]
	}
	return w
}

func addFeature(acc []float64, feature string, weight float64) {
	h := fnv.New64a()
	h.Write([]byte(feature))
	x := h.Sum64()
	for k := 0; k < hashesPerFeature; k++ {
		x = splitmix64(x + uint64(k)*0x9e3779b97f4a7c15)
		idx := x % uint64(len(acc))
		if x>>63 == 1 {
			acc[idx] -= weight
		} else {
			acc[idx] += weight
		}
	}
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// encodeBase64 is the "base64" encoding_format: the little-endian float32
// bytes of v, standard base64.
func encodeBase64(v []float32) string {
	buf := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(buf)
}

// embeddingInputs turns the "input" of an embeddings request into texts: a
// string, a list of strings, one token array (list of integers) or a list of
// token arrays. Token arrays become the text "t<id> t<id> ...", so equal
// arrays embed equally.
func embeddingInputs(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New("'input' is required")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("'input' must be a string, a list of strings or a list of token arrays")
	}
	if len(list) == 0 {
		return nil, errors.New("'input' must not be an empty list")
	}
	// One token array: all elements numbers.
	if toks, ok := tokenArray(raw); ok {
		return []string{tokensText(toks)}, nil
	}
	out := make([]string, 0, len(list))
	for i, el := range list {
		var s string
		if err := json.Unmarshal(el, &s); err == nil {
			out = append(out, s)
			continue
		}
		if toks, ok := tokenArray(el); ok {
			out = append(out, tokensText(toks))
			continue
		}
		return nil, fmt.Errorf("'input[%d]' must be a string or a token array", i)
	}
	return out, nil
}

func tokenArray(raw json.RawMessage) ([]int64, bool) {
	var nums []float64
	if err := json.Unmarshal(raw, &nums); err != nil {
		return nil, false
	}
	toks := make([]int64, len(nums))
	for i, f := range nums {
		if f != math.Trunc(f) {
			return nil, false
		}
		toks[i] = int64(f)
	}
	return toks, true
}

func tokensText(toks []int64) string {
	var b strings.Builder
	for i, t := range toks {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "t%d", t)
	}
	return b.String()
}

// approxTokens estimates the OpenAI token count of text (about 4 characters
// per token, at least 1 for non-empty text).
func approxTokens(text string) int {
	if text == "" {
		return 0
	}
	return (len(text) + 3) / 4
}
