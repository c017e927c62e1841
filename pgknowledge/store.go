// Package pgknowledge is the knowledge store on PostgreSQL: the API and
// semantics of package knowledge (collections of chunks, content-id dedup,
// vector / keyword / hybrid search, the same scores and fusion), with the
// chunks in PostgreSQL, their vectors in pgvector columns and their text
// indexed by a generated tsvector column (GIN), so many processes and
// machines share one knowledge store.
//
// Differences from the embedded store: keyword search ranks by
// ts_rank_cd (PostgreSQL has no BM25), normalized like the embedded
// store's (0.5 + 0.5*r/rmax); the text configuration is 'simple' (no
// stemming, no stopwords, as FTS5's unicode61); metadata filters use jsonb
// containment (equal for scalar values; a nested object or array matches
// when it contains the filter's); text with NUL cannot be stored (refused
// by package knowledge's checks anyway).
package pgknowledge

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/crewcore/crewcore/internal/redact"
	"github.com/crewcore/crewcore/knowledge"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"

	"github.com/pgvector/pgvector-go"
)

// DefaultSchema is the PostgreSQL schema of a store when none is given.
const DefaultSchema = "crewcore_knowledge"

// ErrUnavailable reports a server that cannot be reached.
var ErrUnavailable = errors.New("postgres knowledge store unavailable")

// Options tune a Store. The zero value is the default.
type Options struct {
	// Schema holds the store's tables (default DefaultSchema).
	Schema string
	// MaxConns bounds the connection pool (default 8).
	MaxConns int32
}

// Store is a knowledge store in one PostgreSQL schema. Safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	schema string
	shown  string
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open connects to dsn and creates the schema's tables (under an advisory
// lock, so many processes may open at once).
func Open(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	s, err := open(ctx, dsn, opts)
	return s, redact.Err(err, dsn)
}

func open(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	if !schemaName.MatchString(o.Schema) {
		return nil, fmt.Errorf("%w: schema %q (lowercase letters, digits, _)", knowledge.ErrInvalidArgument, o.Schema)
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: bad PostgreSQL DSN: %v", knowledge.ErrInvalidArgument, err)
	}
	shown := cfg.ConnConfig.Host
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("open postgres knowledge store on %s: %w: %v", shown, ErrUnavailable, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := migrate(ctx, conn, o.Schema); err != nil {
		return nil, fmt.Errorf("open postgres knowledge store on %s (schema %s): %w", shown, o.Schema, err)
	}
	cfg.MaxConns = o.MaxConns
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return pgxvec.RegisterTypes(ctx, c) }
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres knowledge store on %s: %w: %v", shown, ErrUnavailable, err)
	}
	return &Store{pool: pool, schema: o.Schema, shown: shown}, nil
}

