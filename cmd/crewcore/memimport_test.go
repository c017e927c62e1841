package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestImportFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		code      int // -1: parsed
		wantInErr string
		wantArgs  []string // the Python arguments after the bootstrap, when parsed
	}{
		{"help", []string{"-h"}, 0, "--from-lancedb PATH", nil},
		{"no source", nil, 2, "--from-lancedb PATH is required", nil},
		{"extra argument", []string{"--from-lancedb", "x", "y"}, 2, `unexpected argument "y"`, nil},
		{"bad batch", []string{"--from-lancedb", "x", "--batch-size", "0"}, 2, "--batch-size must be >= 1", nil},
		{"bad progress", []string{"--from-lancedb", "x", "--progress", "sometimes"}, 2, "--progress must be", nil},
		{"unknown flag", []string{"--from", "x"}, 2, "flag provided but not defined", nil},
		{"defaults", []string{"--from-lancedb", "/a/memory"}, -1, "",
			[]string{"import", "--from-lancedb", "/a/memory", "--table", "memories", "--batch-size", "500", "--progress", "auto"}},
		{"to a DSN", []string{"--from-lancedb", "m", "--to", "postgresql://h/db#s", "--table", "t", "--batch-size", "7", "--progress", "never"}, -1, "",
			[]string{"import", "--from-lancedb", "m", "--table", "t", "--batch-size", "7", "--progress", "never", "--to", "postgresql://h/db#s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			a, code := parseImportFlags(tc.args, &stderr)
			if code != tc.code {
				t.Fatalf("code %d, want %d (stderr %q)", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantInErr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.wantInErr)
			}
			if tc.wantArgs == nil {
				if a != nil {
					t.Errorf("parsed %+v, want a stop", a)
				}
				return
			}
			got := a.pythonArgs()
			if got[0] != "-c" || got[1] != importBootstrap {
				t.Fatalf("python args start %q, want -c and the bootstrap", got[:2])
			}
			if !slices.Equal(got[2:], tc.wantArgs) {
				t.Errorf("python args %q, want %q", got[2:], tc.wantArgs)
			}
		})
	}
}

// fakeVenv makes dir a virtual environment (pyvenv.cfg + an executable bin/python).
func fakeVenv(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pyvenv.cfg"), []byte("home = /usr/bin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	py := filepath.Join(dir, "bin", "python")
	if err := os.WriteFile(py, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return py
}

func TestFindPython(t *testing.T) {
	root := t.TempDir()
	// An installed wheel: <venv>/lib/python3.11/site-packages/crewcore/_lib/crewcore.
	wheelVenv := filepath.Join(root, "venv")
	wheelPy := fakeVenv(t, wheelVenv)
	wheelExe := filepath.Join(wheelVenv, "lib", "python3.11", "site-packages", "crewcore", "_lib", "crewcore")
	// A checkout: <repo>/.venv and <repo>/python/crewcore/_lib/crewcore, bin/crewcore a symlink to it.
	repo := filepath.Join(root, "repo")
	repoPy := fakeVenv(t, filepath.Join(repo, ".venv"))
	repoExe := filepath.Join(repo, "python", "crewcore", "_lib", "crewcore")
	for _, exe := range []string{wheelExe, repoExe} {
		if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(repo, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(repo, "bin", "crewcore")
	if err := os.Symlink(repoExe, link); err != nil {
		t.Fatal(err)
	}
	otherPy := fakeVenv(t, filepath.Join(root, "other"))
	lonely := filepath.Join(root, "elsewhere", "crewcore")

	tests := []struct {
		name, flag, env, virtualEnv, exe string
		want, from                       string
		wantErr                          string
	}{
		{"flag wins", otherPy, wheelPy, "", wheelExe, otherPy, "--python", ""},
		{"env next", "", otherPy, "", wheelExe, otherPy, "CREWCORE_PYTHON", ""},
		{"the wheel's venv", "", "", otherPy, wheelExe, wheelPy, "the virtual environment at " + wheelVenv, ""},
		{"a checkout's .venv", "", "", "", repoExe, repoPy, "the virtual environment at " + filepath.Join(repo, ".venv"), ""},
		{"through the bin symlink", "", "", "", link, repoPy, "the virtual environment at " + filepath.Join(repo, ".venv"), ""},
		{"VIRTUAL_ENV", "", "", filepath.Join(root, "other"), lonely, otherPy, "VIRTUAL_ENV", ""},
		{"bad flag", filepath.Join(root, "nope", "python"), "", "", wheelExe, "", "", "--python"},
		{"bad env", "", filepath.Join(root, "nope", "python"), "", wheelExe, "", "", "CREWCORE_PYTHON="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CREWCORE_PYTHON", tc.env)
			t.Setenv("VIRTUAL_ENV", tc.virtualEnv)
			got, from, err := findPython(tc.flag, tc.exe)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || from != tc.from {
				t.Errorf("findPython = %q (%s), want %q (%s)", got, from, tc.want, tc.from)
			}
		})
	}
}

func TestImportRefusesAMissingSourceWithoutPython(t *testing.T) {
	// A missing source is refused before any interpreter is looked for.
	t.Setenv("CREWCORE_PYTHON", filepath.Join(t.TempDir(), "no-such-python"))
	missing := filepath.Join(t.TempDir(), "gone", "memory")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"memory", "import", "--from-lancedb", missing}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "no LanceDB memory at "+missing) {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	// An interpreter that does not exist is named.
	code = run(context.Background(), []string{"memory", "import", "--from-lancedb", t.TempDir()}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "CREWCORE_PYTHON=") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q", stdout.String())
	}
}
