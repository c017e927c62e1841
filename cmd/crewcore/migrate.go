package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/crewcore/crewcore/memory"
	"github.com/crewcore/crewcore/pgmemory"
)

const migrateUsage = `usage: crewcore memory migrate --from <store> --to <store> [flags]

Copies every record (with its vector) from one memory store to another, in
either direction between an embedded store and PostgreSQL:

  crewcore memory migrate --from ~/.local/share/app/crewcore --to postgresql://host/db
  crewcore memory migrate --from postgresql://host/db#team_a --to ./backup/memory.db

A store is a path (a database file, or a directory holding memory.db) or a
postgresql:// DSN whose optional #fragment names the schema (default
"crewcore"). Records keep their ids, scopes, timestamps and vectors; a record
whose id the destination already holds is replaced. Oldest records are copied
first, so ties between equal scores still favour the newer record. Into
PostgreSQL the HNSW index is built once at the end instead of per record.
`

// runMemoryCmd is "crewcore memory": "migrate" here, the rest in memory.go.
func runMemoryCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "migrate" {
		return runMigrate(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "import" {
		return runMemoryImport(ctx, args[1:], stdout, stderr) // memimport.go
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		code := runMemory(ctx, args, stdout, stderr)
		fmt.Fprint(stderr, "\n  migrate  copy a store to another (embedded <-> PostgreSQL); see crewcore memory migrate -h\n")
		fmt.Fprint(stderr, "  import   copy a CrewAI LanceDB memory into a store (--from-lancedb PATH); see crewcore memory import -h\n")
		return code
	}
	return runMemory(ctx, args, stdout, stderr)
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crewcore memory migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, migrateUsage, "\nflags:\n"); fs.PrintDefaults() }
	from := fs.String("from", "", "source store (path or postgresql:// DSN)")
	to := fs.String("to", "", "destination store (path or postgresql:// DSN)")
	batch := fs.Int("batch", 1000, "records per read and per write")
	metric := fs.String("metric", "l2", "score metric of a PostgreSQL destination's index (l2 or cosine)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *from == "" || *to == "" || *batch <= 0 || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	m, err := memory.ParseMetric(*metric)
	if err != nil {
		fmt.Fprintf(stderr, "crewcore memory migrate: %v\n", err)
		return 2
	}
	res, err := migrateStores(ctx, *from, *to, *batch, m)
	if err != nil {
		fmt.Fprintf(stderr, "crewcore memory migrate: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "copied %d records (%d with vectors) from %s to %s in %s", res.records, res.vectors, res.from, res.to, res.copy.Round(time.Millisecond))
	if res.indexNote != "" {
		fmt.Fprintf(stdout, "; %s", res.indexNote)
	}
	fmt.Fprintf(stdout, "; the destination holds %d records\n", res.total)
	return 0
}

type migrateResult struct {
	from, to         string
	records, vectors int
	total            int
	copy, index      time.Duration
	// indexNote says what was done about the destination's HNSW index (empty
	// for an embedded destination).
	indexNote string
}

// openStore opens a path or a DSN. mustExist refuses a missing embedded store.
func openStore(ctx context.Context, spec string, mustExist, bulk bool, m memory.Metric) (memory.Backend, string, error) {
	if pgmemory.IsDSN(spec) {
		dsn, schema := pgmemory.SplitDSN(spec)
		o := &pgmemory.Options{Schema: schema, Metric: m}
		if bulk {
			o.ExactBelow = -1 // no index while loading: BuildIndex at the end
		}
		s, err := pgmemory.Open(ctx, dsn, o)
		if err != nil {
			return nil, "", err
		}
		return s, fmt.Sprintf("PostgreSQL schema %s", s.Schema()), nil
	}
	p, err := resolveStorePath(spec)
	if err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(p); err != nil && mustExist {
		return nil, "", fmt.Errorf("no store at %s", p)
	}
	s, err := memory.Open(p, nil)
	if err != nil {
		return nil, "", err
	}
	return s, p, nil
}

func migrateStores(ctx context.Context, from, to string, batch int, m memory.Metric) (migrateResult, error) {
	var res migrateResult
	src, srcName, err := openStore(ctx, from, true, false, m)
	if err != nil {
		return res, fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	dst, dstName, err := openStore(ctx, to, false, true, m)
	if err != nil {
		return res, fmt.Errorf("destination: %w", err)
	}
	defer dst.Close()
	res.from, res.to = srcName, dstName
	n, err := src.Count(ctx, "")
	if err != nil {
		return res, fmt.Errorf("source: %w", err)
	}
	start := time.Now()
	// List is newest first: walk it from the end so the oldest is saved first.
	for hi := n; hi > 0; hi -= batch {
		lo := max(hi-batch, 0)
		recs, err := src.ListWithVectors(ctx, "", hi-lo, lo)
		if err != nil {
			return res, fmt.Errorf("read source: %w", err)
		}
		slices.Reverse(recs)
		if err := dst.Save(ctx, recs); err != nil {
			return res, fmt.Errorf("write destination after %d records: %w", res.records, err)
		}
		res.records += len(recs)
		for i := range recs {
			if len(recs[i].Embedding) > 0 {
				res.vectors++
			}
		}
	}
	res.copy = time.Since(start)
	if pg, ok := dst.(*pgmemory.Store); ok && res.vectors > 0 {
		t := time.Now()
		if err := pg.BuildIndex(ctx); err != nil {
			return res, fmt.Errorf("build the destination's index: %w", err)
		}
		res.index = time.Since(t)
		switch ok, err := pg.Indexed(ctx); {
		case err != nil:
			return res, fmt.Errorf("check the destination's index: %w", err)
		case ok:
			res.indexNote = fmt.Sprintf("HNSW index built in %s", res.index.Round(time.Millisecond))
		case pg.Dim() > pgmemory.MaxIndexDim:
			res.indexNote = fmt.Sprintf("no HNSW index: pgvector indexes vectors of up to %d dimensions, these have %d,"+
				" so every search scores the vectors exactly", pgmemory.MaxIndexDim, pg.Dim())
		default:
			res.indexNote = "no HNSW index built"
		}
	}
	if res.total, err = dst.Count(ctx, ""); err != nil {
		return res, err
	}
	if res.total < n {
		return res, fmt.Errorf("destination holds %d records, source %d: records were removed during the copy", res.total, n)
	}
	return res, nil
}
