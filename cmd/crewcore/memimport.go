package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

const importUsage = `usage: crewcore memory import --from-lancedb PATH [--to PATH|DSN] [flags]

Copies a CrewAI LanceDB memory (the directory CrewAI's default Memory writes:
<CREWAI_STORAGE_DIR or CrewAI's data dir>/memory) into a crewcore memory store,
keeping every record's id, content, scope, categories, metadata, importance,
timestamps, source, privacy flag and embedding. A record whose id the store
already holds is left as it is, so running it again imports only new records.
The LanceDB files are only read. A progress bar shows on a terminal; one
summary line is printed at the end.

  crewcore memory import --from-lancedb ~/.local/share/myproject/memory
  crewcore memory import --from-lancedb ./memory --to postgresql://host/db#team

--to is a path (a database file, or a directory holding memory.db) or a
postgresql:// DSN (default: crewcore's default store, the one crewcore.install()
uses when not given memory=). Reading LanceDB needs Python with crewcore, CrewAI and lancedb: the
import runs in python -m crewcore.memory import, with the interpreter of
--python, else $CREWCORE_PYTHON (the crewcore command of an installed package
sets it to its own), else the virtual environment this binary is in (or a
.venv above it), else $VIRTUAL_ENV, else python3 on PATH.
`

// importBootstrap runs the Python half of "crewcore memory import", saying
// which interpreter lacks crewcore when it cannot be imported (exit 3).
const importBootstrap = `import sys
try:
    from crewcore.memory.__main__ import main
except ImportError as e:
    sys.stderr.write("crewcore memory import: the Python interpreter %s cannot import crewcore (%s): "
                     "give --python or set CREWCORE_PYTHON to the interpreter where crewcore and CrewAI are installed\n"
                     % (sys.executable, e))
    sys.exit(3)
sys.exit(main(sys.argv[1:]))
`

// importArgs are the parsed flags of "crewcore memory import".
type importArgs struct {
	from, to, table, python, progress string
	batch                             int
}

// parseImportFlags parses the flags of "crewcore memory import". It returns
// nil and the exit code when the command must stop (help: 0, usage: 2).
func parseImportFlags(args []string, stderr io.Writer) (*importArgs, int) {
	fs := flag.NewFlagSet("crewcore memory import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, importUsage, "\nflags:\n"); fs.PrintDefaults() }
	a := &importArgs{}
	fs.StringVar(&a.from, "from-lancedb", "", "the CrewAI LanceDB memory directory to import (required)")
	fs.StringVar(&a.to, "to", "", "destination store: a path or a postgresql:// DSN (default: crewcore's default store)")
	fs.StringVar(&a.table, "table", "memories", "the LanceDB table (CrewAI's is memories)")
	fs.IntVar(&a.batch, "batch-size", 500, "records per write transaction")
	fs.StringVar(&a.progress, "progress", "auto", "progress bar on stderr: auto (on a terminal), always or never")
	fs.StringVar(&a.python, "python", "", "Python interpreter with crewcore, CrewAI and lancedb (default: see above)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "crewcore memory import: unexpected argument %q\n", fs.Arg(0))
		return nil, 2
	case a.from == "":
		fmt.Fprintln(stderr, "crewcore memory import: --from-lancedb PATH is required (CrewAI's LanceDB memory directory)")
		return nil, 2
	case a.batch <= 0:
		fmt.Fprintf(stderr, "crewcore memory import: --batch-size must be >= 1, got %d\n", a.batch)
		return nil, 2
	case a.progress != "auto" && a.progress != "always" && a.progress != "never":
		fmt.Fprintf(stderr, "crewcore memory import: --progress must be auto, always or never, got %q\n", a.progress)
		return nil, 2
	}
	return a, -1
}

// pythonArgs is the Python command line of an import (after the interpreter).
func (a *importArgs) pythonArgs() []string {
	args := []string{"-c", importBootstrap, "import", "--from-lancedb", a.from, "--table", a.table,
		"--batch-size", strconv.Itoa(a.batch), "--progress", a.progress}
	if a.to != "" {
		args = append(args, "--to", a.to)
	}
	return args
}

// findPython picks the interpreter for the Python half of a command: flagValue,
// else $CREWCORE_PYTHON, else the virtual environment holding exe (a pyvenv.cfg
// in an ancestor directory, or an ancestor's .venv), else $VIRTUAL_ENV, else
// python3 on PATH. It returns the path and where it came from.
func findPython(flagValue, exe string) (string, string, error) {
	if flagValue != "" {
		p, err := exec.LookPath(flagValue)
		if err != nil {
			return "", "", fmt.Errorf("--python %s: %w", flagValue, err)
		}
		return p, "--python", nil
	}
	if env := os.Getenv("CREWCORE_PYTHON"); env != "" {
		p, err := exec.LookPath(env)
		if err != nil {
			return "", "", fmt.Errorf("CREWCORE_PYTHON=%s: %w", env, err)
		}
		return p, "CREWCORE_PYTHON", nil
	}
	if exe != "" {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		for dir, i := filepath.Dir(exe), 0; i < 10; dir, i = filepath.Dir(dir), i+1 {
			for _, venv := range []string{dir, filepath.Join(dir, ".venv")} {
				py := filepath.Join(venv, "bin", "python")
				if isFile(filepath.Join(venv, "pyvenv.cfg")) && isExecutable(py) {
					return py, "the virtual environment at " + venv, nil
				}
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if venv := os.Getenv("VIRTUAL_ENV"); venv != "" && isExecutable(filepath.Join(venv, "bin", "python")) {
		return filepath.Join(venv, "bin", "python"), "VIRTUAL_ENV", nil
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		return "", "", fmt.Errorf("no Python interpreter found (give --python or set CREWCORE_PYTHON): %w", err)
	}
	return p, "PATH", nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// runMemoryImport implements "crewcore memory import": it checks the
// arguments, then runs the import in Python (python -m crewcore.memory
// import; crewcore/memory/lancedb_import.py), whose output and exit code are
// its own. The Python process shares the terminal, so Ctrl-C reaches it and
// it stops after its current batch (every batch is committed).
func runMemoryImport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a, code := parseImportFlags(args, stderr)
	if a == nil {
		return code
	}
	if _, err := os.Stat(a.from); err != nil {
		fmt.Fprintf(stderr, "crewcore memory import: no LanceDB memory at %s: %v\n", a.from, errors.Unwrap(err))
		return 1
	}
	exe, _ := os.Executable()
	py, _, err := findPython(a.python, exe)
	if err != nil {
		fmt.Fprintf(stderr, "crewcore memory import: %v\n", err)
		return 1
	}
	cmd := exec.Command(py, a.pythonArgs()...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "crewcore memory import: cannot start %s: %v (give --python or set CREWCORE_PYTHON)\n", py, err)
		return 1
	}
	// Signals: main's context takes SIGINT/SIGTERM in this process; the child
	// gets a terminal's Ctrl-C itself. A SIGTERM sent to this process alone is
	// passed on.
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Signal(os.Interrupt)
		case <-done:
		}
	}()
	err = cmd.Wait()
	close(done)
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if exit.ExitCode() < 0 {
			fmt.Fprintf(stderr, "crewcore memory import: %s: %v\n", py, err)
			return 1
		}
		return exit.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(stderr, "crewcore memory import: %s: %v\n", py, err)
		return 1
	}
	return 0
}
