package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/crewcore/crewcore/internal/version"
)

func init() {
	commands["version"] = command{
		summary: "print the crewcore version (also: crewcore --version)",
		run:     runVersion,
	}
}

// versionLine is what "crewcore --version" prints: the release first (as
// pyproject.toml writes it), then the Go toolchain and the platform.
func versionLine() string {
	return fmt.Sprintf("crewcore %s (%s %s/%s)", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// runVersion prints versionLine; it takes no arguments.
func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "crewcore version: takes no arguments (got %q)\n", args)
		return 2
	}
	fmt.Fprintln(stdout, versionLine())
	return 0
}