func migrate(ctx context.Context, c *pgx.Conn, schema string) error {
	if _, err := c.Exec(ctx, `SELECT pg_advisory_lock(hashtext('crewcore-knowledge-' || $1))`, schema); err != nil {
		return err
	}
	defer c.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext('crewcore-knowledge-' || $1))`, schema) //nolint:errcheck
	stmts := []string{
		`CREATE EXTENSION IF NOT EXISTS vector`,
		`CREATE SCHEMA IF NOT EXISTS ` + schema,
		`CREATE TABLE IF NOT EXISTS ` + schema + `.collections (
			id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, dim int NOT NULL,
			created_at timestamptz NOT NULL DEFAULT now())`,
		`CREATE TABLE IF NOT EXISTS ` + schema + `.chunks (
			rid bigserial PRIMARY KEY,
			coll bigint NOT NULL REFERENCES ` + schema + `.collections (id) ON DELETE CASCADE,
			id text NOT NULL, content text NOT NULL, metadata jsonb NOT NULL,
			embedding vector NOT NULL,
			tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
			UNIQUE (coll, id))`,
		`CREATE INDEX IF NOT EXISTS chunks_tsv ON ` + schema + `.chunks USING gin (tsv)`,
	}
	for _, q := range stmts {
		if _, err := c.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(q)[0]+" "+strings.Fields(q)[1], err)
		}
	}
	return nil
}

// Path names the store (server host and schema), for messages.
func (s *Store) Path() string { return "postgresql://" + s.shown + "#" + s.schema }

// FTS reports that keyword search is available (always, tsvector).
func (s *Store) FTS() bool { return true }

// Close closes the pool.
func (s *Store) Close() error { s.pool.Close(); return nil }

func (s *Store) t(name string) string { return s.schema + "." + name }

func (s *Store) collection(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string) (int64, int, error) {
	var id int64
	var dim int
	err := q.QueryRow(ctx, `SELECT id, dim FROM `+s.t("collections")+` WHERE name = $1`, name).Scan(&id, &dim)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("knowledge collection %q: %w", name, knowledge.ErrNotFound)
	}
	return id, dim, err
}

// Missing returns the ids (in order, without duplicates) collection lacks.
func (s *Store) Missing(ctx context.Context, collection string, ids []string) ([]string, error) {
	if err := knowledge.ValidName(collection); err != nil {
		return nil, err
	}
	stored := map[string]bool{}
	cid, _, err := s.collection(ctx, s.pool, collection)
	if err != nil && !errors.Is(err, knowledge.ErrNotFound) {
		return nil, fmt.Errorf("knowledge %s: %w", collection, err)
	}
	if err == nil {
		rows, err := s.pool.Query(ctx, `SELECT id FROM `+s.t("chunks")+` WHERE coll = $1 AND id = ANY($2)`, cid, ids)
		if err != nil {
			return nil, fmt.Errorf("knowledge %s: %w", collection, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			stored[id] = true
		}
		rows.Close()
	}
	var out []string
	seen := map[string]bool{}
	for _, id := range ids {
		if !seen[id] && !stored[id] {
			out = append(out, id)
		}
		seen[id] = true
	}
	return out, nil
}

// Save stores chunks in collection (created on first use) in one
// transaction; ids already stored are skipped. Returns how many were added.
func (s *Store) Save(ctx context.Context, collection string, chunks []knowledge.Chunk) (int, error) {
	if err := knowledge.ValidName(collection); err != nil {
		return 0, err
	}
	if len(chunks) == 0 {
		return 0, nil
	}
	dim := len(chunks[0].Embedding)
	for i := range chunks {
		if err := knowledge.ValidChunk(i, &chunks[i]); err != nil {
			return 0, fmt.Errorf("knowledge %s: %w", collection, err)
		}
		if len(chunks[i].Embedding) != dim {
			return 0, &knowledge.DimensionError{Collection: collection, Stored: dim, Got: len(chunks[i].Embedding)}
		}
	}
	added := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.t("collections")+` (name, dim) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, collection, dim); err != nil {
			return err
		}
		var cid int64
		var stored int
		if err := tx.QueryRow(ctx, `SELECT id, dim FROM `+s.t("collections")+` WHERE name = $1 FOR SHARE`, collection).Scan(&cid, &stored); err != nil {
			return err
		}
		if stored != dim {
			return &knowledge.DimensionError{Collection: collection, Stored: stored, Got: dim}
		}
		b := &pgx.Batch{}
		for i := range chunks {
			meta := chunks[i].Metadata
			if meta == "" {
				meta = "{}"
			}
			b.Queue(`INSERT INTO `+s.t("chunks")+` (coll, id, content, metadata, embedding) VALUES ($1, $2, $3, $4::jsonb, $5)
				ON CONFLICT (coll, id) DO NOTHING`, cid, chunks[i].ID, chunks[i].Content, meta, pgvector.NewVector(chunks[i].Embedding))
		}
		br := tx.SendBatch(ctx, b)
		for range chunks {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			added += int(tag.RowsAffected())
		}
		return br.Close()
	})
	if err != nil {
		var de *knowledge.DimensionError
		if errors.As(err, &de) {
			return 0, err
		}
		return 0, fmt.Errorf("knowledge %s: save: %w", collection, err)
	}
	return added, nil
}

// Reset deletes collection; it reports whether it existed.
func (s *Store) Reset(ctx context.Context, collection string) (bool, error) {
	if err := knowledge.ValidName(collection); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM `+s.t("collections")+` WHERE name = $1`, collection)
	if err != nil {
		return false, fmt.Errorf("knowledge %s: reset: %w", collection, err)
	}
	return tag.RowsAffected() > 0, nil
}

// ResetAll deletes every collection.
func (s *Store) ResetAll(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM `+s.t("collections")); err != nil {
		return fmt.Errorf("knowledge store %s: reset: %w", s.Path(), err)
	}
	return nil
}

// Collections lists the collections, sorted by name.
func (s *Store) Collections(ctx context.Context) ([]knowledge.CollectionInfo, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.name, c.dim, to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
		(SELECT count(*) FROM `+s.t("chunks")+` k WHERE k.coll = c.id) FROM `+s.t("collections")+` c ORDER BY c.name`)
	if err != nil {
		return nil, fmt.Errorf("knowledge store %s: %w", s.Path(), err)
	}
	defer rows.Close()
	var out []knowledge.CollectionInfo
	for rows.Next() {
		ci := knowledge.CollectionInfo{Indexed: true}
		if err := rows.Scan(&ci.Name, &ci.Dim, &ci.Created, &ci.Chunks); err != nil {
			return nil, err
		}
		out = append(out, ci)
	}
	return out, rows.Err()
}
