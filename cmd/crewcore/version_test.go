package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/crewcore/crewcore/internal/version"
)

func TestVersion(t *testing.T) {
	want := "crewcore " + version.Version + " (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"--version"}, 0, want, ""},
		{[]string{"-V"}, 0, want, ""},
		{[]string{"version"}, 0, want, ""},
		{[]string{"--version", "x"}, 2, "", "takes no arguments"},
		{[]string{"version", "x"}, 2, "", "takes no arguments"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, tc.code, stderr.String())
		}
		if stdout.String() != tc.out {
			t.Errorf("%v: stdout %q, want %q", tc.args, stdout.String(), tc.out)
		}
		if !strings.Contains(stderr.String(), tc.err) {
			t.Errorf("%v: stderr %q, want it to contain %q", tc.args, stderr.String(), tc.err)
		}
	}
	var stderr bytes.Buffer
	run(context.Background(), nil, &bytes.Buffer{}, &stderr)
	if !strings.Contains(stderr.String(), "version") {
		t.Errorf("usage does not list the version command: %q", stderr.String())
	}
}
