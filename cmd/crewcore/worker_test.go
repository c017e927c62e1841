package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestWorkerFlags(t *testing.T) {
	q := filepath.Join(t.TempDir(), "runs.db")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "--queue is required"},
		{[]string{"--queue", q, "--processes", "0"}, 2, "--processes"},
		{[]string{"--queue", q, "--processes", "many"}, 2, "--processes"},
		{[]string{"--queue", q, "--periodic", "{not json"}, 2, "--periodic"},
		{[]string{"--queue", q, "--periodic", `{"id":"a","crew":"m:f","every":1,"bogus":1}`}, 2, "unknown field"},
		{[]string{"--queue", q, "extra"}, 2, "unexpected argument"},
		{[]string{"--queue", "postgresql://h/db?schema=bad-name"}, 2, "schema"},
	}
	for _, c := range cases {
		var stderr bytes.Buffer
		wf, code := parseWorkerFlags(c.args, &stderr)
		if wf != nil || code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: code %d, stderr %q; want %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
	var stderr bytes.Buffer
	wf, _ := parseWorkerFlags([]string{"--queue", q, "--processes", "auto", "--crew-path", ".", "--crew-path", "/tmp",
		"--periodic", `{"id":"nightly","crew":"app.crews:build","every":3600}`, "--no-install"}, &stderr)
	if wf == nil {
		t.Fatalf("valid flags refused: %s", stderr.String())
	}
	c := wf.cfg
	if c.Supervisor.Processes < 1 || len(c.Supervisor.CrewPath) != 2 || len(c.Periodic) != 1 ||
		c.Periodic[0].Every != 3600 || len(c.Supervisor.Env) != 1 || c.Spec.Path != q {
		t.Fatalf("parsed %+v", c)
	}
}

func TestWorkerRefusesABadConfigurationBeforeStarting(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := runWorker(context.Background(), []string{"--queue", filepath.Join(t.TempDir(), "runs.db"),
		"--python", "/no/such/python"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "/no/such/python") {
		t.Fatalf("code %d, stderr %q", code, stderr.String())
	}
	code = runWorker(context.Background(), []string{"--queue", filepath.Join(t.TempDir(), "missing", "runs.db"),
		"--python", "/bin/true"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "does not exist") {
		t.Fatalf("missing queue directory: code %d, stderr %q", code, stderr.String())
	}
}

func TestRunsCommandArguments(t *testing.T) {
	q := filepath.Join(t.TempDir(), "runs.db")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "usage"},
		{[]string{"frobnicate", "--queue", q}, 2, "unknown subcommand"},
		{[]string{"show", "--queue", q}, 2, "which runs"},
		{[]string{"cancel", "--queue", q}, 2, "or --batch"},
		{[]string{"show", "abc", "--queue", q}, 2, "not a run id"},
		{[]string{"list", "7", "--queue", q}, 2, "unexpected argument"},
		{[]string{"show", "7"}, 2, "--queue is required"},
		{[]string{"show", "7", "--queue", q}, 1, "no run 7"},
		{[]string{"list", "--queue", q, "--state", "bogus"}, 1, "not one of River's"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		t.Setenv("CREWCORE_QUEUE", "")
		code := runRuns(context.Background(), c.args, &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: code %d, stderr %q; want %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}
