// Command crewcore is the crewcore command line tool.
//
// Usage:
//
//	crewcore <command> [flags]
//
// Commands:
//
//	mockllm   run a local OpenAI-compatible mock server (chat + embeddings)
//	memory    inspect a crewcore memory store (stats|scopes|search), verify it (check), copy one (migrate), import a CrewAI LanceDB memory (import)
//	version   print the version (also: crewcore --version)
//
// Run "crewcore <command> -h" for a command's flags.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand of crewcore.
type command struct {
	// summary is the one-line description shown by "crewcore help".
	summary string
	// run executes the command with the arguments after its name. ctx is
	// cancelled on SIGINT/SIGTERM. It returns the process exit code
	// (0 success, 1 failure, 2 usage error).
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands is the subcommand table. To add a command, put its
// implementation in its own file of this package and register it here.
var commands = map[string]command{
	"mockllm": {
		summary: "run a local OpenAI-compatible mock server (chat completions + embeddings)",
		run:     runMockLLM,
	},
	"memory": {
		summary: "inspect a crewcore memory store (stats|scopes|search), verify it (check), copy one (migrate), import a CrewAI LanceDB memory (import)",
		run:     runMemoryCmd,
	},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches args to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "--version", "-version", "-V":
		return runVersion(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if cmd, ok := commands[args[1]]; ok {
				cmd.run(ctx, []string{"-h"}, stdout, stderr)
				return 2
			}
			fmt.Fprintf(stderr, "crewcore: unknown command %q\n\n", args[1])
		}
		usage(stderr)
		return 2
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "crewcore: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	return cmd.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: crewcore <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "crewcore <command> -h" for a command's flags.`)
}
