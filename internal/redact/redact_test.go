package redact

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"url", "postgresql://bob:hunter2@db.example:5432/app", "postgresql://bob:xxxxx@db.example:5432/app"},
		{"bad port", "postgresql://bob:hunter2@127.0.0.1:notaport/db", "postgresql://bob:xxxxx@127.0.0.1:notaport/db"},
		{"broken ipv6", "postgresql://bob:hunter2@[::1/db", "postgresql://bob:xxxxx@[::1/db"},
		{"bad escape", "postgresql://bob:hun%ter2@h/db", "postgresql://bob:xxxxx@h/db"},
		{"at and slash in password", "postgres://bob:a@b/c@h/db", "postgres://bob:xxxxx@h/db"},
		{"no host", "postgresql://bob:hunter2@/db?host=/tmp", "postgresql://bob:xxxxx@/db?host=/tmp"},
		{"query password", "postgresql://bob@h/db?password=hunter2&sslmode=disable", "postgresql://bob@h/db?password=xxxxx&sslmode=disable"},
		{"sslpassword", "postgresql://h/db?sslpassword=hunter2", "postgresql://h/db?sslpassword=xxxxx"},
		{"no password", "postgresql://bob@h/db#s", "postgresql://bob@h/db#s"},
		{"kv", "host=h user=bob password=hunter2 dbname=x", "host=h user=bob password=xxxxx dbname=x"},
		{"kv quoted", "host=h password='hun ter2' dbname=x", "host=h password=xxxxx dbname=x"},
		{"kv spaces", "host=h PASSWORD = hunter2", "host=h PASSWORD = xxxxx"},
		{"file path", "/var/lib/crew/memory.db", "/var/lib/crew/memory.db"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := DSN(c.in)
			if got != c.want {
				t.Fatalf("DSN(%q) = %q, want %q", c.in, got, c.want)
			}
			if strings.Contains(got, "ter2") || strings.Contains(got, "a@b/c") {
				t.Fatalf("DSN(%q) = %q still holds the password", c.in, got)
			}
		})
	}
}

var errBase = errors.New("base failure")

func TestErr(t *testing.T) {
	cases := []struct {
		name, dsn, msg string
	}{
		{"url quoted by a parser", "postgresql://bob:hunter2@127.0.0.1:notaport/db", `parse "postgresql://bob:hunter2@127.0.0.1:notaport/db": invalid port`},
		{"decoded password", "postgresql://bob:hun%40ter2@h/db", `auth failed for password hun@ter2`},
		{"kv", "host=h password=hunter2", `cannot parse host=h password=hunter2`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Err(fmt.Errorf("%w: %s", errBase, c.msg), c.dsn)
			for _, p := range []string{"hunter2", "hun@ter2", "hun%40ter2"} {
				if strings.Contains(err.Error(), p) {
					t.Fatalf("Err left %q in %q", p, err)
				}
			}
			if !errors.Is(err, errBase) {
				t.Fatalf("Err lost the error chain: %v", err)
			}
		})
	}
	if Err(nil, "postgresql://a:b@h/d") != nil {
		t.Fatal("Err(nil) is not nil")
	}
	plain := errors.New("nothing secret")
	if Err(plain, "postgresql://a:hunter2@h/d") != plain {
		t.Fatal("Err changed an error without a password")
	}
}

func FuzzDSN(f *testing.F) {
	for _, s := range []string{"postgresql://u:p@h/d", "password=x", "postgres://a:b@[::1", ""} {
		f.Add(s, "s3cretpw")
	}
	f.Fuzz(func(t *testing.T, prefix, pw string) {
		if len(pw) < 4 || strings.ContainsAny(pw, "@ '\\&") || strings.Contains(Mask, pw) {
			return
		}
		for _, s := range []string{
			"postgresql://u:" + pw + "@" + prefix,
			"host=" + prefix + " password=" + pw,
		} {
			if strings.Contains(prefix, pw) {
				continue
			}
			if got := DSN(s); strings.Contains(got, pw) {
				t.Fatalf("DSN(%q) = %q holds the password", s, got)
			}
		}
	})
}
