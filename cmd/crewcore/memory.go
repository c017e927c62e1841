package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crewcore/crewcore/internal/vec"
	"github.com/crewcore/crewcore/memory"
)

const memoryUsage = `usage: crewcore memory <stats|scopes|search|check> [flags]

  stats    counts, dimension and file size of a store
  scopes   the scope tree with record counts
  search   nearest records to a vector, a stored record, or a text
  check    verify every record's checksum and SQLite's integrity (check.go)

The store is --path: a database file, a directory holding memory.db, or a
postgresql:// DSN (an optional #fragment names the schema, default crewcore),
as crewcore.MemoryStorage() takes them; the default is the one it uses:
<CREWAI_STORAGE_DIR or CrewAI's data dir>/crewcore/memory.db.
`

// runMemory implements "crewcore memory".
func runMemory(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, memoryUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	if sub == "check" {
		return runMemoryCheck(ctx, args, stdout, stderr)
	}
	fs := flag.NewFlagSet("crewcore memory "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "", "store file or directory (default: crewcore's default store)")
	asJSON := fs.Bool("json", false, "print JSON")
	var (
		parent, like, vector, text, scope, embedURL, embedModel *string
		limit                                                   *int
	)
	switch sub {
	case "stats":
	case "scopes":
		parent = fs.String("parent", "/", "scope whose subtree to print")
	case "search":
		like = fs.String("like", "", "search with the vector of this stored record id")
		vector = fs.String("vector", "", "search with this vector (JSON array)")
		text = fs.String("text", "", "search with the embedding of this text (OpenAI-compatible /embeddings)")
		embedURL = fs.String("embed-url", os.Getenv("OPENAI_BASE_URL"), "base URL of the embeddings server for --text")
		embedModel = fs.String("embed-model", "text-embedding-3-small", "embedding model for --text")
		scope = fs.String("scope", "", "only records under this scope")
		limit = fs.Int("limit", 5, "number of results")
	default:
		fmt.Fprintf(stderr, "crewcore memory: unknown subcommand %q\n\n%s", sub, memoryUsage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	s, err := openInspected(ctx, *path) // memspec.go: a path, a directory or a postgresql:// DSN
	if err != nil {
		fmt.Fprintf(stderr, "crewcore memory: %v\n", err)
		return 1
	}
	defer s.Close()
	switch sub {
	case "stats":
		err = memoryStats(ctx, s, stdout, *asJSON)
	case "scopes":
		err = memoryScopes(ctx, s, *parent, stdout, *asJSON)
	case "search":
		var q []float32
		q, err = queryVector(ctx, s, *like, *vector, *text, *embedURL, *embedModel)
		if err == nil {
			err = memorySearch(ctx, s, q, *scope, *limit, stdout, *asJSON)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "crewcore memory %s: %v\n", sub, err)
		return 1
	}
	return 0
}

// resolveStorePath mirrors crewcore.storage.resolve_db_path in Python.
func resolveStorePath(p string) (string, error) {
	if p == "" {
		base := os.Getenv("CREWAI_STORAGE_DIR")
		if base == "" {
			// appdirs.user_data_dir(<cwd name>, "CrewAI") on Linux.
			cwd, err := os.Getwd()
			if err != nil {
				return "", err
			}
			data := os.Getenv("XDG_DATA_HOME")
			if data == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return "", err
				}
				data = filepath.Join(home, ".local", "share")
			}
			base = filepath.Join(data, filepath.Base(cwd))
		}
		return filepath.Abs(filepath.Join(base, "crewcore", "memory.db"))
	}
	if strings.HasPrefix(p, "~/") {
		home, _ := os.UserHomeDir()
		p = filepath.Join(home, p[2:])
	}
	st, err := os.Stat(p)
	switch {
	case err == nil && st.IsDir():
		p = filepath.Join(p, "memory.db")
	case err != nil:
		ext := strings.ToLower(filepath.Ext(p))
		if ext != ".db" && ext != ".sqlite" && ext != ".sqlite3" {
			p = filepath.Join(p, "memory.db")
		}
	}
	return filepath.Abs(p)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func memoryStats(ctx context.Context, s inspectedStore, w io.Writer, asJSON bool) error {
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	cats, err := s.ListCategories(ctx, "")
	if err != nil {
		return err
	}
	var size int64
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(st.Path + suffix); err == nil {
			size += fi.Size()
		}
	}
	info, err := s.ScopeInfo(ctx, "/")
	if err != nil {
		return err
	}
	// A store this process cannot write is opened read-only (memory/readonly.go).
	ro, _ := s.(interface{ ReadOnly() bool })
	readOnly := ro != nil && ro.ReadOnly()
	if asJSON {
		return printJSON(w, map[string]any{
			"path": st.Path, "records": st.Records, "vectors": st.Vectors, "dim": st.Dim,
			"scopes": st.Scopes, "categories": len(cats), "bytes": size,
			"oldest": info.Oldest, "newest": info.Newest, "read_only": readOnly,
		})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "path\t%s\n", st.Path)
	if readOnly {
		fmt.Fprintf(tw, "opened\tread-only (the file or its directory cannot be written)\n")
	}
	fmt.Fprintf(tw, "records\t%d\n", st.Records)
	fmt.Fprintf(tw, "with vectors\t%d\n", st.Vectors)
	fmt.Fprintf(tw, "dimension\t%d\n", st.Dim)
	fmt.Fprintf(tw, "scopes\t%d\n", st.Scopes)
	fmt.Fprintf(tw, "categories\t%d\n", len(cats))
	fmt.Fprintf(tw, "size on disk\t%.1f MiB\n", float64(size)/(1<<20))
	if info.Count > 0 {
		fmt.Fprintf(tw, "oldest\t%s\n", info.Oldest.Format(time.RFC3339))
		fmt.Fprintf(tw, "newest\t%s\n", info.Newest.Format(time.RFC3339))
	}
	return tw.Flush()
}

