package main

import (
	"context"
	"fmt"
	"os"

	"strings"

	"github.com/crewcore/crewcore/internal/redact"
	"github.com/crewcore/crewcore/knowledge"
	"github.com/crewcore/crewcore/memory"
	"github.com/crewcore/crewcore/pgknowledge"
	"github.com/crewcore/crewcore/pgmemory"
)

// inspectedStore is what "crewcore memory stats|scopes|search" read: an
// embedded store or a PostgreSQL one, both behind memory.Backend.
type inspectedStore interface {
	memory.Backend
	Stats(ctx context.Context) (memory.Stats, error)
}

// openInspected opens the store a --path names, taking every spec
// crewcore.MemoryStorage takes: a database file, a directory holding
// memory.db, or a postgresql:// DSN whose optional #fragment names the
// schema (default "crewcore"). A missing embedded store is refused with the
// path it was looked for at; nothing is created for it.
func openInspected(ctx context.Context, spec string) (inspectedStore, error) {
	if pgmemory.IsDSN(spec) {
		dsn, schema := pgmemory.SplitDSN(spec)
		s, err := pgmemory.Open(ctx, dsn, &pgmemory.Options{Schema: schema})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	dbPath, err := resolveStorePath(spec)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dbPath); err != nil {
		return nil, fmt.Errorf("no store at %s", dbPath)
	}
	s, err := memory.Open(dbPath, nil)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// knowledgeStore is what "crewcore knowledge" reads and resets: the embedded
// knowledge store or the PostgreSQL one.
type knowledgeStore interface {
	Search(ctx context.Context, collection string, q knowledge.Query) ([]knowledge.Hit, error)
	Reset(ctx context.Context, collection string) (bool, error)
	ResetAll(ctx context.Context) error
	Collections(ctx context.Context) ([]knowledge.CollectionInfo, error)
	FTS() bool
	Path() string
	Close() error
}

// openKnowledgeSpec opens the knowledge store a --path names: a database
// file, a directory holding knowledge.db, or a postgresql:// DSN with an
// optional #schema, as crewcore.KnowledgeStore takes them. It returns the
// store and how to name it in messages (a DSN without its password).
func openKnowledgeSpec(ctx context.Context, spec string) (knowledgeStore, string, error) {
	if pgmemory.IsDSN(spec) {
		dsn, schema, _ := strings.Cut(spec, "#")
		s, err := pgknowledge.Open(ctx, dsn, &pgknowledge.Options{Schema: schema})
		if err != nil {
			return nil, "", err
		}
		return s, redact.DSN(spec), nil
	}
	dbPath, err := resolveKnowledgePath(spec)
	if err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(dbPath); err != nil {
		return nil, "", fmt.Errorf("no store at %s", dbPath)
	}
	s, err := knowledge.Open(dbPath, nil)
	if err != nil {
		return nil, "", err
	}
	return s, dbPath, nil
}
