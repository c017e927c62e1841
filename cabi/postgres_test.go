package main

import (
	"testing"
)

// The pg_* ops are registered and answer bad input with typed kinds without
// needing a server.
func TestPostgresOpsRegistered(t *testing.T) {
	for _, op := range []string{"pg_open", "pg_close", "pg_save", "pg_search", "pg_delete", "pg_get", "pg_list",
		"pg_scope_info", "pg_list_scopes", "pg_list_categories", "pg_count", "pg_reset", "pg_touch",
		"pg_optimize", "pg_dim", "pg_update", "pg_build_index", "pg_drop_schema"} {
		if _, ok := lookupExt(op); !ok {
			t.Errorf("%s not registered", op)
		}
	}
	tests := []struct {
		name string
		req  []byte
		kind string
	}{
		{"bad dsn", req("pg_open", 0, s("postgresql://%zz"), s("x"), i(0), s("l2"), i(0), i(0)), "invalid_argument"},
		{"bad metric", req("pg_open", 0, s("postgresql://h/db"), s("x"), i(0), s("dot"), i(0), i(0)), "invalid_argument"},
		{"negative dim", req("pg_open", 0, s("postgresql://h/db"), s("x"), i(-1), s("l2"), i(0), i(0)), "invalid_argument"},
		{"unreachable", req("pg_open", 0, s("postgresql://u@127.0.0.1:1/db?connect_timeout=1"), s("x"), i(0), s("l2"), i(0), i(0), i(50)), "pg_unavailable"},
		{"closed handle", req("pg_count", 12345, s("")), "closed"},
		{"bad args", req("pg_open", 0, i(3)), "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dispatch(tc.req)
			if err == nil {
				t.Fatal("no error")
			}
			if k := kindOf(err).kind; k != tc.kind {
				t.Fatalf("kind %q, want %q (%v)", k, tc.kind, err)
			}
		})
	}
}