type scopeNode struct {
	Path     string       `json:"path"`
	Count    int          `json:"count"`
	Children []*scopeNode `json:"children,omitempty"`
}

func scopeTree(ctx context.Context, s inspectedStore, path string, depth int) (*scopeNode, error) {
	n, err := s.Count(ctx, path)
	if err != nil {
		return nil, err
	}
	node := &scopeNode{Path: path, Count: n}
	if depth > 64 {
		return node, nil
	}
	kids, err := s.ListScopes(ctx, path)
	if err != nil {
		return nil, err
	}
	for _, k := range kids {
		c, err := scopeTree(ctx, s, k, depth+1)
		if err != nil {
			return nil, err
		}
		node.Children = append(node.Children, c)
	}
	return node, nil
}

func memoryScopes(ctx context.Context, s inspectedStore, parent string, w io.Writer, asJSON bool) error {
	p, err := memory.NormalizeScope(parent)
	if err != nil {
		return err
	}
	root, err := scopeTree(ctx, s, p, 0)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(w, root)
	}
	var walk func(n *scopeNode, indent string)
	walk = func(n *scopeNode, indent string) {
		name := n.Path
		if indent != "" {
			name = name[strings.LastIndexByte(name, '/')+1:]
		}
		fmt.Fprintf(w, "%s%s (%d)\n", indent, name, n.Count)
		for _, c := range n.Children {
			walk(c, indent+"  ")
		}
	}
	walk(root, "")
	return nil
}

func queryVector(ctx context.Context, s inspectedStore, like, vector, text, url, model string) ([]float32, error) {
	set := 0
	for _, v := range []string{like, vector, text} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return nil, errors.New("give exactly one of --like ID, --vector JSON, --text TEXT")
	}
	switch {
	case like != "":
		r, ok, err := s.Get(ctx, like)
		if err != nil {
			return nil, err
		}
		if !ok || len(r.Embedding) == 0 {
			return nil, fmt.Errorf("no record %q with a vector", like)
		}
		return r.Embedding, nil
	case vector != "":
		var v []float32
		if err := json.Unmarshal([]byte(vector), &v); err != nil {
			return nil, fmt.Errorf("--vector: %w", err)
		}
		return v, nil
	}
	return embedText(ctx, url, model, text, s.Dim())
}

// embedText asks an OpenAI-compatible /embeddings endpoint for one vector.
func embedText(ctx context.Context, base, model, text string, dim int) ([]float32, error) {
	if base == "" {
		return nil, errors.New("--text needs --embed-url (or OPENAI_BASE_URL)")
	}
	body := map[string]any{"input": []string{text}, "model": model, "encoding_format": "base64"}
	if dim > 0 {
		body["dimensions"] = dim
	}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/embeddings", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key := os.Getenv("OPENAI_API_KEY"); key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("embed --text: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("embed --text: %s: %s", resp.Status, msg)
	}
	var out struct {
		Data []struct {
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&out); err != nil || len(out.Data) == 0 {
		return nil, fmt.Errorf("embed --text: bad response: %v", err)
	}
	raw := out.Data[0].Embedding
	var s string
	if json.Unmarshal(raw, &s) == nil {
		bs, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(bs)%4 != 0 {
			return nil, fmt.Errorf("embed --text: bad base64 embedding")
		}
		v := make([]float32, len(bs)/4)
		vec.FromLittleEndian(v, bs)
		return v, nil
	}
	var v []float32
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("embed --text: %w", err)
	}
	return v, nil
}

func memorySearch(ctx context.Context, s inspectedStore, q []float32, scope string, limit int, w io.Writer, asJSON bool) error {
	ms, err := s.Search(ctx, memory.Query{Vector: q, ScopePrefix: scope, Limit: limit})
	if err != nil {
		return err
	}
	if asJSON {
		type row struct {
			ID      string   `json:"id"`
			Score   float64  `json:"score"`
			Scope   string   `json:"scope"`
			Cats    []string `json:"categories"`
			Content string   `json:"content"`
		}
		rows := make([]row, len(ms))
		for i, m := range ms {
			rows[i] = row{m.Record.ID, m.Score, m.Record.Scope, m.Record.Categories, m.Record.Content}
		}
		return printJSON(w, rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCORE\tSCOPE\tID\tCONTENT")
	for _, m := range ms {
		c := strings.Join(strings.Fields(m.Record.Content), " ")
		if len([]rune(c)) > 70 {
			c = string([]rune(c)[:67]) + "..."
		}
		fmt.Fprintf(tw, "%.4f\t%s\t%s\t%s\n", m.Score, m.Record.Scope, m.Record.ID, c)
	}
	return tw.Flush()
}
