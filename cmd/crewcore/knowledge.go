package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/crewcore/crewcore/knowledge"
)

const knowledgeUsage = `usage: crewcore knowledge <stats|search|reset> [flags]

  stats    collections with their chunk counts, dimension and keyword index
  search   search a collection: --mode keyword (BM25, no embedder needed),
           vector or hybrid (the query embedded through --embed-url, an
           OpenAI-compatible /embeddings endpoint)
  reset    delete one collection (--collection) or every one (--all)

The store is --path (a database file, a directory holding knowledge.db, or a
postgresql:// DSN with an optional #schema, as crewcore.KnowledgeStore takes); the default is the one crewcore.install() gives CrewAI's Knowledge:
<CREWAI_STORAGE_DIR or CrewAI's data dir>/crewcore/knowledge.db. CrewAI names
collections knowledge_crew (a crew's sources) and knowledge_<agent role>.
Ingest documents with python -m crewcore.knowledge ingest (CrewAI's sources,
a progress bar).
`

func init() {
	commands["knowledge"] = command{
		summary: "inspect, search or reset a crewcore knowledge store (CrewAI Knowledge without ChromaDB)",
		run:     runKnowledge,
	}
}

// runKnowledge implements "crewcore knowledge".
func runKnowledge(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, knowledgeUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("crewcore knowledge "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "", "store file or directory (default: crewcore's default knowledge store)")
	asJSON := fs.Bool("json", false, "print JSON")
	var (
		coll, text, mode, embedURL, embedModel, filter *string
		limit                                          *int
		threshold                                      *float64
		all                                            *bool
	)
	switch sub {
	case "stats":
	case "search":
		coll = fs.String("collection", "knowledge_crew", "collection to search")
		text = fs.String("text", "", "the query")
		mode = fs.String("mode", "keyword", "keyword, vector or hybrid")
		embedURL = fs.String("embed-url", os.Getenv("OPENAI_BASE_URL"), "embeddings server for vector and hybrid")
		embedModel = fs.String("embed-model", "text-embedding-3-small", "embedding model for vector and hybrid")
		filter = fs.String("filter", "", "metadata filter: a JSON object, every key equal")
		limit = fs.Int("limit", 5, "number of results")
		threshold = fs.Float64("threshold", 0, "drop results scoring below this (CrewAI's default is 0.6)")
	case "reset":
		coll = fs.String("collection", "", "collection to delete")
		all = fs.Bool("all", false, "delete every collection")
	default:
		fmt.Fprintf(stderr, "crewcore knowledge: unknown subcommand %q\n\n%s", sub, knowledgeUsage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	s, dbPath, err := openKnowledgeSpec(ctx, *path) // memspec.go: a path, a directory or a postgresql:// DSN
	if err != nil {
		fmt.Fprintf(stderr, "crewcore knowledge: %v\n", err)
		return 1
	}
	defer s.Close()
	switch sub {
	case "stats":
		err = knowledgeStats(ctx, s, stdout, *asJSON)
	case "search":
		err = knowledgeSearch(ctx, s, *coll, *text, *mode, *embedURL, *embedModel, *filter, *limit, *threshold, stdout, *asJSON)
	case "reset":
		switch {
		case *all && *coll != "":
			err = errors.New("give --collection or --all, not both")
		case *all:
			if err = s.ResetAll(ctx); err == nil {
				fmt.Fprintf(stdout, "reset every collection of %s\n", dbPath)
			}
		case *coll != "":
			var ok bool
			if ok, err = s.Reset(ctx, *coll); err == nil && ok {
				fmt.Fprintf(stdout, "reset %s\n", *coll)
			} else if err == nil {
				err = fmt.Errorf("no collection %q in %s", *coll, dbPath)
			}
		default:
			fmt.Fprintln(stderr, "crewcore knowledge reset: give --collection NAME or --all")
			return 2
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "crewcore knowledge %s: %v\n", sub, err)
		return 1
	}
	return 0
}

// resolveKnowledgePath mirrors crewcore.knowledge.store.resolve_path.
func resolveKnowledgePath(p string) (string, error) {
	if p == "" {
		mem, err := resolveStorePath("")
		if err != nil {
			return "", err
		}
		return filepath.Join(filepath.Dir(mem), "knowledge.db"), nil
	}
	if strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		p = filepath.Join(home, p[2:])
	}
	switch filepath.Ext(p) {
	case ".db", ".sqlite", ".sqlite3":
		return filepath.Abs(p)
	}
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		return filepath.Abs(p)
	}
	return filepath.Abs(filepath.Join(p, "knowledge.db"))
}

func knowledgeStats(ctx context.Context, s knowledgeStore, w io.Writer, asJSON bool) error {
	infos, err := s.Collections(ctx)
	if err != nil {
		return err
	}
	var size int64
	for _, suf := range []string{"", "-wal"} {
		if st, err := os.Stat(s.Path() + suf); err == nil {
			size += st.Size()
		}
	}
	if asJSON {
		out := map[string]any{"path": s.Path(), "bytes": size, "fts5": s.FTS(), "collections": infos}
		return json.NewEncoder(w).Encode(out)
	}
	fmt.Fprintf(w, "store: %s (%.1f MiB, keyword search: %v)\n", s.Path(), float64(size)/(1<<20), s.FTS())
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COLLECTION\tCHUNKS\tDIM\tKEYWORD INDEX\tCREATED")
	for _, ci := range infos {
		idx := "ready"
		if !ci.Indexed {
			idx = "pending"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", ci.Name, ci.Chunks, ci.Dim, idx, ci.Created)
	}
	return tw.Flush()
}

func knowledgeSearch(ctx context.Context, s knowledgeStore, coll, text, modeName, embedURL, embedModel, filter string,
	limit int, threshold float64, w io.Writer, asJSON bool) error {
	if strings.TrimSpace(text) == "" {
		return errors.New("--text is required")
	}
	mode, err := knowledge.ParseMode(modeName)
	if err != nil {
		return err
	}
	q := knowledge.Query{Mode: mode, Text: text, Limit: limit, Filter: filter, Threshold: threshold}
	if mode != knowledge.Keyword {
		dim := 0
		infos, err := s.Collections(ctx)
		if err != nil {
			return err
		}
		for _, ci := range infos {
			if ci.Name == coll {
				dim = ci.Dim
			}
		}
		if dim == 0 {
			return fmt.Errorf("no collection %q in %s", coll, s.Path())
		}
		if q.Vector, err = embedText(ctx, embedURL, embedModel, text, dim); err != nil {
			return err
		}
	}
	hits, err := s.Search(ctx, coll, q)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(w).Encode(hits)
	}
	if len(hits) == 0 {
		fmt.Fprintln(w, "no results")
	}
	for i, h := range hits {
		content := strings.Join(strings.Fields(h.Content), " ")
		if len(content) > 160 {
			content = content[:157] + "..."
		}
		fmt.Fprintf(w, "%d. score %.4f  %s\n   %s\n", i+1, h.Score, h.ID[:min(12, len(h.ID))], content)
	}
	return nil
}
