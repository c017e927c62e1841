package memory_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/crewcore/crewcore/memory"
)

func Example() {
	dir, _ := os.MkdirTemp("", "crewcore-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := memory.Open(filepath.Join(dir, "memory.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	err = s.Save(ctx, []memory.Record{
		{ID: "1", Content: "The launch is on Friday", Scope: "/crew/planning", Categories: []string{"dates"}, Embedding: []float32{0.9, 0.1, 0}},
		{ID: "2", Content: "Budget is 10k", Scope: "/crew/finance", Embedding: []float32{0, 1, 0}},
	})
	if err != nil {
		log.Fatal(err)
	}
	matches, err := s.Search(ctx, memory.Query{Vector: []float32{1, 0, 0}, ScopePrefix: "/crew/planning", Limit: 5})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range matches {
		fmt.Printf("%s %.3f\n", m.Record.Content, m.Score)
	}
	scopes, _ := s.ListScopes(ctx, "/crew")
	fmt.Println(scopes)
	// Output:
	// The launch is on Friday 0.980
	// [/crew/finance /crew/planning]
}
