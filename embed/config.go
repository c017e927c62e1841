package embed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Config configures a Client. Provider, Model and either URL or BaseURL are
// required; everything else has a default.
type Config struct {
	// Provider names the provider in errors and in the cache namespace
	// ("openai", "azure", "openrouter", "vllm", ...).
	Provider string `json:"provider"`
	// BaseURL is the API's base (e.g. "https://api.openai.com/v1"); the
	// endpoint is BaseURL + "/embeddings". Ignored when URL is set.
	BaseURL string `json:"base_url"`
	// URL is the full endpoint URL, query included (it wins over BaseURL
	// and the Azure fields).
	URL string `json:"url"`
	// APIKey is sent as "Authorization: Bearer <key>" (as "api-key: <key>"
	// for Azure), unless Headers already has that header.
	APIKey string `json:"api_key"`
	// AzureDeployment and AzureAPIVersion, when set, make the endpoint
	// {BaseURL}/openai/deployments/{deployment}/embeddings?api-version=...,
	// as Azure OpenAI's own clients build it.
	AzureDeployment string `json:"azure_deployment"`
	AzureAPIVersion string `json:"azure_api_version"`
	// Model is sent as "model".
	Model string `json:"model"`
	// Dimensions, when > 0, is sent as "dimensions" and every vector must
	// have that length. When 0 the first answer fixes the expected length.
	Dimensions int `json:"dimensions"`
	// Headers are sent with every request (organization, project, ...).
	Headers map[string]string `json:"headers"`

	// Timeout is the deadline of one Embed call, retries included
	// (default 60s); a context deadline that comes sooner wins.
	Timeout time.Duration `json:"-"`
	// AttemptTimeout bounds one HTTP attempt (default 30s, never past the
	// call's deadline), so a hung connection is retried.
	AttemptTimeout time.Duration `json:"-"`
	// MaxRetries is how many times a failed attempt is retried (default 4;
	// negative: never). The deadline may end the retries earlier.
	MaxRetries int `json:"max_retries"`
	// RetryBase is the first backoff (default 250ms), doubled per retry up
	// to RetryMax (default 8s), with jitter; a Retry-After wins.
	RetryBase time.Duration `json:"-"`
	RetryMax  time.Duration `json:"-"`
	// MaxBatch is the most inputs in one API call (default 2048, OpenAI's).
	MaxBatch int `json:"max_batch"`
	// MaxBatchBytes is the most bytes of text in one API call (default
	// 1 MiB; a single longer text goes alone).
	MaxBatchBytes int `json:"max_batch_bytes"`
	// MaxInFlight is the most API calls running at once (default 4);
	// requests arriving meanwhile are batched into the next call.
	MaxInFlight int `json:"max_in_flight"`
	// RateLimit is the most API calls per second (0: no limit), with
	// bursts of RateBurst (default 1).
	RateLimit float64 `json:"rate_limit"`
	RateBurst int     `json:"rate_burst"`
	// MaxResponseBytes bounds a response body (default 256 MiB).
	MaxResponseBytes int64 `json:"-"`
}

// Seconds-valued fields for JSON configurations (the bridge).
type configJSON struct {
	Config
	TimeoutS        float64 `json:"timeout_s"`
	AttemptTimeoutS float64 `json:"attempt_timeout_s"`
	RetryBaseS      float64 `json:"retry_base_s"`
	RetryMaxS       float64 `json:"retry_max_s"`
}

