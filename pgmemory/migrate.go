package pgmemory

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// lockKey is the session advisory lock held while migrating or building an
// index, in every schema: migrations are rare and short.
const lockKey int64 = 0x6372657763637265 // "crewccre"

// migrations are applied in order, each in its own transaction, and recorded
// in <schema>.crewcore_migrations. Never edit a released migration: append.
// %[1]s is the quoted schema name.
var migrations = []string{
	// 1: the store.
	`CREATE TABLE %[1]s.crewcore_meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO %[1]s.crewcore_meta(key, value) VALUES ('format', 'crewcore-memory'), ('dim', '0');
CREATE TABLE %[1]s.records (
  rid           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id            text NOT NULL UNIQUE,
  content       text NOT NULL,
  scope         text COLLATE "C" NOT NULL,
  categories    text[] NOT NULL,
  metadata      text NOT NULL,
  meta          jsonb GENERATED ALWAYS AS (metadata::jsonb) STORED,
  importance    double precision NOT NULL,
  created_at    timestamp NOT NULL,
  last_accessed timestamp NOT NULL,
  source        text,
  private       boolean NOT NULL,
  embedding     vector
);
CREATE INDEX records_scope ON %[1]s.records (scope);
CREATE INDEX records_created ON %[1]s.records (created_at DESC, rid DESC);
CREATE INDEX records_categories ON %[1]s.records USING gin (categories);`,
	// 2: vectors inline in the heap row instead of TOAST (a 1536-dimensional
	// vector is 6 KB, over the 2 KB default target): an exact scan then
	// reads pages sequentially instead of four TOAST lookups per vector.
	// Vectors that cannot fit a page still go out of line.
	`ALTER TABLE %[1]s.records SET (toast_tuple_target = 8160);
ALTER TABLE %[1]s.records ALTER COLUMN embedding SET STORAGE MAIN;`,
}

// SchemaVersion is the migration level this code creates and understands.
var SchemaVersion = len(migrations)

// migrate creates the extension and schema and applies missing migrations,
// holding the advisory lock so that concurrent workers wait for one another.
func migrate(ctx context.Context, conn *pgx.Conn, schema string) error {
	var (
		hasVector bool
		version   string
	)
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector'), current_setting('server_version')`).Scan(&hasVector, &version); err != nil {
		return err
	}
	if !hasVector {
		return fmt.Errorf("%w (PostgreSQL %s at %s:%d has no \"vector\" extension available: install pgvector on the server, see https://github.com/pgvector/pgvector#installation)",
			ErrNoVector, version, conn.Config().Host, conn.Config().Port)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lockKey); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lockKey)
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS vector`); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42501" {
			return fmt.Errorf("%w: CREATE EXTENSION vector needs a superuser or the database owner once (%s)", ErrNoVector, pe.Message)
		}
		return err
	}
	q := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+q); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+q+`.crewcore_migrations (
  version    integer PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	var have int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+q+`.crewcore_migrations`).Scan(&have); err != nil {
		return err
	}
	if have > len(migrations) {
		return fmt.Errorf("%w: schema %s is at migration %d, this crewcore knows %d (upgrade crewcore)", ErrSchema, schema, have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, stmt := range splitSQL(fmt.Sprintf(migrations[v-1], q)) {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("migration %d: %w", v, err)
				}
			}
			_, err := tx.Exec(ctx, `INSERT INTO `+q+`.crewcore_migrations(version) VALUES ($1)`, v)
			return err
		})
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42P07" { // duplicate_table
				return fmt.Errorf("%w: schema %s already holds tables that are not a crewcore store (%s)", ErrSchema, schema, pe.Message)
			}
			return err
		}
	}
	return nil
}

// splitSQL splits a migration into statements (they contain no literal ';').
func splitSQL(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ";") {
		if strings.TrimSpace(p) != "" {
			out = append(out, p)
		}
	}
	return out
}
