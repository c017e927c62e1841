// Package embed is crewcore's embedding layer: a client for OpenAI-compatible
// embeddings APIs (OpenAI, Azure OpenAI, OpenRouter, Ollama's and vLLM's
// /v1/embeddings, any server speaking POST /embeddings) and a persistent,
// content-addressed embedding cache shared by processes.
//
// Client sends POST {base}/embeddings with pooled keep-alive connections.
// Concurrent Embed calls are batched: while MaxInFlight API calls are
// running, newly arriving requests queue, and the next call takes every
// queued text (up to MaxBatch inputs and MaxBatchBytes of text, equal texts
// sent once) in one request, so many threads embedding one text each cost a
// few API calls instead of one each, without adding latency when the client
// is idle. Failed attempts (429, 408, 409, 5xx, connection errors, attempt
// timeouts, malformed answers, a wrong dimension) are retried with
// exponential backoff and jitter that honours Retry-After / retry-after-ms,
// within the call's deadline (Config.Timeout); past it the call fails with an
// *APIError naming the provider, model and last status, wrapping one of the
// sentinel errors below. A client-side rate limit (Config.RateLimit, a token
// bucket of golang.org/x/time/rate) spaces API calls. Vectors are requested as
// base64 (what OpenAI's own SDKs do) and decoded to the exact float32 values
// the provider sent; a JSON array of numbers is accepted too.
//
// Cache is a two-level cache in front of any embedding source: an in-process
// LRU (bounded in bytes) over a Store (SQLiteStore: one SQLite file in WAL
// mode, shared by every process that opens it; PGStore: tables in a
// PostgreSQL schema, shared by machines). Entries are addressed by
// Key(namespace, text), a SHA-256 over the namespace (provider, endpoint,
// model, dimensions: Namespace) and the text. Stores are bounded by size with
// least-recently-used eviction; uses are recorded in batches off the hot path.
// Every Put is one transaction: all of a call's vectors or none. A store that
// fails (a corrupt or foreign file, a read-only file or directory, a full
// disk) turns the cache off for the process: the caller keeps embedding
// through the provider and is told once (Cache.Disabled).
//
// Embedder ties a Client, a Cache and a namespace together: cached texts are
// answered from the cache, the rest (deduplicated) from the API in one call,
// then stored.
package embed