func (c *Config) withDefaults() (Config, error) {
	o := *c
	if o.Provider == "" {
		o.Provider = "openai"
	}
	if strings.TrimSpace(o.Model) == "" {
		return o, fmt.Errorf("%w: the embedding model is empty", ErrInvalid)
	}
	if o.Dimensions < 0 || o.Dimensions > 1<<16 {
		return o, fmt.Errorf("%w: dimensions %d out of range [0, 65536]", ErrInvalid, o.Dimensions)
	}
	if o.URL == "" {
		base := strings.TrimRight(o.BaseURL, "/")
		if base == "" {
			return o, fmt.Errorf("%w: %s embeddings: no base URL", ErrInvalid, o.Provider)
		}
		if o.AzureDeployment != "" {
			if o.AzureAPIVersion == "" {
				return o, fmt.Errorf("%w: azure embeddings: an API version is required", ErrInvalid)
			}
			o.URL = base + "/openai/deployments/" + url.PathEscape(o.AzureDeployment) +
				"/embeddings?api-version=" + url.QueryEscape(o.AzureAPIVersion)
		} else {
			o.URL = base + "/embeddings"
		}
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return o, fmt.Errorf("%w: %s embeddings: endpoint %q is not an http(s) URL", ErrInvalid, o.Provider, o.URL)
	}
	h := make(map[string]string, len(o.Headers)+2)
	for k, v := range o.Headers {
		h[k] = v
	}
	if o.APIKey != "" {
		if o.AzureDeployment != "" {
			if !hasHeader(h, "api-key") {
				h["api-key"] = o.APIKey
			}
		} else if !hasHeader(h, "Authorization") {
			h["Authorization"] = "Bearer " + o.APIKey
		}
	}
	o.Headers = h
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 30 * time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 4
	} else if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 250 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 8 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 2048
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 1 << 20
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 4
	}
	if o.RateLimit < 0 || o.RateLimit != o.RateLimit {
		return o, fmt.Errorf("%w: rate limit must be >= 0 calls per second", ErrInvalid)
	}
	if o.RateBurst <= 0 {
		o.RateBurst = 1
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = 256 << 20
	}
	return o, nil
}

func hasHeader(h map[string]string, name string) bool {
	for k := range h {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// Endpoint is the URL without its query and credentials: what the cache
// namespace and error messages name.
func (c *Config) endpoint() string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return c.URL
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}

// Namespace is the cache namespace of what c produces: provider, endpoint,
// model and requested dimensions. Texts embedded under one namespace are
// interchangeable; under two, never.
func (c *Config) Namespace() string {
	o, err := c.withDefaults()
	if err != nil {
		o = *c
	}
	return Namespace(o.Provider, o.endpoint(), o.Model, o.Dimensions)
}

// Namespace joins the parts of a cache namespace. Use it for sources other
// than a Client (a local model) with an endpoint that identifies the
// weights (a path, a URL, or "").
func Namespace(provider, endpoint, model string, dims int) string {
	return fmt.Sprintf("%s|%s|%s|%d", provider, endpoint, model, dims)
}

// ParseConfig decodes a JSON configuration: Config's fields by their JSON
// names, with the durations as seconds (timeout_s, attempt_timeout_s,
// retry_base_s, retry_max_s). Unknown fields are refused.
func ParseConfig(data []byte) (Config, error) {
	var cj configJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cj); err != nil {
		return Config{}, fmt.Errorf("%w: embedding configuration: %v", ErrInvalid, err)
	}
	c := cj.Config
	for _, d := range []struct {
		v   float64
		dst *time.Duration
		nm  string
	}{{cj.TimeoutS, &c.Timeout, "timeout_s"}, {cj.AttemptTimeoutS, &c.AttemptTimeout, "attempt_timeout_s"},
		{cj.RetryBaseS, &c.RetryBase, "retry_base_s"}, {cj.RetryMaxS, &c.RetryMax, "retry_max_s"}} {
		if d.v < 0 || d.v != d.v || d.v > 1e6 {
			return Config{}, fmt.Errorf("%w: %s must be a number of seconds in [0, 1e6], got %v", ErrInvalid, d.nm, d.v)
		}
		*d.dst = time.Duration(d.v * float64(time.Second))
	}
	if _, err := c.withDefaults(); err != nil {
		return Config{}, err
	}
	return c, nil
}
