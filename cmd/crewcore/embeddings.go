package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/crewcore/crewcore/embed"
)

const embeddingsUsage = `usage: crewcore embeddings <stats|clear> [flags]

  stats    entries, size, bound, calls and tokens saved, per model
  clear    delete cached embeddings (all, or --namespace's)

The cache is --path (a SQLite file) or --dsn (PostgreSQL, tables in --schema);
the default is the one crewcore.install() uses: CREWCORE_EMBED_CACHE if set,
else embeddings.db beside the default memory store:
<CREWAI_STORAGE_DIR or CrewAI's data dir>/crewcore/embeddings.db.
`

func init() {
	commands["embeddings"] = command{
		summary: "inspect or clear the persistent embedding cache (stats|clear)",
		run:     runEmbeddings,
	}
}

// runEmbeddings implements "crewcore embeddings".
func runEmbeddings(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, embeddingsUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	if sub != "stats" && sub != "clear" {
		fmt.Fprintf(stderr, "crewcore embeddings: unknown subcommand %q\n\n%s", sub, embeddingsUsage)
		return 2
	}
	fs := flag.NewFlagSet("crewcore embeddings "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "", "cache file (default: crewcore's default cache)")
	dsn := fs.String("dsn", "", "PostgreSQL DSN of a cache in PostgreSQL (instead of --path)")
	schema := fs.String("schema", "crewcore", "PostgreSQL schema of the cache tables (with --dsn)")
	asJSON := fs.Bool("json", false, "print JSON (stats)")
	namespace := fs.String("namespace", "", "clear only this namespace (provider|endpoint|model|dimensions, as stats lists them)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "crewcore embeddings %s: unexpected argument %q\n", sub, fs.Arg(0))
		return 2
	}
	store, err := openEmbedStore(ctx, *path, *dsn, *schema)
	if err != nil {
		fmt.Fprintf(stderr, "crewcore embeddings %s: %v\n", sub, err)
		return 1
	}
	defer store.Close()
	switch sub {
	case "stats":
		st, err := store.Stats(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "crewcore embeddings stats: %v\n", err)
			return 1
		}
		if err := printEmbedStats(stdout, st, *asJSON); err != nil {
			fmt.Fprintf(stderr, "crewcore embeddings stats: %v\n", err)
			return 1
		}
	case "clear":
		n, err := store.Clear(ctx, *namespace)
		if err != nil {
			fmt.Fprintf(stderr, "crewcore embeddings clear: %v\n", err)
			return 1
		}
		what := "every namespace (counters reset)"
		if *namespace != "" {
			what = "namespace " + *namespace
		}
		fmt.Fprintf(stdout, "cleared %d cached embedding(s) of %s in %s\n", n, what, store.Where())
	}
	return 0
}

// openEmbedStore opens the cache named by the flags. A missing default
// cache is an error (never created by looking at it).
func openEmbedStore(ctx context.Context, path, dsn, schema string) (embed.Store, error) {
	if dsn != "" {
		if path != "" {
			return nil, fmt.Errorf("give --path or --dsn, not both")
		}
		return embed.OpenPG(ctx, dsn, schema, 0)
	}
	if path == "" {
		if env := os.Getenv("CREWCORE_EMBED_CACHE"); env != "" {
			if strings.HasPrefix(env, "postgres://") || strings.HasPrefix(env, "postgresql://") {
				target, sch, ok := strings.Cut(env, "#")
				if !ok {
					sch = schema
				}
				return embed.OpenPG(ctx, target, sch, 0)
			}
			path = env
		} else {
			mem, err := resolveStorePath("")
			if err != nil {
				return nil, err
			}
			path = filepath.Join(filepath.Dir(mem), "embeddings.db")
		}
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no embedding cache at %s", path)
	}
	return embed.OpenSQLite(path, 0)
}

func printEmbedStats(w io.Writer, st embed.StoreStats, asJSON bool) error {
	c := st.Counters
	if asJSON {
		ns := make([]map[string]any, 0, len(st.Namespaces))
		for _, n := range st.Namespaces {
			ns = append(ns, map[string]any{"namespace": n.NS, "entries": n.Entries, "bytes": n.Bytes})
		}
		return printJSON(w, map[string]any{
			"where": st.Where, "entries": st.Entries, "bytes": st.Bytes,
			"hits": c.Hits, "misses": c.Misses, "calls_saved": c.CallsSaved, "tokens_saved": c.TokensSaved,
			"api_calls": c.APICalls, "api_tokens": c.APITokens, "stored": c.Stored, "evictions": c.Evictions,
			"namespaces": ns,
		})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "cache\t%s\n", st.Where)
	fmt.Fprintf(tw, "entries\t%d\n", st.Entries)
	fmt.Fprintf(tw, "size\t%.2f MiB\n", float64(st.Bytes)/(1<<20))
	rate := 0.0
	if c.Hits+c.Misses > 0 {
		rate = 100 * float64(c.Hits) / float64(c.Hits+c.Misses)
	}
	fmt.Fprintf(tw, "hits / misses\t%d / %d (%.1f%% hits)\n", c.Hits, c.Misses, rate)
	fmt.Fprintf(tw, "API calls saved\t%d\n", c.CallsSaved)
	fmt.Fprintf(tw, "tokens saved\t%d\n", c.TokensSaved)
	fmt.Fprintf(tw, "API calls made\t%d (%d tokens)\n", c.APICalls, c.APITokens)
	fmt.Fprintf(tw, "evictions\t%d\n", c.Evictions)
	for _, n := range st.Namespaces {
		fmt.Fprintf(tw, "  %s\t%d entries, %.2f MiB\n", n.NS, n.Entries, float64(n.Bytes)/(1<<20))
	}
	return tw.Flush()
}
