package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/crewcore/crewcore/memory"
)

const checkUsage = `usage: crewcore memory check [--repair] [--json] [PATH]

Verifies a whole memory store without changing it: SQLite's integrity_check
and every record against its checksum. PATH (or --path) is the database file
or a directory holding memory.db; the default is crewcore's default store.

  --repair  delete the records that fail their checksum (they are lost either
            way; the other records then read normally), then check again
  --json    print the report as JSON

Exit status: 0 the store is intact, 1 damage found (or the store is lost:
its file is empty or lost its tables), 2 bad usage or no store at PATH.
`

// runMemoryCheck implements "crewcore memory check".
func runMemoryCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crewcore memory check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkUsage) }
	path := fs.String("path", "", "store file or directory (default: crewcore's default store)")
	repair := fs.Bool("repair", false, "delete the records that fail their checksum")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case fs.NArg() > 1, fs.NArg() == 1 && *path != "":
		fmt.Fprint(stderr, checkUsage)
		return 2
	case fs.NArg() == 1:
		*path = fs.Arg(0)
	}
	dbPath, err := resolveStorePath(*path)
	if err != nil {
		fmt.Fprintf(stderr, "crewcore memory check: %v\n", err)
		return 2
	}
	if _, err := os.Stat(dbPath); err != nil {
		fmt.Fprintf(stderr, "crewcore memory check: no store at %s\n", dbPath)
		return 2
	}
	rep, err := memory.Check(ctx, dbPath)
	if err != nil {
		fmt.Fprintf(stderr, "crewcore memory check: %v\n", err)
		return 1
	}
	repaired := 0
	if *repair && len(rep.Damaged) > 0 {
		s, err := memory.Open(dbPath, nil)
		if err != nil {
			fmt.Fprintf(stderr, "crewcore memory check --repair: %v\n", err)
			return 1
		}
		repaired, err = s.DeleteDamaged(ctx)
		if cerr := s.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fmt.Fprintf(stderr, "crewcore memory check --repair: %v\n", err)
			return 1
		}
		if rep, err = memory.Check(ctx, dbPath); err != nil {
			fmt.Fprintf(stderr, "crewcore memory check: %v\n", err)
			return 1
		}
	}
	if *asJSON {
		if err := printJSON(stdout, map[string]any{"report": rep, "ok": rep.OK(), "deleted": repaired}); err != nil {
			return 1
		}
	} else {
		printCheck(stdout, rep, repaired)
	}
	if !rep.OK() {
		return 1
	}
	return 0
}

func printCheck(w io.Writer, rep *memory.CheckReport, repaired int) {
	fmt.Fprintf(w, "store      %s\n", rep.Path)
	fmt.Fprintf(w, "version    %s\n", rep.Version)
	fmt.Fprintf(w, "records    %d\n", rep.Records)
	if rep.Unchecked > 0 {
		fmt.Fprintf(w, "unchecked  %d (format version 1: no checksums yet; opening the store adds them)\n", rep.Unchecked)
	}
	if repaired > 0 {
		fmt.Fprintf(w, "deleted    %d damaged record(s)\n", repaired)
	}
	for _, d := range rep.Damaged {
		fmt.Fprintf(w, "DAMAGED    record %q (rowid %d): %s\n", d.ID, d.RowID, d.Reason)
	}
	for _, m := range rep.SQLite {
		fmt.Fprintf(w, "SQLITE     %s\n", m)
	}
	if rep.OK() {
		fmt.Fprintln(w, "ok")
		return
	}
	fmt.Fprintf(w, "damaged: %d record(s) fail their checksum, %d SQLite problem(s)", len(rep.Damaged), len(rep.SQLite))
	if len(rep.Damaged) > 0 {
		fmt.Fprintf(w, "; run with --repair to delete the damaged records, or restore the file from a backup")
	}
	fmt.Fprintln(w)
}
