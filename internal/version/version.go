// Package version holds the crewcore release version.
//
// The version is written in one place, the [project] version of
// pyproject.toml. Builds stamp it into this package with
//
//	go build -ldflags "-X github.com/crewcore/crewcore/internal/version.Version=0.1.0" ...
//
// (setup.py and the Makefile do this); the library's "version" op and
// `crewcore --version` report it.
package version

// Version is the crewcore release this binary was built as. An unstamped
// build (plain `go build` or `go test`) reports Devel.
var Version = Devel

// Devel is the version of a build that was not stamped with -X.
const Devel = "devel"
